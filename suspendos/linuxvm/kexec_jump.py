"""`suspendos qemu kexec-jump`: hibernate a Linux kernel through `kexec --load-preserve-context`
of the suspendos kexec ELF, and resume it with the resume loader, on the QEMU test machine.

Boots (q35, ICH9 AHCI, TCG, one CPU; the kernel is suspendos/linuxvm/kernel.py's, with
`memmap=2M$64M` reserving the region and `no5lvl`):
  1. capture: the Linux VM's /sys and /proc as a sysroot (linuxvm/capture.py), `target linux`
     on it; the kexec ELF (build/kexec.py) and the resume loader are built for that target.
  2. hibernate: a tmpfs with known content and its md5sums; the swap area marked; `kexec
     --load-preserve-context --mem-min --mem-max (build.kexec.kexec_mem_range) --args-none
     payload.elf`; `kexec -e -x`. The payload writes the image and returns into the kernel
     through relocate_kernel; userspace reads the status from the handoff page through
     /dev/mem (KJ_INIT_BODY) and powers off on WRITTEN. With `ground_truth`, QMP pmemsave
     dumps RAM while the payload waits before reading it.
     With `inject_error`, blkdebug fails one write inside the extents first: the payload
     returns a failure status, the host checks that no byte outside the extents changed and
     that no image header was written; `kexec -e` again without a reload goes through the
     re-entry point relocate_kernel kept (status NOT_RUN); then userspace loads the ELF again
     and jumps again.
  3. resume: the resume loader (QEMU -kernel, a multiboot ELF, as in the stage-4 flow) restores
     RAM and returns into relocate_kernel's return point, so `kexec -e` returns in userspace:
     the handoff page now says RESUMED, the md5sums are compared, the machine powers off.
Serial lines for the host start with @@KJ. kexec-tools prints "kexec failed: ..." after
every return (it expects `kexec -e` never to return); the status is what counts.
"""
import asyncio
import hashlib
import tempfile
import time
from pathlib import Path

from elftools.elf.elffile import ELFFile

from ..build.kexec import kexec_elf, kexec_mem_range
from ..build.payload import build_payload
from ..build.resume import build_resume_loader
from ..errors import UsageError
from ..formats.common import PAGE_SIZE, offset_of, parse
from ..formats.handoff import HANDOFF_FLAGS, Handoff
from ..formats.status import STATUS, describe
from ..image.reader import NoImage, open_image
from ..qemu.machine import DEBUG_EXIT_PORT, disk_args, machine_args
from .realvm import IOMMU_APPEND, iommu_args
from ..qemu.ramdump import dump_ram
from ..target.linux import linux_target
from . import _unpack, build_initrd, init_prelude, make_disk
from . import cache_dir as linux_cache
from .capture import CAPTURE_BODY, parse_capture
from .kernel import KexecKernel
from .kernel import cache_dir as kexec_cache
from .vm import Session

MiB = 1 << 20
RESERVED_BASE = 64 * MiB
RESERVED_SIZE = 2 * MiB          # one 2 MiB page of kexec's identity map (build/kexec.py)
SERIAL = 0x3F8
# kexec-tools and the libraries its binary needs (Debian 12: it links libxenctrl).
KEXEC_PACKAGES = ["kexec-tools", "libxenmisc4.17", "libxentoollog1", "libxencall1",
                  "libxenevtchn1", "libxengnttab1", "libxenforeignmemory1",
                  "libxendevicemodel1", "libxentoolcore1"]
LIB_DIRS = ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64"]

# poweroff -f right after an echo can cut the console's last lines (the tty drains them
# asynchronously): give it a second.
DRAIN = r"""
poweroff() { sleep 1; /bin/poweroff "$@"; }
"""
KJ_INIT_BODY = r"""
mark() { echo "@@KJ $*"; }
mkdir -p /mnt/t && mount -t tmpfs -o size=%(tmpfs_mib)dm tmpfs /mnt/t
dd if=/dev/zero of=/mnt/t/zero bs=1M count=%(zero_mib)d 2>/dev/null
dd if=/dev/urandom of=/mnt/t/rand bs=1M count=%(rand_mib)d 2>/dev/null
seq 1 %(seq)d > /mnt/t/text
echo "written-before-the-jump $(cat /proc/sys/kernel/random/uuid)" > /mnt/t/marker
md5sum /mnt/t/* > /md5.before
mark "md5 $(md5sum < /md5.before | cut -d' ' -f1)"
load() {
  kexec --load-preserve-context --mem-min=%(mem_min)#x --mem-max=%(mem_max)#x \
    --type=elf-x86_64 --args-none /payload.elf || mark "error kexec load"
}
status() {
  dd if=/dev/mem of=/handoff.bin bs=4096 skip=%(handoff_pfn)d count=1 2>/dev/null
  st=$(od -A n -t u4 -j %(status_off)d -N 4 /handoff.bin | tr -d ' ')
  mark "${1:-back} status=$st handoff=$(od -A n -t x1 -v /handoff.bin | tr -d ' \n')"
}
# what the kernel says of its IOMMU before the jump (a kernel without an IOMMU driver has
# no units and no groups, whatever the machine carries)
mark "iommu units=$(ls /sys/class/iommu 2>/dev/null | tr '\n' ,) groups=$(ls /sys/kernel/iommu_groups 2>/dev/null | wc -l) domain=$(dmesg | grep -o 'Default domain type: [A-Za-z]*' | tail -1 | cut -d' ' -f4)"
printf SOSIMAGE01 | dd of=/dev/sda1 bs=1 seek=4086 conv=notrunc,fsync 2>/dev/null
load
sync
while :; do
  mark "jumping"
  kexec -e -x
  status
  case "$st" in
    1) mark "poweroff"; poweroff -f; sleep 30 ;;
    2) break ;;
    *) mark "failed"; read answer; [ "$answer" = again ] || break
       kexec -e -x; status reentry     # without a reload: the re-entry point, NOT_RUN
       kexec -u; load ;;
  esac
done
kexec -u
printf SWAPSPACE2 | dd of=/dev/sda1 bs=1 seek=4086 conv=notrunc,fsync 2>/dev/null
md5sum /mnt/t/* > /md5.after
mark "md5 $(md5sum < /md5.after | cut -d' ' -f1)"
if cmp -s /md5.before /md5.after; then mark "md5 ok"; else mark "md5 mismatch"; cat /md5.after; fi
mark "done"
poweroff -f
"""


def kj_init(mem_range, zero_mib=8, rand_mib=8, seq=200000):
    return init_prelude(()) + DRAIN + KJ_INIT_BODY % {
        "tmpfs_mib": zero_mib + rand_mib + 16, "zero_mib": zero_mib, "rand_mib": rand_mib,
        "seq": seq, "handoff_pfn": mem_range[0] // PAGE_SIZE - 1,   # the page under MIN
        "status_off": offset_of(Handoff, "status"), "mem_min": mem_range[0],
        "mem_max": mem_range[1]}


class Busybox:
    """What build_initrd needs from linuxvm.Debian, without Debian's kernel: busybox only."""

    def __init__(self):
        cache = linux_cache()
        root = cache / "root-busybox"
        _unpack(cache, "busybox-static", root)
        self.busybox = root / "bin" / "busybox"
        self.modules = None


def kexec_tools_files():
    """{path in the initramfs: bytes}: Debian's kexec binary and the shared libraries it
    needs, from the packages (apt-get download, cached) or, for libc, the host."""
    cache = kexec_cache()
    root = cache / "kexec-tools-root"
    for p in KEXEC_PACKAGES:
        _unpack(cache, p, root)
    files, todo, seen = {}, [("sbin/kexec", root / "sbin" / "kexec")], set()
    while todo:
        dest, path = todo.pop()
        data = path.read_bytes()
        files[dest] = data
        with open(path, "rb") as f:
            elf = ELFFile(f)
            dyn = elf.get_section_by_name(".dynamic")
            interp = elf.get_section_by_name(".interp")
            needed = [t.needed for t in dyn.iter_tags() if t.entry.d_tag == "DT_NEEDED"] \
                if dyn else []
            if interp is not None:
                ip = interp.data().rstrip(b"\0").decode().lstrip("/")
                if ip not in seen:
                    seen.add(ip)
                    todo.append((ip, Path("/") / ip))
        for name in needed:
            if name in seen:
                continue
            seen.add(name)
            for base in (root, Path("/")):
                hit = next((base / d / name for d in LIB_DIRS if (base / d / name).exists()), None)
                if hit:
                    todo.append((f"lib/x86_64-linux-gnu/{name}", hit.resolve()))
                    break
            else:
                raise UsageError(f"kexec: library {name} not found in {', '.join(KEXEC_PACKAGES)}"
                                 " nor on this machine")
    return files


def _args(memory, kernel, initrd, disk, inject=None, iommu="none"):
    return [*machine_args(memory), *iommu_args(iommu), *disk_args(disk, inject), "-kernel",
            str(kernel), "-initrd", str(initrd), "-append",
            f"console=ttyS0 memmap={RESERVED_SIZE >> 20}M${RESERVED_BASE:#x} no5lvl nokaslr "
            f"loglevel=4 {IOMMU_APPEND[iommu]}".strip()]


def _iommu_line(line):
    """`@@KJ iommu units=a,b, groups=N domain=D` -> what the kernel said, and whether it
    translated: units present, groups made, translated default domains."""
    f = dict(w.split("=", 1) for w in line.split()[2:] if "=" in w)
    units = [u for u in f.get("units", "").split(",") if u]
    groups = int(f.get("groups", "0") or 0)
    return {"units": units, "groups": groups, "default_domain": f.get("domain", ""),
            "translating": bool(units and groups and f.get("domain") == "Translated")}


def _outside_extents(disk, extents):
    """sha256 of every disk byte outside the image extents."""
    h = hashlib.sha256()
    pos = 0
    with open(disk, "rb") as f:
        for lba, count in sorted(extents) + [(Path(disk).stat().st_size // 512, 0)]:
            f.seek(pos)
            left = lba * 512 - pos
            while left > 0:
                chunk = f.read(min(left, 8 * MiB))
                if not chunk:
                    break
                h.update(chunk)
                left -= len(chunk)
            pos = (lba + count) * 512
    return h.hexdigest()


def open_image_state(disk, lba):
    """The image's state at `lba`, or "none" when no image header is there."""
    try:
        return open_image(disk, lba=lba).info()["state"]
    except NoImage:
        return "none"


def _handoff(line):
    hexdata = line.split("handoff=", 1)[1]
    h = parse(Handoff, bytes.fromhex(hexdata)[:Handoff.sizeof()], "handoff page")
    return {"status": h.status, "status_name": describe(h.status),
            "message": h.message.split(b"\0")[0].decode(errors="replace"),
            "failed_lba": h.failed_lba, "pages_saved": h.pages_saved,
            "bytes_written": h.bytes_written,
            "seconds": round((h.tsc_end - h.tsc_start) / h.tsc_hz_used, 2)
            if h.tsc_hz_used else None}


async def _capture(memory, kernel, bb, tmp, disk, iommu="none"):
    init = init_prelude(()) + CAPTURE_BODY
    build_initrd(bb, init, tmp / "capture.gz", modules=())
    async with Session(_args(memory, kernel, tmp / "capture.gz", disk, iommu=iommu),
                       tmp / "capture.log") as s:
        if not await s.expect(r"^@@DONE", 180):
            raise s.m.failure("the capture boot ended before @@DONE")
        lines = s.lines
    parse_capture(lines, tmp / "sysroot")


async def _hibernate(memory, kernel, initrd, tmp, disk, extents, inject, before, log,
                     ram_ranges=None, iommu="none"):
    out = {"failed": None}

    async def ground_truth(machine):     # the payload waits before reading RAM
        await dump_ram(machine, ram_ranges, tmp / "ram.bin")

    async with Session(_args(memory, kernel, initrd, disk, inject, iommu),
                       tmp / "hibernate.log") as s:
        line = await s.expect(r"^@@KJ md5 ", 300)
        if not line:
            raise s.m.failure("the kernel did not reach userspace")
        out["md5_before"] = line.split()[-1]
        line = await s.expect(r"^@@KJ iommu ", 60)
        if not line:
            raise s.m.failure("the kernel did not say what its IOMMU does")
        out["iommu"] = _iommu_line(line)
        while True:
            line = await s.expect(r"^@@KJ jumping|^@@KJ error", 120)
            if not line or line.startswith("@@KJ error"):
                raise s.m.failure(f"kexec: {s.lines[-1]}")
            if before is None:     # userspace has marked the swap area (fsync) by now
                before = _outside_extents(disk, extents)
            t0 = time.monotonic()
            line = await s.expect(r"^@@KJ back ", 900,
                                  on_pause=ground_truth if ram_ranges else None)
            if not line:
                raise s.m.failure("the kernel did not come back from kexec -e")
            out.setdefault("jump_seconds", []).append(round(time.monotonic() - t0, 1))
            h = _handoff(line)
            if h["status"] == STATUS.WRITTEN:
                out["written"] = h
                if not await s.expect(r"^@@KJ poweroff", 30):
                    raise s.m.failure("no poweroff after WRITTEN")
                await s.wait_exit(60)
                return out
            if not inject or out["failed"] is not None:
                raise s.m.failure(f"the payload failed: {h}")
            # the failure: nothing outside the extents changed, no image header
            out["failed"] = h
            unchanged = _outside_extents(disk, extents) == before
            out["failed"]["outside_extents_unchanged"] = unchanged
            out["failed"]["image_header"] = open_image_state(disk, extents[0][0])
            log(f"failed run: {h['status_name']} {h['message']!r} at LBA {h['failed_lba']}")
            await s.send("again\n")
            line = await s.expect(r"^@@KJ reentry ", 120)
            if not line:
                raise s.m.failure("the kernel did not come back from the re-entry point")
            out["failed"]["reentry_status"] = _handoff(line)["status"]


async def _resume(memory, loader, tmp, disk, iommu="none"):
    args = [*machine_args(memory), *iommu_args(iommu), *disk_args(disk), "-kernel", str(loader)]
    async with Session(args, tmp / "resume.log") as s:
        line = await s.expect(r"^@@KJ back ", 600)
        if not line:
            raise s.m.failure("the machine did not come back into Linux")
        h = _handoff(line)
        md5 = await s.expect(r"^@@KJ md5 [0-9a-f]", 300)
        ok = await s.expect(r"^@@KJ md5 (ok|mismatch)", 60)
        if not await s.expect(r"^@@KJ done", 60):
            raise s.m.failure("userspace did not finish after the resume")
        await s.wait_exit(60)
        return h, md5.split()[-1], ok == "@@KJ md5 ok"


def kexec_jump(memory=256 * MiB, compress="lz4", inject_error=False, ground_truth=False,
               workdir=None, log=print, iommu="none"):
    """Run the whole flow; returns the summary dict (`status` "resumed" when it worked).
    ground_truth: the payload pauses before reading RAM, QMP pmemsave dumps it, and the
    image is compared with the dump page by page (the last run's, when one failed first).
    iommu: QEMU's Intel or AMD IOMMU on every boot (realvm.IOMMU_DEVICES); the summary's
    iommu_translating_before says whether the kernel translated DMA before the jump (the
    kernel built from kexec.config has no IOMMU driver, so it does not)."""
    if memory < 128 * MiB or memory % MiB:
        raise UsageError("--memory: at least 128 MiB, in whole MiB (the region sits at 64 MiB)")
    if iommu not in IOMMU_APPEND:
        raise UsageError("--iommu: none, intel or amd")
    t_all = time.monotonic()
    kernel = KexecKernel()
    cold = not kernel.bzimage.exists()
    bz = kernel.ensure(log=log)
    summary = {"kernel": f"{kernel.key}", "kernel_built_now": cold,
               "kernel_build_seconds": kernel.build_seconds or float(
                   (kernel.dir / "build-seconds").read_text()),
               "memory": memory, "compress": compress, "status": "failed", "md5_match": False,
               "iommu": iommu}
    bb = Busybox()
    tools = kexec_tools_files()
    with tempfile.TemporaryDirectory(prefix="sos-kexec-jump-") as tmp:
        tmp = Path(workdir or tmp)
        tmp.mkdir(parents=True, exist_ok=True)
        disk = tmp / "disk.img"
        swap_mib = memory // MiB + memory // MiB // 8 + 32
        make_disk(disk, swap_mib)

        t = time.monotonic()
        asyncio.run(_capture(memory, bz, bb, tmp, disk, iommu))
        target = linux_target("/dev/sda1", tmp / "sysroot", compress)
        target.options.debug_exit_port = DEBUG_EXIT_PORT
        target.options.serial_port = SERIAL
        blob = build_payload(target).blob
        flags = HANDOFF_FLAGS.PAUSE_BEFORE_READ if ground_truth else 0
        elf = kexec_elf(blob, serial_port=SERIAL, flags=flags)
        ram_ranges = [(m.start, m.end) for m in target.memory if m.type == "ram"] \
            if ground_truth else None
        build_resume_loader(target, tmp / "resume.elf")
        summary["capture_and_build_seconds"] = round(time.monotonic() - t, 1)

        files = dict(tools, **{"payload.elf": elf})
        build_initrd(bb, kj_init(kexec_mem_range(blob)), tmp / "kj.gz", files, modules=(),
                     dirs=("lib/x86_64-linux-gnu", "lib64", "mnt/t"))
        extents = [(e.lba, e.count) for e in target.extents]
        inject = None
        if inject_error:
            lba = extents[0][0] + 256      # inside the first extent, past the header sector
            inject = [{"event": "write_aio", "errno": 5, "sector": lba, "once": True}]
        t = time.monotonic()
        hib = asyncio.run(_hibernate(memory, bz, tmp / "kj.gz", tmp, disk, extents, inject,
                                     None, log, ram_ranges, iommu))
        summary["iommu_guest"] = hib["iommu"]
        summary["iommu_translating_before"] = hib["iommu"]["translating"]
        summary["hibernate_seconds"] = round(time.monotonic() - t, 1)
        summary["jump_seconds"] = hib["jump_seconds"]
        summary["written"] = hib["written"]
        summary["md5_before"] = hib["md5_before"]
        if inject_error:
            summary["failed_run"] = hib["failed"]
        img = open_image(disk, lba=extents[0][0])
        summary["image_state"] = img.info()["state"]
        summary["image_verify"] = str(img.verify(ram=tmp / "ram.bin" if ground_truth else None))

        t = time.monotonic()
        h, md5_after, ok = asyncio.run(_resume(memory, tmp / "resume.elf", tmp, disk, iommu))
        summary["resume_seconds"] = round(time.monotonic() - t, 1)
        summary["resumed"] = h
        summary["md5_after"] = md5_after
        summary["md5_match"] = ok and md5_after == hib["md5_before"]
        summary["image_state_after"] = open_image(disk, lba=extents[0][0]).info()["state"]
        if h["status"] == STATUS.RESUMED:
            summary["status"] = "resumed"
    summary["total_seconds"] = round(time.monotonic() - t_all, 1)
    return summary
