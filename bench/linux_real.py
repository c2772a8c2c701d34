#!/usr/bin/env python3
"""A real Debian 12 guest hibernated from the inside, suspendos against the kernel's own
hibernation (swsusp), on the same guest, same data, same kernel command line (issue 11).

    python bench/linux_real.py [--reps 5] [--memory 1G] [--cpus 2] [--swap file]
                               [--cases swsusp-lzo,ours-lz4,ours-lz4hc,swsusp-nocompress,ours-none]
                               [--disk-bus ahci|nvme|virtio] [--firmware bios|uefi]
                               [--json bench/results/linux_real.json] [--workdir DIR]

`--disk-bus nvme`: the same guest disk as namespace 1 of QEMU's NVMe controller (root and
swap on /dev/nvme0n1pN, swsusp's resume= likewise); results default to
bench/results/linux_real-nvme.json. `--firmware uefi`: every boot starts in OVMF, which starts
GRUB from the disk's ESP (swsusp's resume boot: firmware, GRUB, kernel, initramfs, then its
image) or, armed by `suspendos hibernate` with BootNext, our EFI resume loader (firmware,
then the loader); results default to linux_real-uefi.json (linux_real-uefi-nvme.json).
resume_seconds counts from power-on in every case, so the firmware's share is in it;
boot_userspace_seconds is the hibernate boot's power-on -> userspace (runner.boot_seconds).

Every case is one `suspendos qemu linux` run (suspendos/linuxvm/runner.py) on a new qcow2
overlay of the cached guest: boot, working set (tmpfs + md5s, a counter process, a file on
ext4), free memory dirtied (40 % of RAM of random data written to a file, then deleted),
hibernate from the guest's shell, resume, checks, clean power-off, e2fsck -fn on the host.

Same for both: the guest disk (debian.py), the QEMU machine (q35, ICH9 AHCI, TCG, -smp N,
multi-threaded TCG), the base command line (memmap= for suspendos' region on both, no5lvl,
loglevel=7 on both); swsusp adds only resume=/resume_offset= and, for nocompress,
`hibernate=nocompress`; /sys/power/disk = shutdown (S5, as ours powers off).

Timers are host clocks only: hibernate_seconds = the guest's line just before the command
to QEMU's exit; resume_seconds = QEMU's start to the first line the resumed userspace
prints. The per-phase split is the host time at which each phase's console line arrived
(runner._phases / _resume_phases). bytes_on_disk = non-zero 4 KiB pages of the swap area
after the run (the disk starts zeroed). Repetitions are interleaved, the case order rotated
by one each repetition; the host's load average is recorded with each run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _runner import loadavg  # noqa: E402
from linux_vs_swsusp import med  # noqa: E402

from suspendos.linuxvm.debian import build_guest  # noqa: E402
from suspendos.linuxvm.runner import run_scenario  # noqa: E402
from suspendos.sizes import parse_size  # noqa: E402

CASES = {"swsusp-lzo": ("swsusp", "lz4"), "ours-lz4": ("suspendos", "lz4"),
         "ours-lz4hc": ("suspendos", "lz4hc"),
         "swsusp-nocompress": ("swsusp", "none"), "ours-none": ("suspendos", "none")}
KEYS = ("hibernate_seconds", "resume_seconds", "bytes_on_disk", "pages_saved",
        "free_pages_skipped", "caches_dropped_pages", "boot_userspace_seconds")


def log(msg):
    print(f"[linux_real] {msg}", file=sys.stderr, flush=True)


def summarize(runs):
    s = {}
    for c in CASES:
        rs = [r for r in runs if r["case"] == c]
        if rs:
            s[c] = {k: med(r.get(k) for r in rs) for k in KEYS}
            s[c]["ok"] = f"{sum(r['ok'] for r in rs)}/{len(rs)}"
    ratios = {}
    for ours in ("ours-lz4", "ours-lz4hc", "ours-none"):
        for base in ("swsusp-lzo", "swsusp-nocompress"):
            if ours in s and base in s:
                ratios[f"{ours} / {base}"] = {
                    k: round(s[ours][k] / s[base][k], 3) if s[ours][k] and s[base][k] else None
                    for k in ("hibernate_seconds", "resume_seconds", "bytes_on_disk")}
    return s, ratios


def markdown(data):
    """The BENCHMARKS.md tables for a result file (python bench/linux_real.py --markdown F)."""
    s, ratios = summarize(data["runs"])          # from the runs, with this file's KEYS
    out = ["| case | runs ok | hibernate s | resume s | bytes on disk (MB) | pages saved | "
           "free pages left out | of them caches dropped |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c, v in s.items():
        mb = f"{v['bytes_on_disk'] / 1e6:.1f}" if v["bytes_on_disk"] else "-"
        out.append(f"| {c} | {v['ok']} | {v['hibernate_seconds']} | {v['resume_seconds']} | "
                   f"{mb} | {v['pages_saved']} | {v['free_pages_skipped'] or '-'} | "
                   f"{v['caches_dropped_pages'] or '-'} |")
    out += ["", "| ours ÷ swsusp (medians) | hibernate_seconds | resume_seconds | bytes on disk |",
            "| --- | --- | --- | --- |"]
    for k, v in ratios.items():
        out.append(f"| {k} | {v['hibernate_seconds']} | {v['resume_seconds']} | "
                   f"{v['bytes_on_disk']} |")
    out += ["", "| run | load | hibernate phases (s after the command) | resume phases (s after "
            "QEMU start) |", "| --- | --- | --- | --- |"]
    for r in data["runs"]:
        ph = ", ".join(f"{k} {t}" for k, t in (r.get("hibernate_phases") or {}).items())
        rp = ", ".join(f"{k} {t}" for k, t in (r.get("resume_phases") or {}).items())
        out.append(f"| r{r['rep']} {r['case']} | {r['load_before']} | {ph} | {rp} |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--memory", default="1G")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--swap", default="file", choices=("file", "partition"))
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--disk-bus", default="ahci", choices=("ahci", "nvme", "virtio"))
    ap.add_argument("--firmware", default="bios", choices=("bios", "uefi"))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--first-rep", type=int, default=1, help="number the repetitions from here "
                    "(continuing an interrupted benchmark; the case order follows the number)")
    ap.add_argument("--merge", type=Path, help="a previous JSON whose runs are kept")
    ap.add_argument("--markdown", type=Path, help="only print the tables for this result file")
    a = ap.parse_args(argv)
    if a.markdown:
        print(markdown(json.loads(a.markdown.read_text())))
        return 0
    if a.json is None:
        name = "-".join(["linux_real"] + (["uefi"] if a.firmware == "uefi" else [])
                        + ([a.disk_bus] if a.disk_bus != "ahci" else []))
        a.json = Path(__file__).parent / "results" / f"{name}.json"
    cases = a.cases.split(",")
    for c in cases:
        if c not in CASES:
            raise SystemExit(f"unknown case {c}")
    memory = parse_size(a.memory, "--memory")
    # one guest for every run (built now if needed): edits to the tree while the benchmark
    # runs must not give later runs another guest
    guest = build_guest(log=log)
    os.environ["SOS_DEBIAN_GUEST"] = str(guest.dir)
    log(f"guest {guest.dir.name}")
    runs = json.loads(a.merge.read_text())["runs"] if a.merge else []
    for rep in range(a.first_rep, a.first_rep + a.reps):
        k = (rep - 1) % len(cases)
        for c in cases[k:] + cases[:k]:
            hib, comp = CASES[c]
            la, t0 = loadavg()[0], time.time()      # the 1-minute load average
            wd = (a.workdir / f"r{rep}-{c}") if a.workdir else None
            try:
                r, ok = run_scenario(memory=memory, cpus=a.cpus, swap=a.swap, compress=comp,
                                     hibernator=hib, workdir=wd, log=log,
                                     disk_bus=a.disk_bus, firmware=a.firmware)
            except Exception as e:      # noqa: BLE001 - recorded, the benchmark goes on
                r, ok = {"error": f"{type(e).__name__}: {str(e)[:2000]}"}, False
            r["boot_userspace_seconds"] = (r.get("boot_seconds") or {}).get("userspace")
            r.update(case=c, rep=rep, ok=ok, load_before=round(la, 2),
                     load_after=round(loadavg()[0], 2),
                     started=time.strftime("%H:%M:%S", time.gmtime(t0)))
            runs.append(r)
            log(f"rep {rep} {c}: ok={ok} hibernate {r.get('hibernate_seconds')} s, resume "
                f"{r.get('resume_seconds')} s, {r.get('bytes_on_disk')} bytes on disk, "
                f"load {la:.1f}")
            summary, ratios = summarize(runs)
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps(
                {"memory": a.memory, "cpus": a.cpus, "swap": a.swap, "reps": a.reps,
                 "disk_bus": a.disk_bus, "firmware": a.firmware,
                 "guest": guest.dir.name, "summary": summary, "ours_over_swsusp": ratios, "runs": runs}, indent=2))
    print(json.dumps({"summary": summary, "ours_over_swsusp": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
