"""Hibernate Debian's 6.1 kernel through suspendos.ko and the payload, and resume it with
the resume loader, on the QEMU test machine (q35, ICH9 AHCI, TCG).

1. capture boot: `target linux` reads what this machine's Linux says (sysroot capture);
2. hibernate boot: tmpfs with the swsusp baseline's mix, md5sums, swap area marked, blob
   loaded, `go pause=before`: QMP pmemsave is the ground truth while the payload waits;
   the module powers the machine off after 'written';
3. host: the image verifies page by page against the dump; the swap signature is ours;
4. resume boot: the resume loader restores RAM and returns into Linux: the module says
   'resumed', md5sums match, the scratch partition writes and reads back, the shell answers.
The machine has QEMU's Intel IOMMU, which the kernel turns on (intel_iommu=on): `target
linux` names the unit over the AHCI controller (vt-d at 0xfed90000), and before the
hibernation, in the same boot, the module's test switch leaves it translating (no
syscore_suspend): the payload reads GSTS.TES, stops with iommu_translating before any DMA
(the disk's first 64 MiB unchanged) and Linux goes on; the real run's syscore_suspend turns
translation off, the payload and the resume loader find it off, and after the resume the
md5s and the scratch partition go through the IOMMU again.
Two vCPUs (the module takes the second offline and brings it back after the return), and
64 MiB of stale random data in free memory: the image leaves the buddy allocator's free
pages out, and every page it holds equals QEMU's dump. Before that, in the same boot, a blob
whose extents are far too small for the compressed image: the payload stops with image_full
(no header), Linux goes on with both CPUs.
Debian's packages come through apt-get download (cached in ~/.cache/suspendos/linux).
"""
import asyncio
import copy
import re
import shutil

from suspendos.build.payload import build_payload
from suspendos.build.resume import build_resume_loader
from suspendos.image.reader import open_image
from suspendos.linuxvm import INIT_PRELUDE, Debian, build_initrd, build_module, make_disk
from suspendos.linuxvm.capture import CAPTURE_INIT, parse_capture
from suspendos.linuxvm.realvm import IOMMU_APPEND, iommu_args
from suspendos.linuxvm.vm import Session, hib_init
from suspendos.qemu.machine import DEBUG_EXIT_PORT, disk_args, machine_args
from suspendos.qemu.ramdump import dump_ram
from suspendos.target.description import Extent
from suspendos.target.linux import SUSPENDOS_SWAP_MAGIC, discard_image, linux_target

MEMORY = 512 << 20
RESERVED = "2M$0x10000000"
SWAP_MIB = 640
APPEND = f"console=ttyS0 memmap={RESERVED} no5lvl loglevel=6 {IOMMU_APPEND['intel']}"
VTD_BASE = 0xFED90000       # QEMU's intel-iommu on q35 (Q35_HOST_BRIDGE_IOMMU_ADDR)
CPUS = 2
DIRTY_MIB = 64


def _machine():
    """The test machine with CPUS vCPUs (one host thread each)."""
    args = machine_args(MEMORY)
    args[args.index("-accel") + 1] = "tcg,thread=multi"
    return [*args, "-smp", str(CPUS), *iommu_args("intel")]   # before the disk's -device

assert shutil.which("qemu-system-x86_64"), "no QEMU (scripts/setup.sh installs it)"


def _linux_args(debian, initrd, disk):
    return [*_machine(), *disk_args(disk), "-kernel", str(debian.vmlinuz),
            "-initrd", str(initrd), "-append", APPEND]


async def _capture(debian, tmp, disk):
    build_initrd(debian, CAPTURE_INIT, tmp / "capture.gz")
    async with Session(_linux_args(debian, tmp / "capture.gz", disk), tmp / "capture.log") as s:
        assert await s.expect(r"^@@DONE", 120), "capture boot ended early"
        lines = s.lines
    parse_capture(lines, tmp / "sysroot")


async def _hibernate(debian, tmp, disk, blob, small, ko, ram_ranges):
    init = hib_init(INIT_PRELUDE, dirty_mib=DIRTY_MIB, iommu_probe=True)
    build_initrd(debian, init, tmp / "hib.gz", {"blob": blob, "blob.small": small,
                                                "lib/modules/suspendos.ko": ko})

    async def ground_truth(machine):
        await dump_ram(machine, ram_ranges, tmp / "ram.bin")

    async with Session(_linux_args(debian, tmp / "hib.gz", disk), tmp / "hib.log") as s:
        assert await s.expect(r"^@@LINUX md5 ", 240)
        small = await s.expect(r"^@@LINUX small rc", 240)
        assert small.startswith("@@LINUX small rc=1 status=failed 0x120 "), small
        cpus = await s.expect(r"^@@LINUX small cpus", 30)
        assert cpus == f"@@LINUX small cpus online 0-{CPUS - 1}", cpus
        iommu = await s.expect(r"^@@LINUX iommu rc", 240)
        assert iommu.startswith("@@LINUX iommu rc=1 status=failed 0x11d "), iommu
        gsts = re.search(rf"VT-d unit {VTD_BASE:x} translates DMA \(GSTS ([0-9a-f]+)\)", iommu)
        assert gsts and int(gsts.group(1), 16) & 1 << 31, iommu      # TES: translating
        assert await s.expect(r"^@@LINUX iommu disk", 120) == "@@LINUX iommu disk unchanged"
        assert await s.expect(r"^@@LINUX hibernating", 60)
        line = await s.expect(r"^@@LINUX back|^@@PAYLOAD done", 240, on_pause=ground_truth)
        assert line == "@@PAYLOAD done status=1", f"the payload did not write the image: {line}"
        # 'written': the module enters ACPI S5 at once; QEMU ends without another line
        assert await s.expect(r"^@@LINUX", 30) is None, s.lines[-10:]
        assert await s.wait_exit(10) == 0
        return s.lines


async def _resume(tmp, disk, loader):
    args = [*_machine(), *disk_args(disk), "-kernel", str(loader)]
    async with Session(args, tmp / "resume.log") as s:
        back = await s.expect(r"^@@LINUX back", 240)
        assert back, "the machine did not come back into Linux"
        stats = await s.expect(r"^@@LINUX stats", 30)
        cpus = await s.expect(r"^@@LINUX cpus online", 30)
        ran = await s.expect(r"^@@LINUX ran on cpu", 30)
        md5 = await s.expect(r"^@@LINUX md5", 120)
        disk_line = await s.expect(r"^@@LINUX disk", 60)
        sig = [l for l in s.lines if "swap signature" in l]
        assert await s.expect(r"^@@LINUX shell", 30)
        await s.send("echo shell-$((6*7))\n")
        answer = await s.expect(r"^shell-42", 30)
        return back, (stats, cpus, ran), md5, disk_line, sig, answer, s.lines


def test_linux_hibernate_refused_while_iommu_translates_then_resumed(tmp_path):
    debian = Debian(headers=True)
    ko = build_module(debian, tmp_path / "module").read_bytes()
    disk = tmp_path / "disk.img"
    part, _ = make_disk(disk, SWAP_MIB)

    asyncio.run(_capture(debian, tmp_path, disk))
    target = linux_target("/dev/sda1", tmp_path / "sysroot")
    assert [(e.lba, e.count) for e in target.extents] == [(part[0] + 8, part[1] - 8)]
    assert (target.disk.iommu, target.disk.iommu_base) == ("vt-d", VTD_BASE)
    target.options.debug_exit_port = DEBUG_EXIT_PORT     # loader refusals end QEMU
    blob = build_payload(target).blob
    # a swap area far smaller than the compressed image: image_full, no header, Linux goes on
    small = copy.deepcopy(target)
    small.extents = [Extent(part[0] + 8, 16 << 11)]
    small.options.compress, small.options.smaller_than_ram = "lz4", True
    small_blob = build_payload(small).blob
    ram_ranges = [(m.start, m.end) for m in target.memory if m.type == "ram"]

    lines = asyncio.run(_hibernate(debian, tmp_path, disk, blob, small_blob, ko, ram_ranges))
    assert not any(l.startswith("@@LINUX error") for l in lines), lines[-30:]

    # the image against QEMU's own view of RAM while the payload waited
    with open(disk, "rb") as f:
        f.seek(part[0] * 512 + 4086)
        assert f.read(10) == SUSPENDOS_SWAP_MAGIC
    img = open_image(disk, lba=part[0] + 8)
    info = img.info()
    assert info["state"] == "valid"
    # free pages left out: at least the deleted file's worth (the dirtied pages are free)
    assert info["pages_free"] * 4096 >= DIRTY_MIB << 20, info["pages_free"]
    assert info["pages_data"] + info["pages_zero"] + info["pages_free"] == info["pages"]
    print(img.verify(ram=tmp_path / "ram.bin"))     # every page the image holds

    build_resume_loader(target, tmp_path / "resume.elf")
    back, (stats, cpus, ran), md5, disk_line, sig, answer, rlines = asyncio.run(
        _resume(tmp_path, disk, tmp_path / "resume.elf"))
    assert "status=resumed" in back, back
    fields = dict(kv.split("=") for kv in stats.split()[2:])
    assert int(fields["free_pages_skipped"]) == info["pages_free"], stats
    assert int(fields["pages_saved"]) == info["pages_data"] + info["pages_zero"], stats
    assert cpus == f"@@LINUX cpus online 0-{CPUS - 1}", cpus
    assert ran == f"@@LINUX ran on cpu {CPUS - 1} of {CPUS - 1}", ran
    assert md5 == "@@LINUX md5 ok", rlines[-40:]
    assert disk_line == "@@LINUX disk ok"
    assert sig and sig[-1].endswith("SWAPSPACE2")
    assert answer
    # resumed once: the image is marked, and `image discard` has nothing left to drop
    assert open_image(disk, lba=part[0] + 8).info()["state"] == "resumed"
    assert discard_image(disk, part[0] * 512) == "no image"
