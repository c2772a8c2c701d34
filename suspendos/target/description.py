"""The target description: memory map, reserved region, disk, image extents, framebuffer,
options. Stored as TOML (README, "Target description"). Every check raises a UsageError whose
one-line message names the offending field, so the CLI can exit 2 with nothing written.
"""
import re
import tomllib
from dataclasses import MISSING, asdict, dataclass, field, fields

import tomli_w

from ..errors import UsageError
from ..fileutil import show
from ..formats import efi_runtime as efi_rt, image
from ..formats.common import PAGE_SIZE

MEMORY_TYPES = ("ram", "reserved", "acpi", "nvs", "unusable")
DISK_KINDS = ("ahci", "nvme", "virtio-blk")
IOMMU_KINDS = ("none", "vt-d", "amd-vi")    # Intel VT-d, AMD-Vi
IOMMU_MMIO_SPAN = 0x1000        # the payload reads one status register in the first page:
                                # VT-d GSTS (0x1C), AMD-Vi Control (0x18)
BLOCK_SIZES = (512, 4096)
COMPRESSIONS = ("none", "lz4", "lz4hc")   # lz4hc: LZ4 blocks, slower search, smaller
FB_FORMATS = ("xrgb8888", "rgb888", "rgb565")
MIN_RESERVED = 512 * 1024
BUFFERED_CHUNK_PAGES = 16       # 64 KiB of input per LZ4 / encrypted chunk
MAX_BUFFERED_CHUNK_PAGES = 64   # buffered chunks are built in scratch
MAX_PHYSICAL = 1 << 52          # x86-64 MAXPHYADDR is at most 52 (SDM vol. 3A, 4.1.4)
MAX_SECTORS = 1 << 48           # ATA 48-bit LBA (ACS-3, 4.1): what an AHCI port can address
AHCI_MMIO_SPAN = 0x2000         # what the payload maps from the ABAR's page: generic host
                                # control + 32 ports (AHCI 1.3.1, 3: 0x100 + 32 * 0x80)
# What each driver touches of its BAR: NVMe registers and the doorbells of queues 0 and 1
# (NVMe 2.0 3.1.4: 0x1000 + 4 * (2 * qid + 1) << CAP.DSTRD, room for DSTRD up to 6); virtio:
# the common, ISR, device and notify structures, which QEMU places in one 16 KiB BAR.
DISK_MMIO_SPAN = {"ahci": AHCI_MMIO_SPAN, "nvme": 0x4000, "virtio-blk": 0x4000}
MAX_TARGET_FILE = 16 << 20
PCI_RE = re.compile(r"[0-9a-fA-F]{1,2}:[0-9a-fA-F]{1,2}\.[0-7]")   # fullmatch: `$` lets "\n" in
BPP_OF_FORMAT = {"xrgb8888": 32, "rgb888": 24, "rgb565": 16}


@dataclass
class MemoryRange:
    start: int
    end: int
    type: str = "ram"


@dataclass
class Reserved:
    load_address: int
    size: int
    # 0, or a 4 KiB page below 1 MiB the host keeps from its own use (Linux: a second
    # memmap=4K$ADDR): where the payload starts the CPUs the host took offline (STARTUP IPI,
    # SDM vol. 3 8.4.4.1). Never saved RAM: the image, and so the resume, leave it out.
    ap_start: int = 0


@dataclass
class Disk:
    pci: str            # "bus:dev.fn", hexadecimal as lspci prints it
    kind: str = "ahci"  # DISK_KINDS: the one driver the build links
    ahci_base: int = 0  # ahci: ABAR (BAR5)
    port: int = 0       # ahci: port
    bar: int = 0        # nvme: BAR0; virtio-blk: the BAR holding its common configuration
    namespace: int = 0  # nvme: namespace id (1 when 0)
    block_size: int = 512   # logical block size; extents and sectors count these
    sectors: int = 0    # disk size in logical blocks; 0 when unknown
    # The IOMMU unit that translates this controller's DMA (IOMMU_KINDS), and its register
    # base: the payload and the resume loader read its status before their first DMA and
    # stop with iommu_translating while it translates (docs/LINUX.md, IOMMU).
    iommu: str = "none"
    iommu_base: int = 0

    def base(self):
        """The controller's MMIO base the payload checks against PCI config space."""
        return self.ahci_base if self.kind == "ahci" else self.bar

    def pci_address(self):
        if not PCI_RE.fullmatch(self.pci):
            raise UsageError(f"disk.pci: {self.pci!r} is not bus:dev.fn (e.g. 00:1f.2)")
        bus, rest = self.pci.split(":")
        dev, fn = rest.split(".")
        b, d, f = int(bus, 16), int(dev, 16), int(fn, 16)
        if d > 31:
            raise UsageError(f"disk.pci: {self.pci!r} is out of range (device 0-1f)")
        return b, d, f


@dataclass
class Extent:
    lba: int
    count: int


@dataclass
class Framebuffer:
    address: int
    width: int
    height: int
    pitch: int
    bpp: int
    format: str = "xrgb8888"


@dataclass
class Options:
    compress: str = "none"
    chunk_pages: int = 0            # 0: 1023 uncompressed, 16 with LZ4
    max_command_kib: int = 4096     # largest single AHCI command
    serial_port: int = 0x3f8
    debug_exit_port: int = 0        # QEMU isa-debug-exit: where the resume loader reports
    # The extents may hold less than the worst-case image (a swap area smaller than RAM):
    # the pages in use must fit (suspendos hibernate checks); if the image still runs out
    # of extents the payload stops with image-full and writes no header.
    smaller_than_ram: bool = False


@dataclass
class EfiRuntime:
    """One EFI runtime region as the hibernated kernel mapped it (Linux:
    /sys/firmware/efi/runtime-map/N): EFI_MEMORY_TYPE, physical and virtual start, 4 KiB
    pages, EFI_MEMORY_* attributes (UEFI 2.10, 7.2)."""
    type: int
    phys: int
    virt: int
    pages: int
    attribute: int


@dataclass
class Target:
    name: str
    memory: list
    reserved: Reserved
    disk: Disk
    extents: list
    framebuffer: Framebuffer = None
    options: Options = field(default_factory=Options)
    # The kernel's EFI runtime map (docs/RESUME.md, "The EFI loader"): empty when the machine
    # was not booted by UEFI or the kernel shows no runtime map.
    efi_runtime: list = field(default_factory=list)
    # 0, or the physical address of that boot's EFI_RUNTIME_SERVICES table (Linux:
    # /sys/firmware/efi/runtime): the resumed kernel calls through it.
    efi_runtime_services: int = 0

    # ---- derived views -------------------------------------------------------------
    @property
    def reserved_range(self):
        return self.reserved.load_address, self.reserved.load_address + self.reserved.size

    def kept_ranges(self):
        """What the host keeps for the module: the reserved region and the AP start page."""
        out = [self.reserved_range]
        if self.reserved.ap_start:
            out.append((self.reserved.ap_start, self.reserved.ap_start + PAGE_SIZE))
        return sorted(out)

    def saved_ranges(self):
        """Usable RAM, whole pages only, minus what the host keeps for the module (the
        reserved region, the AP start page): what the image holds."""
        out = []
        for m in sorted(self.memory, key=lambda m: m.start):
            if m.type != "ram":
                continue
            pieces = [(-(-m.start // PAGE_SIZE) * PAGE_SIZE, m.end // PAGE_SIZE * PAGE_SIZE)]
            for ks, ke in self.kept_ranges():
                pieces = [p for s, e in pieces for p in ((s, min(e, ks)), (max(s, ke), e))]
            out += [(s, e) for s, e in pieces if s < e]
        return out

    def saved_pages(self):
        return sum(e - s for s, e in self.saved_ranges()) // PAGE_SIZE

    def chunk_pages(self, encrypted=False):
        if self.options.chunk_pages:
            return self.options.chunk_pages
        if self.options.compress != "none" or encrypted:
            return BUFFERED_CHUNK_PAGES
        # 1023 raw pages + the 512-byte chunk header fit one 4 MiB command of at most 1024
        # PRDs (QEMU refuses commands with more: drivers/ahci.h).
        return image.MAX_CHUNK_PAGES - 1

    def image_capacity(self):
        return sum(e.count for e in self.extents) * self.disk.block_size

    def worst_case_image(self):
        # Whatever the build chooses (encryption makes chunks small), assume the most chunks.
        chunk = self.options.chunk_pages or BUFFERED_CHUNK_PAGES
        return image.worst_case_bytes(self.saved_pages(), len(self.extents),
                                      len(self.saved_ranges()), chunk, self.disk.block_size)

    # ---- validation ----------------------------------------------------------------
    def validate(self):
        if not self.name:
            raise UsageError("name: must not be empty")
        self._validate_memory()
        self._validate_reserved()
        self._validate_disk()
        self._validate_extents()
        self._validate_framebuffer()
        self._validate_options()
        self._validate_efi_runtime()
        return self

    def _validate_memory(self):
        if not self.memory:
            raise UsageError("memory: the memory map is empty")
        last = None
        # Checked in address order, named by their place in the file (memory[i] is what the
        # user finds in the TOML, whatever its order).
        for i, m in sorted(enumerate(self.memory), key=lambda im: im[1].start):
            if m.type not in MEMORY_TYPES:
                raise UsageError(f"memory[{i}].type: {m.type!r} is not one of {', '.join(MEMORY_TYPES)}")
            if m.start < 0 or m.end <= m.start:
                raise UsageError(f"memory[{i}]: end {m.end:#x} must be above start {m.start:#x}")
            if m.end > MAX_PHYSICAL:
                raise UsageError(f"memory[{i}]: end {m.end:#x} is beyond any physical address "
                                 f"(2^52)")
            if last and m.start < last[1].end:
                raise UsageError(f"memory[{i}]: {m.start:#x}-{m.end:#x} overlaps memory[{last[0]}] "
                                 f"{last[1].start:#x}-{last[1].end:#x}")
            last = i, m
        if not self.saved_ranges():
            raise UsageError("memory: no usable RAM to save")

    def _validate_reserved(self):
        r = self.reserved
        if r.load_address < 0:
            raise UsageError(f"reserved.load_address: {r.load_address:#x} is negative")
        if r.load_address % PAGE_SIZE or r.size % PAGE_SIZE:
            raise UsageError("reserved: load_address and size must be multiples of 4096")
        if r.size < MIN_RESERVED:
            raise UsageError(f"reserved.size: {r.size:#x} is too small for the payload "
                             f"(at least {MIN_RESERVED:#x})")
        s, e = self.reserved_range
        if not any(m.type == "ram" and m.start <= s and e <= m.end for m in self.memory):
            raise UsageError(f"reserved: {s:#x}-{e:#x} does not lie inside one usable RAM range")
        self._validate_ap_start()

    def _validate_ap_start(self):
        a = self.reserved.ap_start
        if not a:
            return
        # The STARTUP IPI's vector is the page number (SDM vol. 3 10.6.1): a page below
        # 1 MiB; vectors A0H-BFH are reserved (SDM vol. 3 8.4.4.1 note). The AP's switch to
        # long mode jumps into the payload by a 32-bit far pointer: region below 4 GiB.
        if a < 0 or a % PAGE_SIZE or not PAGE_SIZE <= a < 0x100000 or 0xA0000 <= a < 0xC0000:
            raise UsageError(f"reserved.ap_start: {a:#x} is not a 4 KiB page in 0x1000-0x9f000 "
                             "or 0xc0000-0xff000")
        if not any(m.type == "ram" and m.start <= a and a + PAGE_SIZE <= m.end
                   for m in self.memory):
            raise UsageError(f"reserved.ap_start: {a:#x} is not usable RAM")
        rs, re_ = self.reserved_range
        if rs < a + PAGE_SIZE and a < re_:
            raise UsageError(f"reserved.ap_start: {a:#x} lies inside the reserved region")
        if self.reserved_range[1] > 1 << 32:
            raise UsageError("reserved.ap_start: the reserved region must lie below 4 GiB for "
                             "the APs' switch to long mode")

    def _validate_disk(self):
        d = self.disk
        if d.kind not in DISK_KINDS:
            raise UsageError(f"disk.kind: {d.kind!r} is not one of {', '.join(DISK_KINDS)}")
        if d.block_size not in BLOCK_SIZES:
            raise UsageError(f"disk.block_size: {d.block_size} is not 512 or 4096")
        if d.kind == "ahci":
            if d.ahci_base <= 0 or d.ahci_base % 1024 or \
                    d.ahci_base + AHCI_MMIO_SPAN > MAX_PHYSICAL:
                raise UsageError(f"disk.ahci_base: {d.ahci_base:#x} is not a 1 KiB-aligned MMIO address")
            if not 0 <= d.port < 32:
                raise UsageError(f"disk.port: {d.port} is not an AHCI port number (0-31)")
            if d.block_size != 512:
                raise UsageError("disk.block_size: the AHCI driver handles 512-byte sectors only")
        else:
            if d.bar <= 0 or d.bar % 4096 or d.bar + DISK_MMIO_SPAN[d.kind] > MAX_PHYSICAL:
                raise UsageError(f"disk.bar: {d.bar:#x} is not a 4 KiB-aligned MMIO address")
            if d.kind == "nvme" and not 0 <= d.namespace < 0xFFFFFFFF:
                raise UsageError(f"disk.namespace: {d.namespace} is not a namespace id")
        what = "disk.ahci_base" if d.kind == "ahci" else "disk.bar"
        page = d.base() & ~(PAGE_SIZE - 1)
        self._check_mmio(what, page, page + DISK_MMIO_SPAN[d.kind])
        self._validate_iommu()
        if not 0 <= d.sectors <= MAX_SECTORS:
            raise UsageError(f"disk.sectors: must be from 0 to 2^48 (ATA's 48-bit LBA), "
                             f"got {d.sectors}")
        d.pci_address()

    def _validate_iommu(self):
        d = self.disk
        if d.iommu not in IOMMU_KINDS:
            raise UsageError(f"disk.iommu: {d.iommu!r} is not one of {', '.join(IOMMU_KINDS)}")
        if d.iommu == "none":
            if d.iommu_base:
                raise UsageError("disk.iommu_base: set while disk.iommu is none")
            return
        if d.iommu_base <= 0 or d.iommu_base % PAGE_SIZE or \
                d.iommu_base + IOMMU_MMIO_SPAN > MAX_PHYSICAL:
            raise UsageError(f"disk.iommu_base: {d.iommu_base:#x} is not a 4 KiB-aligned MMIO "
                             "address")
        self._check_mmio("disk.iommu_base", d.iommu_base, d.iommu_base + IOMMU_MMIO_SPAN)

    def _validate_extents(self):
        if not self.extents:
            raise UsageError("extents: the image needs at least one extent")
        ordered = sorted(enumerate(self.extents), key=lambda ie: ie[1].lba)
        prev = None
        for i, e in ordered:
            if e.lba < 0 or e.count <= 0:
                raise UsageError(f"extents[{i}]: lba must be >= 0 and count > 0")
            if e.lba + e.count > MAX_SECTORS:
                raise UsageError(f"extents[{i}]: sectors beyond 2^48 (ATA's 48-bit LBA)")
            if self.disk.sectors and e.lba + e.count > self.disk.sectors:
                raise UsageError(f"extents[{i}]: sectors {e.lba}-{e.lba + e.count - 1} lie beyond "
                                 f"the end of the disk ({self.disk.sectors} sectors)")
            if prev and e.lba < prev[1].lba + prev[1].count:
                raise UsageError(f"extents[{i}]: overlaps extents[{prev[0]}]")
            prev = (i, e)
        if self.extents[0].count * self.disk.block_size < image.chunks_offset(len(self.extents), 0):
            raise UsageError("extents[0]: the first extent must hold the 4 KiB image header "
                             "and the extent table")
        need, have = self.worst_case_image(), self.image_capacity()
        if have < need and not self.options.smaller_than_ram:
            raise UsageError(f"extents: {have} bytes are too small for the worst-case image of "
                             f"{need} bytes ({need // self.disk.block_size} sectors)")

    def _validate_framebuffer(self):
        fb = self.framebuffer
        if fb is None:
            return
        if fb.format not in FB_FORMATS:
            raise UsageError(f"framebuffer.format: {fb.format!r} is not one of {', '.join(FB_FORMATS)}")
        if fb.bpp not in (16, 24, 32):
            raise UsageError(f"framebuffer.bpp: {fb.bpp} is not 16, 24 or 32")
        if BPP_OF_FORMAT[fb.format] != fb.bpp:
            raise UsageError(f"framebuffer.bpp: {fb.format} has {BPP_OF_FORMAT[fb.format]} bits "
                             f"per pixel, not {fb.bpp}")
        if not (0 < fb.width <= 0xFFFF and 0 < fb.height <= 0xFFFF
                and fb.width * fb.bpp // 8 <= fb.pitch <= 0xFFFFFFFF):
            raise UsageError("framebuffer: width, height must be 1-65535 and pitch >= width*bpp/8")
        end = fb.address + fb.pitch * fb.height
        if fb.address <= 0 or end > MAX_PHYSICAL:
            raise UsageError(f"framebuffer.address: {fb.address:#x} is not a physical address")
        self._check_mmio("framebuffer", fb.address, end)

    def _validate_options(self):
        o = self.options
        if o.compress not in COMPRESSIONS:
            raise UsageError(f"options.compress: {o.compress!r} is not one of {', '.join(COMPRESSIONS)}")
        if not 0 <= o.chunk_pages <= image.MAX_CHUNK_PAGES:
            raise UsageError(f"options.chunk_pages: must be 1-{image.MAX_CHUNK_PAGES} (or 0 for the default)")
        self.check_chunk_pages()
        if not 64 <= o.max_command_kib <= 32768 or o.max_command_kib % 4:
            raise UsageError("options.max_command_kib: must be a multiple of 4 from 64 to 32768")
        for name in ("serial_port", "debug_exit_port"):
            if not 0 <= getattr(o, name) <= 0xFFFF:
                raise UsageError(f"options.{name}: must be an I/O port number (0-65535)")

    def _validate_efi_runtime(self):
        if len(self.efi_runtime) > efi_rt.MAX_ENTRIES:
            raise UsageError(f"efi_runtime: {len(self.efi_runtime)} entries, more than the "
                             f"loader carries ({efi_rt.MAX_ENTRIES})")
        last = None
        for i, r in sorted(enumerate(self.efi_runtime), key=lambda ir: ir[1].phys):
            where = f"efi_runtime[{i}]"
            if not 0 <= r.type <= 0xFFFFFFFF:
                raise UsageError(f"{where}.type: {r.type} is not an EFI memory type (32 bits)")
            if not 0 <= r.attribute < 1 << 64:
                raise UsageError(f"{where}.attribute: {r.attribute:#x} is not 64 bits")
            if not r.attribute & efi_rt.MEMORY_RUNTIME:
                raise UsageError(f"{where}.attribute: {r.attribute:#x} lacks EFI_MEMORY_RUNTIME "
                                 "(bit 63)")
            if r.pages <= 0 or r.phys < 0 or r.phys % PAGE_SIZE or \
                    r.phys + r.pages * PAGE_SIZE > MAX_PHYSICAL:
                raise UsageError(f"{where}: phys {r.phys:#x} and pages {r.pages} are not a "
                                 "page-aligned physical range below 2^52")
            end = r.virt + r.pages * PAGE_SIZE
            if r.virt < 0 or r.virt % PAGE_SIZE or not _canonical(r.virt, end):
                raise UsageError(f"{where}.virt: {r.virt:#x} is not a page-aligned canonical "
                                 f"address for {r.pages} pages")
            if last and r.phys < last[1].phys + last[1].pages * PAGE_SIZE:
                raise UsageError(f"{where}: {r.phys:#x} overlaps efi_runtime[{last[0]}] at "
                                 f"{last[1].phys:#x}")
            last = i, r
        rt = self.efi_runtime_services
        if not 0 <= rt < MAX_PHYSICAL:
            raise UsageError(f"efi_runtime_services: {rt:#x} is not a physical address")
        if rt and not any(r.phys <= rt < r.phys + r.pages * PAGE_SIZE for r in self.efi_runtime):
            raise UsageError(f"efi_runtime_services: {rt:#x} is not inside an efi_runtime "
                             "region")

    def check_chunk_pages(self, encrypted=False):
        """Compressed and encrypted chunks are built in the payload's scratch: at most
        MAX_BUFFERED_CHUNK_PAGES. The build checks again with the key it is given."""
        pages = self.chunk_pages(encrypted)
        if (encrypted or self.options.compress != "none") and pages > MAX_BUFFERED_CHUNK_PAGES:
            raise UsageError(f"options.chunk_pages: {pages} is too large for compressed or "
                             f"encrypted chunks (at most {MAX_BUFFERED_CHUNK_PAGES})")

    def _check_mmio(self, what, start, end):
        """A device's registers or framebuffer may not lie in RAM or the reserved region:
        the payload maps them uncached and writable, and saves RAM read-only."""
        rs, re_ = self.reserved_range
        for i, m in enumerate(self.memory):
            if m.type == "ram" and start < m.end and m.start < end:
                raise UsageError(f"{what}: {start:#x}-{end:#x} lies inside RAM (memory[{i}], "
                                 f"{m.start:#x}-{m.end:#x})")
        if start < re_ and rs < end:
            raise UsageError(f"{what}: {start:#x}-{end:#x} overlaps the reserved region")

    # ---- serialisation -------------------------------------------------------------
    def to_dict(self):
        d = asdict(self)
        if self.framebuffer is None:
            del d["framebuffer"]
        if not self.efi_runtime:
            del d["efi_runtime"]
        if not self.efi_runtime_services:
            del d["efi_runtime_services"]
        return d


def _canonical(start, end):
    """[start, end) lies within one canonical half of the 48-bit address space (Intel SDM
    vol. 1, 3.3.7.1): both ends share bits 63-47."""
    low, high = 1 << 47, (1 << 64) - (1 << 47)
    return end <= low or (high <= start and end <= 1 << 64)


def _make(cls, data, where):
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected a table")
    names = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(names)
    if unknown:
        raise UsageError(f"{where}.{show(sorted(unknown)[0])}: unknown field")
    kwargs = {}
    for name, f in names.items():
        if name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise UsageError(f"{where}.{name}: missing")
            continue
        value = data[name]
        want = int if f.type in ("int", int) else str if f.type in ("str", str) else None
        if f.type in ("bool", bool) and not isinstance(value, bool):
            raise UsageError(f"{where}.{name}: expected true or false, got {value!r}")
        if want is int and (not isinstance(value, int) or isinstance(value, bool)):
            raise UsageError(f"{where}.{name}: expected an integer, got {value!r}")
        if want is str and not isinstance(value, str):
            raise UsageError(f"{where}.{name}: expected a string, got {value!r}")
        kwargs[name] = value
    return cls(**kwargs)


def from_dict(d):
    if not isinstance(d, dict):
        raise UsageError("target: expected a table")
    unknown = set(d) - {f.name for f in fields(Target)}
    if unknown:
        raise UsageError(f"{show(sorted(unknown)[0])}: unknown section")
    for key in ("name", "memory", "reserved", "disk", "extents"):
        if key not in d:
            raise UsageError(f"{key}: missing")
    if not isinstance(d["memory"], list) or not isinstance(d["extents"], list):
        raise UsageError("memory and extents must be arrays of tables")
    if not isinstance(d["name"], str):
        raise UsageError("name: expected a string")
    if not isinstance(d.get("efi_runtime", []), list):
        raise UsageError("efi_runtime: must be an array of tables")
    t = Target(
        name=d["name"],
        memory=[_make(MemoryRange, m, f"memory[{i}]") for i, m in enumerate(d["memory"])],
        reserved=_make(Reserved, d["reserved"], "reserved"),
        disk=_make(Disk, d["disk"], "disk"),
        extents=[_make(Extent, e, f"extents[{i}]") for i, e in enumerate(d["extents"])],
        framebuffer=_make(Framebuffer, d["framebuffer"], "framebuffer") if "framebuffer" in d else None,
        options=_make(Options, d.get("options", {}), "options"),
        efi_runtime=[_make(EfiRuntime, r, f"efi_runtime[{i}]")
                     for i, r in enumerate(d.get("efi_runtime", []))],
        efi_runtime_services=d.get("efi_runtime_services", 0),
    )
    if not isinstance(t.efi_runtime_services, int) or isinstance(t.efi_runtime_services, bool):
        raise UsageError(f"efi_runtime_services: expected an integer, got "
                         f"{t.efi_runtime_services!r}")
    return t.validate()


def loads(text, origin="target"):
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as e:   # RecursionError: deep nesting
        raise UsageError(f"{origin}: not a valid TOML file ({e})")
    if not data:        # "name: missing" would not say which file holds nothing at all
        raise UsageError(f"{origin}: no target description in it (an empty TOML file)")
    return from_dict(data)


def load(path, what=None):
    from ..fileutil import read_input
    raw = read_input(path, what, limit=MAX_TARGET_FILE, kind="target description")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{show(path)}: not a valid TOML file (not UTF-8 text)")
    return loads(text, show(path))


def dumps(target):
    return tomli_w.dumps(target.to_dict())


def save(target, path):
    """Validate, then write atomically: a failed validation leaves nothing behind."""
    from ..fileutil import write_atomic
    target.validate()
    write_atomic(path, dumps(target).encode(), what="-o")
