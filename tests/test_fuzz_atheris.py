"""Coverage-guided fuzzing of the target and blob parsers with atheris (bounded run).

tests/fuzz/atheris_parsers.py runs under libFuzzer's engine with Python coverage; any
exception other than SuspendosError is a crash. atheris is a test dependency (setup.cfg
[test]; a wheel exists for CPython 3.11 on x86-64 Linux, nothing is built).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fuzz_rss import rss_limit_mb

import atheris  # noqa: F401,E402  (a test dependency: setup.cfg [test])

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "tests/fuzz/atheris_parsers.py"
SECONDS = int(os.environ.get("SUSPENDOS_FUZZ_SECONDS", "10"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("atheris")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = {}
    for which in ("target", "blob"):
        new = base / f"{which}-new"
        new.mkdir()
        corpus = [str(new)]
        seeds = ROOT / "tests/fuzz/corpus" / f"atheris_{which}"
        if seeds.is_dir():
            corpus.append(str(seeds))
        elif which == "blob":
            corpus = []     # the harness builds a real blob as its seed
        cmd = [sys.executable, str(HARNESS), which, f"-max_total_time={SECONDS}",
               "-timeout=10", f"-rss_limit_mb={rss_limit_mb(3000)}", "-malloc_limit_mb=3000",
               f"-artifact_prefix={base}/{which}-",
               *corpus]
        procs[which] = subprocess.Popen(cmd, env=env, cwd=base, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
    out = {}
    for which, p in procs.items():
        try:
            log, _ = p.communicate(timeout=SECONDS + 120)
        except subprocess.TimeoutExpired:
            p.kill()
            log, _ = p.communicate()
        out[which] = (p.returncode, log)
    return out


@pytest.mark.parametrize("which", ["target", "blob"])
def test_atheris_finds_nothing(runs, which):
    rc, log = runs[which]
    assert rc == 0, f"atheris ({which}) exited {rc}:\n" + "\n".join(log.splitlines()[-80:])
    assert "Done" in log, log[-3000:]
