"""The handoff block: the ABI between the host and the payload.

The host finds it at blob.handoff, fills the "host fills" fields, and calls blob.entry with
its address in RDI (System V). The payload writes status and statistics; the trampoline
stores the host's CPU context in it. CPU state at entry: 64-bit mode, CPL 0, interrupts
disabled, the reserved region identity-mapped and writable in the host's page tables.
"""
import construct as c

from .common import Constants, magic32, offset_of, u16, u32, u64
from .context import CpuContext

HANDOFF_MAGIC = magic32("SOSH")
HANDOFF_REVISION = 2

HANDOFF_FLAGS = Constants(
    "SOS_HANDOFF_", "Bits of handoff.flags, set by the host.",
    PAUSE_BEFORE_READ=1 << 0,    # print a pause line and wait for a byte on serial
    PAUSE_BEFORE_RETURN=1 << 1,  # same, after the header is written
    QUIET=1 << 2,                # no log lines on serial
)

FREE_FILL = Constants(
    "SOS_FREE_FILL_", "handoff.free_fill: what the host's allocator expects in its free pages.",
    NONE=0,                      # anything: free pages are neither written nor restored
    ZERO=1,                      # zeroes (Linux init_on_free): the resume zero-fills them
    POISON=2,                    # 0xaa bytes (Linux page_poison): the resume fills them so
)
FREE_POISON_BYTE = 0xAA

Handoff = c.Struct(
    "magic" / u32,
    "revision" / u16,
    "size" / u16,
    # host fills
    "flags" / u32,
    "serial_port" / u16,
    "_pad0" / c.Bytes(2),
    "tsc_hz" / u64,               # 0: the payload calibrates the TSC against the PIT
    "memmap" / u64,               # the host's usable RAM: MemRange[memmap_count], or 0
    "memmap_count" / u32,         # (the payload refuses to save memory that is not RAM)
    "_pad2" / c.Bytes(4),
    "free_list" / u64,            # pages the host's allocator has free: MemRange[free_count],
    "free_count" / u32,           # sorted and disjoint, or 0; the image leaves them out
    "free_fill" / u32,            # FREE_FILL: how the resume must leave them
    # payload returns
    "status" / u32,
    "fault_vector" / u32,
    "fault_error_code" / u64,
    "fault_rip" / u64,
    "fault_address" / u64,        # CR2 for a page fault
    "failed_lba" / u64,
    "detail" / u64,
    "pages_total" / u64,          # pages in the memory list
    "pages_saved" / u64,          # pages written or recorded as zero
    "zero_pages" / u64,
    "bytes_written" / u64,        # to disk, metadata included
    "raw_bytes" / u64,            # non-zero page bytes before compression
    "chunks" / u64,
    "tsc_start" / u64,
    "tsc_end" / u64,
    "tsc_hz_used" / u64,
    "draw_tsc" / u64,             # time spent in plugins
    "pages_free" / u64,           # pages of the memory list left out as free (free_list)
    "message" / c.Bytes(64),      # NUL-terminated, names what failed
    "context" / CpuContext,       # the host's state, saved by the trampoline
)


def new_handoff():
    return dict(magic=HANDOFF_MAGIC, revision=HANDOFF_REVISION, size=Handoff.sizeof(),
                flags=0, serial_port=0, _pad0=b"\0\0", tsc_hz=0, memmap=0, memmap_count=0,
                _pad2=bytes(4), free_list=0, free_count=0, free_fill=0, status=0, fault_vector=0,
                fault_error_code=0, fault_rip=0, fault_address=0, failed_lba=0, detail=0,
                pages_total=0, pages_saved=0, zero_pages=0, bytes_written=0, raw_bytes=0,
                chunks=0, tsc_start=0, tsc_end=0, tsc_hz_used=0, draw_tsc=0,
                pages_free=0, message=bytes(64), context=empty_context())


def empty_context():
    fields = {sc.name: 0 for sc in CpuContext.subcons}
    fields["fxsave"] = bytes(512)
    fields["_pad0"] = bytes(12)
    return fields

assert offset_of(Handoff, "context") % 16 == 0, "FXSAVE area must be 16-byte aligned"
