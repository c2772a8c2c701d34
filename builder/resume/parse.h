/*
 * The resume loader's checks of what it reads from disk, on buffers: the image header, the
 * extent and range tables, and one chunk header. No disk, no global state, no refuse():
 * image.c reads the bytes and turns a failure into a refusal; tests/fuzz/resume_parse.c
 * feeds them arbitrary bytes. Layouts: suspendos/formats/image.py.
 */
#ifndef SOS_RESUME_PARSE_H
#define SOS_RESUME_PARSE_H
#include <stddef.h>
#include <stdint.h>
#include "resume.h"
#include "suspendos_abi.h"

#define PARSE_MAX_BITMAP (SOS_MAX_CHUNK_PAGES / 8)

/* What this loader's configuration says an image must look like. */
struct image_expect {
    uint64_t memmap_hash;
    const struct sos_extent *extents;           /* the target's sector list */
    uint32_t extent_count;
    const struct sos_mem_range *ranges;         /* the target's memory list */
    uint32_t range_count;
    uint64_t capacity;                          /* bytes the extents hold */
    uint64_t disk_sectors;                      /* what IDENTIFY reported */
    uint32_t block_size;                        /* the disk's logical block: 512 or 4096 */
};

struct parse_error {
    enum resume_reason why;
    char msg[160];
};

/* A chunk: where it is and what the sequence expects (filled by the caller), and what its
 * header said (filled by parse_chunk_header). */
struct parsed_chunk {
    uint64_t offset, next;                      /* image offsets: header, next chunk */
    uint64_t index, first_page;
    uint32_t zero;                              /* zero pages (bits set in the bitmap) */
    uint32_t free;                              /* free pages (SOS_CHUNKF_FREE), left out */
    struct sos_chunk_header h;
    uint8_t bitmap[PARSE_MAX_BITMAP];
    uint8_t free_bitmap[PARSE_MAX_BITMAP];      /* all clear without SOS_CHUNKF_FREE */
};

uint64_t parse_bitmap_bytes(uint32_t pages);
/* The zero bitmap and, in chunks with free pages (SOS_CHUNKF_FREE), the free one after it. */
uint64_t parse_bitmaps_bytes(uint32_t pages, uint32_t flags);
uint64_t parse_header_hash(const struct sos_image_header *h);
/* The logical block an image was written in (block_size 0: an image from before the
 * field, 512), and the size of its raw chunks' header: one block (image_writer.c). */
uint32_t parse_block_size(const struct sos_image_header *h);
uint64_t parse_raw_header_size(const struct sos_image_header *h);

/* 0, or -1 with *err filled: the header's magic, version, checksum, state, machine, fields
 * against each other and against `e`, and the disk holding every sector the image uses. */
int parse_header(const struct sos_image_header *h, const struct image_expect *e,
                 struct parse_error *err);

/* 0, or -1 with *err filled: `tables` holds the extent then the range table, as the image
 * stores them after the header block (e->extent_count + e->range_count entries). */
int parse_tables(const uint8_t *tables, const struct sos_image_header *h,
                 const struct image_expect *e, struct parse_error *err);

/* The chunk header at p, `avail` bytes readable there (those up to the image's data end at
 * most), checked against the image header `ih` and the sequence (c->index, c->first_page,
 * c->offset): NULL and c->h, c->bitmap, c->zero, c->next filled, or what is wrong. */
const char *parse_chunk_header(const uint8_t *p, uint64_t avail,
                               const struct sos_image_header *ih, struct parsed_chunk *c);

#endif
