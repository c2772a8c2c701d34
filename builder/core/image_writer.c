/*
 * The image writer: walks the memory list page by page, groups pages into chunks, and
 * streams each chunk (header + zero bitmap + data) to the image extents in order. Layout and
 * field meanings: suspendos/formats/image.py.
 *
 * Order on disk, for crash safety:
 *   1. the header block is zeroed and flushed, so a stale header can never describe the new,
 *      partly written data;
 *   2. the extent and range tables, then every chunk, never past the last listed sector;
 *   3. FLUSH CACHE, then the header block, then FLUSH CACHE again.
 * A failure anywhere before step 3 leaves no image.
 *
 * Uncompressed chunks are written zero-copy: the command's PRDT points at the saved pages
 * themselves (the HBA reads them; the CPU only reads them for the zero test and checksum).
 */
#include "payload.h"
#include "ahci.h"
#include "printf.h"
#include "string.h"
#include "xxh64.h"

#define MAX_SG 1040             /* header + one piece per page of a 1024-page chunk */

struct stream {
    struct ahci *disk;
    const struct sos_extent *extents;
    uint32_t extent_count;
    uint64_t capacity;          /* bytes */
    uint64_t pos;               /* next image byte offset, sector aligned */
    uint64_t max_command;       /* bytes per AHCI command */
    uint64_t bytes_written;
};

struct page_cursor {
    const struct sos_mem_range *ranges;
    uint32_t count, index;
    uint64_t addr;
};

static struct ahci_sg sg[MAX_SG];

static uint32_t disk_error(struct stream *s, int rc)
{
    const struct ahci_error *e = ahci_last_error(s->disk);
    sos_run.handoff->failed_lba = e->lba;
    sos_run.handoff->detail = e->tfd;
    if (rc == SOS_STATUS_AHCI_TASKFILE_ERROR)
        return fail(rc, "disk error at LBA %lu (%s, TFD %x)", e->lba, e->what, e->tfd);
    return fail(rc, "%s", e->what ? e->what : "disk command failed");
}

/* The LBA holding image byte `pos`, and how many bytes of the same extent follow it. */
static int locate(const struct stream *s, uint64_t pos, uint64_t *lba, uint64_t *room)
{
    uint64_t start = 0;
    for (uint32_t i = 0; i < s->extent_count; i++) {
        uint64_t len = s->extents[i].count * SOS_SECTOR_SIZE;
        if (pos < start + len) {
            *lba = s->extents[i].lba + (pos - start) / SOS_SECTOR_SIZE;
            *room = start + len - pos;
            return 1;
        }
        start += len;
    }
    return 0;
}

/*
 * Write the gather list `v[0..n)` (total a multiple of 512) at the stream position,
 * splitting it at extent boundaries and at the command size limit.
 */
static uint32_t stream_write(struct stream *s, struct ahci_sg *v, unsigned n, uint64_t total)
{
    if (s->pos + total > s->capacity)
        return fail(SOS_STATUS_IMAGE_FULL, "image extents full at byte %lu (%lu more needed)",
                    s->pos, s->pos + total - s->capacity);
    unsigned i = 0;
    uint64_t skip = 0;              /* bytes of v[i] already written */
    while (total) {
        uint64_t lba, room;
        if (!locate(s, s->pos, &lba, &room))
            return fail(SOS_STATUS_IMAGE_FULL, "no extent holds image byte %lu", s->pos);
        uint64_t want = total < room ? total : room;
        if (want > s->max_command)
            want = s->max_command;
        /* Gather pieces for this command; split the last one at `want`. */
        struct ahci_sg cmd[MAX_SG + 1];
        unsigned k = 0;
        uint64_t got = 0;
        while (got < want) {
            uint64_t left = v[i].bytes - skip, take = want - got < left ? want - got : left;
            cmd[k].addr = v[i].addr + skip;
            cmd[k].bytes = (uint32_t)take;
            k++;
            got += take;
            skip += take;
            if (skip == v[i].bytes) {
                i++;
                skip = 0;
            }
        }
        int rc = ahci_write(s->disk, lba, cmd, k);
        if (rc)
            return disk_error(s, rc);
        s->pos += want;
        s->bytes_written += want;
        total -= want;
    }
    return 0;
}

static uint32_t write_buffer(struct stream *s, const void *buf, uint64_t bytes)
{
    struct ahci_sg one = { (uint64_t)(uintptr_t)buf, (uint32_t)bytes };
    return stream_write(s, &one, 1, bytes);
}

static uint32_t flush(struct stream *s)
{
    int rc = ahci_flush(s->disk);
    return rc ? disk_error(s, rc) : 0;
}

static int page_is_zero(const uint64_t *p)
{
    for (unsigned i = 0; i < SOS_PAGE_SIZE / 8; i += 4)
        if (p[i] | p[i + 1] | p[i + 2] | p[i + 3])
            return 0;
    return 1;
}

static uint64_t next_page(struct page_cursor *c)
{
    while (c->addr >= c->ranges[c->index].end) {
        c->index++;
        c->addr = c->ranges[c->index].start;
    }
    uint64_t a = c->addr;
    c->addr += SOS_PAGE_SIZE;
    return a;
}

static uint64_t bitmap_bytes(uint32_t pages)
{
    return ((pages + 7) / 8 + 7) & ~7ull;
}

/* A random image id: RDRAND where the CPU has it (CPUID.01H:ECX bit 30), mixed with TSC. */
static void make_image_id(uint8_t id[16])
{
    uint32_t a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
    uint64_t words[2] = { rdtsc(), rdtsc() ^ 0x9e3779b97f4a7c15ull };
    for (int w = 0; w < 2 && (c & (1u << 30)); w++) {
        for (int tries = 0; tries < 16; tries++) {
            uint64_t r;
            uint8_t ok;
            __asm__ volatile("rdrand %0; setc %1" : "=r"(r), "=qm"(ok));
            if (ok) {
                words[w] ^= r;
                break;
            }
        }
    }
    words[0] = xxh64(words, sizeof words, 1);
    words[1] = xxh64(words, sizeof words, 2);
    memcpy(id, words, 16);
}

struct progress {
    uint64_t total, step, next;
};

static void report_progress(struct progress *p, uint64_t done)
{
    if (done >= p->next || done == p->total) {
        kprintf("@@PROGRESS %lu %lu\n", done, p->total);
        p->next = done + p->step;
    }
}

uint32_t write_image(struct ahci *disk)
{
    const struct sos_payload_info *info = sos_run.info;
    struct sos_handoff *h = sos_run.handoff;
    struct stream s = {
        .disk = disk,
        .extents = (const void *)(uintptr_t)info->sector_list,
        .extent_count = info->sector_count,
        .capacity = info->image_sectors * SOS_SECTOR_SIZE,
        .max_command = (uint64_t)info->max_command_sectors * SOS_SECTOR_SIZE,
    };
    const struct sos_mem_range *ranges = (const void *)(uintptr_t)info->memory_list;
    uint8_t *scratch = (uint8_t *)(uintptr_t)(info->scratch_base + PAYLOAD_AHCI_DMA_SIZE);
    struct sos_image_header *hdr = (void *)scratch;             /* 4 KiB */
    uint8_t *tables = scratch + SOS_IMAGE_HEADER_BLOCK;          /* extents + ranges */
    uint64_t pages_total = 0;
    for (uint32_t i = 0; i < info->memory_count; i++)
        pages_total += (ranges[i].end - ranges[i].start) / SOS_PAGE_SIZE;
    h->pages_total = pages_total;

    /* 1. No stale header may survive. */
    memset(hdr, 0, SOS_IMAGE_HEADER_BLOCK);
    uint32_t rc = write_buffer(&s, hdr, SOS_IMAGE_HEADER_BLOCK);
    if (!rc)
        rc = flush(&s);
    if (rc)
        return rc;

    /* 2a. The extent and range tables, right after the header block. */
    uint64_t ext_bytes = info->sector_count * sizeof(struct sos_extent);
    uint64_t rng_bytes = info->memory_count * sizeof(struct sos_mem_range);
    uint64_t chunks_offset = (SOS_IMAGE_HEADER_BLOCK + ext_bytes + rng_bytes + 4095) & ~4095ull;
    memset(tables, 0, chunks_offset - SOS_IMAGE_HEADER_BLOCK);
    memcpy(tables, s.extents, ext_bytes);
    memcpy(tables + ext_bytes, ranges, rng_bytes);
    uint64_t tables_hash = xxh64(tables, ext_bytes + rng_bytes, 0);
    rc = write_buffer(&s, tables, chunks_offset - SOS_IMAGE_HEADER_BLOCK);
    if (rc)
        return rc;

    /* 2b. The chunks. */
    uint8_t *chunk_hdr_buf = tables + (chunks_offset - SOS_IMAGE_HEADER_BLOCK);
    struct sos_chunk_header *ch = (void *)chunk_hdr_buf;
    uint8_t *bitmap = chunk_hdr_buf + sizeof *ch;
    struct page_cursor cur = { ranges, info->memory_count, 0, ranges[0].start };
    struct progress prog = { pages_total, pages_total / 50 + 1, 0 };
    uint32_t chunk_pages = info->chunk_pages;
    uint64_t done = 0, index = 0, zero = 0, raw_bytes = 0;
    while (done < pages_total) {
        uint32_t count = pages_total - done < chunk_pages ? pages_total - done : chunk_pages;
        memset(chunk_hdr_buf, 0, SOS_RAW_CHUNK_HEADER);
        struct xxh64_state st;
        xxh64_reset(&st, 0);
        unsigned n = 1;
        uint32_t data_pages = 0;
        for (uint32_t i = 0; i < count; i++) {
            uint64_t page = next_page(&cur);
            if (page_is_zero((const uint64_t *)(uintptr_t)page)) {
                bitmap[i / 8] |= (uint8_t)(1u << (i % 8));
                continue;
            }
            xxh64_update(&st, (const void *)(uintptr_t)page, SOS_PAGE_SIZE);
            data_pages++;
            if (n > 1 && sg[n - 1].addr + sg[n - 1].bytes == page &&
                sg[n - 1].bytes <= (1u << 22) - SOS_PAGE_SIZE) {
                sg[n - 1].bytes += SOS_PAGE_SIZE;
            } else {
                sg[n].addr = page;
                sg[n].bytes = SOS_PAGE_SIZE;
                n++;
            }
        }
        ch->magic = SOS_CHUNK_MAGIC;
        ch->header_size = SOS_RAW_CHUNK_HEADER;
        ch->index = index;
        ch->first_page = done;
        ch->page_count = count;
        ch->data_pages = data_pages;
        ch->encoding = SOS_CHUNK_RAW;
        ch->stored_size = data_pages * SOS_PAGE_SIZE;
        ch->data_xxh64 = xxh64_digest(&st);
        ch->header_xxh64 = xxh64(chunk_hdr_buf, sizeof *ch + bitmap_bytes(count), 0);
        sg[0].addr = (uint64_t)(uintptr_t)chunk_hdr_buf;
        sg[0].bytes = SOS_RAW_CHUNK_HEADER;
        rc = stream_write(&s, sg, n, SOS_RAW_CHUNK_HEADER + (uint64_t)ch->stored_size);
        if (rc)
            return rc;
        done += count;
        zero += count - data_pages;
        raw_bytes += (uint64_t)data_pages * SOS_PAGE_SIZE;
        index++;
        h->pages_saved = done;
        h->zero_pages = zero;
        h->raw_bytes = raw_bytes;
        h->chunks = index;
        h->bytes_written = s.bytes_written;
        report_progress(&prog, done);
    }
    uint64_t data_end = s.pos;

    /* 3. Flush, then the header, then flush again. */
    rc = flush(&s);
    if (rc)
        return rc;
    memset(hdr, 0, SOS_IMAGE_HEADER_BLOCK);
    memcpy(hdr->magic, SOS_IMAGE_MAGIC, SOS_IMAGE_MAGIC_LEN);
    hdr->version = SOS_IMAGE_VERSION;
    hdr->header_size = sizeof *hdr;
    hdr->state = SOS_IMAGE_VALID;
    hdr->compression = SOS_COMPRESS_NONE;
    hdr->checksum = SOS_CHECKSUM_XXH64;
    hdr->encryption = SOS_ENCRYPT_NONE;
    hdr->page_size = SOS_PAGE_SIZE;
    hdr->chunk_pages = chunk_pages;
    hdr->range_count = info->memory_count;
    hdr->extent_count = info->sector_count;
    make_image_id(hdr->image_id);
    hdr->memmap_hash = info->memmap_hash;
    hdr->extents_offset = SOS_IMAGE_HEADER_BLOCK;
    hdr->ranges_offset = SOS_IMAGE_HEADER_BLOCK + ext_bytes;
    hdr->chunks_offset = chunks_offset;
    hdr->chunk_count = index;
    hdr->data_end = data_end;
    hdr->pages_total = pages_total;
    hdr->pages_data = pages_total - zero;
    hdr->pages_zero = zero;
    hdr->raw_bytes = raw_bytes;
    hdr->stored_bytes = data_end - chunks_offset;
    hdr->tables_xxh64 = tables_hash;
    memcpy(&hdr->context, (const void *)&h->context, sizeof hdr->context);
    hdr->header_xxh64 = xxh64(hdr, sizeof *hdr, 0);
    s.pos = 0;
    rc = write_buffer(&s, hdr, SOS_IMAGE_HEADER_BLOCK);
    if (!rc)
        rc = flush(&s);
    h->bytes_written = s.bytes_written;
    return rc;
}
