#!/usr/bin/env python3
"""Issue 12's benchmark: uncompressed suspend and resume of the QEMU test machine on each
disk bus (AHCI, NVMe, virtio-blk), side by side in one run, rounds interleaved.

    python bench/disk_buses.py WORKDIR [--memory 1G] [--reps 3] [--json FILE]

Each round runs, for every bus, `suspendos qemu suspend --compress none` then `suspendos
qemu resume` on a fresh disk in WORKDIR. Reported per bus: host wall clock of each command
(QEMU start to exit, build included), and the payload's / loader's own seconds and MB/s
(TSC time from the first disk command to the return). Medians over the rounds; the JSON
keeps every run. The guest is QEMU TCG on a shared 2-core host: compare buses within one
run, not with other machines.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _runner import run_cli  # noqa: E402

BUSES = ("ahci", "nvme", "virtio")


def run(args):
    """One `suspendos` run through the shared runner (bench/_runner.py): (host wall seconds,
    its JSON); a failure ends the benchmark with its message."""
    out = run_cli(args)
    if not out.get("ok"):
        raise SystemExit(f"{out['command']} failed: {out.get('error') or out.get('message')}")
    return out["host_wall_s"], out


def one_round(work: Path, memory: str, bus: str):
    disk = work / f"{bus}.img"
    disk.unlink(missing_ok=True)
    flags = ["--memory", memory, "--disk", str(disk), "--disk-bus", bus]
    s_wall, s = run(["qemu", "suspend", *flags, "--compress", "none"])
    r_wall, r = run(["qemu", "resume", *flags])
    disk.unlink(missing_ok=True)
    return {"suspend_wall_s": round(s_wall, 2), "suspend_s": s["seconds"],
            "suspend_mb_per_s": s["mb_per_s"], "bytes_written": s["bytes_written"],
            "resume_wall_s": round(r_wall, 2), "resume_s": r["seconds"],
            "resume_mb_per_s": r["mb_per_s"], "resume_disk_mb_per_s": r["disk_mb_per_s"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--memory", default="1G")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    runs = {b: [] for b in BUSES}
    for i in range(a.reps):
        for bus in BUSES:
            runs[bus].append(one_round(a.workdir, a.memory, bus))
            print(f"round {i + 1} {bus}: {runs[bus][-1]}", file=sys.stderr)
    keys = runs[BUSES[0]][0].keys()
    summary = {b: {k: statistics.median(r[k] for r in runs[b]) for k in keys} for b in BUSES}
    base = summary["ahci"]
    ratios = {b: {"suspend_time_ahci_over_bus": round(base["suspend_s"] / summary[b]["suspend_s"], 2),
                  "resume_time_ahci_over_bus": round(base["resume_s"] / summary[b]["resume_s"], 2),
                  "suspend_wall_ahci_over_bus": round(base["suspend_wall_s"] / summary[b]["suspend_wall_s"], 2),
                  "resume_wall_ahci_over_bus": round(base["resume_wall_s"] / summary[b]["resume_wall_s"], 2)}
              for b in BUSES}
    out = {"memory": a.memory, "reps": a.reps, "compress": "none", "median": summary,
           "ratios": ratios, "runs": runs}
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=2))
    print(json.dumps({"median": summary, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
