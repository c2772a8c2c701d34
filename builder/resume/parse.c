/*
 * The checks of the image header, the tables and the chunk headers, on buffers (parse.h).
 * Every field is checked before it is used as a size, count or offset.
 */
#include <stdarg.h>
#include "parse.h"
#include "printf.h"
#include "string.h"
#include "xxh64.h"

#define PAGE   SOS_PAGE_SIZE
#define CHUNK_FIXED sizeof(struct sos_chunk_header)

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

uint32_t parse_block_size(const struct sos_image_header *h)
{
    return h->block_size ? h->block_size : 512;
}

uint64_t parse_raw_header_size(const struct sos_image_header *h)
{
    uint64_t block = parse_block_size(h);
    return block > SOS_RAW_CHUNK_HEADER ? block : SOS_RAW_CHUNK_HEADER;
}

uint64_t parse_bitmap_bytes(uint32_t pages)
{
    return align_up(((uint64_t)pages + 7) / 8, 8);
}

uint64_t parse_bitmaps_bytes(uint32_t pages, uint32_t flags)
{
    return parse_bitmap_bytes(pages) * ((flags & SOS_CHUNKF_FREE) ? 2 : 1);
}

uint64_t parse_header_hash(const struct sos_image_header *h)
{
    struct sos_image_header copy;
    memcpy(&copy, h, sizeof copy);
    copy.header_xxh64 = 0;
    return xxh64(&copy, sizeof copy, 0);
}

__attribute__((format(printf, 3, 4)))
static int bad(struct parse_error *err, enum resume_reason why, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err->why = why;
    kvsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int parse_header(const struct sos_image_header *h, const struct image_expect *e,
                 struct parse_error *err)
{
    const struct sos_extent *ext = e->extents;
    uint64_t ext_bytes = (uint64_t)e->extent_count * sizeof(struct sos_extent);
    uint64_t rng_bytes = (uint64_t)e->range_count * sizeof(struct sos_mem_range);
    uint64_t pages = 0;
    for (uint32_t i = 0; i < e->range_count; i++)
        pages += (e->ranges[i].end - e->ranges[i].start) / PAGE;

    if (memcmp(h->magic, SOS_IMAGE_MAGIC, SOS_IMAGE_MAGIC_LEN))
        return bad(err, REFUSE_NO_IMAGE, "no image at LBA %lu (an interrupted or failed "
                   "suspend leaves none)", ext[0].lba);
    if (h->version != SOS_IMAGE_VERSION)
        return bad(err, REFUSE_VERSION, "image version %u, this loader reads %u", h->version,
                   SOS_IMAGE_VERSION);
    if (parse_header_hash(h) != h->header_xxh64)
        return bad(err, REFUSE_HEADER_DAMAGED, "image header checksum mismatch (the header is "
                   "damaged)");
    if (h->state == SOS_IMAGE_RESUMED)
        return bad(err, REFUSE_ALREADY_RESUMED, "image already resumed (an image is resumed "
                   "once)");
    if (h->state != SOS_IMAGE_VALID)
        return bad(err, REFUSE_HEADER_DAMAGED, "image state %u is neither valid nor resumed",
                   h->state);
    if (h->memmap_hash != e->memmap_hash)
        return bad(err, REFUSE_OTHER_MACHINE, "image from another machine or memory size "
                   "(memory map hash 0x%lx, ours 0x%lx)", h->memmap_hash, e->memmap_hash);
    if (h->header_size != sizeof *h || h->page_size != PAGE ||
        h->checksum != SOS_CHECKSUM_XXH64 || h->compression > SOS_COMPRESS_LZ4 ||
        h->encryption > SOS_ENCRYPT_CHACHA20_POLY1305 || !h->chunk_pages ||
        h->chunk_pages > SOS_MAX_CHUNK_PAGES)
        return bad(err, REFUSE_UNSUPPORTED, "header: size %u, page size %u, checksum %u, "
                   "compression %u, encryption %u, chunk pages %u", h->header_size,
                   h->page_size, h->checksum, h->compression, h->encryption, h->chunk_pages);
    if (parse_block_size(h) != e->block_size)
        return bad(err, REFUSE_EXTENTS_DIFFER, "the image was written in %u-byte blocks, this "
                   "disk has %u", parse_block_size(h), e->block_size);
    if (h->extent_count != e->extent_count)
        return bad(err, REFUSE_EXTENTS_DIFFER, "the image has %u extents, this target %u",
                   h->extent_count, e->extent_count);
    if (h->range_count != e->range_count || h->pages_total != pages)
        return bad(err, REFUSE_RANGES_DIFFER, "the image has %u ranges (%lu pages), this "
                   "target %u (%lu pages)", h->range_count, h->pages_total, e->range_count,
                   pages);
    if (h->extents_offset != SOS_IMAGE_HEADER_BLOCK ||
        h->ranges_offset != SOS_IMAGE_HEADER_BLOCK + ext_bytes ||
        h->chunks_offset != align_up(SOS_IMAGE_HEADER_BLOCK + ext_bytes + rng_bytes, PAGE) ||
        h->chunk_count != (pages + h->chunk_pages - 1) / h->chunk_pages ||
        (uint64_t)h->pages_data + h->pages_zero + h->pages_free != pages ||
        h->pages_data > pages || h->pages_zero > pages || h->pages_free > pages ||
        h->data_end < h->chunks_offset || h->stored_bytes != h->data_end - h->chunks_offset ||
        h->data_end > e->capacity)
        return bad(err, REFUSE_HEADER_DAMAGED, "header fields disagree (tables at %lu/%lu, "
                   "chunks at %lu, %lu chunks, data end %lu of %lu bytes)", h->extents_offset,
                   h->ranges_offset, h->chunks_offset, h->chunk_count, h->data_end,
                   e->capacity);

    /* Truncated: the disk must hold every sector the image uses. */
    uint64_t block = e->block_size;
    uint64_t left = align_up(h->data_end, block) / block;
    for (uint32_t i = 0; i < e->extent_count && left; i++) {
        uint64_t use = left < ext[i].count ? left : ext[i].count;
        if (ext[i].lba + use > e->disk_sectors || ext[i].lba + use < ext[i].lba)
            return bad(err, REFUSE_TRUNCATED, "truncated disk: the image needs sectors up to "
                       "%lu, the disk has %lu", ext[i].lba + use, e->disk_sectors);
        left -= use;
    }
    return 0;
}

int parse_tables(const uint8_t *tables, const struct sos_image_header *h,
                 const struct image_expect *e, struct parse_error *err)
{
    uint64_t ext_bytes = (uint64_t)e->extent_count * sizeof(struct sos_extent);
    uint64_t rng_bytes = (uint64_t)e->range_count * sizeof(struct sos_mem_range);
    if (xxh64(tables, ext_bytes + rng_bytes, 0) != h->tables_xxh64)
        return bad(err, REFUSE_TABLES_DAMAGED, "extent/range tables checksum mismatch "
                   "(damaged)");
    if (memcmp(tables, e->extents, ext_bytes))
        return bad(err, REFUSE_EXTENTS_DIFFER, "the image's extent table is not this target's "
                   "sector list (an image written for other extents)");
    if (memcmp(tables + ext_bytes, e->ranges, rng_bytes))
        return bad(err, REFUSE_RANGES_DIFFER, "the image's range table is not this target's "
                   "memory list");
    return 0;
}

const char *parse_chunk_header(const uint8_t *p, uint64_t avail,
                               const struct sos_image_header *ih, struct parsed_chunk *c)
{
    struct sos_chunk_header *h = &c->h;
    uint64_t left = ih->pages_total - c->first_page;
    uint32_t expect = left < ih->chunk_pages ? (uint32_t)left : ih->chunk_pages;
    if (avail < CHUNK_FIXED)
        return "missing: the image's data ends before it";
    memcpy(h, p, CHUNK_FIXED);
    if (h->magic != SOS_CHUNK_MAGIC)
        return "no chunk magic";
    if (h->page_count != expect)
        return "page count differs from the header's chunk size";
    uint64_t blen = parse_bitmap_bytes(h->page_count);
    int has_free = (h->flags & SOS_CHUNKF_FREE) != 0;
    if (blen > sizeof c->bitmap ||
        avail < CHUNK_FIXED + parse_bitmaps_bytes(h->page_count, h->flags))
        return "runs past the image's data end";
    memcpy(c->bitmap, p + CHUNK_FIXED, blen);
    memset(c->free_bitmap, 0, sizeof c->free_bitmap);
    if (has_free)
        memcpy(c->free_bitmap, p + CHUNK_FIXED + blen, blen);
    uint64_t sum = h->header_xxh64;
    struct xxh64_state st;
    h->header_xxh64 = 0;
    xxh64_reset(&st, 0);
    xxh64_update(&st, h, CHUNK_FIXED);
    xxh64_update(&st, c->bitmap, blen);
    if (has_free)
        xxh64_update(&st, c->free_bitmap, blen);
    h->header_xxh64 = sum;
    if (xxh64_digest(&st) != sum)
        return "header checksum mismatch";
    if (h->index != c->index || h->first_page != c->first_page)
        return "index or first page out of sequence";
    uint64_t compact = align_up(CHUNK_FIXED + parse_bitmaps_bytes(h->page_count, h->flags),
                                SOS_CHUNK_ALIGN);
    if (h->header_size != parse_raw_header_size(ih) && h->header_size != compact)
        return "bad header size";
    if ((h->flags & ~(uint32_t)SOS_CHUNKF_FREE) != (ih->encryption ? SOS_CHUNKF_ENCRYPTED : 0))
        return "encryption flag differs from the image's";
    c->zero = c->free = 0;
    for (uint32_t i = 0; i < h->page_count; i++) {
        uint32_t z = (c->bitmap[i / 8] >> (i % 8)) & 1;
        uint32_t f = (c->free_bitmap[i / 8] >> (i % 8)) & 1;
        if (z && f)
            return "a page is both zero and free";
        c->zero += z;
        c->free += f;
    }
    if (h->data_pages != h->page_count - c->zero - c->free)
        return "data page count disagrees with the zero and free bitmaps";
    uint64_t raw = (uint64_t)h->data_pages * PAGE;
    if (h->encoding == SOS_CHUNK_RAW ? h->stored_size != raw
        : h->encoding != SOS_CHUNK_LZ4 || ih->compression != SOS_COMPRESS_LZ4 ||
          !h->stored_size || h->stored_size >= raw)
        return "bad encoding or stored size";
    c->next = align_up(c->offset + h->header_size + h->stored_size, SOS_CHUNK_ALIGN);
    if (c->next > ih->data_end)
        return "runs past the image's data end";
    return 0;
}
