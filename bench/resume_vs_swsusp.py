#!/usr/bin/env python3
"""Resume read throughput, ours against Linux's own resume, interleaved in one run; and the
issue-3 uncompressed number on a sparse and on a preallocated disk.

    bench/resume_vs_swsusp.py WORKDIR [--reps 3] [--linux-workdir DIR] [--json FILE]

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
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import linux_swsusp  # noqa: E402
from e2e_vs_swsusp import DEFAULT_MIX, med, ours, suspendos_cmd  # noqa: E402


def resume(work: Path, name: str):
    disk = work / f"{name}.img"
    cmd = ["qemu", "resume", "--memory", "1G", "--disk", str(disk), "--json", "--quiet"]
    p = subprocess.run([*suspendos_cmd(), *cmd], capture_output=True, text=True)
    try:
        r = json.loads(p.stdout)
    except json.JSONDecodeError:
        return {"ok": False, "error": p.stderr.strip()[-400:]}
    r["ok"] = p.returncode == 0
    if r.get("seconds"):
        r["ram_mb_per_s"] = round(r["pages_restored"] * 4096 / r["seconds"] / 1e6, 1)
    return r


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
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    work = a.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    lwork = (a.linux_workdir or work / "linux").resolve()
    info = linux_swsusp.setup(lwork)
    mix = ["--mix", DEFAULT_MIX]
    from suspendos.target.qemu import qemu_target
    disk_size = qemu_target(1 << 30).disk.sectors * 512

    def ours_cycle(name, extra):
        s = ours(work, name, [*mix, *extra])
        return [(name + "-suspend", s), (name + "-resume", resume(work, name))]

    def linux_cycle(name, nocomp, rep):
        r = linux_swsusp.hib_run(info, lwork, f"res-r{rep}-{name}", nocomp, resume=True)
        return [(name + "-resume", r["resume"])]

    def issue3(rep):
        sparse = ours(work, "issue3-sparse", [])
        preallocated(work, "issue3-prealloc", disk_size)
        return [("issue3-sparse", sparse),
                ("issue3-prealloc", ours(work, "issue3-prealloc", [], reuse=True))]

    units = [lambda rep: ours_cycle("ours-raw", []),
             lambda rep: linux_cycle("linux-lzo", False, rep),
             lambda rep: ours_cycle("ours-lz4", ["--compress", "lz4"]),
             lambda rep: linux_cycle("linux-nocomp", True, rep),
             issue3]
    runs, t0 = [], time.time()
    for rep in range(1, a.reps + 1):
        k = (rep - 1) % len(units)
        for fn in units[k:] + units[:k]:
            load = os.getloadavg()[0]
            for kind, r in fn(rep):
                runs.append({"rep": rep, "kind": kind, "load1_before": round(load, 2), **r})
                brief = {x: r.get(x) for x in ("ok", "seconds", "mb_per_s", "ram_mb_per_s",
                                               "read_mb_per_s") if r.get(x) is not None}
                print(f"[resume] rep {rep} {kind}: {brief} (load {load:.2f})", file=sys.stderr,
                      flush=True)

    def col(kind, field):
        return [r.get(field) for r in runs if r["kind"] == kind and r.get("ok")]

    summary = {
        "ours_raw_resume_ram_mb_per_s": med(col("ours-raw-resume", "ram_mb_per_s")),
        "ours_raw_resume_image_mb_per_s": med(col("ours-raw-resume", "mb_per_s")),
        "ours_lz4_resume_ram_mb_per_s": med(col("ours-lz4-resume", "ram_mb_per_s")),
        "ours_lz4_resume_image_mb_per_s": med(col("ours-lz4-resume", "mb_per_s")),
        "linux_lzo_read_mb_per_s": med(col("linux-lzo-resume", "read_mb_per_s")),
        "linux_nocompress_read_mb_per_s": med(col("linux-nocomp-resume", "read_mb_per_s")),
        "issue3_sparse_mb_per_s": med(col("issue3-sparse", "mb_per_s")),
        "issue3_prealloc_mb_per_s": med(col("issue3-prealloc", "mb_per_s")),
        "wall_s": round(time.time() - t0),
    }
    lzo = summary["linux_lzo_read_mb_per_s"]
    for k in ("ours_raw_resume_ram_mb_per_s", "ours_lz4_resume_ram_mb_per_s"):
        if summary[k] and lzo:
            summary[k.replace("_mb_per_s", "_vs_swsusp_lzo")] = round(summary[k] / lzo, 2)
    out = {"summary": summary, "runs": runs,
           "load1_median": med([r["load1_before"] for r in runs])}
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
