"""The description of the QEMU test machine (q35, SeaBIOS, QEMU 7.2), for 64 MiB to 8 GiB.

The memory map is what SeaBIOS reports through multiboot on this machine (checked by
tests/test_target_qemu.py against the map the test host prints): low RAM up to the 640 KiB
hole, RAM from 1 MiB to the top of low memory minus the 132 KiB SeaBIOS keeps, and from
2.75 GiB up q35 keeps 2 GiB below 4 GiB and puts the rest at 4 GiB. PCI addresses are read
from QEMU itself (suspendos.qemu.probe), not assumed. The framebuffer is the Bochs VBE linear
framebuffer of -vga std (VGA BAR0) in the mode the test host sets (qemu-boot/vbe.c, host
option vbe=WxHxBPP): pitch = width * bytes per pixel, as Bochs VBE lays it out.
"""
from ..errors import UsageError
from ..formats.common import SECTOR_SIZE, align_up
from ..qemu.machine import DEBUG_EXIT_PORT
from .description import (MAX_SECTORS, Disk, Extent, Framebuffer, MemoryRange, Options,
                          Reserved, Target)

MiB, GiB = 1 << 20, 1 << 30
MIN_MEMORY, MAX_MEMORY = 64 * MiB, 8 * GiB
Q35_HIGHMEM_THRESHOLD = 0xB0000000   # RAM at or above this moves 2 GiB low, rest above 4 GiB
Q35_LOWMEM_SPLIT = 0x80000000
SEABIOS_TOP_RESERVED = 0x21000       # SeaBIOS keeps the top of low RAM (ACPI, tables)
# ... and more when it drives the boot disk itself: its NVMe and virtio-blk drivers keep
# their queues there (seen in the test host's @@MMAP under QEMU 7.2, 64M to 3G).
SEABIOS_TOP_RESERVED_OF_BUS = {"ahci": SEABIOS_TOP_RESERVED, "nvme": 0x29000, "virtio": 0x24000}
RESERVED_LOAD_ADDRESS = 16 * MiB
RESERVED_SIZE = 2 * MiB
# The test host's real-mode AP start page (qemu-boot/smp.h AP_START_PAGE); with ap_offline
# the host leaves it to the payload as the target's reserved.ap_start.
TEST_HOST_AP_START_PAGE = 0x8000
IMAGE_FIRST_LBA = 2048               # 1 MiB in, as a partition would start
DISK_TAIL_SECTORS = 2048             # and 1 MiB left after it, so tests can check both ends
DEFAULT_FRAMEBUFFER = (800, 600, 32)
FB_FORMAT_OF_BPP = {32: "xrgb8888", 24: "rgb888", 16: "rgb565"}


def memory_map(memory, bus="ahci"):
    low = Q35_LOWMEM_SPLIT if memory >= Q35_HIGHMEM_THRESHOLD else memory
    high = memory - low
    top = SEABIOS_TOP_RESERVED_OF_BUS[bus]
    m = [MemoryRange(0, 0x9FC00, "ram"), MemoryRange(0x9FC00, 0xA0000, "reserved"),
         MemoryRange(0xF0000, 0x100000, "reserved"),
         MemoryRange(0x100000, low - top, "ram"),
         MemoryRange(low - top, low, "reserved"),
         MemoryRange(0xB0000000, 0xC0000000, "reserved"),      # PCIe MMCONFIG
         MemoryRange(0xFED1C000, 0xFED20000, "reserved"),      # ICH9 RCRB
         MemoryRange(0xFFFC0000, 1 << 32, "reserved")]         # BIOS flash
    if high:
        m.append(MemoryRange(1 << 32, (1 << 32) + high, "ram"))
    return m


def check_memory(memory):
    if memory % MiB or not MIN_MEMORY <= memory <= MAX_MEMORY:
        raise UsageError(f"--memory: {memory} bytes is not a whole number of MiB from 64M to 8G")


def _framebuffer(pci, mode=DEFAULT_FRAMEBUFFER):
    """The [framebuffer] of mode (width, height, bpp) at the probed VGA BAR0, or None."""
    if mode is None or "vga" not in pci:
        return None
    width, height, bpp = mode
    _, base, size = pci["vga"]
    pitch = width * bpp // 8
    if pitch * height > size:
        raise UsageError(f"--framebuffer: {width}x{height}x{bpp} needs {pitch * height} bytes; "
                         f"the VGA has {size}")
    return Framebuffer(address=base, width=width, height=height, pitch=pitch, bpp=bpp,
                       format=FB_FORMAT_OF_BPP[bpp])


def _disk(pci, bus, sector_size):
    from ..qemu.disks import KIND_OF_BUS
    if bus == "ahci":
        ahci_pci, abar = pci["ahci"]
        return Disk(ahci_base=abar, pci=ahci_pci, port=0, sectors=0)
    addr, bar = pci[bus]
    return Disk(kind=KIND_OF_BUS[bus], pci=addr, bar=bar, namespace=1 if bus == "nvme" else 0,
                block_size=sector_size, sectors=0)


def qemu_target(memory, disk_size=None, compress="none", pci=None,
                framebuffer=DEFAULT_FRAMEBUFFER, bus="ahci", sector_size=512,
                size_what="--disk-size"):
    """Build (and validate) the target for a QEMU machine with `memory` bytes of RAM.
    `pci` is suspendos.qemu.probe.probe_pci()'s answer; probed when not given.
    `framebuffer`: the VBE mode (width, height, bpp) the test host sets, or None.
    `bus`, `sector_size`: the disk (suspendos.qemu.disks); extents count its blocks.
    `size_what`: how messages about `disk_size` name it."""
    from ..qemu.disks import check
    check_memory(memory)
    check(bus, sector_size)
    if pci is None or bus not in pci:
        from ..qemu.probe import probe_pci
        pci = probe_pci(memory, bus, sector_size)
    first = IMAGE_FIRST_LBA * SECTOR_SIZE // sector_size
    tail = DISK_TAIL_SECTORS * SECTOR_SIZE // sector_size
    t = Target(name=f"qemu-q35-{memory // MiB}M" + ("" if bus == "ahci" else f"-{bus}"),
               memory=memory_map(memory, bus),
               reserved=Reserved(RESERVED_LOAD_ADDRESS, RESERVED_SIZE),
               disk=_disk(pci, bus, sector_size),
               extents=[Extent(first, 1)],
               framebuffer=_framebuffer(pci, framebuffer),
               options=Options(compress=compress, debug_exit_port=DEBUG_EXIT_PORT))
    need = align_up(t.worst_case_image(), MiB) // sector_size
    min_sectors = first + need + tail
    if disk_size is None:
        sectors = min_sectors
    else:
        if disk_size % sector_size:
            raise UsageError(f"{size_what}: must be a multiple of {sector_size} bytes")
        sectors = disk_size // sector_size
        # Named here: validate() would name disk.sectors, a field the user never typed.
        if sectors > MAX_SECTORS:
            raise UsageError(f"{size_what}: {disk_size} bytes is more than 2^48 sectors of "
                             f"{sector_size} bytes (ATA's 48-bit LBA)")
        if sectors < min_sectors:
            raise UsageError(f"{size_what}: {disk_size} bytes cannot hold the worst-case image "
                             f"(need at least {min_sectors * sector_size} bytes)")
    t.disk.sectors = sectors
    t.extents = [Extent(first, sectors - first - tail)]
    return t.validate()
