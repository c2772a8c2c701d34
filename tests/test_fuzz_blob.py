"""Fuzzing the blob readers: suspendos.formats.blob.unpack and suspendos.inspect.inspect_blob.

Whatever the bytes, they return a result or raise the project's own exception
(SuspendosError), never another exception type and never a hang (hypothesis deadlines).
Inputs: random bytes; a real blob (the QEMU target's, built once) with bit flips,
truncation and insertions; the same with the blob size and CRC32 rewritten so the checks
behind the checksum run; and field-level mutations (header, segment table, the payload's
configuration, its memory and sector lists, page-table entries) with the CRC rewritten, so
inspect_blob's decoding of lists and page tables runs on hostile values.
"""
import os
import re
import signal
import struct
from contextlib import contextmanager
from datetime import timedelta

import pytest
from hypothesis import (HealthCheck, currently_in_test_context, event, given, settings,
                        strategies as st)

from suspendos.errors import SuspendosError
from suspendos.formats import blob as blobfmt
from suspendos.formats.common import offset_of
from suspendos.formats.lists import Extent, MemRange
from suspendos.formats.payload_info import PayloadInfo
from suspendos.inspect import BlobMemory, inspect_blob


def examples(n):
    """n, scaled by SUSPENDOS_FUZZ_SCALE (bench/fuzz_long.sh runs these tests longer)."""
    return max(1, int(n * float(os.environ.get("SUSPENDOS_FUZZ_SCALE", "1"))))

# The deadline guards against a parser that hangs or loops on bad input; it is not a
# speed claim, so it is generous enough for a loaded 2-core machine.
FAST = settings(deadline=timedelta(seconds=20), max_examples=examples(300),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

HSIZE = blobfmt.BlobHeader.sizeof()
SSIZE = blobfmt.Segment.sizeof()
CRC_OFF = offset_of(blobfmt.BlobHeader, "crc32")
SIZE_OFF = offset_of(blobfmt.BlobHeader, "blob_size")


@pytest.fixture(scope="module")
def blob():
    from suspendos.build.payload import build_payload
    from suspendos.target.qemu import qemu_target
    t = qemu_target(256 << 20, pci={"ahci": ("00:1f.2", 0xfebf1000),
                                    "vga": ("00:01.0", 0xfd000000, 1 << 24)})
    data = build_payload(t).blob
    inspect_blob(data)  # the unmutated blob reads
    return data


def fixed(data, size=True):
    """The blob with blob_size (optionally) and crc32 rewritten to match its bytes."""
    b = bytearray(data)
    if len(b) < HSIZE:
        return bytes(b)
    if size:
        b[SIZE_OFF:SIZE_OFF + 8] = struct.pack("<Q", len(b))
    b[CRC_OFF:CRC_OFF + 4] = struct.pack("<I", blobfmt.crc_of(b))
    return bytes(b)


def note(what, e=None):
    """One hypothesis event per kind of outcome (the message without its numbers)."""
    if currently_in_test_context():
        event(f"{what}: " + (re.sub(r"0x[0-9a-f]+|\d+", "N", str(e))[:60] if e else "ok"))


def check_unpack(data):
    """unpack gives a result that keeps its promises, or the project's own error."""
    try:
        head, segs = blobfmt.unpack(data)
    except SuspendosError as e:
        note("unpack", e)
        return None
    note("unpack")
    assert head.blob_size == len(data)
    assert len(segs) == head.segment_count <= blobfmt.MAX_SEGMENTS
    for s in segs:
        assert s.file_size <= s.mem_size
        assert not s.file_size or s.file_offset + s.file_size <= len(data)
        assert head.load_base <= s.addr and s.addr + s.mem_size <= head.load_base + head.reserved_size
    return head, segs


def check_inspect(data):
    try:
        r = inspect_blob(data)
    except SuspendosError as e:
        note("inspect", e)
        return None
    note("inspect")
    assert r["blob_size"] == len(data)
    return r


# ---- mutations ----------------------------------------------------------------------------

INTERESTING = [0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 33, 64, 127, 128, 255, 256, 511, 512,
               4095, 4096, 4097, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x1000000, 2**31 - 1, 2**31,
               2**32 - 1, 2**32, 2**48, 2**52, 2**63 - 1, 2**63, 2**64 - 4096, 2**64 - 1]


def field_value(original, width):
    mask = (1 << (8 * width)) - 1
    return st.one_of(st.sampled_from(INTERESTING).map(lambda v: v & mask),
                     st.integers(0, mask),
                     st.integers(-4096, 4096).map(lambda d: (original + d) & mask))


@st.composite
def byte_mutations(draw, data, hot=None):
    """A list of flips / byte sets / insertions / deletions, positions biased to `hot`
    (a list of (start, end) ranges) when given."""
    b = bytearray(data)
    n = draw(st.integers(1, 6))
    for _ in range(n):
        if not b:
            break
        if hot and draw(st.booleans()):
            lo, hi = draw(st.sampled_from(hot))
            pos = draw(st.integers(lo, max(lo, min(hi, len(b)) - 1)))
        else:
            pos = draw(st.integers(0, len(b) - 1))
        pos = min(pos, len(b) - 1)
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if kind == "flip":
            b[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            b[pos] = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80, 1]) | st.integers(0, 255))
        elif kind == "insert":
            b[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del b[pos:pos + draw(st.integers(1, 64))]
        else:
            del b[pos:]
    return bytes(b)


def blob_layout(data):
    """(file ranges worth hitting, [(file offset, width, field name)] of structured fields)."""
    mem = BlobMemory(data)
    head, segs = mem.header, mem.segments
    hot = [(0, HSIZE), (HSIZE, HSIZE + SSIZE * len(segs))]
    fields = []

    def add_struct(file_off, struct_, prefix):
        off = file_off
        for sc in struct_.subcons:
            size = sc.sizeof()
            if size in (1, 2, 4, 8) and not sc.name.startswith("_"):
                fields.append((off, size, f"{prefix}.{sc.name}"))
            off += size

    def file_offset(addr):
        for s in segs:
            if s.addr <= addr < s.addr + s.file_size:
                return s.file_offset + addr - s.addr
        return None

    add_struct(0, blobfmt.BlobHeader, "header")
    for i in range(len(segs)):
        add_struct(HSIZE + i * SSIZE, blobfmt.Segment, f"segment[{i}]")
    for s in segs:
        if s.file_size:
            hot.append((s.file_offset, s.file_offset + s.file_size))
    pi = file_offset(head.payload_info)
    info = PayloadInfo.parse(mem.read(head.payload_info, PayloadInfo.sizeof()))
    add_struct(pi, PayloadInfo, "payload_info")
    hot.append((pi, pi + PayloadInfo.sizeof()))
    for i in range(info.memory_count):
        o = file_offset(info.memory_list + i * MemRange.sizeof())
        if o is not None:
            add_struct(o, MemRange, f"memory[{i}]")
    for i in range(info.sector_count):
        o = file_offset(info.sector_list + i * Extent.sizeof())
        if o is not None:
            add_struct(o, Extent, f"sector[{i}]")

    # Page-table entries: every present entry of every table reachable from CR3 that has
    # file bytes (tables are mostly zero-filled by the loader past their file bytes).
    def tables(addr, level):
        if level > 3:
            return
        try:
            entries = struct.unpack("<512Q", mem.read(addr, 4096))
        except SuspendosError:
            return
        for i, e in enumerate(entries):
            eo = file_offset(addr + 8 * i)
            if e & 1 and eo is not None:
                # An entry may have only its low bytes in the file (the rest zero-filled).
                width = next(w for w in (8, 4, 2, 1) if file_offset(addr + 8 * i + w - 1) == eo + w - 1)
                hot.append((eo, eo + width))
                fields.append((eo, width, f"pt{level}[{i}]"))
            if e & 1:
                if level < 3 and not e & 0x80:
                    tables(e & 0x000FFFFFFFFFF000, level + 1)

    tables(info.pml4, 0)
    return hot, fields


@pytest.fixture(scope="module")
def layout(blob):
    return blob_layout(blob)


# ---- the properties ---------------------------------------------------------------------

@st.composite
def random_blobs(draw):
    """A plausible header (magic, version, small segment count) over random segments and
    data, with blob_size and CRC right: reaches the segment checks from random values."""
    nseg = draw(st.integers(0, blobfmt.MAX_SEGMENTS + 2))
    load_base = draw(st.sampled_from([0, 0x1000000, 2**64 - 4096]) | st.integers(0, 2**64 - 1))
    head = struct.pack("<8sHHIQIIQQQQQ", blobfmt.BLOB_MAGIC, blobfmt.BLOB_VERSION, HSIZE, nseg,
                       0, 0, 0, load_base,
                       draw(st.sampled_from([0, 4096, 2 << 20]) | st.integers(0, 2**64 - 1)),
                       *(draw(st.integers(0, 2**64 - 1)) for _ in range(3)))
    body = draw(st.binary(min_size=0, max_size=SSIZE * nseg + 256))
    return fixed(head + body)


@FAST
@given(data=st.one_of(st.binary(max_size=4096),
                      st.binary(min_size=HSIZE, max_size=4096),
                      st.binary(max_size=400).map(lambda b: blobfmt.BLOB_MAGIC + b),
                      random_blobs()))
def test_unpack_random_bytes(data):
    check_unpack(data)
    check_unpack(fixed(data))
    check_inspect(fixed(data))


@FAST
@given(st.data())
def test_unpack_and_inspect_mutated_blob(blob, layout, data):
    mutated = data.draw(byte_mutations(blob, hot=layout[0]))
    check_unpack(mutated)           # mostly the CRC catches it
    repaired = fixed(mutated, size=data.draw(st.booleans()))
    check_unpack(repaired)          # the checks behind the CRC
    check_inspect(repaired)


@FAST
@given(st.data())
def test_inspect_field_mutations(blob, layout, data):
    """Hostile values in the header, segments, configuration, lists and page tables."""
    _, fields = layout
    groups = {}
    for f in fields:   # header, segment, payload_info, memory, sector, pt0..pt3
        groups.setdefault(f[2].split("[")[0].split(".")[0], []).append(f)
    b = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 4))):
        group = data.draw(st.sampled_from(sorted(groups)))
        off, width, _name = data.draw(st.sampled_from(groups[group]))
        fmt = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}[width]
        original = struct.unpack_from(fmt, b, off)[0]
        struct.pack_into(fmt, b, off, data.draw(field_value(original, width)))
    repaired = fixed(bytes(b), size=False)
    check_unpack(repaired)
    check_inspect(repaired)


# ---- regressions: hangs found by review of the inspector (see tests/fuzz/README.md) --------

@contextmanager
def time_limit(seconds):
    """TimeoutError in the block after `seconds`. The timer keeps firing every 50 ms: an
    exception raised while a gc callback runs (hypothesis installs one) is swallowed."""
    def fire(*_):
        raise TimeoutError(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.05)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def patched(blob, layout, values, pages=()):
    """The blob with fields set by name ({"payload_info.pml4": v}) and file bytes replaced
    ([(file offset, bytes)]), CRC rewritten."""
    _, fields = layout
    where = {name: (off, width) for off, width, name in fields}
    b = bytearray(blob)
    for name, v in values.items():
        off, width = where[name]
        b[off:off + width] = v.to_bytes(width, "little")
    for off, data in pages:
        b[off:off + len(data)] = data
    return fixed(bytes(b), size=False)


def last_segment(blob):
    _, segs = blobfmt.unpack(blob)
    return max(enumerate(segs), key=lambda i_s: i_s[1].addr)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("made", ["patched", "atheris"])
def test_inspect_huge_memory_count_is_bounded(blob, layout, made):
    if made == "patched":
        i, last = last_segment(blob)       # grown, it overlaps no other segment
        evil = patched(blob, layout, {
            "header.reserved_size": 1 << 40,
            f"segment[{i}].mem_size": 1 << 36,
            "payload_info.memory_list": -(-(last.addr + last.file_size) // 16) * 16,
            "payload_info.memory_count": 0xFFFFFFFF,
        })
    else:
        # What atheris found on its own (tests/fuzz/atheris_parsers.py blob): one segment
        # at 0 of 192 GiB, payload_info inside its file bytes, memory_count 1112756051.
        evil = ATHERIS_MEMORY_COUNT
    with time_limit(1.0):
        check_inspect(evil)


ATHERIS_MEMORY_COUNT = bytes.fromhex(
    "534f53424c4f4200010000000100000079000000000000004d615d4b00000000000000000000000053"
    "4f53424c4f429200000000000000000100000001000000080000000000000000000000000000000000"
    "000000000000780000000000000000080000300000000000000000000000ff0000000000000000")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_inspect_self_referencing_page_table_is_bounded(blob, layout):
    _, segs = blobfmt.unpack(blob)
    text = next(s for s in segs if s.kind == blobfmt.SEGMENT_KIND.TEXT)
    page = -(-text.addr // 4096) * 4096            # a page with file bytes we can fill
    assert page + 4096 <= text.addr + text.file_size
    table = struct.pack("<512Q", *[page | 0x23] * 512)
    evil = patched(blob, layout, {"payload_info.pml4": page},
                   [(text.file_offset + page - text.addr, table)])
    with time_limit(1.0):
        check_inspect(evil)
