"""The on-disk image: self-describing from its first sector.

Image byte offsets count from the first sector of the first extent and continue across the
extents in order. Layout:

    [0, 4096)        ImageHeader, written last (a torn write never looks like an image)
    [4096, ...)      Extent[extent_count], then MemRange[range_count]
    chunks_offset    chunks, back to back, each: ChunkHeader, zero bitmap, padding to
                     header_size, stored data (stored_size bytes), padding to CHUNK_ALIGN

A chunk covers page_count consecutive pages of the saved-page sequence (the memory list's
pages in order), starting at first_page. Bit i of the zero bitmap set means page i is all
zeros and not stored. A chunk with CHUNK_FLAGS.FREE has a second bitmap of the same size
right after the zero bitmap: bit i set means page i was free in the host's page allocator
at the handoff, so it is neither stored nor restored (zero bit clear; with the image flag
FREE_ZERO or FREE_POISON the resume fills it with zeros or 0xaa bytes, because the host's
allocator expects that of free pages). data_pages = page_count - zero - free pages; the
header checksum (and the AEAD associated data) covers both bitmaps. The stored data is the remaining pages, raw or LZ4-compressed (one LZ4
block), optionally encrypted; data_xxh64 covers the stored bytes as they are on disk.

Raw chunks have header_size = one logical block (512, or 4096 on 4096-byte-block disks) and
stored_size = data_pages * 4096, so their data stays block-aligned and the writer can DMA
straight from the saved pages. Extents count the disk's logical blocks; the header's
block_size says which (0, in images written before it existed, means 512). LZ4 chunks hold one LZ4
block (lz4 doc/lz4_Block_format.md) of the concatenated data pages; a chunk whose block
would not be smaller than the pages is stored raw (encoding RAW, header_size still the
compact one). Chunks follow each other at CHUNK_ALIGN; the stream's last sector is padded.

Encryption (ChaCha20-Poly1305, RFC 8439), per chunk: the stored bytes are the ciphertext of
what would otherwise be stored; nonce = image_id[0:4] || chunk index (u64 little-endian);
associated data = image_id || the chunk header and bitmap with tag, data_xxh64 and
header_xxh64 zeroed; the tag goes in the chunk header. data_xxh64 covers the ciphertext, so
`image verify` finds damage without the key. The image header is authenticated by
key_check: the tag of sealing an empty message with nonce image_id[0:4] || 2^64-1 and
associated data = the header struct with state, key_check and header_xxh64 zeroed (state is
left out so that marking an image resumed does not need the key).
"""
import construct as c

from .common import (PAGE_SIZE, SECTOR_SIZE, Constants, align_up, magic32, offset_of, u16,
                     u32, u64)
from .context import CpuContext
from .lists import Extent, MemRange

IMAGE_MAGIC = b"SOSIMAGE"
IMAGE_VERSION = 1
HEADER_BLOCK = 4096
CHUNK_MAGIC = magic32("SOSC")
CHUNK_ALIGN = 16
MAX_CHUNK_PAGES = 1024
RAW_CHUNK_HEADER = SECTOR_SIZE   # raw chunks keep their data sector-aligned (zero-copy DMA)

IMAGE_STATE = Constants("SOS_IMAGE_", "ImageHeader.state.", VALID=1, RESUMED=2)
CHUNK_ENCODING = Constants("SOS_CHUNK_", "ChunkHeader.encoding.", RAW=0, LZ4=1)
CHUNK_FLAGS = Constants("SOS_CHUNKF_", "ChunkHeader.flags.", ENCRYPTED=1, FREE=2)
IMAGE_FLAGS = Constants("SOS_IMAGEF_", "ImageHeader.flags: how free pages are restored.",
                        FREE_ZERO=1, FREE_POISON=2)

ImageHeader = c.Struct(
    "magic" / c.Const(IMAGE_MAGIC),
    "version" / u16,
    "header_size" / u16,
    "state" / u32,
    "flags" / u32,
    "compression" / u32,
    "checksum" / u32,
    "encryption" / u32,
    "page_size" / u32,
    "chunk_pages" / u32,
    "range_count" / u32,
    "extent_count" / u32,
    "image_id" / c.Bytes(16),
    "memmap_hash" / u64,
    "extents_offset" / u64,
    "ranges_offset" / u64,
    "chunks_offset" / u64,
    "chunk_count" / u64,
    "data_end" / u64,            # first byte after the last chunk
    "pages_total" / u64,
    "pages_data" / u64,
    "pages_zero" / u64,
    "raw_bytes" / u64,
    "stored_bytes" / u64,
    "tables_xxh64" / u64,        # over the extent and range tables
    "key_check" / c.Bytes(16),   # AEAD tag over the header; proves the key (encrypted images)
    "header_xxh64" / u64,        # over this struct with this field zero
    "block_size" / u32,          # the disk's logical block size; 0 in older images: 512
    "pages_free" / u32,          # pages left out: free in the host's allocator (free bitmaps)
    "context" / CpuContext,
)

ChunkHeader = c.Struct(
    "magic" / u32,
    "header_size" / u16,         # fixed part + bitmap + padding
    "flags" / u16,
    "index" / u64,
    "first_page" / u64,
    "page_count" / u32,
    "data_pages" / u32,
    "encoding" / u32,
    "stored_size" / u32,
    "data_xxh64" / u64,
    "tag" / c.Bytes(16),         # Poly1305 tag (encrypted chunks)
    "header_xxh64" / u64,        # over fixed part + bitmap, with this field zero
)

assert ImageHeader.sizeof() <= HEADER_BLOCK


def bitmap_bytes(page_count):
    return align_up((page_count + 7) // 8, 8)


def bitmaps_bytes(page_count, flags):
    """The zero bitmap, and the free bitmap after it when the chunk has CHUNK_FLAGS.FREE."""
    return bitmap_bytes(page_count) * (2 if flags & CHUNK_FLAGS.FREE else 1)


def chunk_header_size(page_count, encoding, flags=0):
    if encoding == CHUNK_ENCODING.RAW:
        return RAW_CHUNK_HEADER
    return align_up(ChunkHeader.sizeof() + bitmaps_bytes(page_count, flags), CHUNK_ALIGN)


def tables_size(extent_count, range_count):
    return extent_count * Extent.sizeof() + range_count * MemRange.sizeof()


def chunks_offset(extent_count, range_count):
    return align_up(HEADER_BLOCK + tables_size(extent_count, range_count), PAGE_SIZE)


def raw_chunk_header(block_size=SECTOR_SIZE):
    """A raw chunk's header fills one logical block (its data stays block-aligned)."""
    return max(RAW_CHUNK_HEADER, block_size)


def worst_case_bytes(pages, extent_count, range_count, chunk_pages, block_size=SECTOR_SIZE):
    """The most bytes an image of `pages` pages can need: every page stored raw."""
    chunks = -(-pages // chunk_pages)
    return align_up(chunks_offset(extent_count, range_count)
                    + chunks * raw_chunk_header(block_size) + pages * PAGE_SIZE, block_size)
assert offset_of(ImageHeader, "context") % 16 == 0


HEADER_NONCE_INDEX = (1 << 64) - 1


def nonce(image_id, index):
    return bytes(image_id[:4]) + index.to_bytes(8, "little")


def zeroed(struct, raw, names):
    out = bytearray(raw)
    for n in names:
        off = offset_of(struct, n)
        size = next(sc.sizeof() for sc in struct.subcons if sc.name == n)
        out[off:off + size] = bytes(size)
    return bytes(out)


def chunk_aad(image_id, header_and_bitmap):
    return bytes(image_id) + zeroed(ChunkHeader, header_and_bitmap,
                                    ("tag", "data_xxh64", "header_xxh64"))


def header_aad(header_raw):
    return zeroed(ImageHeader, header_raw[:ImageHeader.sizeof()],
                  ("state", "key_check", "header_xxh64"))
