"""The target description: memory map, reserved region, disk, image extents, framebuffer,
options. Stored as TOML (README, "Target description"). Every check raises a UsageError whose
one-line message names the offending field, so the CLI can exit 2 with nothing written.
"""
import tomllib
from dataclasses import MISSING, asdict, dataclass, field, fields

import tomli_w

from ..errors import UsageError
from ..formats import image
from ..formats.common import PAGE_SIZE, SECTOR_SIZE

MEMORY_TYPES = ("ram", "reserved", "acpi", "nvs", "unusable")
COMPRESSIONS = ("none", "lz4")
FB_FORMATS = ("xrgb8888", "rgb888", "rgb565")
MIN_RESERVED = 512 * 1024
BUFFERED_CHUNK_PAGES = 16       # 64 KiB of input per LZ4 / encrypted chunk
MAX_BUFFERED_CHUNK_PAGES = 64   # buffered chunks are built in scratch


@dataclass
class MemoryRange:
    start: int
    end: int
    type: str = "ram"


@dataclass
class Reserved:
    load_address: int
    size: int


@dataclass
class Disk:
    ahci_base: int
    pci: str            # "bus:dev.fn", hexadecimal as lspci prints it
    port: int = 0
    sectors: int = 0    # disk size in 512-byte sectors; 0 when unknown

    def pci_address(self):
        try:
            bus, rest = self.pci.split(":")
            dev, fn = rest.split(".")
            b, d, f = int(bus, 16), int(dev, 16), int(fn, 16)
        except ValueError:
            raise UsageError(f"disk.pci: {self.pci!r} is not bus:dev.fn (e.g. 00:1f.2)")
        if not (0 <= b <= 255 and 0 <= d <= 31 and 0 <= f <= 7) or "-" in self.pci:
            raise UsageError(f"disk.pci: {self.pci!r} is out of range")
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
class Target:
    name: str
    memory: list
    reserved: Reserved
    disk: Disk
    extents: list
    framebuffer: Framebuffer = None
    options: Options = field(default_factory=Options)

    # ---- derived views -------------------------------------------------------------
    @property
    def reserved_range(self):
        return self.reserved.load_address, self.reserved.load_address + self.reserved.size

    def saved_ranges(self):
        """Usable RAM, whole pages only, minus the reserved region: what the image holds."""
        rs, re_ = self.reserved_range
        out = []
        for m in sorted(self.memory, key=lambda m: m.start):
            if m.type != "ram":
                continue
            start = -(-m.start // PAGE_SIZE) * PAGE_SIZE
            end = m.end // PAGE_SIZE * PAGE_SIZE
            for s, e in ((start, min(end, rs)), (max(start, re_), end)):
                if s < e:
                    out.append((s, e))
        return out

    def saved_pages(self):
        return sum(e - s for s, e in self.saved_ranges()) // PAGE_SIZE

    def chunk_pages(self, encrypted=False):
        if self.options.chunk_pages:
            return self.options.chunk_pages
        if self.options.compress == "lz4" or encrypted:
            return BUFFERED_CHUNK_PAGES
        # 1023 raw pages + the 512-byte chunk header fit one 4 MiB command of at most 1024
        # PRDs (QEMU refuses commands with more: drivers/ahci.h).
        return image.MAX_CHUNK_PAGES - 1

    def image_capacity(self):
        return sum(e.count for e in self.extents) * SECTOR_SIZE

    def worst_case_image(self):
        # Whatever the build chooses (encryption makes chunks small), assume the most chunks.
        chunk = self.options.chunk_pages or BUFFERED_CHUNK_PAGES
        return image.worst_case_bytes(self.saved_pages(), len(self.extents),
                                      len(self.saved_ranges()), chunk)

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
        return self

    def _validate_memory(self):
        if not self.memory:
            raise UsageError("memory: the memory map is empty")
        last = None
        for i, m in enumerate(sorted(self.memory, key=lambda m: m.start)):
            if m.type not in MEMORY_TYPES:
                raise UsageError(f"memory[{i}].type: {m.type!r} is not one of {', '.join(MEMORY_TYPES)}")
            if m.start < 0 or m.end <= m.start:
                raise UsageError(f"memory[{i}]: end {m.end:#x} must be above start {m.start:#x}")
            if last and m.start < last.end:
                raise UsageError(f"memory[{i}]: {m.start:#x}-{m.end:#x} overlaps "
                                 f"{last.start:#x}-{last.end:#x}")
            last = m
        if not self.saved_ranges():
            raise UsageError("memory: no usable RAM to save")

    def _validate_reserved(self):
        r = self.reserved
        if r.load_address % PAGE_SIZE or r.size % PAGE_SIZE:
            raise UsageError("reserved: load_address and size must be multiples of 4096")
        if r.size < MIN_RESERVED:
            raise UsageError(f"reserved.size: {r.size:#x} is too small for the payload "
                             f"(at least {MIN_RESERVED:#x})")
        s, e = self.reserved_range
        if not any(m.type == "ram" and m.start <= s and e <= m.end for m in self.memory):
            raise UsageError(f"reserved: {s:#x}-{e:#x} does not lie inside one usable RAM range")

    def _validate_disk(self):
        d = self.disk
        if d.ahci_base <= 0 or d.ahci_base % 1024:
            raise UsageError(f"disk.ahci_base: {d.ahci_base:#x} is not a 1 KiB-aligned MMIO address")
        if not 0 <= d.port < 32:
            raise UsageError(f"disk.port: {d.port} is not an AHCI port number (0-31)")
        if d.sectors < 0:
            raise UsageError("disk.sectors: must not be negative")
        d.pci_address()

    def _validate_extents(self):
        if not self.extents:
            raise UsageError("extents: the image needs at least one extent")
        ordered = sorted(enumerate(self.extents), key=lambda ie: ie[1].lba)
        prev = None
        for i, e in ordered:
            if e.lba < 0 or e.count <= 0:
                raise UsageError(f"extents[{i}]: lba must be >= 0 and count > 0")
            if self.disk.sectors and e.lba + e.count > self.disk.sectors:
                raise UsageError(f"extents[{i}]: sectors {e.lba}-{e.lba + e.count - 1} lie beyond "
                                 f"the end of the disk ({self.disk.sectors} sectors)")
            if prev and e.lba < prev[1].lba + prev[1].count:
                raise UsageError(f"extents[{i}]: overlaps extents[{prev[0]}]")
            prev = (i, e)
        if self.extents[0].count * SECTOR_SIZE < image.chunks_offset(len(self.extents), 0):
            raise UsageError("extents[0]: the first extent must hold the 4 KiB image header "
                             "and the extent table")
        need, have = self.worst_case_image(), self.image_capacity()
        if have < need and not self.options.smaller_than_ram:
            raise UsageError(f"extents: {have} bytes are too small for the worst-case image of "
                             f"{need} bytes ({need // SECTOR_SIZE} sectors)")

    def _validate_framebuffer(self):
        fb = self.framebuffer
        if fb is None:
            return
        if fb.format not in FB_FORMATS:
            raise UsageError(f"framebuffer.format: {fb.format!r} is not one of {', '.join(FB_FORMATS)}")
        if fb.bpp not in (16, 24, 32):
            raise UsageError(f"framebuffer.bpp: {fb.bpp} is not 16, 24 or 32")
        if fb.width <= 0 or fb.height <= 0 or fb.pitch < fb.width * fb.bpp // 8:
            raise UsageError("framebuffer: width, height must be positive and pitch >= width*bpp/8")

    def _validate_options(self):
        o = self.options
        if o.compress not in COMPRESSIONS:
            raise UsageError(f"options.compress: {o.compress!r} is not one of {', '.join(COMPRESSIONS)}")
        if not 0 <= o.chunk_pages <= image.MAX_CHUNK_PAGES:
            raise UsageError(f"options.chunk_pages: must be 1-{image.MAX_CHUNK_PAGES} (or 0 for the default)")
        if not 64 <= o.max_command_kib <= 32768 or o.max_command_kib % 4:
            raise UsageError("options.max_command_kib: must be a multiple of 4 from 64 to 32768")
        for name in ("serial_port", "debug_exit_port"):
            if not 0 <= getattr(o, name) <= 0xFFFF:
                raise UsageError(f"options.{name}: must be an I/O port number (0-65535)")

    # ---- serialisation -------------------------------------------------------------
    def to_dict(self):
        d = asdict(self)
        if self.framebuffer is None:
            del d["framebuffer"]
        return d


def _make(cls, data, where):
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected a table")
    names = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(names)
    if unknown:
        raise UsageError(f"{where}.{sorted(unknown)[0]}: unknown field")
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
        raise UsageError(f"{sorted(unknown)[0]}: unknown section")
    for key in ("name", "memory", "reserved", "disk", "extents"):
        if key not in d:
            raise UsageError(f"{key}: missing")
    if not isinstance(d["memory"], list) or not isinstance(d["extents"], list):
        raise UsageError("memory and extents must be arrays of tables")
    if not isinstance(d["name"], str):
        raise UsageError("name: expected a string")
    t = Target(
        name=d["name"],
        memory=[_make(MemoryRange, m, f"memory[{i}]") for i, m in enumerate(d["memory"])],
        reserved=_make(Reserved, d["reserved"], "reserved"),
        disk=_make(Disk, d["disk"], "disk"),
        extents=[_make(Extent, e, f"extents[{i}]") for i, e in enumerate(d["extents"])],
        framebuffer=_make(Framebuffer, d["framebuffer"], "framebuffer") if "framebuffer" in d else None,
        options=_make(Options, d.get("options", {}), "options"),
    )
    return t.validate()


def loads(text, origin="target"):
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as e:   # RecursionError: deep nesting
        raise UsageError(f"{origin}: not a valid TOML file ({e})")
    return from_dict(data)


def load(path):
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise UsageError(f"{path}: cannot read ({e.strerror})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a valid TOML file (not UTF-8 text)")
    return loads(text, str(path))


def dumps(target):
    return tomli_w.dumps(target.to_dict())


def save(target, path):
    """Validate, then write atomically: a failed validation leaves nothing behind."""
    from ..fileutil import write_atomic
    target.validate()
    write_atomic(path, dumps(target).encode())
