"""The memory list (what to save) and the sector list (where to write it).

Both are built by the builder from the target description and carried in the blob; the image
carries copies so that it describes itself.
"""
import construct as c

from .common import u64

MemRange = c.Struct(
    "start" / u64,  # physical byte address, page-aligned
    "end" / u64,    # exclusive, page-aligned
)

Extent = c.Struct(
    "lba" / u64,    # first 512-byte sector
    "count" / u64,  # number of sectors
)


def memory_list(ranges):
    return b"".join(MemRange.build(dict(start=s, end=e)) for s, e in ranges)


def sector_list(extents):
    return b"".join(Extent.build(dict(lba=l, count=n)) for l, n in extents)
