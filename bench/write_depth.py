#!/usr/bin/env python3
"""Several writes in flight against one: the same work through two builds, side by side.

    python bench/write_depth.py WORKDIR --baseline EXE [--reps 3] [--memory 1G] [--cpus 2]
                                [--buses ahci,nvme,virtio] [--json FILE]

EXE is the `suspendos` of a checkout to compare with, run exactly as this checkout's (for
BENCHMARKS.md: commit 32810eb, whose stream kept one write call in flight, in its own
venv). Per repetition, for each bus and each build, in an order rotated by one case every
repetition (the two builds of a case back to back, which one first alternating):
the device's raw ceiling (`qemu suspend --raw-ceiling`: a constant buffer as large as RAM
through the same driver, command size and extents), an uncompressed suspend of RAM without
zero pages (every page reaches the disk, so its rate counts the same bytes as the ceiling's)
and an LZ4 suspend of the test host's default mix. Recorded per run: the payload's own time
(TSC), bytes written, the boot CPU's time in the writer (`disk_seconds`), the host wall
clock of the whole command and the 1-minute load average before it. The report gives
medians and this build's ÷ the baseline's time, per repetition and their median. WORKDIR holds
the disks (deleted as it goes).
"""
from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _runner import loadavg, log, med, results_path, run_cli, write_results  # noqa: E402

NO_ZERO_MIX = "0,34,33,33"          # as bench/cpus.py: no zero pages
CASES = {"ceiling": ["--raw-ceiling"], "none": ["--mix", NO_ZERO_MIX],
         "lz4": ["--compress", "lz4"]}


def one(exe, work, bus, case, memory, cpus):
    disk = work / "disk.img"
    disk.unlink(missing_ok=True)
    load = loadavg()
    r = run_cli(["qemu", "suspend", "--memory", memory, "--disk", str(disk), "--cpus",
                 str(cpus), "--disk-bus", bus, *CASES[case]], exe=exe)
    disk.unlink(missing_ok=True)
    if not r.get("ok"):
        raise SystemExit(f"{r['command']} failed: {r.get('error') or r.get('message')}")
    mb_s = r["mb_per_s"] if case == "ceiling" else round(r["bytes_written"] / r["seconds"] / 1e6, 1)
    return {"seconds": r["seconds"], "disk_mb_per_s": mb_s, "bytes_written": r.get("bytes_written"),
            "disk_seconds": r.get("disk_seconds"), "wall_seconds": r["host_wall_s"],
            "load1": load[0]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--baseline", type=Path, required=True, help="the other build's suspendos")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--memory", default="1G")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--buses", default="ahci,nvme,virtio")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    builds = {"baseline": a.baseline, "this": None}
    # The two builds of a case run one after the other, the baseline first in even
    # repetitions and second in odd ones, so neither always follows the other's writes.
    def units_of(rep):
        order = list(builds) if rep % 2 == 0 else list(builds)[::-1]
        return [(bus, case, b) for bus in a.buses.split(",") for case in CASES for b in order]
    runs = []
    started = datetime.datetime.now(datetime.timezone.utc)
    for rep in range(a.reps):
        units = units_of(rep)
        k = 2 * rep % len(units)
        for bus, case, b in units[k:] + units[:k]:
            r = one(builds[b], a.workdir, bus, case, a.memory, a.cpus)
            runs.append({"rep": rep, "bus": bus, "case": case, "build": b, **r})
            log("write_depth", f"rep {rep} {bus}/{case}/{b}: {r['seconds']} s, "
                f"{r['disk_mb_per_s']} MB/s (load {r['load1']})")
    summary = {}
    for bus in a.buses.split(","):
        for case in CASES:
            def col(b, f):
                return [r[f] for r in runs if (r["bus"], r["case"], r["build"]) == (bus, case, b)]
            per_rep = [round(t / o, 3) for t, o in zip(col("this", "seconds"),
                                                      col("baseline", "seconds"))]
            summary[f"{bus}/{case}"] = {
                "baseline_seconds": med(col("baseline", "seconds")),
                "this_seconds": med(col("this", "seconds")),
                "baseline_mb_per_s": med(col("baseline", "disk_mb_per_s")),
                "this_mb_per_s": med(col("this", "disk_mb_per_s")),
                "baseline_disk_seconds": med(col("baseline", "disk_seconds")),
                "this_disk_seconds": med(col("this", "disk_seconds")),
                "time_this_over_baseline_per_rep": per_rep,
                "time_this_over_baseline_median": med(per_rep)}
    out = {"started": started.isoformat(timespec="seconds"),
           "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "memory": a.memory, "cpus": a.cpus, "reps": a.reps, "summary": summary, "runs": runs}
    path = results_path(__file__, a.json)
    write_results(path, out)
    for name, s in summary.items():
        print(f"{name:16} baseline {s['baseline_seconds']} s ({s['baseline_mb_per_s']} MB/s)  "
              f"this {s['this_seconds']} s ({s['this_mb_per_s']} MB/s)  "
              f"this/baseline {s['time_this_over_baseline_median']} {s['time_this_over_baseline_per_rep']}")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
