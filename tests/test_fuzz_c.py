"""libFuzzer on the C the resume loader runs on what it reads from disk (bounded CI run).

Each harness of tests/fuzz/ (see tests/fuzz/README.md) is built with clang,
-fsanitize=fuzzer,address,undefined, and run for FUZZ_SECONDS from its seed corpus
(tests/fuzz/corpus/<harness>/, read only here: new inputs go to a temporary directory).
The harnesses run side by side; a crash, sanitizer report, failed check, leak, timeout or
out-of-memory fails the test with the reproducer's bytes. The long run is
bench/fuzz_long.sh.
"""
import importlib.util
import os
import subprocess
import time
from pathlib import Path

import pytest
from fuzz_rss import rss_limit_mb

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("suspendos_fuzz_build", ROOT / "tests/fuzz/build.py")
fuzzbuild = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzzbuild)

FUZZ_SECONDS = int(os.environ.get("SUSPENDOS_FUZZ_SECONDS", "20"))
MAX_RUNS = 5_000_000

# No skipping: scripts/setup.sh installs clang; without it this is a failure.
assert fuzzbuild.clang() is not None, "clang not installed (scripts/setup.sh installs it)"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Build every harness, run them all at once; name -> (returncode, log, artifacts dir)."""
    base = tmp_path_factory.mktemp("libfuzzer")
    procs = {}
    started = time.monotonic()
    for name in fuzzbuild.HARNESSES:
        exe = fuzzbuild.build(name, base)
        new = base / f"{name}-new"
        art = base / f"{name}-artifacts"
        new.mkdir()
        art.mkdir()
        log = open(base / f"{name}.log", "w+")
        cmd = [str(exe), f"-max_total_time={FUZZ_SECONDS}", f"-runs={MAX_RUNS}",
               "-timeout=10", f"-rss_limit_mb={rss_limit_mb(2048)}", "-malloc_limit_mb=2048",
               "-max_len=8192", "-print_final_stats=1",
               f"-artifact_prefix={art}/", str(new), str(fuzzbuild.CORPUS / name)]
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log, art)
    out = {}
    for name, (p, log, art) in procs.items():
        try:
            rc = p.wait(timeout=FUZZ_SECONDS + 60)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = "hung"
        log.seek(0)
        out[name] = (rc, log.read(), art)
        log.close()
    print(f"libFuzzer: {len(procs)} harnesses in {time.monotonic() - started:.1f} s")
    return out


def test_seed_corpus_is_small_and_present():
    for name in fuzzbuild.HARNESSES:
        files = [f for f in (fuzzbuild.CORPUS / name).iterdir() if f.is_file()]
        assert 10 <= len(files) <= 500, f"{name}: {len(files)} corpus files"
        assert all(f.stat().st_size <= 16384 for f in files), f"{name}: a corpus file is large"


@pytest.mark.parametrize("name", list(fuzzbuild.HARNESSES))
def test_libfuzzer_finds_nothing(runs, name):
    rc, log, art = runs[name]
    if rc != 0:
        found = []
        for f in sorted(art.iterdir()):
            data = f.read_bytes()
            found.append(f"{f.name} ({len(data)} bytes): {data[:256].hex()}")
        tail = "\n".join(log.splitlines()[-60:])
        pytest.fail(f"libFuzzer {name} exited {rc}\nreproducers (run: {name} FILE):\n"
                    + "\n".join(found) + f"\n--- log tail ---\n{tail}")
    stats = [line for line in log.splitlines() if line.startswith("stat::number_of_executed_units")]
    assert stats, log[-2000:]
    executed = int(stats[-1].split(":")[-1])
    assert executed > 1000, f"{name}: only {executed} inputs ran"
