#!/usr/bin/env python3
"""Linux's own hibernation (swsusp) of the stock Debian kernel, in the QEMU test machine.

    python bench/linux_swsusp.py WORKDIR [--reps 3] [--machine q35|pc] [--no-resume] [--json FILE]
    python bench/linux_swsusp.py WORKDIR --dump FILE        # RAM dump after the tmpfs fill

The method of ../shared/baseline/linux-swsusp (README-baseline.txt), redone in one script:

* set-up, in WORKDIR (downloads and big files stay there, never in the repository):
  `apt-cache depends linux-image-amd64` names the current kernel ABI; `apt-get download
  linux-image-<abi> busybox-static`; `dpkg-deb -x`; an initramfs (newc cpio written here in
  Python, gzip) holding busybox, the 13 modules the AHCI disk needs and the /init below;
* disk: 1152 MiB, MBR, sda1 768 MiB swap (mkswap signature), sda2 scratch; a new sparse
  file for every run, as the baseline's mkdisk.py does;
* phases (kernel command line `hibphase=`): `dd` (the guest's own write speed: busybox dd of 256 MiB to
  sda2, 1 MiB O_DIRECT writes, then buffered+fsync, 4 KiB O_DIRECT, 1 MiB O_DIRECT read),
  `hib` (fill a tmpfs with 64 MiB zeros, 64 MiB urandom, `seq 1 1000000` x10 = 66 MiB text,
  then `echo disk > /sys/power/state`), `resume` (the initramfs writes the swap device to
  /sys/power/resume, the kernel restores the image, the data is md5-checked), `dump`
  (fill, then wait while the host takes QMP pmemsave of all RAM);
* LZO is the default; `hibernate=nocompress` on the command line turns compression off.

QEMU is driven by suspendos.qemu.machine.QemuMachine (qemu.qmp + a serial socket) with the
test machine's own device set by default (`--machine q35`: suspendos.qemu.machine
machine_args + disk_args: q35, its ICH9 AHCI, raw file, cache=writeback, 1 vCPU, TCG), so
Linux and the suspend module run on the same emulated hardware; `--machine pc` is the
baseline's original line (i440fx + `-device ahci`). Every console line is stamped with host
monotonic seconds since QEMU was launched and kept in WORKDIR/logs.

What the numbers are (kernel/power/swap.c, 6.1):
* "Wrote K kbytes in S seconds": K = pages in the image x 4 KiB: RAM bytes, before
  compression (the LZO image on disk is smaller). S runs from the first page handed to the
  writer to the end of its I/O (hib_wait_io), centisecond resolution: it covers compression
  and writing, not the atomic copy before it nor the swap header and power-off after it.
  The kernel's "MB/s" is KiB/s / 1000; this script reports MB = 10^6 bytes everywhere.
* image bytes on disk: the extent of the swap partition that holds data after hibernation
  (the last non-zero 4 KiB page; the disk is new and sparse), as the baseline measured it.
* dd: busybox `time` real seconds of each dd (10 ms resolution, includes dd's start-up).
"""
from __future__ import annotations

import argparse
import asyncio
import gzip
import io
import json
import re
import shutil
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _runner import med  # noqa: E402

MiB = 1 << 20
SECTOR = 512
MEMORY = 1 << 30

MODULES = ["crypto/crct10dif_common", "crypto/crct10dif_generic", "lib/crc-t10dif", "lib/crc64",
           "crypto/crc64_rocksoft_generic", "lib/crc64-rocksoft", "block/t10-pi",
           "drivers/scsi/scsi_common", "drivers/scsi/scsi_mod", "drivers/ata/libata",
           "drivers/ata/libahci", "drivers/ata/ahci", "drivers/scsi/sd_mod"]

# The baseline's /init (../shared/baseline/linux-swsusp/init.sh) with one more phase, dump.
INIT = r"""#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mark() { echo "MARK $1 up=$(cut -d' ' -f1 /proc/uptime)"; }
PHASE=$(sed -n 's/.*hibphase=\([a-z]*\).*/\1/p' /proc/cmdline)
mark "init-start phase=$PHASE"
for m in @MODULES@; do
  insmod /lib/modules/$m.ko || echo "insmod $m failed"
done
i=0; while [ ! -b /dev/sda1 ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/sda1 ] || { echo "NO /dev/sda1"; ls /sys/class/block; poweroff -f; }
mark "disk-ready dev=$(cat /sys/class/block/sda1/dev)"
cat /sys/power/state /sys/power/disk /sys/power/image_size /sys/power/resume
free -m

if [ "$PHASE" = dd ]; then
  mark dd-write-1M-direct-start
  time dd if=/dev/zero of=/dev/sda2 bs=1M count=256 oflag=direct
  mark dd-write-1M-fsync-start
  time dd if=/dev/zero of=/dev/sda2 bs=1M count=256 conv=fsync
  mark dd-write-4k-direct-start
  time dd if=/dev/zero of=/dev/sda2 bs=4k count=16384 oflag=direct
  mark dd-read-1M-direct-start
  time dd if=/dev/sda2 of=/dev/null bs=1M count=256 iflag=direct
  mark dd-done
  poweroff -f
fi

if [ "$PHASE" != dump ]; then
  mark resume-try
  echo "$(cat /sys/class/block/sda1/dev)" > /sys/power/resume
  mark "resume-returned(no-image)"
  if [ "$PHASE" = resume ]; then echo "RESUME FAILED: no image restored"; poweroff -f; fi
  swapon /dev/sda1 && cat /proc/swaps
fi

mkdir -p /mnt/t && mount -t tmpfs -o size=400m tmpfs /mnt/t
mark fill-start
dd if=/dev/zero of=/mnt/t/zero bs=1M count=64 2>/dev/null
dd if=/dev/urandom of=/mnt/t/rand bs=1M count=64 2>/dev/null
seq 1 1000000 > /mnt/t/chunk
for k in 1 2 3 4 5 6 7 8 9 10; do cat /mnt/t/chunk; done > /mnt/t/text; rm /mnt/t/chunk
echo "written-before-hibernate $(cat /proc/sys/kernel/random/uuid)" > /mnt/t/marker
mark fill-done
ls -l /mnt/t; df -m /mnt/t; free -m
md5sum /mnt/t/zero /mnt/t/rand /mnt/t/text /mnt/t/marker > /md5.before
cat /md5.before

if [ "$PHASE" = dump ]; then
  sync
  mark dump-ready
  while true; do sleep 1000; done
fi

echo shutdown > /sys/power/disk
cat /sys/power/disk /sys/power/image_size
sync
mark hibernate-start
echo disk > /sys/power/state
rc=$?
mark "RESUMED-after-echo-disk rc=$rc"
cat /mnt/t/marker
md5sum /mnt/t/zero /mnt/t/rand /mnt/t/text /mnt/t/marker > /md5.after
if cmp /md5.before /md5.after; then echo "DATA-CHECK OK"; else echo "DATA-CHECK MISMATCH"; cat /md5.after; fi
mark verify-done
free -m
poweroff -f
"""


def log(msg):
    print(f"[linux_swsusp] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- set-up

def kernel_abi(work: Path) -> str:
    """The ABI of Debian's current kernel (linux-image-amd64's dependency), or of a kernel
    package already downloaded into `work`."""
    try:
        out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True,
                             text=True, check=False).stdout
    except FileNotFoundError:
        out = ""
    m = re.search(r"Depends: linux-image-(\d\S*-amd64)", out)
    if m:
        return m.group(1)
    debs = sorted(work.glob("linux-image-*-amd64_*.deb"))
    if debs:
        return re.match(r"linux-image-(\S+-amd64)_", debs[-1].name).group(1)
    raise SystemExit("cannot tell the kernel ABI: run apt-get update (apt-cache depends "
                     "linux-image-amd64 names it) or put the linux-image .deb in WORKDIR")


def newc(entries) -> bytes:
    """A cpio archive in the "newc" format the kernel unpacks as an initramfs.
    entries: (name, mode, data bytes, rdev (major, minor))."""
    out = io.BytesIO()

    def pad():
        out.write(b"\0" * (-out.tell() % 4))
    for ino, (name, mode, data, rdev) in enumerate(entries + [("TRAILER!!!", 0, b"", (0, 0))], 1):
        nb = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, 0, len(data), 0, 0,
                  rdev[0], rdev[1], len(nb), 0]
        out.write(b"070701" + b"".join(b"%08x" % f for f in fields) + nb)
        pad()
        out.write(data)
        pad()
    return out.getvalue()


def setup(work: Path) -> dict:
    """Download (once), unpack and build vmlinuz + initrd.gz in `work`. Returns paths."""
    work.mkdir(parents=True, exist_ok=True)
    abi = kernel_abi(work)
    kdeb = sorted(work.glob(f"linux-image-{abi}_*.deb"))
    bdeb = sorted(work.glob("busybox-static_*.deb"))
    if not kdeb or not bdeb:
        log(f"apt-get download linux-image-{abi} busybox-static")
        subprocess.run(["apt-get", "download", f"linux-image-{abi}", "busybox-static"],
                       cwd=work, check=True)
        kdeb = sorted(work.glob(f"linux-image-{abi}_*.deb"))
        bdeb = sorted(work.glob("busybox-static_*.deb"))
    kpkg, bbpkg = work / "kpkg", work / "bbpkg"
    vmlinuz = kpkg / "boot" / f"vmlinuz-{abi}"
    if not vmlinuz.exists():
        shutil.rmtree(kpkg, ignore_errors=True)
        subprocess.run(["dpkg-deb", "-x", str(kdeb[-1]), str(kpkg)], check=True)
    busybox = bbpkg / "bin" / "busybox"
    if not busybox.exists():
        shutil.rmtree(bbpkg, ignore_errors=True)
        subprocess.run(["dpkg-deb", "-x", str(bdeb[-1]), str(bbpkg)], check=True)

    moddir = kpkg / "lib" / "modules" / abi / "kernel"
    names = [p.rsplit("/", 1)[1] for p in MODULES]
    entries = [(d, stat.S_IFDIR | 0o755, b"", (0, 0)) for d in
               ("bin", "sbin", "proc", "sys", "dev", "mnt", "lib", "lib/modules")]
    entries.append(("dev/console", stat.S_IFCHR | 0o600, b"", (5, 1)))
    entries.append(("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes(), (0, 0)))
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    entries += [(f"bin/{a}", stat.S_IFLNK | 0o777, b"busybox", (0, 0))
                for a in applets if a != "busybox"]
    for p, n in zip(MODULES, names):
        ko = moddir / f"{p}.ko"
        if not ko.exists():
            raise SystemExit(f"{ko} missing (compressed modules are not handled)")
        entries.append((f"lib/modules/{n}.ko", stat.S_IFREG | 0o644, ko.read_bytes(), (0, 0)))
    init = INIT.replace("@MODULES@", " ".join(names)).encode()
    entries.append(("init", stat.S_IFREG | 0o755, init, (0, 0)))
    initrd = work / "initrd.gz"
    initrd.write_bytes(gzip.compress(newc(entries), 9, mtime=0))
    (work / "logs").mkdir(exist_ok=True)
    return {"abi": abi, "vmlinuz": vmlinuz, "initrd": initrd, "kernel_deb": kdeb[-1].name,
            "busybox_deb": bdeb[-1].name}


# ---------------------------------------------------------------- disk

DISK_MIB, SWAP_MIB = 1152, 768
P1_START = 2048
P1_SECTORS = SWAP_MIB * MiB // SECTOR
P2_START = P1_START + P1_SECTORS


def mkdisk(path: Path):
    """A new sparse disk: MBR with sda1 = swap (0x82, mkswap signature) and sda2 = scratch."""
    total = DISK_MIB * MiB // SECTOR

    def part(typ, start, size):
        return struct.pack("<B3sB3sII", 0, b"\xfe\xff\xff", typ, b"\xfe\xff\xff", start, size)
    mbr = bytearray(SECTOR)
    mbr[446:462] = part(0x82, P1_START, P1_SECTORS)
    mbr[462:478] = part(0x83, P2_START, total - P2_START)
    mbr[510:512] = b"\x55\xaa"
    path.unlink(missing_ok=True)
    tmp = path.with_suffix(".swap.tmp")
    with open(tmp, "wb") as f:
        f.truncate(P1_SECTORS * SECTOR)
    subprocess.run(["mkswap", "-L", "hibswap", str(tmp)], check=True, capture_output=True)
    with open(tmp, "rb") as s:
        sig = s.read(65536)
    tmp.unlink()
    with open(path, "wb") as d:
        d.truncate(total * SECTOR)
        d.write(mbr)
        d.seek(P1_START * SECTOR)
        d.write(sig)


def swap_extent(path: Path) -> int:
    """Bytes from the start of sda1 to the end of its last non-zero 4 KiB page."""
    block = 4 * MiB
    zero = bytes(block)
    last = 0
    with open(path, "rb") as f:
        f.seek(P1_START * SECTOR)
        for off in range(0, P1_SECTORS * SECTOR, block):
            b = f.read(block)
            if b != zero[:len(b)]:
                for p in range(len(b) - 4096, -1, -4096):
                    if any(b[p:p + 4096]):
                        last = off + p + 4096
                        break
    return last


# ---------------------------------------------------------------- running QEMU

def qemu_args(setup_info, disk: Path, machine: str, kargs: str):
    from suspendos.qemu.machine import disk_args, machine_args
    if machine == "q35":
        hw = [*machine_args(MEMORY), *disk_args(disk)]
    else:  # the baseline's qemu.sh (i440fx, -device ahci, default cache = writeback)
        hw = ["-accel", "tcg", "-cpu", "max", "-m", str(MEMORY // MiB), "-display", "none",
              "-no-reboot", "-device", "ahci,id=ahci",
              "-drive", f"file={disk},if=none,id=d0,format=raw",
              "-device", "ide-hd,drive=d0,bus=ahci.0"]
    return [*hw, "-kernel", str(setup_info["vmlinuz"]), "-initrd", str(setup_info["initrd"]),
            "-append", "console=ttyS0 ignore_loglevel pm_debug_messages resume=/dev/sda1 "
            + kargs]


async def _run(args, log_path: Path, timeout: float, on_line=None):
    from suspendos.qemu.machine import QemuMachine
    m = QemuMachine(args)
    lines = []
    t0 = time.monotonic()
    deadline = t0 + timeout
    code = None
    try:
        await m.start()
        while True:
            line = await m.readline(deadline)
            if line is None:
                break
            t = time.monotonic() - t0
            lines.append((t, line))
            if on_line and await on_line(m, line):
                break
        if m.proc.returncode is None and not on_line:
            code = await m.wait(deadline)
    except asyncio.TimeoutError:
        lines.append((time.monotonic() - t0, f"# TIMEOUT after {timeout:.0f} s"))
    finally:
        await m.stop()
        code = m.proc.returncode if m.proc else None
        wall = time.monotonic() - t0
        with open(log_path, "w") as f:
            f.write(f"# cmd: {m.command_line}\n")
            for t, line in lines:
                f.write(f"[host {t:9.3f}] {line}\n")
            f.write(f"# qemu exit rc={code} host_wall={wall:.3f} s\n")
    return lines, wall


def run_phase(setup_info, work: Path, phase: str, name: str, machine="q35", nocompress=False,
              disk: Path | None = None, timeout=600.0):
    """Run one phase; returns (timestamped lines, wall seconds, log path)."""
    disk = disk or work / "disk.img"
    kargs = f"hibphase={phase}" + (" hibernate=nocompress" if nocompress else "")
    log_path = work / "logs" / f"{name}.txt"
    lines, wall = asyncio.run(_run(qemu_args(setup_info, disk, machine, kargs), log_path, timeout))
    return lines, wall, log_path


# ---------------------------------------------------------------- reading the logs

def _when(lines, pattern):
    for t, line in lines:
        if re.search(pattern, line):
            return t
    return None


def _find(lines, pattern):
    for _, line in lines:
        m = re.search(pattern, line)
        if m:
            return m
    return None


def parse_dd(lines, wall):
    reals = []
    for _, line in lines:
        m = re.search(r"real\s+(\d+)m\s*([\d.]+)s", line)
        if m:
            reals.append(int(m.group(1)) * 60 + float(m.group(2)))
    names = ["write_1M_direct", "write_1M_fsync", "write_4k_direct", "read_1M_direct"]
    sizes = [256 * MiB, 256 * MiB, 64 * MiB, 256 * MiB]
    r = {"qemu_wall_s": round(wall, 2), "ok": len(reals) == 4}
    for n, size, s in zip(names, sizes, reals):
        r[f"{n}_s"] = s
        r[f"{n}_mb_per_s"] = round(size / s / 1e6, 1)
    if reals:
        r["dd_write_mb_per_s"] = r["write_1M_direct_mb_per_s"]
        r["dd_write_mib_per_s"] = round(256 / reals[0], 1)
    return r


def parse_hib(lines, wall):
    w = _find(lines, r"Wrote (\d+) kbytes in ([\d.]+) seconds \(([\d.]+) MB/s\)")
    copied = _find(lines, r"Image created \((\d+) pages copied\)")
    saving = _find(lines, r"\((\d+) pages\)\.\.\.")
    hs = _when(lines, r"MARK hibernate-start")
    ws, wd = _when(lines, r"Writing hibernation image"), _when(lines, r"Image saving done")
    r = {"ok": bool(w) and _when(lines, r"(?i)power down|reboot: Power down") is not None,
         "qemu_wall_s": round(wall, 2)}
    if w:
        kb, s = int(w.group(1)), float(w.group(2))
        r.update(image_ram_bytes=kb * 1024, write_s=s, kernel_mb_per_s=float(w.group(3)),
                 write_mb_per_s=round(kb * 1024 / s / 1e6, 1))
    if copied:
        r["pages_copied"] = int(copied.group(1))
    if saving:
        r["pages_saved"] = int(saving.group(1))
    if hs is not None:
        r["host_echo_disk_to_poweroff_s"] = round(wall - hs, 2)
    if ws is not None and wd is not None:
        r["host_writing_window_s"] = round(wd - ws, 2)
    return r


def parse_resume(lines, wall):
    rd = _find(lines, r"Read (\d+) kbytes in ([\d.]+) seconds \(([\d.]+) MB/s\)")
    rt, rs = _when(lines, r"MARK resume-try"), _when(lines, r"MARK RESUMED")
    r = {"ok": any("DATA-CHECK OK" in l for _, l in lines), "qemu_wall_s": round(wall, 2)}
    if rd:
        kb, s = int(rd.group(1)), float(rd.group(2))
        r.update(image_ram_bytes=kb * 1024, read_s=s, kernel_mb_per_s=float(rd.group(3)),
                 read_mb_per_s=round(kb * 1024 / s / 1e6, 1))
    if rt is not None and rs is not None:
        r["host_echo_resume_to_resumed_s"] = round(rs - rt, 2)
    return r


# ---------------------------------------------------------------- runs

def dd_run(setup_info, work, name, machine="q35"):
    mkdisk(work / "disk.img")
    lines, wall, path = run_phase(setup_info, work, "dd", name, machine)
    r = parse_dd(lines, wall)
    r["log"] = str(path)
    return r


def hib_run(setup_info, work, name, nocompress, machine="q35", resume=True):
    """Hibernate on a new disk (and resume from it). Returns {hib: ..., resume: ...}."""
    disk = work / "disk.img"
    mkdisk(disk)
    lines, wall, path = run_phase(setup_info, work, "hib", name + "-hib", machine, nocompress)
    h = parse_hib(lines, wall)
    h["log"] = str(path)
    h["image_disk_bytes"] = swap_extent(disk)
    out = {"hib": h}
    if resume:
        lines, wall, path = run_phase(setup_info, work, "resume", name + "-res", machine,
                                      nocompress)
        out["resume"] = parse_resume(lines, wall)
        out["resume"]["log"] = str(path)
    return out


def ram_dump(setup_info, work: Path, out: Path, machine="q35"):
    """Boot to the busybox shell, do the baseline's tmpfs fill, then QMP stop + pmemsave of
    RAM ([0, 640 KiB) and [1 MiB, end)) into `out` (offset = physical address)."""
    from suspendos.qemu.ramdump import dump_ram
    mkdisk(work / "disk.img")
    kargs = "hibphase=dump"
    args = qemu_args(setup_info, work / "disk.img", machine, kargs)

    async def on_line(m, line):
        if "MARK dump-ready" in line:
            await m.execute("stop")
            await dump_ram(m, [(0, 0xA0000), (0x100000, MEMORY)], str(out))
            return True
        return False
    lines, wall = asyncio.run(_run(args, work / "logs" / "dump.txt", 600.0, on_line))
    if not out.exists():
        raise SystemExit(f"no dump: see {work / 'logs' / 'dump.txt'}")
    return {"dump": str(out), "bytes": out.stat().st_size, "qemu_wall_s": round(wall, 2)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--machine", choices=("q35", "pc"), default="q35")
    ap.add_argument("--no-resume", action="store_true", help="hibernate only")
    ap.add_argument("--dump", type=Path, help="only take a RAM dump after the tmpfs fill")
    ap.add_argument("--json", type=Path, help="write every run's numbers here")
    a = ap.parse_args(argv)
    work = a.workdir.resolve()
    info = setup(work)
    log(f"kernel {info['kernel_deb']}, {info['busybox_deb']}, machine {a.machine}")
    if a.dump:
        print(json.dumps(ram_dump(info, work, a.dump.resolve(), a.machine), indent=2))
        return 0
    runs = []
    for rep in range(1, a.reps + 1):
        r = dd_run(info, work, f"r{rep}-dd", a.machine)
        runs.append({"rep": rep, "kind": "dd", **r})
        log(f"rep {rep} dd: {r.get('dd_write_mb_per_s')} MB/s")
        for kind, nocomp in (("lzo", False), ("nocompress", True)):
            r = hib_run(info, work, f"r{rep}-{kind}", nocomp, a.machine, not a.no_resume)
            runs.append({"rep": rep, "kind": kind, **r})
            log(f"rep {rep} {kind}: write {r['hib'].get('write_mb_per_s')} MB/s, image "
                f"{r['hib']['image_disk_bytes'] / MiB:.1f} MiB on disk"
                + (f", read {r['resume'].get('read_mb_per_s')} MB/s, data check "
                   f"{'OK' if r['resume']['ok'] else 'FAILED'}" if 'resume' in r else ""))
    summary = {"machine": a.machine, "kernel": info["kernel_deb"], "reps": a.reps,
               "dd_write_mb_per_s": med(r.get("dd_write_mb_per_s") for r in runs
                                              if r["kind"] == "dd")}
    for kind in ("lzo", "nocompress"):
        rs = [r for r in runs if r["kind"] == kind]
        summary[kind] = {
            "write_mb_per_s": med(r["hib"].get("write_mb_per_s") for r in rs),
            "write_s": med(r["hib"].get("write_s") for r in rs),
            "image_ram_bytes": med(r["hib"].get("image_ram_bytes") for r in rs),
            "image_disk_bytes": med(r["hib"].get("image_disk_bytes") for r in rs),
            "echo_disk_to_poweroff_s": med(r["hib"].get("host_echo_disk_to_poweroff_s")
                                           for r in rs)}
        if not a.no_resume:
            summary[kind].update(
                read_mb_per_s=med(r["resume"].get("read_mb_per_s") for r in rs),
                read_s=med(r["resume"].get("read_s") for r in rs),
                data_check_ok=all(r["resume"]["ok"] for r in rs))
    if a.json:
        a.json.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
