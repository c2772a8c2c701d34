#!/usr/bin/env python3
"""A keyed resume with this checkout's loader against another checkout's, same image.

    python bench/resume_verify.py --base CHECKOUT [--memory 256M] [--cpus 1] [--reps 3]
                                  [--compress lz4] [--json FILE]

One keyed image (`qemu suspend --encrypt-key`, this checkout), then per repetition one
`qemu resume --key` with each checkout's loader, each from a fresh copy of the image (a
resume consumes it), the order of the two rotated every repetition. CHECKOUT is another
work tree of this repository (e.g. the commit before the verify pass stopped decrypting);
both run with this Python, the checkout's package first on its path. Reports the medians of
verify_seconds, restore_seconds and seconds (guest clock), the same in guest TSC ticks
(*_gticks, 1e9: see TICKS) and host_wall_s per build, the per-repetition ratios this ÷ base,
and resume ÷ the keyed suspend's ticks.
Results: bench/results/resume_verify.json.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _runner import (column, load_summary, log, med, per_rep_ratio, results_path,  # noqa: E402
                     rotated, write_results)

ROOT = Path(__file__).resolve().parent.parent
FIELDS = ("verify_seconds", "restore_seconds", "seconds", "host_wall_s")
# The same phases in guest TSC ticks (seconds x tsc_hz). Under TCG the guest's TSC counts
# the host's, but the loader's PIT calibration of tsc_hz swings with the host's load, which
# scales every guest "seconds" of a run alike: ticks compare runs; seconds compare phases
# within one run.
TICKS = ("verify_gticks", "restore_gticks", "gticks")
MAIN = "import sys; from suspendos.cli import main; sys.exit(main())"


def git_rev(checkout: Path) -> str:
    p = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
                       capture_output=True, text=True)
    return p.stdout.strip() or "unknown"


def cli(checkout: Path, args) -> dict:
    """`suspendos ARGS --json --quiet` from `checkout`'s package; the JSON plus ok and
    host_wall_s (the host's clock around the whole command)."""
    import json
    env = dict(os.environ, PYTHONPATH=str(checkout))
    cmd = [sys.executable, "-c", MAIN, *map(str, args), "--json", "--quiet"]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=checkout)
    wall = time.monotonic() - t0
    try:
        r = json.loads(p.stdout)
    except json.JSONDecodeError:
        return {"ok": False, "error": p.stderr.strip()[-400:]}
    r.update(ok=p.returncode == 0, host_wall_s=round(wall, 2))
    return r


def add_ticks(r):
    """verify/restore/total in 1e9 guest TSC ticks, from the run's own tsc_hz."""
    hz = r.get("tsc_hz")
    for f, t in zip(("verify_seconds", "restore_seconds", "seconds"), TICKS):
        if hz and r.get(f) is not None:
            r[t] = round(r[f] * hz / 1e9, 2)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", type=Path, required=True, help="the other checkout")
    ap.add_argument("--memory", default="256M")
    ap.add_argument("--cpus", type=int, default=1)
    ap.add_argument("--compress", default="lz4")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    builds = {"this": ROOT, "base": a.base.resolve()}
    with tempfile.TemporaryDirectory(prefix="sos-resume-verify-") as td:
        work = Path(td)
        key, image = work / "key", work / "image.img"
        subprocess.run([sys.executable, "-c", MAIN, "key", "new", "-o", str(key)], check=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
        s = cli(ROOT, ["qemu", "suspend", "--memory", a.memory, "--disk", image,
                       "--cpus", a.cpus, "--encrypt-key", key, "--compress", a.compress])
        if not s.get("ok"):
            sys.exit(f"resume_verify: the suspend failed: {s.get('error') or s}")
        add_ticks(s)
        log("resume_verify", f"suspend: {s.get('seconds')} s, {s.get('bytes_written')} bytes")

        def unit(kind):
            def run(rep):
                disk = work / f"{kind}.img"
                shutil.copyfile(image, disk)
                r = cli(builds[kind], ["qemu", "resume", "--memory", a.memory, "--disk", disk,
                                       "--cpus", a.cpus, "--key", key])
                disk.unlink()
                add_ticks(r)
                return [(kind, r)]
            return run

        runs = rotated([unit("this"), unit("base")], a.reps, "resume_verify",
                       show=("ok", "verify_seconds", "restore_seconds", "seconds", "gticks"))
    FIELDS_ALL = FIELDS + TICKS
    medians = {k: {f: med(column(runs, k, f)) for f in FIELDS_ALL} for k in builds}
    ratios = {f: {"per_rep": per_rep_ratio(runs, a.reps, "this", f, "base", f),
                  "of_medians": round(medians["this"][f] / medians["base"][f], 3)
                  if medians["this"][f] and medians["base"][f] else None} for f in FIELDS_ALL}
    suspend_s, suspend_t = s.get("seconds"), s.get("gticks")
    out = {
        "memory": a.memory, "cpus": a.cpus, "compress": a.compress, "reps": a.reps,
        "commits": {k: git_rev(v) for k, v in builds.items()},
        "suspend_seconds": suspend_s, "suspend_gticks": suspend_t,
        "suspend_bytes_written": s.get("bytes_written"),
        "medians": medians, "this_over_base": ratios,
        "resume_over_suspend_gticks": {k: round(medians[k]["gticks"] / suspend_t, 3)
                                       if medians[k]["gticks"] and suspend_t else None
                                       for k in builds},
        "failed": {k: sum(1 for r in runs if r["kind"] == k and not r.get("ok"))
                   for k in builds},
        **load_summary(runs), "runs": runs,
    }
    write_results(results_path(__file__, a.json), out)
    print({k: out[k] for k in ("medians", "this_over_base", "resume_over_suspend_gticks",
                               "failed")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
