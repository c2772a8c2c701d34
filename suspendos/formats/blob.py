"""The blob container: what a host loads into the reserved region and calls.

A header, a segment table, then segment data. A loader copies each segment's file bytes to
its address and zero-fills up to mem_size, checks the CRC32 (computed over the whole blob
with the crc32 field zero) first, and refuses a blob whose header does not parse.
"""
import zlib

import construct as c

from .common import Constants, FormatError, build, parse, u16, u32, u64

BLOB_MAGIC = b"SOSBLOB\0"
BLOB_VERSION = 1

SEGMENT_KIND = Constants("SOS_SEG_", "What a blob segment holds.", TRAMPOLINE=1, HANDOFF=2,
                         TEXT=3, RODATA=4, DATA=5, BSS=6, TABLES=7)
SEGMENT_PERM = Constants("SOS_PERM_", "Segment permissions (as mapped for the payload).",
                         R=4, W=2, X=1)

BlobHeader = c.Struct(
    "magic" / c.Const(BLOB_MAGIC),
    "version" / u16,
    "header_size" / u16,
    "segment_count" / u32,
    "blob_size" / u64,
    "crc32" / u32,
    "flags" / u32,
    "load_base" / u64,
    "reserved_size" / u64,
    "entry" / u64,              # the trampoline: status = entry(handoff)
    "handoff" / u64,            # address of the handoff block
    "payload_info" / u64,       # address of the payload's build-time configuration
)

Segment = c.Struct(
    "addr" / u64,
    "file_offset" / u64,
    "file_size" / u64,
    "mem_size" / u64,
    "kind" / u32,
    "perm" / u32,
)

MAX_SEGMENTS = 32


def crc_of(blob):
    """CRC32 of the blob with its crc32 field taken as zero."""
    off = BlobHeader.subcons[0].sizeof() + 2 + 2 + 4 + 8
    return zlib.crc32(bytes(blob[:off]) + b"\0\0\0\0" + bytes(blob[off + 4:]))


def pack(header, segments, payloads):
    """header: dict without sizes; segments: list of dicts; payloads: bytes per segment."""
    hsize = BlobHeader.sizeof()
    offset = hsize + Segment.sizeof() * len(segments)
    table = []
    for seg, data in zip(segments, payloads):
        seg = dict(seg, file_offset=offset if data else 0, file_size=len(data))
        table.append(seg)
        offset += len(data)
    head = dict(header, version=BLOB_VERSION, header_size=hsize,
                segment_count=len(segments), blob_size=offset, crc32=0)
    blob = bytearray(build(BlobHeader, head, "blob header"))
    for seg in table:
        blob += build(Segment, seg, "blob segment")
    for data in payloads:
        blob += data
    crc = crc_of(blob)
    head["crc32"] = crc
    blob[:hsize] = build(BlobHeader, head, "blob header")
    return bytes(blob)


def unpack(blob):
    """Parse and verify a blob; returns (header, [segments]). Raises FormatError."""
    hsize = BlobHeader.sizeof()
    if len(blob) < hsize:
        raise FormatError(f"blob: {len(blob)} bytes is shorter than its header ({hsize})")
    head = parse(BlobHeader, blob[:hsize], "blob header")
    if head.version != BLOB_VERSION:
        raise FormatError(f"blob: version {head.version}, this tool reads {BLOB_VERSION}")
    if head.blob_size != len(blob):
        raise FormatError(f"blob: header says {head.blob_size} bytes, file has {len(blob)}")
    if head.segment_count > MAX_SEGMENTS:
        raise FormatError(f"blob: {head.segment_count} segments (at most {MAX_SEGMENTS})")
    if crc_of(blob) != head.crc32:
        raise FormatError("blob: checksum mismatch (the file is damaged)")
    segs = []
    for i in range(head.segment_count):
        off = hsize + i * Segment.sizeof()
        seg = parse(Segment, blob[off:off + Segment.sizeof()], f"blob segment {i}")
        if seg.file_size and seg.file_offset + seg.file_size > len(blob):
            raise FormatError(f"blob: segment {i} data lies past the end of the file")
        if seg.file_size > seg.mem_size:
            raise FormatError(f"blob: segment {i} file size exceeds its memory size")
        end = head.load_base + head.reserved_size
        if seg.addr < head.load_base or seg.addr + seg.mem_size > end:
            raise FormatError(f"blob: segment {i} at {seg.addr:#x} lies outside the reserved region")
        segs.append(seg)
    return head, segs
