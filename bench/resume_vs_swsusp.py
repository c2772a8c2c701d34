#!/usr/bin/env python3
"""Resume read throughput, ours against Linux's own resume, interleaved in one run; and the
issue-3 uncompressed number on a sparse and on a preallocated disk.

    bench/resume_vs_swsusp.py WORKDIR [--reps 3] [--linux-workdir DIR] [--json FILE]

Headline figures are the host's clock: `host_seconds` (the loader's verify pass to its
return, the payload's start to its end for a suspend, seen as serial lines) and
`host_disk_mb_per_s` (bytes that crossed the disk per host second).

Per repetition, in rotating order:
  ours-raw      suspend (uncompressed) then `qemu resume`       1 GiB, mix 70,6,7,17
  ours-lz4      suspend --compress lz4 then `qemu resume`      same data
  linux-lzo     swsusp hibernate + resume (bench/linux_swsusp.py), LZO
  linux-nocomp  swsusp hibernate + resume, hibernate=nocompress
  issue3        `qemu suspend --memory 1G` (default mix) on a new sparse disk file and on a
                preallocated one (fallocate, as a real partition is: no block allocation)

Linux's "Read N kbytes in S seconds" counts the RAM image (uncompressed) per second, so our
comparable figure is `ram_mb_per_s` (RAM restored per second); `mb_per_s` is image bytes read
per second (both passes of our verify-then-restore loader). MB = 10^6 bytes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import linux_swsusp  # noqa: E402
from _runner import (column, load_summary, med, per_rep_ratio, resume, results_path,  # noqa: E402
                     rotated, suspend, write_results)

DEFAULT_MIX = "70,6,7,17"


def preallocated(work: Path, name: str, size: int):
    disk = work / f"{name}.img"
    disk.unlink(missing_ok=True)
    with open(disk, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, size)
    return disk


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--linux-workdir", type=Path)
    ap.add_argument("--json", type=Path, help="default: bench/results/resume_vs_swsusp.json")
    a = ap.parse_args(argv)
    work = a.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    lwork = (a.linux_workdir or work / "linux").resolve()
    info = linux_swsusp.setup(lwork)
    mix = ["--mix", DEFAULT_MIX]
    from suspendos.target.qemu import qemu_target
    disk_size = qemu_target(1 << 30).disk.sectors * 512

    def ours_cycle(name, extra):
        s = suspend(work, name, [*mix, *extra])
        return [(name + "-suspend", s), (name + "-resume", resume(work, name))]

    def linux_cycle(name, nocomp, rep):
        r = linux_swsusp.hib_run(info, lwork, f"res-r{rep}-{name}", nocomp, resume=True)
        return [(name + "-resume", r["resume"])]

    def issue3(rep):
        sparse = suspend(work, "issue3-sparse", [])
        preallocated(work, "issue3-prealloc", disk_size)
        return [("issue3-sparse", sparse),
                ("issue3-prealloc", suspend(work, "issue3-prealloc", [], reuse=True))]

    units = [lambda rep: ours_cycle("ours-raw", []),
             lambda rep: linux_cycle("linux-lzo", False, rep),
             lambda rep: ours_cycle("ours-lz4", ["--compress", "lz4"]),
             lambda rep: linux_cycle("linux-nocomp", True, rep),
             issue3]
    t0 = time.time()
    runs = rotated(units, a.reps, "resume",
                   show=("ok", "host_seconds", "host_disk_mb_per_s", "read_mb_per_s", "read_s"))

    def col(kind, field):
        return column(runs, kind, field)

    # Headline: the host's clock. Ours: host_seconds from the loader's verify pass to its
    # return (suspend: payload start to done), host_disk_mb_per_s = bytes that crossed the
    # disk / host_seconds. Linux: its own "Read N kbytes in S s" (RAM image per second).
    summary = {
        "ours_raw_resume_host_seconds": med(col("ours-raw-resume", "host_seconds")),
        "ours_raw_resume_host_disk_mb_per_s": med(col("ours-raw-resume", "host_disk_mb_per_s")),
        "ours_lz4_resume_host_seconds": med(col("ours-lz4-resume", "host_seconds")),
        "ours_lz4_resume_host_disk_mb_per_s": med(col("ours-lz4-resume", "host_disk_mb_per_s")),
        "ours_raw_suspend_host_seconds": med(col("ours-raw-suspend", "host_seconds")),
        "ours_raw_suspend_host_disk_mb_per_s": med(col("ours-raw-suspend", "host_disk_mb_per_s")),
        "ours_lz4_suspend_host_seconds": med(col("ours-lz4-suspend", "host_seconds")),
        "ours_lz4_suspend_host_disk_mb_per_s": med(col("ours-lz4-suspend", "host_disk_mb_per_s")),
        "linux_lzo_host_resume_s": med(col("linux-lzo-resume", "host_echo_resume_to_resumed_s")),
        "linux_nocompress_host_resume_s": med(col("linux-nocomp-resume",
                                                  "host_echo_resume_to_resumed_s")),
        "linux_lzo_read_s": med(col("linux-lzo-resume", "read_s")),
        "linux_lzo_read_mb_per_s": med(col("linux-lzo-resume", "read_mb_per_s")),
        "linux_nocompress_read_s": med(col("linux-nocomp-resume", "read_s")),
        "linux_nocompress_read_mb_per_s": med(col("linux-nocomp-resume", "read_mb_per_s")),
        "issue3_sparse_host_disk_mb_per_s": med(col("issue3-sparse", "host_disk_mb_per_s")),
        "issue3_prealloc_host_disk_mb_per_s": med(col("issue3-prealloc", "host_disk_mb_per_s")),
        # secondary, with its caveat: RAM restored per second counts zero pages (a memset)
        "ours_raw_resume_ram_mb_per_s": med(col("ours-raw-resume", "ram_mb_per_s")),
        "ours_lz4_resume_ram_mb_per_s": med(col("ours-lz4-resume", "ram_mb_per_s")),
        "tsc_sources": sorted({r.get("tsc_source") for r in runs if r.get("tsc_source")}),
        "wall_s": round(time.time() - t0),
        **load_summary(runs),
    }
    summary["ratios_per_rep"] = {
        "lzo_read_s_over_ours_lz4_resume_host_seconds":
            per_rep_ratio(runs, a.reps, "linux-lzo-resume", "read_s", "ours-lz4-resume",
                          "host_seconds"),
        "nocompress_read_s_over_ours_raw_resume_host_seconds":
            per_rep_ratio(runs, a.reps, "linux-nocomp-resume", "read_s", "ours-raw-resume",
                          "host_seconds"),
        "prealloc_over_sparse_host_disk_mb_per_s":
            per_rep_ratio(runs, a.reps, "issue3-prealloc", "host_disk_mb_per_s",
                          "issue3-sparse", "host_disk_mb_per_s"),
    }
    out = {"summary": summary, "runs": runs}
    write_results(results_path(__file__, a.json), out)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
