#!/usr/bin/env python3
"""End to end, same run, side by side: the suspend module hibernating a 1 GiB QEMU test
machine against Linux's own hibernation (swsusp, stock Debian kernel) on the same emulated
hardware, interleaved, several repetitions.

    python bench/e2e_vs_swsusp.py WORKDIR [--reps 5] [--mix 70,6,7,17] [--linux-workdir DIR]
                                  [--no-issue3] [--json FILE]

Every repetition runs each of these once, in an order rotated by one place per repetition
(so slow phases of a shared, noisy machine are spread over all of them); every run gets a
new sparse disk file, as the swsusp baseline does:

  linux-dd         the raw ceiling: busybox dd, 256 MiB of 1 MiB O_DIRECT writes to sda2
  linux-lzo        swsusp, LZO (the default)           } bench/linux_swsusp.py, hibernate
  linux-nocompress swsusp, hibernate=nocompress        } only (the tmpfs fill of the baseline)
  ours-none        suspendos qemu suspend --memory 1G --mix MIX
  ours-lz4         ... --compress lz4
  ours-lz4-key     ... --compress lz4 --encrypt-key KEY (ChaCha20-Poly1305)
  issue3           suspendos qemu suspend --memory 1G (the test host's default mix 25,25,25,25)
  issue3-reused    the same again on the disk file issue3 just wrote (blocks already
                   allocated in the host file system), right after it

What each timer measures:
* ours `seconds`: payload-measured (TSC), from the handoff (after the optional pause) to the
  return: AHCI take-over, zero-page detection over all of RAM, LZ4 / encryption, every
  write, the header, FLUSH CACHE, port restore. `mb_per_s` = bytes written to disk / s;
  `ram_mb_per_s` = all saved RAM (zero pages included) / s; `nonzero_mb_per_s` (computed
  here) = raw_bytes (non-zero pages) / s.
* swsusp `write_mb_per_s`: "Wrote K kbytes in S seconds" of kernel/power/swap.c: K = the
  image's pages x 4 KiB (RAM bytes before compression: swsusp saves only pages in use,
  ~300 MB here, zero pages of the 64 MiB zero file included); S = compression + writes
  (not the atomic copy before, not the swap header and power-off after).
* dd: busybox `time` real of the dd (10 ms resolution).
MB = 10^6 bytes everywhere.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import linux_swsusp  # noqa: E402

DEFAULT_MIX = "70,6,7,17"


def suspendos_cmd():
    exe = Path(sys.executable).parent / "suspendos"
    return [str(exe)] if exe.exists() else [shutil.which("suspendos") or "suspendos"]


def ours(work: Path, name: str, extra, reuse=False):
    disk = work / f"{name}.img"
    if not reuse:
        disk.unlink(missing_ok=True)
    cmd = ["qemu", "suspend", "--memory", "1G", "--disk", str(disk), *extra, "--json", "--quiet"]
    t0 = time.monotonic()
    p = subprocess.run([*suspendos_cmd(), *cmd], capture_output=True, text=True)
    wall = time.monotonic() - t0
    try:
        r = json.loads(p.stdout)
    except json.JSONDecodeError:
        return {"ok": False, "error": p.stderr.strip()[-400:],
                "command": "suspendos " + " ".join(cmd)}
    r["ok"] = p.returncode == 0
    r["nonzero_mb_per_s"] = round(r["raw_bytes"] / r["seconds"] / 1e6, 1) if r["seconds"] else None
    r["host_wall_s"] = round(wall, 2)
    r["command"] = "suspendos " + " ".join(cmd)
    return r


def med(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--mix", default=DEFAULT_MIX, help="test host mix for ours-* (Z,R,T,P)")
    ap.add_argument("--linux-workdir", type=Path,
                    help="bench/linux_swsusp.py's work folder (default WORKDIR/linux)")
    ap.add_argument("--no-issue3", action="store_true")
    ap.add_argument("--json", type=Path)
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
        ("linux-dd", lambda rep: [("linux-dd", linux_swsusp.dd_run(info, lwork,
                                                                    f"e2e-r{rep}-dd"))]),
        ("ours-none", lambda rep: [("ours-none", ours(work, "ours-none", mix))]),
        ("linux-lzo", lambda rep: [("linux-lzo", linux_hib(rep, "lzo", False))]),
        ("ours-lz4", lambda rep: [("ours-lz4", ours(work, "ours-lz4", lz4))]),
        ("linux-nocompress", lambda rep: [("linux-nocompress",
                                           linux_hib(rep, "nocompress", True))]),
        ("ours-lz4-key", lambda rep: [("ours-lz4-key", ours(
            work, "ours-lz4-key", [*lz4, "--encrypt-key", str(key)]))]),
    ]
    if not a.no_issue3:
        units.append(("issue3", lambda rep: [("issue3", ours(work, "issue3", [])),
                                             ("issue3-reused", ours(work, "issue3", [], True))]))
    runs = []
    t_start = time.time()
    for rep in range(1, a.reps + 1):
        k = (rep - 1) % len(units)
        for _, fn in units[k:] + units[:k]:
            load = os.getloadavg()[0]
            for kind, r in fn(rep):
                r = {"rep": rep, "kind": kind, "load1_before": round(load, 2), **r}
                runs.append(r)
                brief = {x: r.get(x) for x in ("ok", "seconds", "mb_per_s", "ram_mb_per_s",
                                               "write_mb_per_s", "raw_ceiling_mb_per_s")
                         if r.get(x) is not None}
                print(f"[e2e] rep {rep} {kind}: {brief} (load {load:.2f})", file=sys.stderr,
                      flush=True)
    wall = time.time() - t_start

    def col(kind, field):
        return [r.get(field) for r in runs if r["kind"] == kind and r.get("ok")]

    def per_rep_ratio(k1, f1, k2, f2):
        out = []
        for rep in range(1, a.reps + 1):
            x = [r.get(f1) for r in runs if r["rep"] == rep and r["kind"] == k1 and r.get("ok")]
            y = [r.get(f2) for r in runs if r["rep"] == rep and r["kind"] == k2 and r.get("ok")]
            if x and y and x[0] and y[0]:
                out.append(round(x[0] / y[0], 3))
        return out

    summary = {"reps": a.reps, "mix": a.mix, "wall_s": round(wall, 1),
               "failed_runs": [(r["rep"], r["kind"]) for r in runs if not r.get("ok")]}
    fields = {"linux-dd": ["raw_ceiling_mb_per_s", "raw_ceiling_mib_per_s"],
              "linux-lzo": ["write_mb_per_s", "write_s", "image_ram_bytes", "image_disk_bytes",
                            "host_echo_disk_to_poweroff_s"],
              "ours": ["seconds", "mb_per_s", "ram_mb_per_s", "nonzero_mb_per_s",
                       "bytes_written", "raw_bytes", "pages_saved", "zero_pages"]}
    fields["linux-nocompress"] = fields["linux-lzo"]
    kinds = [u[0] for u in units if u[0] != "issue3"] + (["issue3", "issue3-reused"]
                                                         if not a.no_issue3 else [])
    for kind in kinds:
        fs = fields.get(kind, fields["ours"])
        summary[kind] = {f: {"median": med(col(kind, f)), "each": col(kind, f)} for f in fs}
    ratios = {
        "lz4_ram_vs_swsusp_lzo_write": ("ours-lz4", "ram_mb_per_s", "linux-lzo", "write_mb_per_s"),
        "lz4_nonzero_ram_vs_swsusp_lzo_write": ("ours-lz4", "nonzero_mb_per_s", "linux-lzo",
                                                "write_mb_per_s"),
        "lz4_key_ram_vs_swsusp_lzo_write": ("ours-lz4-key", "ram_mb_per_s", "linux-lzo",
                                            "write_mb_per_s"),
        "none_written_vs_dd_ceiling": ("ours-none", "mb_per_s", "linux-dd", "raw_ceiling_mb_per_s"),
        "none_written_vs_swsusp_nocompress_write": ("ours-none", "mb_per_s", "linux-nocompress",
                                                    "write_mb_per_s"),
        "swsusp_nocompress_write_vs_dd_ceiling": ("linux-nocompress", "write_mb_per_s",
                                                  "linux-dd", "raw_ceiling_mb_per_s"),
    }
    if not a.no_issue3:
        ratios["issue3_written_vs_dd_ceiling"] = ("issue3", "mb_per_s", "linux-dd",
                                                  "raw_ceiling_mb_per_s")
        ratios["issue3_reused_written_vs_dd_ceiling"] = ("issue3-reused", "mb_per_s",
                                                         "linux-dd", "raw_ceiling_mb_per_s")
    summary["ratios"] = {}
    for name, (k1, f1, k2, f2) in ratios.items():
        each = per_rep_ratio(k1, f1, k2, f2)
        m1, m2 = med(col(k1, f1)), med(col(k2, f2))
        summary["ratios"][name] = {"median_of_per_rep": med(each), "each_rep": each,
                                   "ratio_of_medians": round(m1 / m2, 3) if m1 and m2 else None}
    summary["commands"] = sorted({r["command"] for r in runs if "command" in r})
    if a.json:
        a.json.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2, default=str))
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
