"""The description of a live Linux system, read from /sys and /proc (docs/LINUX.md).

- memory: the firmware's map, /sys/firmware/memmap (what the resume loader will be given by
  the firmware, and what memmap_hash covers); /proc/iomem's top level when it is missing.
- reserved: the `memmap=SIZE$ADDR` on /proc/cmdline. Linux keeps it out of its own use (it
  shows as "Reserved" in /proc/iomem) while the firmware's map still calls it RAM.
- disk: the block device holding the swap area -> .../PCI_DEV/ataN/hostM/... in sysfs; the
  PCI function must be an AHCI controller (class 0x010601); ABAR = BAR5 from its `resource`
  file; port = ataN's port_no - 1; sectors from the whole disk's `size`. Or an NVMe namespace
  (.../PCI_DEV/nvme/nvmeX/nvmeXnY: class 0x010802, BAR0, that namespace's `nsid`; not
  behind Intel VMD, no metadata in its LBA format: docs/DRIVERS.md), or a virtio-blk disk
  (.../PCI_DEV/virtioN/block/vdX: the BAR of the common configuration capability read from
  the function's `config`). Block size from queue/logical_block_size (512 or 4096; extents
  and sectors count those blocks).
- extents: a swap partition's sectors after its header page, in whole pages; or a swap
  file's extents (FIEMAP), its first page left out, shifted by its partition's start.
- iommu: the unit the disk's PCI function links to as `iommu` (Linux's
  iommu_device_link), found in /sys/class/iommu. Intel VT-d (dmarN): its base from
  intel-iommu/address. AMD-Vi (ivhdN): Linux shows no base, so it is the IVHD block in the
  ACPI IVRS table whose IOMMU device ID is the unit's own PCI function (`device`).
- framebuffer: /dev/fb0 (FBIOGET_*SCREENINFO) when there is one.
- efi_runtime, efi_runtime_services: /sys/firmware/efi/runtime-map and runtime when there
  is a runtime map (linux_efi.py).

Anything that cannot be determined is a UsageError (exit 2) with a one-line reason; nothing
is guessed. `sysroot` reads a copy of those files (tests/data/linux-sysroot) instead.
"""
import array
import fcntl
import os
import re
import stat
import struct
from pathlib import Path

from ..errors import UsageError
from ..formats.acpi import ivhd_blocks
from ..formats.common import PAGE_SIZE, SECTOR_SIZE
from .description import Disk, Extent, Framebuffer, MemoryRange, Options, Reserved, Target
from .linux_efi import runtime_map, runtime_services

AHCI_CLASS = 0x010601
NVME_CLASS = 0x010802
VIRTIO_VENDOR = 0x1AF4
SWAP_MAGICS = (b"SWAPSPACE2", b"SWAP-SPACE")
SUSPENDOS_SWAP_MAGIC = b"SOSIMAGE01"      # written over SWAPSPACE2 while an image is there
SECTORS_PER_PAGE = PAGE_SIZE // SECTOR_SIZE
IOMEM_TYPES = {"System RAM": "ram", "Reserved": "reserved", "reserved": "reserved",
               "ACPI Tables": "acpi", "ACPI Non-volatile Storage": "nvs",
               "Unusable memory": "unusable", "Persistent Memory (legacy)": "reserved",
               "Persistent Memory": "reserved", "Soft Reserved": "reserved"}
SIZE_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
PCI_RE = re.compile(r"^([0-9a-f]{4,8}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$")
# Intel VMD hides the NVMe controllers it takes behind its own PCI domains, numbered from
# 0x10000 (Linux's drivers/pci/controller/vmd.c); the firmware calls it RAID or RST mode.
VMD_FIRST_DOMAIN = 0x10000


class System:
    """Where the files are: / or a sysroot copy."""

    def __init__(self, sysroot=None):
        self.root = Path(sysroot) if sysroot else Path("/")
        self.live = sysroot is None
        if sysroot and not self.root.is_dir():
            raise UsageError(f"--sysroot: {sysroot} is not a directory")

    def path(self, p):
        return self.root / str(p).lstrip("/")

    def read(self, p, what):
        try:
            return self.path(p).read_text()
        except OSError as e:
            raise UsageError(f"{what}: cannot read {p} ({e.strerror})")
        except UnicodeDecodeError:      # the kernel writes these as text: a copy is damaged
            raise UsageError(f"{what}: {p} is not UTF-8 text")

    def read_bytes(self, p, what):
        try:
            return self.path(p).read_bytes()
        except OSError as e:
            raise UsageError(f"{what}: cannot read {p} ({e.strerror})")

    def exists(self, p):
        return self.path(p).exists()

    def is_link(self, p):
        return os.path.islink(self.path(p))

    def realpath(self, p):
        """The path inside the system that p resolves to (symlinks followed in the sysroot)."""
        real = os.path.realpath(self.path(p))
        root = os.path.realpath(self.root)
        if root != "/" and not (real + "/").startswith(root + "/"):
            raise UsageError(f"{p}: resolves outside the sysroot")
        return "/" + os.path.relpath(real, root) if root != "/" else real


def parse_size(text):
    m = re.fullmatch(r"(0x[0-9a-fA-F]+|\d+)([KMGTkmgt]?)", text)
    if not m:
        raise ValueError(text)
    return int(m.group(1), 0) * SIZE_SUFFIX[m.group(2).upper()]


# ---- memory ------------------------------------------------------------------------------
def firmware_memory(sysmap):
    base = "/sys/firmware/memmap"
    if sysmap.exists(base):
        out = []
        entries = sorted(sysmap.path(base).iterdir(), key=lambda p: int(p.name)
                         if p.name.isdigit() else -1)
        for e in entries:
            rel = f"{base}/{e.name}"
            start = int(sysmap.read(f"{rel}/start", "memory").strip(), 16)
            end = int(sysmap.read(f"{rel}/end", "memory").strip(), 16) + 1
            kind = sysmap.read(f"{rel}/type", "memory").strip()
            out.append(MemoryRange(start, end, IOMEM_TYPES.get(kind, "reserved")))
        if not out:
            raise UsageError("memory: /sys/firmware/memmap is empty")
        return out, "/sys/firmware/memmap"
    # Without CONFIG_FIRMWARE_MEMMAP: /proc/iomem's top level, where the memmap= region
    # shows as Reserved; it is given back to RAM by reserved_region().
    out = []
    for start, end, name in iomem_top(sysmap):
        if name in IOMEM_TYPES:
            out.append(MemoryRange(start, end, IOMEM_TYPES[name]))
    if not any(m.type == "ram" for m in out):
        raise UsageError("memory: no System RAM in /proc/iomem (run as root: addresses read "
                         "as zero otherwise)")
    return out, "/proc/iomem"


def iomem_top(sysmap):
    out = []
    for line in sysmap.read("/proc/iomem", "memory").splitlines():
        if not line or line[0] == " ":
            continue
        rng, _, name = line.partition(" : ")
        a, _, b = rng.partition("-")
        out.append((int(a, 16), int(b, 16) + 1, name.strip()))
    if out and all(s == 0 and e == 1 for s, e, _ in out):
        raise UsageError("/proc/iomem: every address reads as zero (run as root)")
    return out


AP_START_LIMIT = 0x100000     # the AP start page lies below 1 MiB (STARTUP IPI vector)


def reserved_region(sysmap, memory, source=None):
    """The memmap=SIZE$ADDR region from /proc/cmdline, checked against /proc/iomem; a second
    one of one page below 1 MiB is the AP start page (Reserved.ap_start)."""
    cmdline = sysmap.read("/proc/cmdline", "reserved").split()
    regions = []
    for word in cmdline:
        if not word.startswith("memmap="):
            continue
        for part in word[7:].split(","):
            if "$" in part:
                size, _, addr = part.partition("$")
                try:
                    regions.append((parse_size(addr), parse_size(size)))
                except ValueError:
                    raise UsageError(f"reserved: cannot read memmap={part} on the kernel command line")
    low = [r for r in regions if r[0] < AP_START_LIMIT and r[1] == PAGE_SIZE]
    regions = [r for r in regions if r not in low]
    if not regions:
        raise UsageError("reserved: no memmap=SIZE$ADDR on the kernel command line "
                         "(docs/LINUX.md: boot with e.g. memmap=2M$0x10000000)")
    if len(regions) > 1 or len(low) > 1:
        raise UsageError(f"reserved: {len(regions) + len(low)} memmap=SIZE$ADDR regions on the "
                         "kernel command line; keep exactly one (and at most one 4K page below "
                         "1 MiB for the APs)")
    addr, size = regions[0]
    ap_start = low[0][0] if low else 0
    if low and not ap_start:       # 0 would read as "no AP start page" and drop it silently
        raise UsageError("reserved: memmap=4K$0 cannot be the AP start page (page 0 holds the "
                         "real-mode vectors; use a page in 0x1000-0x9f000)")
    for a, n in [(addr, size)] + low:
        if a % PAGE_SIZE or n % PAGE_SIZE:
            raise UsageError(f"reserved: memmap={n:#x}${a:#x} is not page-aligned")
        if not any(s <= a and a + n <= e and name == "Reserved"
                   for s, e, name in iomem_top(sysmap)):
            raise UsageError(f"reserved: {a:#x}-{a + n:#x} is not a Reserved range in "
                             "/proc/iomem (did the kernel take memmap=? '$' must reach it "
                             "unescaped)")
        # The firmware's map shows a memmap= region as the RAM it was; one it reserves
        # itself (the BIOS area, ACPI) is no RAM to take, and must not turn into RAM here.
        if source == "/sys/firmware/memmap" and not any(
                m.type == "ram" and m.start <= a and a + n <= m.end for m in memory):
            raise UsageError(f"reserved: memmap={n:#x}${a:#x} is not RAM in the firmware's "
                             "map (/sys/firmware/memmap)")
        for i, m in enumerate(memory):    # without /sys/firmware/memmap: give it back to RAM
            if m.type == "reserved" and m.start <= a and a + n <= m.end:
                memory[i:i + 1] = [MemoryRange(m.start, m.end, "ram")]
    memory[:] = _merge(memory)
    return Reserved(addr, size, ap_start=ap_start)


def _merge(memory):
    out = []
    for m in sorted(memory, key=lambda m: m.start):
        if out and out[-1].type == m.type and out[-1].end == m.start:
            out[-1] = MemoryRange(out[-1].start, m.end, m.type)
        else:
            out.append(m)
    return out


# ---- swap and disk -----------------------------------------------------------------------
def active_swaps(sysmap):
    if not sysmap.exists("/proc/swaps"):
        return []
    lines = sysmap.read("/proc/swaps", "swap").splitlines()[1:]
    return [(l.split()[0], l.split()[1]) for l in lines if l.strip()]


def pick_swap(sysmap, swap):
    if swap == "":          # given, and naming nothing: not "the only active one"
        raise UsageError("--swap: an empty name (name the swap partition or file, or leave "
                         "--swap out for the only active one)")
    if swap:
        return swap
    swaps = active_swaps(sysmap)
    if len(swaps) != 1:
        raise UsageError(f"--swap: {'no' if not swaps else len(swaps)} active swap areas in "
                         "/proc/swaps; name the swap partition or file")
    return swaps[0][0].replace("\\040", " ")


def block_name(sysmap, dev):
    """sdXN for a block device path."""
    if sysmap.live:
        st = os.stat(dev)
        import stat as st_mod
        if not st_mod.S_ISBLK(st.st_mode):
            return None
        link = f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        return os.path.basename(sysmap.realpath(link))
    name = os.path.basename(dev)
    return name if sysmap.exists(f"/sys/class/block/{name}") else None


def disk_of(sysmap, part):
    """(Disk, partition start, partition size, whole-disk name) for block device `part`;
    start and size in 512-byte units, as sysfs counts them whatever the block size."""
    real = sysmap.realpath(f"/sys/class/block/{part}")
    parts = real.split("/")
    if sysmap.exists(f"{real}/dm") or part.startswith(("dm-", "md")):
        raise UsageError(f"disk: {part} is a device-mapper or md device (LVM, dm-crypt, RAID): "
                         "the image is written to the disk directly; put the swap partition or "
                         "file on a plain partition of an AHCI, NVMe or virtio disk")
    if not sysmap.exists(f"{real}/partition"):
        raise UsageError(f"--swap: {part} is a whole disk, not a partition (give the swap partition)")
    whole = parts[parts.index("block") + 1] if "block" in parts else parts[-2]
    if any(re.fullmatch(r"ata\d+", p) for p in parts):
        disk, pci_dir = _ahci_disk(sysmap, parts)
    elif "nvme" in parts:
        disk, pci_dir = _nvme_disk(sysmap, parts, whole)
    elif any(re.fullmatch(r"virtio\d+", p) for p in parts):
        disk, pci_dir = _virtio_disk(sysmap, parts)
    else:
        raise UsageError(f"disk: {part} is not on an AHCI port, an NVMe namespace or a "
                         f"virtio-blk device ({real}); no device-mapper, USB or RAID")
    disk.iommu, disk.iommu_base = iommu_unit(sysmap, pci_dir, disk.pci)
    lbs = int(sysmap.read(f"/sys/class/block/{whole}/queue/logical_block_size", "disk").strip())
    if lbs not in (512, 4096) or (disk.kind == "ahci" and lbs != SECTOR_SIZE):
        raise UsageError(f"disk: {whole} has {lbs}-byte logical blocks; the {disk.kind} driver "
                         f"handles {'512' if disk.kind == 'ahci' else '512 or 4096'}")
    disk.block_size = lbs
    disk.sectors = int(sysmap.read(f"/sys/class/block/{whole}/size", "disk").strip()) \
        // (lbs // SECTOR_SIZE)
    start = int(sysmap.read(f"/sys/class/block/{part}/start", "swap").strip())
    size = int(sysmap.read(f"/sys/class/block/{part}/size", "swap").strip())
    return disk, start, size, whole


def _pci_function(sysmap, parts, i, what):
    """The PCI function directory parts[:i + 1] and its bus:dev.fn."""
    pci = parts[i]
    m = PCI_RE.match(pci)
    if not m:
        raise UsageError(f"disk: the parent of the {what} is not a PCI function ({pci})")
    if m.group(1) != "0000":
        raise UsageError(f"disk: PCI domain {m.group(1)} is not supported (only 0000)")
    return "/".join(parts[:i + 1]), f"{m.group(2)}:{m.group(3)}.{m.group(4)}"


def _bar(sysmap, pci_dir, index, what):
    resource = sysmap.read(f"{pci_dir}/resource", "disk").splitlines()
    if len(resource) <= index:
        raise UsageError(f"disk: {pci_dir}/resource has no BAR{index} line")
    bar = int(resource[index].split()[0], 16)
    if not bar:
        raise UsageError(f"disk: {what} (BAR{index}) reads as 0 (run as root)")
    return bar


def _pci_class(sysmap, pci_dir):
    return int(sysmap.read(f"{pci_dir}/class", "disk").strip(), 16)


def _ahci_disk(sysmap, parts):
    ata = next(i for i, p in enumerate(parts) if re.fullmatch(r"ata\d+", p))
    pci_dir, pci = _pci_function(sysmap, parts, ata - 1, parts[ata])
    cls = _pci_class(sysmap, pci_dir)
    if cls != AHCI_CLASS:
        raise UsageError(f"disk: {pci} has PCI class {cls:#08x}, not an AHCI controller "
                         f"({AHCI_CLASS:#08x}); IDE/legacy mode is not supported")
    bar5 = _bar(sysmap, pci_dir, 5, f"{pci} ABAR")
    port_dir = f"{'/'.join(parts[:ata + 1])}/ata_port/{parts[ata]}"
    port_no = int(sysmap.read(f"{port_dir}/port_no", "disk.port").strip())
    return Disk(ahci_base=bar5, pci=pci, port=port_no - 1), pci_dir


def _nvme_disk(sysmap, parts, whole):
    """.../PCI/nvme/nvmeX/nvmeXnY[/nvmeXnYpZ]: BAR0 and the namespace id (NVMe 1.4 2.1.10)."""
    i = parts.index("nvme")
    refuse_vmd(sysmap, parts, i - 1)
    pci_dir, pci = _pci_function(sysmap, parts, i - 1, "NVMe controller")
    cls = _pci_class(sysmap, pci_dir)
    if cls != NVME_CLASS:
        raise UsageError(f"disk: {pci} has PCI class {cls:#08x}, not an NVMe controller "
                         f"({NVME_CLASS:#08x})")
    refuse_metadata(sysmap, whole)
    # The namespace the swap area is on, as the controller numbers it: nvme0n2 need not be
    # NSID 2 (names follow the order namespaces were found in, NSIDs are the controller's).
    nsid = int(sysmap.read(f"/sys/class/block/{whole}/nsid", "disk.namespace").strip())
    return Disk(kind="nvme", pci=pci, bar=_bar(sysmap, pci_dir, 0, f"{pci} MLBAR"),
                namespace=nsid), pci_dir


def refuse_vmd(sysmap, parts, i):
    """An NVMe controller behind Intel VMD: its registers sit behind the VMD device's own
    BARs, which the payload's plain PCI access cannot reach, and the firmware alone can take
    it out of there."""
    domain = PCI_RE.match(parts[i])
    behind = bool(domain) and int(domain.group(1), 16) >= VMD_FIRST_DOMAIN
    # Or any PCI function above it bound to the vmd driver (the VMD device sits in domain
    # 0000, above the host bridge it creates: .../0000:00:0e.0/pci10000:e0/...).
    for j in range(1, i):
        driver = sysmap.path("/".join(parts[:j + 1]) + "/driver")
        if not behind and PCI_RE.match(parts[j]) and os.path.islink(driver):
            behind = os.path.basename(os.readlink(driver)) == "vmd"
    if behind:
        raise UsageError("disk: the NVMe controller is behind Intel VMD (RAID/'Intel RST' "
                         "mode): switch the firmware's SATA/NVMe mode to AHCI/NVMe")


def refuse_metadata(sysmap, whole):
    """A namespace whose LBA format carries metadata or protection information: the
    payload's writes carry neither. Kernels from 6.8 say so in `metadata_bytes`; 6.1 only
    through the block layer's integrity profile, which the nvme driver registers for every
    namespace with metadata ("nop" without protection information, "T10-DIF-TYPEn-CRC" or
    "EXT-DIF-TYPEn-CRC64" with it) and leaves at "none" otherwise."""
    base = f"/sys/class/block/{whole}"
    if sysmap.exists(f"{base}/metadata_bytes"):
        found = int(sysmap.read(f"{base}/metadata_bytes", "disk").strip())
        carries = f"{found} bytes of metadata" if found else None
    elif sysmap.exists(f"{base}/integrity/format"):
        found = sysmap.read(f"{base}/integrity/format", "disk").strip()
        carries = f"integrity format {found}" if found != "none" else None
    else:
        raise UsageError(f"disk: cannot tell whether {whole}'s LBA format carries metadata "
                         f"(neither {base}/metadata_bytes nor {base}/integrity/format)")
    if carries:
        raise UsageError(f"disk: {whole}'s LBA format carries metadata or protection "
                         f"information ({carries}); the payload writes plain blocks: put the "
                         "swap area on a namespace formatted without metadata")


def _virtio_disk(sysmap, parts):
    """.../PCI/virtioN/block/vdX[/vdXN]: the BAR holding the common configuration, from the
    vendor capabilities in config space (virtio 1.1 4.1.4)."""
    i = next(i for i, p in enumerate(parts) if re.fullmatch(r"virtio\d+", p))
    pci_dir, pci = _pci_function(sysmap, parts, i - 1, parts[i])
    vendor = int(sysmap.read(f"{pci_dir}/vendor", "disk").strip(), 16)
    if vendor != VIRTIO_VENDOR:
        raise UsageError(f"disk: {pci} (vendor {vendor:#06x}) is not a virtio PCI device")
    try:
        config = sysmap.path(f"{pci_dir}/config").read_bytes()
    except OSError as e:
        raise UsageError(f"disk: cannot read {pci_dir}/config ({e.strerror})")
    bar = virtio_common_bar(config)
    if bar is None:
        raise UsageError(f"disk: {pci} has no virtio 1.x common configuration capability in "
                         f"the config space readable here (legacy device, or not root)")
    return Disk(kind="virtio-blk", pci=pci,
                bar=_bar(sysmap, pci_dir, bar, f"{pci} virtio BAR")), pci_dir


def virtio_common_bar(config):
    """The BAR index of the virtio common configuration structure, or None."""
    if len(config) < 0x40 or not config[6] & 0x10:
        return None
    at, seen = config[0x34] & 0xFC, 0
    while at and at + 8 <= len(config) and seen < 48:
        if config[at] == 0x09 and config[at + 3] == 1:
            return config[at + 4]
        at, seen = config[at + 1] & 0xFC, seen + 1
    return None


# ---- the IOMMU unit that translates the disk controller's DMA ----------------------------
IOMMU_CLASS = "/sys/class/iommu"
IVRS = "/sys/firmware/acpi/tables/IVRS"


def iommu_unit(sysmap, pci_dir, pci):
    """(Disk.iommu, Disk.iommu_base) for the PCI function at `pci_dir`. Linux links a
    function it put behind an IOMMU unit to that unit as `iommu` (drivers/iommu/iommu-sysfs.c,
    iommu_device_link); no link: nothing translates its DMA."""
    if not sysmap.is_link(f"{pci_dir}/iommu"):
        return "none", 0
    name = os.path.basename(sysmap.realpath(f"{pci_dir}/iommu"))
    unit = f"{IOMMU_CLASS}/{name}"
    if not sysmap.exists(unit):
        raise UsageError(f"disk.iommu: {pci}'s iommu link names {name}, which {IOMMU_CLASS} "
                         "does not list")
    # The unit names are the drivers' own: "dmar%d" (Intel), "ivhd%d" (AMD).
    if re.fullmatch(r"dmar\d+", name):
        return "vt-d", vtd_base(sysmap, sysmap.realpath(unit))
    if re.fullmatch(r"ivhd\d+", name):
        return "amd-vi", amd_vi_base(sysmap, sysmap.realpath(unit))
    raise UsageError(f"disk.iommu: {pci} is translated by IOMMU unit {name} ({unit}), "
                     "neither Intel VT-d (dmarN) nor AMD-Vi (ivhdN): the payload could not "
                     "check whether it translates")


def vtd_base(sysmap, unit_dir):
    """The register base of a VT-d unit (its DRHD's Register Base Address), which Linux
    prints as bare hexadecimal in intel-iommu/address (drivers/iommu/intel/iommu.c,
    address_show)."""
    path = f"{unit_dir}/intel-iommu/address"
    text = sysmap.read(path, "disk.iommu").strip()
    if not re.fullmatch(r"(0x)?[0-9a-fA-F]{1,16}", text):
        raise UsageError(f"disk.iommu: {path} reads {text[:40]!r}, not a hexadecimal address")
    return _register_base(int(text, 16), path)


def amd_vi_base(sysmap, unit_dir):
    """The register base of an AMD-Vi unit. Linux shows none in sysfs; the firmware's IVRS
    table has an IVHD block per unit, keyed by the IOMMU's own PCI function (its `device`
    link), whose base is the one Linux programs (AMD IOMMU spec 48882, 5.2)."""
    function = _amd_vi_function(sysmap, unit_dir)
    m = PCI_RE.match(function)
    device_id = int(m.group(2), 16) << 8 | int(m.group(3), 16) << 3 | int(m.group(4))
    mine = [b for b in ivhd_blocks(sysmap.read_bytes(IVRS, "disk.iommu"),
                                   f"disk.iommu: {IVRS}") if b.device_id == device_id]
    if not mine:
        raise UsageError(f"disk.iommu: {IVRS} has no IVHD block for the AMD-Vi unit at "
                         f"{function} (device ID {device_id:#06x})")
    # Segment and domain are one number on x86 (ACPI _SEG); only domain 0000 is supported.
    in_domain = [b for b in mine if b.pci_segment == 0]
    if not in_domain:
        raise UsageError(f"disk.iommu: {IVRS}'s IVHD block for device ID {device_id:#06x} is "
                         f"in PCI segment {mine[0].pci_segment}; only segment 0 (PCI domain "
                         "0000) is supported")
    # A unit may have a 10h block and a 11h or 40h block (for older and newer readers);
    # they describe the same registers.
    bases = sorted({b.base_address for b in in_domain})
    if len(bases) > 1:
        raise UsageError(f"disk.iommu: {IVRS}'s IVHD blocks for device ID {device_id:#06x} "
                         f"disagree on its base ({', '.join(map(hex, bases))})")
    return _register_base(bases[0], f"{IVRS} (IVHD for {function})")


def _amd_vi_function(sysmap, unit_dir):
    """The name (0000:BB:DD.F) of the PCI function an AMD-Vi unit is."""
    link = f"{unit_dir}/device"
    function = os.path.basename(sysmap.realpath(link)) if sysmap.is_link(link) else ""
    m = PCI_RE.match(function)
    if not m:
        raise UsageError(f"disk.iommu: {link} does not lead to the unit's PCI function")
    if m.group(1) != "0000":
        raise UsageError(f"disk.iommu: the AMD-Vi unit is PCI function {function}: PCI domain "
                         f"{m.group(1)} is not supported (only 0000)")
    return function


def _register_base(base, source):
    if not base or base % PAGE_SIZE:
        raise UsageError(f"disk.iommu: {source} gives the register base {base:#x}, not a "
                         "4 KiB-aligned address")
    return base


def read_swap_magic(path):
    with open(path, "rb") as f:
        f.seek(PAGE_SIZE - 10)
        return f.read(10)


def check_swap_signature(sysmap, dev, name, path=None):
    path = path or (dev if sysmap.live else sysmap.path(f"/dev/{name}"))
    try:
        magic = read_swap_magic(path)
    except OSError as e:
        raise UsageError(f"--swap: cannot read the swap header of {dev} ({e.strerror})")
    if magic == SUSPENDOS_SWAP_MAGIC:
        raise UsageError(f"--swap: {dev} holds a suspendos image (suspendos image discard first)")
    if magic not in SWAP_MAGICS:
        raise UsageError(f"--swap: {dev} has no swap signature ({magic!r}); mkswap it first")


FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 1
FIEMAP_EXTENT_LAST = 0x1
FIEMAP_BAD = {0x2: "unknown location", 0x4: "delayed allocation", 0x8: "encoded",
              0x80: "encrypted", 0x100: "not aligned", 0x200: "inline data",
              0x400: "tail-packed", 0x2000: "shared"}
# Unwritten (fallocated) extents are accepted: their blocks are allocated and stay where
# FIEMAP says; only reads through the filesystem return zeros for them, and nothing reads
# the image that way (the payload, the loader and the initramfs check use the sectors).
# The kernel's own swap code (iomap_swapfile_activate) and swsusp's resume_offset take them
# too; `fallocate` + `mkswap` is how distributions make swap files.
FIEMAP_UNWRITTEN = 0x800
# Filesystems whose files stay where FIEMAP says, written in place: the payload writes the
# sectors directly. btrfs (copy-on-write, checksums, RAID profiles), network and FUSE
# filesystems, and everything else are refused.
SWAP_FILE_FS = ("ext4", "ext3", "ext2", "xfs")


def fiemap(path, count=512):
    """[(logical, physical, length, flags)] of a file, in bytes (linux/fiemap.h)."""
    out, start = [], 0
    with open(path, "rb") as f:
        while True:
            buf = bytearray(32 + 56 * count)
            struct.pack_into("<QQIIII", buf, 0, start, (1 << 64) - 1 - start, FIEMAP_FLAG_SYNC,
                             0, count, 0)
            arr = array.array("B", buf)
            try:
                fcntl.ioctl(f.fileno(), FS_IOC_FIEMAP, arr, True)
            except OSError as e:
                raise UsageError(f"--swap: FIEMAP on {path} failed ({e.strerror}); this "
                                 "filesystem cannot say where the file's blocks are")
            buf = arr.tobytes()
            n = struct.unpack_from("<I", buf, 20)[0]
            last = False
            for i in range(n):
                lo, ph, ln, _, _, fl = struct.unpack_from("<QQQQQI", buf, 32 + 56 * i)
                out.append((lo, ph, ln, fl))
                last = bool(fl & FIEMAP_EXTENT_LAST)
            if not n or last:
                return out
            start = out[-1][0] + out[-1][2]


def file_extents(path, part_start, file_size, mapping=None, block_size=SECTOR_SIZE):
    """Extents of a swap file's pages after the first, shifted by the partition start (in
    512-byte units, as sysfs says), in the disk's `block_size` units."""
    mapping = fiemap(path) if mapping is None else mapping
    pos, out = PAGE_SIZE, []
    end = file_size // PAGE_SIZE * PAGE_SIZE
    for lo, ph, ln, fl in sorted(mapping):
        bad = [w for bit, w in FIEMAP_BAD.items() if fl & bit]
        if bad:
            raise UsageError(f"--swap: {path} has an extent with {bad[0]} at offset {lo}")
        if lo > pos and pos < end:
            raise UsageError(f"--swap: {path} has a hole at offset {pos} (swap files must "
                             "not be sparse)")
        s, e = max(lo, pos), min(lo + ln, end)
        if s < e:
            phys = ph + (s - lo)
            if phys % SECTOR_SIZE:
                raise UsageError(f"--swap: {path} offset {s} is not sector-aligned on disk")
            lba, count = part_start + phys // SECTOR_SIZE, (e - s) // SECTOR_SIZE
            if out and out[-1].lba + out[-1].count == lba:
                out[-1] = Extent(out[-1].lba, out[-1].count + count)
            else:
                out.append(Extent(lba, count))
            pos = e
    if pos < end:
        raise UsageError(f"--swap: {path}: FIEMAP does not cover offsets {pos}-{end}")
    per = block_size // SECTOR_SIZE
    if any(e.lba % per or e.count % per for e in out):
        raise UsageError(f"--swap: {path} is not aligned to the disk's {block_size}-byte blocks")
    return [Extent(e.lba // per, e.count // per) for e in out]


def swap_target(sysmap, swap):
    """(Disk, extents, description) of the swap partition or file."""
    if sysmap.live and not os.path.exists(swap):
        raise UsageError(f"--swap: {swap} does not exist")
    name = block_name(sysmap, swap)
    if name:                                   # a partition
        disk, start, size, whole = disk_of(sysmap, name)
        check_swap_signature(sysmap, swap, name)
        pages = size // SECTORS_PER_PAGE
        if pages < 2:
            raise UsageError(f"--swap: {swap} is too small")
        per = disk.block_size // SECTOR_SIZE            # sysfs counts 512-byte units
        if start % per:
            raise UsageError(f"--swap: {swap} starts at sector {start}, inside a "
                             f"{disk.block_size}-byte block")
        return disk, [Extent((start + SECTORS_PER_PAGE) // per,
                             (pages - 1) * SECTORS_PER_PAGE // per)], name
    swap = os.path.abspath(swap) if sysmap.live else swap
    path = swap if sysmap.live else sysmap.path(swap)
    if not os.path.exists(path):
        raise UsageError(f"--swap: {swap} does not exist")
    st = os.stat(path)
    import stat as st_mod
    if not st_mod.S_ISREG(st.st_mode):
        raise UsageError(f"--swap: {swap} is neither a block device nor a regular file")
    fstype, majmin = file_backing(sysmap, swap, st)
    if fstype not in SWAP_FILE_FS:
        raise UsageError(f"--swap: {swap} is on {fstype}, where a file's blocks are not written "
                         f"in place (only {', '.join(SWAP_FILE_FS)}); use a swap partition or a "
                         "file on ext4")
    if not sysmap.exists(f"/sys/dev/block/{majmin}"):
        raise UsageError(f"--swap: {swap} is on device {majmin}, which is not a block device "
                         "(network or virtual filesystem)")
    part = os.path.basename(sysmap.realpath(f"/sys/dev/block/{majmin}"))
    disk, start, _, _ = disk_of(sysmap, part)
    check_swap_signature(sysmap, swap, part, path)
    return (disk, file_extents(swap, start, st.st_size, fiemap(path), block_size=disk.block_size),
            os.path.basename(swap))


def file_backing(sysmap, path, st):
    """(filesystem type, "major:minor" of its device) of the mount holding `path`, from
    /proc/self/mountinfo (proc(5)): the entry with the file's device, else the longest
    mount point that is a prefix of the path."""
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    best = None
    for line in sysmap.read("/proc/self/mountinfo", "--swap").splitlines():
        left, sep, right = line.partition(" - ")
        f, r = left.split(), right.split()
        if not sep or len(f) < 5 or len(r) < 2:
            continue
        point = f[4].replace("\\040", " ")
        if sysmap.live and f[2] == dev:
            return r[0], f[2]
        if (path + "/").startswith(point.rstrip("/") + "/") and (
                best is None or len(point) > len(best[0])):
            best = (point, r[0], f[2])
    if best is None:
        raise UsageError(f"--swap: no mount in /proc/self/mountinfo holds {path}")
    return best[1], best[2]


# ---- framebuffer -------------------------------------------------------------------------
FBIOGET_VSCREENINFO, FBIOGET_FSCREENINFO = 0x4600, 0x4602


def framebuffer(sysmap):
    if not sysmap.exists("/sys/class/graphics/fb0"):
        return None
    if not sysmap.live:
        raise UsageError("framebuffer: fb0 exists but its address cannot be read from a "
                         "sysroot; use --no-framebuffer")
    try:
        with open("/dev/fb0", "rb") as f:
            fix = fcntl.ioctl(f, FBIOGET_FSCREENINFO, bytes(80))
            var = fcntl.ioctl(f, FBIOGET_VSCREENINFO, bytes(160))
    except OSError as e:
        raise UsageError(f"framebuffer: /dev/fb0: {e.strerror} (or use --no-framebuffer)")
    smem_start = struct.unpack_from("<Q", fix, 16)[0]
    line_length = struct.unpack_from("<I", fix, 48)[0]
    xres, yres, _, _, _, _, bpp = struct.unpack_from("<7I", var, 0)
    red_off = struct.unpack_from("<I", var, 32)[0]
    fmt = {32: "xrgb8888", 24: "rgb888", 16: "rgb565"}.get(bpp)
    if not fmt or (bpp >= 24 and red_off != 16) or not smem_start:
        raise UsageError(f"framebuffer: fb0 is {xres}x{yres}x{bpp} (red at bit {red_off}, "
                         f"address {smem_start:#x}): not a format the module draws; use --no-framebuffer")
    return Framebuffer(address=smem_start, width=xres, height=yres, pitch=line_length,
                       bpp=bpp, format=fmt)


# ---- the target --------------------------------------------------------------------------
def linux_target(swap=None, sysroot=None, compress="none", with_framebuffer=True,
                 smaller_than_ram=False):
    sysmap = System(sysroot)
    memory, source = firmware_memory(sysmap)
    reserved = reserved_region(sysmap, memory, source)
    swap = pick_swap(sysmap, swap)
    disk, extents, what = swap_target(sysmap, swap)
    fb = framebuffer(sysmap) if with_framebuffer else None
    host = sysmap.read("/proc/sys/kernel/hostname", "name").strip() \
        if sysmap.exists("/proc/sys/kernel/hostname") else "linux"
    host = re.sub(r"[^A-Za-z0-9_.-]", "", host) or "linux"
    t = Target(name=f"linux-{host}-{what}", memory=memory, reserved=reserved, disk=disk,
               extents=extents, framebuffer=fb,
               options=Options(compress=compress, smaller_than_ram=smaller_than_ram),
               efi_runtime=runtime_map(sysmap), efi_runtime_services=runtime_services(sysmap))
    return t.validate()


# ---- swap safety (docs/LINUX.md, "Swap safety") -----------------------------------------
# Our image header is the first page of the first extent: swap page 1 (area offset 4096).
# Swap page 0 (bootbits, version, last_page, UUID, label) is left as it is, except for its
# 10-byte signature at offset 4086: SOSIMAGE01 while an image is there, so swapon refuses
# the area (it wants SWAPSPACE2) and Linux's own resume ignores it (it wants S1SUSPEND).
def _rw_signature(area, offset, expect, new):
    try:
        with open(area, "r+b") as f:
            f.seek(offset + PAGE_SIZE - 10)
            old = f.read(10)
            if old not in expect:
                return old
            f.seek(offset + PAGE_SIZE - 10)
            f.write(new)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise UsageError(f"{area}: {e.strerror}")
    return None


def mark_swap(area, offset=0):
    """SWAPSPACE2 -> SOSIMAGE01 (before the handoff); refuses an area without swap signature."""
    old = _rw_signature(area, offset, SWAP_MAGICS, SUSPENDOS_SWAP_MAGIC)
    if old is not None:
        raise UsageError(f"{area}: no swap signature at offset {offset + PAGE_SIZE - 10} ({old!r})")


def discard_image(area, offset=0):
    """Zero the image header (swap page 1) and give the area its SWAPSPACE2 back.
    Returns 'discarded', or 'no image' when the area carries a plain swap signature."""
    from ..fileutil import input_size, open_input, show
    with open_input(area, block_device=True) as f:  # a swap file or partition, nothing else
        size = input_size(f)
        mode = os.fstat(f.fileno()).st_mode
    if stat.S_ISREG(mode) and not mode & 0o222:     # root may write it: the mode says don't
        raise UsageError(f"{show(area)}: the file is read-only (make it writable to discard "
                         f"the image)")
    if offset + 2 * PAGE_SIZE > size:
        raise UsageError(f"--offset: {offset} leaves no swap header in {area} ({size} bytes)")
    try:
        with open(area, "r+b") as f:
            f.seek(offset + PAGE_SIZE - 10)
            magic = f.read(10)
            if magic in SWAP_MAGICS:
                return "no image"
            if magic != SUSPENDOS_SWAP_MAGIC:
                raise UsageError(f"{area}: offset {offset} is neither a swap area nor a swap "
                                 f"area holding an image (signature {magic!r})")
            f.seek(offset + PAGE_SIZE)
            f.write(bytes(PAGE_SIZE))
            f.seek(offset + PAGE_SIZE - 10)
            f.write(b"SWAPSPACE2")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise UsageError(f"{area}: {e.strerror}")
    return "discarded"
