#!/usr/bin/env python3
"""Issue 13's benchmark: one CPU against two in the QEMU test machine.

    python bench/cpus.py WORKDIR [--reps 3] [--memory 1G] [--json FILE] [--no-ceiling]

For each repetition, in an order rotated every repetition so the configurations interleave:
for each mix (the test host's default 25,25,25,25 and the end-to-end mix 70,6,7,17), each
mode (lz4, lz4 + key) and each CPU count (1, 2), a `qemu suspend` and the `qemu resume` of
its image; then, per repetition and CPU count, the device's raw ceiling (`qemu suspend
--raw-ceiling`) and an uncompressed suspend of RAM without zero pages (NO_ZERO_MIX), whose
bytes written per second of payload time are compared with the ceiling of the same CPU
count (left out with --no-ceiling, for a shorter run about the compressed pairs only). Recorded per run: the payload's (or loader's) own
time (TSC; under TCG the guest TSC follows the host clock), the host wall clock of the whole
command (boot and the test host's RAM fill included), the boot CPU's split into writing and
computing, and the 1-minute load average before the run. The report gives medians over the
repetitions and the 2-CPU / 1-CPU ratios. WORKDIR holds the disks (1 GiB each, deleted as
it goes); nothing there is kept.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _runner import run_cli, suspendos_cmd  # noqa: E402

MIXES = {"default": None, "e2e": "70,6,7,17"}
# The uncompressed runs' mix: no zero pages, so every page of RAM reaches the disk, as in the
# raw ceiling run, and the two rates count the same bytes.
NO_ZERO_MIX = "0,34,33,33"
MODES = ("lz4", "lz4+key")
CPUS = (1, 2)


def run(args):
    """One `suspendos` run through the shared runner (bench/_runner.py); a failure ends the
    benchmark with its message."""
    load = os.getloadavg()[0]
    out = run_cli([str(a) for a in args])
    if not out.get("ok"):
        raise SystemExit(f"{out['command']} failed: {out.get('error') or out.get('message')}")
    out.update(wall_seconds=out["host_wall_s"], load1=round(load, 2), exit=0)
    return out


def suspend_case(work, memory, mix, mode, cpus, key, extra=()):
    disk = work / "disk.img"
    disk.unlink(missing_ok=True)
    args = ["qemu", "suspend", "--memory", memory, "--disk", disk, "--cpus", cpus,
            *(["--mix", mix] if mix else []), *extra]
    if mode.startswith("lz4"):
        args += ["--compress", "lz4"]
    if mode.endswith("+key"):
        args += ["--encrypt-key", key]
    return run(args)


def resume_case(work, memory, mode, cpus, key):
    args = ["qemu", "resume", "--memory", memory, "--disk", work / "disk.img", "--cpus", cpus]
    if mode.endswith("+key"):
        args += ["--key", key]
    return run(args)


def median(runs, field):
    vals = [r[field] for r in runs if r.get(field) is not None]
    return round(statistics.median(vals), 4) if vals else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--memory", default="1G")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-ceiling", action="store_true",
                    help="skip the raw ceiling and the uncompressed suspends")
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    key = a.workdir / "key"
    key.unlink(missing_ok=True)         # `key new` never replaces a file
    subprocess.run(suspendos_cmd() + ["key", "new", "-o", str(key)], check=True,
                   capture_output=True)
    configs = [(m, mode, c) for m in MIXES for mode in MODES for c in CPUS]
    runs = {"suspend": {}, "resume": {}, "ceiling": {1: [], 2: []}, "none": {1: [], 2: []}}
    started = datetime.datetime.now(datetime.timezone.utc)
    for rep in range(a.reps):
        order = configs[rep % len(configs):] + configs[:rep % len(configs)]
        for mix, mode, cpus in order:
            name = f"{mix}/{mode}/cpus{cpus}"
            s = suspend_case(a.workdir, a.memory, MIXES[mix], mode, cpus, key)
            r = resume_case(a.workdir, a.memory, mode, cpus, key)
            runs["suspend"].setdefault(name, []).append(s)
            runs["resume"].setdefault(name, []).append(r)
            print(f"rep {rep} {name}: suspend {s['seconds']} s (wall {s['wall_seconds']}), "
                  f"resume {r['seconds']} s (wall {r['wall_seconds']}), load {s['load1']}",
                  file=sys.stderr)
        if a.no_ceiling:
            continue
        for cpus in CPUS:
            c = suspend_case(a.workdir, a.memory, None, "none", cpus, key, ["--raw-ceiling"])
            n = suspend_case(a.workdir, a.memory, NO_ZERO_MIX, "none", cpus, key)
            n["disk_mb_per_s"] = round(n["bytes_written"] / n["seconds"] / 1e6, 1)
            runs["ceiling"][cpus].append(c)
            runs["none"][cpus].append(n)
            print(f"rep {rep} cpus{cpus}: ceiling {c['mb_per_s']} MB/s, uncompressed "
                  f"{n['disk_mb_per_s']} MB/s to the disk", file=sys.stderr)
    (a.workdir / "disk.img").unlink(missing_ok=True)

    summary = {"suspend": {}, "resume": {}}
    for what in ("suspend", "resume"):
        for name, rs in runs[what].items():
            summary[what][name] = {f: median(rs, f) for f in (
                "seconds", "wall_seconds", "mb_per_s", "ram_mb_per_s", "disk_seconds",
                "compute_seconds", "cpus_used", "load1", "verify_seconds",
                "restore_seconds")}
    ratios = {}
    for mix in MIXES:
        for mode in MODES:
            for what in ("suspend", "resume"):
                one = summary[what][f"{mix}/{mode}/cpus1"]
                two = summary[what][f"{mix}/{mode}/cpus2"]
                ratios[f"{what} {mix}/{mode}"] = {
                    "payload_time_2_over_1": round(two["seconds"] / one["seconds"], 3),
                    "wall_time_2_over_1": round(two["wall_seconds"] / one["wall_seconds"], 3)}
    if not a.no_ceiling:
        ceiling = {c: median(runs["ceiling"][c], "mb_per_s") for c in CPUS}
        none = {c: median(runs["none"][c], "disk_mb_per_s") for c in CPUS}
        summary["raw_ceiling_mb_per_s"] = ceiling
        summary["uncompressed_disk_mb_per_s"] = none
        summary["uncompressed_over_ceiling"] = {c: round(none[c] / ceiling[c], 3) for c in CPUS}
    summary["ratios"] = ratios
    out = {"started": started.isoformat(timespec="seconds"),
           "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "memory": a.memory, "reps": a.reps, "nproc": os.cpu_count(),
           "summary": summary, "runs": runs}
    path = a.json or Path(__file__).resolve().parent / "results" / (
        f"cpus-{started:%Y%m%dT%H%M}.json")
    path.write_text(json.dumps(out, indent=2, default=str))
    print(json.dumps(summary, indent=2))
    print(f"written: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
