"""The handoff block: the ABI between the host and the payload.

The host finds it at blob.handoff, fills the "host fills" fields, and calls blob.entry with
its address in RDI (System V). The payload writes status and statistics; the trampoline
stores the host's CPU context in it. CPU state at entry: 64-bit mode, CPL 0, interrupts
disabled, the reserved region identity-mapped and writable in the host's page tables.
"""
import construct as c

from .common import Constants, magic32, offset_of, u16, u32, u64
from .context import CpuContext
from .smp import MAX_CPUS, CpuSlot

HANDOFF_MAGIC = magic32("SOSH")
HANDOFF_REVISION = 3

HANDOFF_FLAGS = Constants(
    "SOS_HANDOFF_", "Bits of handoff.flags, set by the host.",
    PAUSE_BEFORE_READ=1 << 0,    # print a pause line and wait for a byte on serial
    PAUSE_BEFORE_RETURN=1 << 1,  # same, after the header is written
    QUIET=1 << 2,                # no log lines on serial
    RAW_CEILING=1 << 3,          # write no image: stream a constant buffer through the disk
                                 # and extents (as much as the memory list), to measure the disk
    PAUSE_BEFORE_HEADER=1 << 4,  # same, after the data's flush, before the header is written
)

# How tsc_hz_used was obtained. FALLBACK means neither the host gave a plausible rate nor
# the PIT calibration produced one: every time and deadline then assumes 5 GHz, so callers
# must say so rather than print speeds (drivers/timer.h).
TSC_SOURCE = Constants(
    "SOS_TSC_", "handoff.tsc_source: where tsc_hz_used came from.",
    UNKNOWN=0,                   # not reported (a payload that predates the field)
    HOST=1,                      # the host's handoff.tsc_hz, in the plausible range
    PIT=2,                       # calibrated against PIT channel 2 (3 x 10 ms gates)
    FALLBACK=3,                  # neither: TIMER_FALLBACK_HZ, times are not to be trusted
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
    "tsc_source" / u32,           # TSC_SOURCE: how tsc_hz_used was obtained
    "_pad1" / c.Bytes(4),
    # CPUs (formats/smp.py): host fills cpu_count and the slots, payload returns the rest
    "cpu_count" / u32,            # APs handed in: cpus[0 .. cpu_count)
    "cpus_used" / u32,            # CPUs that worked in the run, the boot CPU included
    "cpus_missing" / u32,         # APs that did not answer within the deadline (left out)
    "fault_cpu" / u32,            # APIC id of the CPU that faulted (CPU_FAULT)
    "disk_tsc" / u64,             # boot CPU in the chunk writes: issuing, waiting for the disk
    "compute_tsc" / u64,          # boot CPU preparing chunks or waiting for the other CPUs
    "cpus" / c.Array(MAX_CPUS, CpuSlot),
    "_pad3" / c.Bytes(8),         # the FXSAVE area in the context starts 16-byte aligned
    "context" / CpuContext,       # the host's state, saved by the trampoline
)


def new_handoff():
    return dict(magic=HANDOFF_MAGIC, revision=HANDOFF_REVISION, size=Handoff.sizeof(),
                flags=0, serial_port=0, _pad0=b"\0\0", tsc_hz=0, memmap=0, memmap_count=0,
                _pad2=bytes(4), free_list=0, free_count=0, free_fill=0, status=0, fault_vector=0,
                fault_error_code=0, fault_rip=0, fault_address=0, failed_lba=0, detail=0,
                pages_total=0, pages_saved=0, zero_pages=0, bytes_written=0, raw_bytes=0,
                chunks=0, tsc_start=0, tsc_end=0, tsc_hz_used=0, draw_tsc=0,
                pages_free=0, message=bytes(64), tsc_source=0, _pad1=bytes(4), cpu_count=0,
                cpus_used=0, cpus_missing=0, fault_cpu=0, disk_tsc=0, compute_tsc=0,
                cpus=[empty_slot() for _ in range(MAX_CPUS)], _pad3=bytes(8),
                context=empty_context())


def empty_slot():
    return dict(apic_id=0, state=0, command=0, _pad0=bytes(4), entry=0, arg=0)


def empty_context():
    fields = {sc.name: 0 for sc in CpuContext.subcons}
    fields["fxsave"] = bytes(512)
    fields["_pad0"] = bytes(12)
    return fields

assert offset_of(Handoff, "context") % 16 == 0, "FXSAVE area must be 16-byte aligned"
