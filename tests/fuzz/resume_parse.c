/*
 * libFuzzer harness for the resume loader's checks of what it reads from disk
 * (builder/resume/parse.c): the image header, the extent and range tables, and the chunk
 * headers, as image.c calls them.
 *
 * Input: u8 fix, u64 capacity, u64 disk_sectors, u64 memmap_hash (LE: what the loader's
 *        configuration expects), then the image header (sizeof struct sos_image_header),
 *        then the expected extent and range tables, then the image's own tables (each
 *        min(header count, 8) entries), then chunk headers back to back (fixed part + zero
 *        bitmap each; their data is not in the input, the walk moves on as if it were).
 * `fix` bits repair checksums so mutations get past them: 1 the header's header_xxh64,
 * 2 tables_xxh64, 4 every chunk header's header_xxh64; bit 7 set: a 4096-byte-block disk.
 *
 * Checks beyond "no crash, no out-of-bounds access, no undefined behaviour": an accepted
 * header has its chunks between the tables and the capacity, sizes in range; an accepted
 * chunk header moves forward, stays inside data_end, and its counts add up.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"
#include "xxh64.h"

#define CHECK(cond)                                                                \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "resume_parse harness: check failed: %s (line %d)\n",  \
                    #cond, __LINE__);                                              \
            abort();                                                               \
        }                                                                          \
    } while (0)

#define MAX_ENTRIES 8
#define MAX_CHUNKS 64

void serial_write(const char *s, unsigned long n)     /* printf.c's output: not used here */
{
    (void)s;
    (void)n;
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* A heap copy of exactly n bytes: ASan catches any read past what the caller may read. */
static uint8_t *exact(const uint8_t *p, size_t n)
{
    uint8_t *q = malloc(n ? n : 1);
    memcpy(q, p, n);
    return q;
}

static void walk_chunks(const uint8_t *p, size_t n, const struct sos_image_header *h, int fix)
{
    struct parsed_chunk c = { .offset = h->chunks_offset };
    for (c.index = 0; c.index < h->chunk_count && c.index < MAX_CHUNKS; c.index++) {
        uint64_t to_end = h->data_end - c.offset;   /* c.offset <= data_end: checked below */
        size_t avail = n < to_end ? n : (size_t)to_end;
        uint8_t *copy = exact(p, avail);
        if (fix & 4 && avail >= sizeof c.h) {
            struct sos_chunk_header *ch = (struct sos_chunk_header *)copy;
            uint64_t blen = ch->page_count <= SOS_MAX_CHUNK_PAGES
                            ? parse_bitmap_bytes(ch->page_count) : 0;
            if (avail >= sizeof c.h + blen) {
                ch->header_xxh64 = 0;
                ch->header_xxh64 = xxh64(copy, sizeof c.h + blen, 0);
            }
        }
        const char *what = parse_chunk_header(copy, avail, h, &c);
        free(copy);
        if (what)
            return;
        uint64_t blen = parse_bitmap_bytes(c.h.page_count);
        CHECK(c.next > c.offset && c.next <= h->data_end);
        CHECK(c.zero <= c.h.page_count && c.h.data_pages + c.zero == c.h.page_count);
        CHECK(c.h.page_count >= 1 && c.h.page_count <= h->chunk_pages);
        CHECK(c.h.header_size == SOS_RAW_CHUNK_HEADER || c.h.header_size >= sizeof c.h + blen);
        p += sizeof c.h + blen;
        n -= sizeof c.h + blen;
        c.first_page += c.h.page_count;
        c.offset = c.next;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const size_t head = 1 + 3 * 8, hsize = sizeof(struct sos_image_header);
    if (size < head + hsize)
        return 0;
    int fix = data[0];
    struct image_expect e = { .capacity = le64(data + 1), .disk_sectors = le64(data + 9),
                              .memmap_hash = le64(data + 17),
                              /* the fix byte's top bit picks the disk's block size */
                              .block_size = (fix & 0x80) ? 4096 : 512 };
    struct sos_image_header *h = (struct sos_image_header *)exact(data + head, hsize);
    e.extent_count = h->extent_count < MAX_ENTRIES ? h->extent_count : MAX_ENTRIES;
    e.range_count = h->range_count < MAX_ENTRIES ? h->range_count : MAX_ENTRIES;
    size_t tables = e.extent_count * sizeof(struct sos_extent) +
                    e.range_count * sizeof(struct sos_mem_range);
    const uint8_t *p = data + head + hsize;
    size_t n = size - head - hsize;
    if (!e.extent_count || n < 2 * tables) {    /* the loader's config always has an extent */
        free(h);
        return 0;
    }
    uint8_t *want = exact(p, tables), *have = exact(p + tables, tables);
    e.extents = (const struct sos_extent *)want;
    e.ranges = (const struct sos_mem_range *)(want + e.extent_count * sizeof(struct sos_extent));
    p += 2 * tables;
    n -= 2 * tables;

    if (fix & 2)
        h->tables_xxh64 = xxh64(have, tables, 0);
    if (fix & 1)
        h->header_xxh64 = parse_header_hash(h);
    struct parse_error err = { 0 };
    if (!parse_header(h, &e, &err)) {
        CHECK(h->chunk_pages >= 1 && h->chunk_pages <= SOS_MAX_CHUNK_PAGES);
        CHECK(h->chunks_offset >= SOS_IMAGE_HEADER_BLOCK + tables);
        CHECK(h->chunks_offset <= h->data_end && h->data_end <= e.capacity);
        CHECK(h->pages_data <= h->pages_total);
        if (!parse_tables(have, h, &e, &err))
            walk_chunks(p, n, h, fix);
    } else {
        CHECK(err.why >= REFUSE_TRUNCATED && err.why <= REFUSE_UNSUPPORTED);
        CHECK(memchr(err.msg, 0, sizeof err.msg) && err.msg[0]);
    }
    free(want);
    free(have);
    free(h);
    return 0;
}
