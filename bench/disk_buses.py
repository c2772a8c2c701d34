#!/usr/bin/env python3
"""Issue 12's benchmark: uncompressed suspend and resume of the QEMU test machine on each
disk bus (AHCI, NVMe, virtio-blk), side by side in one run, each against its own device's
raw ceiling, repetitions interleaved.

    python bench/disk_buses.py WORKDIR [--memory 1G] [--reps 3] [--json FILE]

Each repetition runs, for every bus, two units in an order rotated by one place every
repetition (bench/_runner.rotated): the image (`suspendos qemu suspend --compress none`, then
`suspendos qemu resume`, on a fresh disk in WORKDIR) and the device's raw ceiling (`qemu
suspend --compress none --raw-ceiling`: the same target, so the same device and the same
extents, on a fresh disk of the same size; the payload streams a constant buffer through
the same driver, nothing else to do). Reported per bus: host wall clock of each command
(QEMU start to exit, build included), and the payload's / loader's own seconds and MB/s
(TSC time from the first disk command to the return); the suspend's MB/s ÷ the ceiling's,
per repetition (both ran in the same minutes) and of the medians; the resume's disk MB/s
beside it (÷ the same write ceiling: a reference, not a read ceiling). The JSON keeps every
run and the load averages before each. The guest is QEMU TCG on a shared 2-core host:
compare buses within one run, not with other machines.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _runner import (column, load_summary, log, med, per_rep_ratio, results_path,  # noqa: E402
                     rotated, run_cli, write_results)

BUSES = ("ahci", "nvme", "virtio")
FIELDS = ("suspend_wall_s", "suspend_s", "suspend_mb_per_s", "bytes_written", "resume_wall_s",
          "resume_s", "resume_mb_per_s", "resume_disk_mb_per_s")
CEILING_FIELDS = ("ceiling_wall_s", "ceiling_s", "ceiling_mb_per_s", "ceiling_bytes_written")


def run(args):
    """One `suspendos` run through the shared runner (bench/_runner.py): (host wall seconds,
    its JSON); a failure ends the benchmark with its message."""
    out = run_cli(args)
    if not out.get("ok"):
        raise SystemExit(f"{out['command']} failed: {out.get('error') or out.get('message')}")
    return out["host_wall_s"], out


def image_unit(work: Path, memory: str, bus: str):
    def unit(rep):
        disk = work / f"{bus}.img"
        disk.unlink(missing_ok=True)
        flags = ["--memory", memory, "--disk", str(disk), "--disk-bus", bus]
        s_wall, s = run(["qemu", "suspend", *flags, "--compress", "none"])
        r_wall, r = run(["qemu", "resume", *flags])
        disk.unlink(missing_ok=True)
        return [(bus, {"ok": True, "suspend_wall_s": round(s_wall, 2), "suspend_s": s["seconds"],
                       "suspend_mb_per_s": s["mb_per_s"], "bytes_written": s["bytes_written"],
                       "resume_wall_s": round(r_wall, 2), "resume_s": r["seconds"],
                       "resume_mb_per_s": r["mb_per_s"],
                       "resume_disk_mb_per_s": r["disk_mb_per_s"]})]
    return unit


def ceiling_unit(work: Path, memory: str, bus: str):
    def unit(rep):
        disk = work / f"{bus}-ceiling.img"
        disk.unlink(missing_ok=True)
        wall, c = run(["qemu", "suspend", "--memory", memory, "--disk", str(disk),
                       "--disk-bus", bus, "--compress", "none", "--raw-ceiling"])
        disk.unlink(missing_ok=True)
        return [(f"{bus}-ceiling", {"ok": True, "ceiling_wall_s": round(wall, 2),
                                    "ceiling_s": c["seconds"], "ceiling_mb_per_s": c["mb_per_s"],
                                    "ceiling_bytes_written": c["bytes_written"]})]
    return unit


def summarize(runs, reps):
    median = {b: {k: med(column(runs, b, k)) for k in FIELDS} |
              {k: med(column(runs, f"{b}-ceiling", k)) for k in CEILING_FIELDS} for b in BUSES}
    base = median["ahci"]
    ratios = {}
    for b in BUSES:
        m = median[b]
        ratios[b] = {
            "suspend_over_ceiling_per_rep": per_rep_ratio(runs, reps, b, "suspend_mb_per_s",
                                                          f"{b}-ceiling", "ceiling_mb_per_s"),
            "suspend_over_ceiling_medians": round(m["suspend_mb_per_s"] / m["ceiling_mb_per_s"], 3),
            "resume_disk_over_ceiling_medians": round(m["resume_disk_mb_per_s"]
                                                      / m["ceiling_mb_per_s"], 3),
            "suspend_time_ahci_over_bus": round(base["suspend_s"] / m["suspend_s"], 2),
            "resume_time_ahci_over_bus": round(base["resume_s"] / m["resume_s"], 2),
            "ceiling_ahci_time_over_bus": round(base["ceiling_s"] / m["ceiling_s"], 2),
            "suspend_wall_ahci_over_bus": round(base["suspend_wall_s"] / m["suspend_wall_s"], 2),
            "resume_wall_ahci_over_bus": round(base["resume_wall_s"] / m["resume_wall_s"], 2)}
    return median, ratios


def markdown(data):
    """The BENCHMARKS.md tables for a result file (--markdown FILE)."""
    m, r = data["median"], data["ratios"]
    name = {"ahci": "AHCI", "nvme": "NVMe", "virtio": "virtio-blk"}
    out = ["| bus | suspend: payload s | MB/s | ceiling MB/s | ÷ ceiling (medians) | ÷ ceiling "
           "(each rep) | resume: loader s | disk MB/s | ÷ ceiling |",
           "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    for b in BUSES:
        out.append(f"| {name[b]} | {m[b]['suspend_s']} | {m[b]['suspend_mb_per_s']} | "
                   f"{m[b]['ceiling_mb_per_s']} | {r[b]['suspend_over_ceiling_medians']} | "
                   f"{', '.join(map(str, r[b]['suspend_over_ceiling_per_rep']))} | "
                   f"{m[b]['resume_s']} | {m[b]['resume_disk_mb_per_s']} | "
                   f"{r[b]['resume_disk_over_ceiling_medians']} |")
    out += ["", "| bus | suspend, payload | resume, loader | ceiling | suspend, wall | resume, wall |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for b in BUSES[1:]:
        x = r[b]
        out.append(f"| {name[b]} | {x['suspend_time_ahci_over_bus']} | "
                   f"{x['resume_time_ahci_over_bus']} | {x['ceiling_ahci_time_over_bus']} | "
                   f"{x['suspend_wall_ahci_over_bus']} | {x['resume_wall_ahci_over_bus']} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", type=Path, nargs="?")
    ap.add_argument("--memory", default="1G")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path, help="only print the tables for this result file")
    ap.add_argument("--merge", type=Path, help="a previous result file whose runs are kept "
                    "(this run's repetitions are numbered after them)")
    a = ap.parse_args()
    if a.markdown:
        import json
        print(markdown(json.loads(a.markdown.read_text())))
        return
    if a.workdir is None:
        ap.error("WORKDIR is required")
    a.workdir.mkdir(parents=True, exist_ok=True)
    units = [u for b in BUSES for u in (image_unit(a.workdir, a.memory, b),
                                        ceiling_unit(a.workdir, a.memory, b))]
    runs = rotated(units, a.reps, "disk_buses",
                   show=("suspend_mb_per_s", "resume_disk_mb_per_s", "ceiling_mb_per_s"))
    if a.merge:
        import json
        old = json.loads(a.merge.read_text())["runs"]
        first = max(r["rep"] for r in old)
        runs = old + [dict(r, rep=r["rep"] + first) for r in runs]
    reps = max(r["rep"] for r in runs)
    median, ratios = summarize(runs, reps)
    out = {"memory": a.memory, "reps": reps, "compress": "none", "median": median,
           "ratios": ratios, "load": load_summary(runs), "runs": runs}
    write_results(results_path(__file__, a.json), out)
    log("disk_buses", f"results: {results_path(__file__, a.json)}")
    print(markdown(out))


if __name__ == "__main__":
    main()
