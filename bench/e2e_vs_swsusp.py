#!/usr/bin/env python3
"""End to end, same run, side by side: the suspend module hibernating a 1 GiB QEMU test
machine against Linux's own hibernation (swsusp, stock Debian kernel) on the same emulated
hardware, interleaved, several repetitions.

    python bench/e2e_vs_swsusp.py WORKDIR [--reps 5] [--mix 70,6,7,17] [--linux-workdir DIR]
                                  [--no-issue3] [--json FILE]

Every repetition runs each of these once, in an order rotated by one place per repetition
(so slow phases of a shared, noisy machine are spread over all of them); every run gets a
new sparse disk file, as the swsusp baseline does:

  linux-lzo        swsusp, LZO (the default)           } bench/linux_swsusp.py, hibernate
  linux-nocompress swsusp, hibernate=nocompress        } only (the tmpfs fill of the baseline)
  ours-none        suspendos qemu suspend --memory 1G --mix MIX
  ours-lz4         ... --compress lz4
  ours-lz4-key     ... --compress lz4 --encrypt-key KEY (ChaCha20-Poly1305)
  issue3           suspendos qemu suspend --memory 1G (the test host's default mix 25,25,25,25)
  issue3-reused    the same again on the disk file issue3 just wrote (blocks already
                   allocated in the host file system), right after it

What each timer measures:
* ours `host_seconds` (the headline): the host's monotonic clock between the payload's
  "@@PAYLOAD start" and "@@PAYLOAD done" serial lines: AHCI take-over, zero-page detection
  over all of RAM, LZ4 / encryption, every write, the header, FLUSH CACHE, port restore;
  `host_disk_mb_per_s` = bytes written to disk / host_seconds. The payload's own TSC
  figures (`seconds`, `mb_per_s`) are kept, with `tsc_source`; `ram_mb_per_s` (all saved
  RAM, zero pages included, per second) is secondary: zero pages cost a scan, not a write.
* swsusp `write_mb_per_s`: "Wrote K kbytes in S seconds" of kernel/power/swap.c: K = the
  image's pages x 4 KiB (RAM bytes before compression: swsusp saves only pages in use,
  ~300 MB here, zero pages of the 64 MiB zero file included); S = compression + writes
  (not the atomic copy before, not the swap header and power-off after).
MB = 10^6 bytes everywhere.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import linux_swsusp  # noqa: E402
from _runner import (column, load_summary, med, per_rep_ratio, results_path, rotated,  # noqa: E402
                     suspend, suspendos_cmd, write_results)

DEFAULT_MIX = "70,6,7,17"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--mix", default=DEFAULT_MIX, help="test host mix for ours-* (Z,R,T,P)")
    ap.add_argument("--linux-workdir", type=Path,
                    help="bench/linux_swsusp.py's work folder (default WORKDIR/linux)")
    ap.add_argument("--no-issue3", action="store_true")
    ap.add_argument("--json", type=Path, help="default: bench/results/e2e_vs_swsusp.json")
    a = ap.parse_args(argv)
    work = a.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    lwork = (a.linux_workdir or work / "linux").resolve()
    info = linux_swsusp.setup(lwork)
    key = work / "bench.key"
    if not key.exists():
        subprocess.run([*suspendos_cmd(), "key", "new", "-o", str(key)], check=True)
    mix = ["--mix", a.mix]

    def linux_hib(rep, kind, nocomp):
        return linux_swsusp.hib_run(info, lwork, f"e2e-r{rep}-{kind}", nocomp, resume=False)["hib"]

    lz4 = [*mix, "--compress", "lz4"]
    units = [  # (name, run(rep) -> [(kind, result)])
        ("ours-none", lambda rep: [("ours-none", suspend(work, "ours-none", mix))]),
        ("linux-lzo", lambda rep: [("linux-lzo", linux_hib(rep, "lzo", False))]),
        ("ours-lz4", lambda rep: [("ours-lz4", suspend(work, "ours-lz4", lz4))]),
        ("linux-nocompress", lambda rep: [("linux-nocompress",
                                           linux_hib(rep, "nocompress", True))]),
        ("ours-lz4-key", lambda rep: [("ours-lz4-key", suspend(
            work, "ours-lz4-key", [*lz4, "--encrypt-key", str(key)]))]),
    ]
    if not a.no_issue3:
        units.append(("issue3", lambda rep: [("issue3", suspend(work, "issue3", [])),
                                             ("issue3-reused", suspend(work, "issue3", [], reuse=True))]))
    t_start = time.time()
    runs = rotated([u[1] for u in units], a.reps, "e2e",
                   show=("ok", "host_seconds", "host_disk_mb_per_s", "write_mb_per_s"))
    wall = time.time() - t_start

    def col(kind, field):
        return column(runs, kind, field)

    def per_rep(k1, f1, k2, f2):
        return per_rep_ratio(runs, a.reps, k1, f1, k2, f2)

    summary = {"reps": a.reps, "mix": a.mix, "wall_s": round(wall, 1),
               "failed_runs": [(r["rep"], r["kind"]) for r in runs if not r.get("ok")],
               **load_summary(runs)}
    fields = {"linux-lzo": ["write_mb_per_s", "write_s", "image_ram_bytes", "image_disk_bytes",
                            "host_echo_disk_to_poweroff_s"],
              "ours": ["host_seconds", "host_disk_mb_per_s", "seconds", "mb_per_s",
                       "ram_mb_per_s", "nonzero_mb_per_s", "bytes_written",
                       "raw_bytes", "pages_saved", "zero_pages", "host_wall_s"]}
    fields["linux-nocompress"] = fields["linux-lzo"]
    kinds = [u[0] for u in units if u[0] != "issue3"] + (["issue3", "issue3-reused"]
                                                         if not a.no_issue3 else [])
    for kind in kinds:
        fs = fields.get(kind, fields["ours"])
        summary[kind] = {f: {"median": med(col(kind, f)), "each": col(kind, f)} for f in fs}
    # Times: swsusp's write seconds over ours (above 1: ours is faster); rates: ours over
    # swsusp's. RAM-per-second ratios are secondary (they count our zero pages).
    ratios = {
        "swsusp_lzo_write_s_over_ours_lz4_host_s": ("linux-lzo", "write_s", "ours-lz4",
                                                    "host_seconds"),
        "swsusp_nocompress_write_s_over_ours_none_host_s": ("linux-nocompress", "write_s",
                                                            "ours-none", "host_seconds"),
        "ours_none_disk_rate_over_swsusp_nocompress_write_rate": (
            "ours-none", "host_disk_mb_per_s", "linux-nocompress", "write_mb_per_s"),
        "secondary_lz4_ram_rate_over_swsusp_lzo_write_rate": ("ours-lz4", "ram_mb_per_s",
                                                              "linux-lzo", "write_mb_per_s"),
    }
    if not a.no_issue3:
        ratios["issue3_reused_over_new_file_disk_rate"] = ("issue3-reused", "host_disk_mb_per_s",
                                                           "issue3", "host_disk_mb_per_s")
    summary["ratios"] = {}
    for name, (k1, f1, k2, f2) in ratios.items():
        each = per_rep(k1, f1, k2, f2)
        m1, m2 = med(col(k1, f1)), med(col(k2, f2))
        summary["ratios"][name] = {"median_of_per_rep": med(each), "each_rep": each,
                                   "ratio_of_medians": round(m1 / m2, 3) if m1 and m2 else None}
    summary["tsc_sources"] = sorted({r.get("tsc_source") for r in runs if r.get("tsc_source")})
    summary["commands"] = sorted({r["command"] for r in runs if "command" in r})
    write_results(results_path(__file__, a.json), {"summary": summary, "runs": runs})
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
