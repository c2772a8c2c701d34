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
 * Two ways to write chunks:
 *  - raw (no compression, no encryption): zero-copy. The command's PRDT points at the saved
 *    pages themselves; the CPU only reads them for the zero test and the checksum.
 *  - buffered (LZ4 and/or encryption): each chunk is built in scratch — compressed, or
 *    copied, then sealed — and whole sectors go out as the buffer fills.
 *
 * Every CPU works (smp.h): each chunk is a job — zero scan, checksum, and for buffered
 * chunks compression and sealing into the job's own record buffer — in a ring the boot CPU
 * plans in image order. Any CPU claims the next planned job; the boot CPU writes finished
 * jobs in order and prepares one itself whenever the next to write is not finished. The
 * bytes on disk are those of one CPU doing it all.
 */
#include "payload.h"
#include "chacha20poly1305.h"
#include "image_writer.h"
#include "lz4.h"
#include "plugin_host.h"
#include "printf.h"
#include "smp.h"
#include "stream.h"
#include "string.h"
#include "xxh64.h"

#define MAX_SG (SOS_MAX_CHUNK_PAGES + 1)
#define STREAM_BUFFER_WANT (256 * 1024)

/* The LZ4 search is the target's choice, fixed when the payload is built (the builder
 * passes -DSOS_LZ4_HIGH=1 for --compress lz4hc), so a blob carries only the one it uses. */
#if SOS_LZ4_HIGH
#define chunk_lz4_compress lz4_compress_high
#define CHUNK_LZ4_WORK_SIZE LZ4_HIGH_WORK_SIZE
#define CHUNK_COMPRESSION SOS_COMPRESS_LZ4HC
#else
#define chunk_lz4_compress lz4_compress
#define CHUNK_LZ4_WORK_SIZE LZ4_WORK_SIZE
#define CHUNK_COMPRESSION SOS_COMPRESS_LZ4
#endif

static struct disk_sg sg[MAX_SG];
/* A raw chunk's header fills one logical block, so its data stays block-aligned for
 * zero-copy DMA: SOS_RAW_CHUNK_HEADER on 512-byte disks, 4096 on 4096-byte ones. */
static uint32_t raw_header = SOS_RAW_CHUNK_HEADER;

struct page_cursor {
    const struct sos_mem_range *ranges;
    uint32_t count, index;
    uint64_t addr;
};

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

static int page_is_zero(const uint64_t *p)
{
    for (unsigned i = 0; i < SOS_PAGE_SIZE / 8; i += 4)
        if (p[i] | p[i + 1] | p[i + 2] | p[i + 3])
            return 0;
    return 1;
}

static uint64_t bitmap_bytes(uint32_t pages)
{
    return ((pages + 7) / 8 + 7) & ~7ull;
}

/* The zero bitmap, and the free bitmap after it in chunks with free pages. */
static uint64_t bitmaps_bytes(uint32_t pages, int with_free)
{
    return bitmap_bytes(pages) * (with_free ? 2 : 1);
}

static uint64_t compact_header_size(uint32_t pages, int with_free)
{
    return (sizeof(struct sos_chunk_header) + bitmaps_bytes(pages, with_free) +
            SOS_CHUNK_ALIGN - 1) & ~(uint64_t)(SOS_CHUNK_ALIGN - 1);
}

uint64_t chunk_header_size(uint32_t pages, int raw_zero_copy)
{
    if (raw_zero_copy)
        return raw_header;
    return compact_header_size(pages, 1);      /* the largest a compact header gets */
}

/*
 * The page filter: the pages the host's allocator has free at the handoff
 * (handoff.free_list: sorted, disjoint ranges). They are neither read nor written, only
 * marked in the chunk's free bitmap. Pages come in ascending address order, so a filter's
 * index only moves forward: the planner keeps one for the whole run and gives each job the
 * index at its first page, so the CPUs filter their chunks independently. A list that is
 * not sorted only makes the filter miss pages (they are then saved, which is always safe).
 */
struct free_filter {
    const struct sos_mem_range *r;
    uint32_t count, index;
};

static int page_is_free(struct free_filter *f, uint64_t addr)
{
    while (f->index < f->count && f->r[f->index].end <= addr)
        f->index++;
    return f->index < f->count && f->r[f->index].start <= addr;
}

/* A random image id: RDRAND where the CPU has it (CPUID.01H:ECX bit 30), mixed with TSC. */
__attribute__((cold)) static void make_image_id(uint8_t id[16])
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

/* Pages of one chunk: which are zero, where the others are. */
struct chunk {
    uint64_t index, first_page;
    uint32_t count, data_pages;
    const uint8_t *pages[SOS_MAX_CHUNK_PAGES];  /* the data pages, in order */
    uint8_t bitmap[SOS_MAX_CHUNK_PAGES / 8];
    uint32_t free_pages;                        /* left out: free in the host (filter) */
    uint8_t free_bitmap[SOS_MAX_CHUNK_PAGES / 8];
};

static void gather(struct page_cursor *pc, struct free_filter *ff, struct chunk *c)
{
    memset(c->bitmap, 0, bitmap_bytes(c->count));
    memset(c->free_bitmap, 0, bitmap_bytes(c->count));
    c->data_pages = c->free_pages = 0;
    for (uint32_t i = 0; i < c->count; i++) {
        uint64_t page = next_page(pc);
        if (page_is_free(ff, page)) {
            c->free_bitmap[i / 8] |= (uint8_t)(1u << (i % 8));
            c->free_pages++;
        } else if (page_is_zero((const uint64_t *)(uintptr_t)page))
            c->bitmap[i / 8] |= (uint8_t)(1u << (i % 8));
        else
            c->pages[c->data_pages++] = (const uint8_t *)(uintptr_t)page;
    }
}

__attribute__((cold)) static void fill_header(struct sos_chunk_header *ch, const struct chunk *c, uint16_t hsize,
                        uint32_t encoding, uint32_t stored, uint64_t data_hash)
{
    memset(ch, 0, sizeof *ch);
    ch->magic = SOS_CHUNK_MAGIC;
    ch->header_size = hsize;
    ch->index = c->index;
    ch->first_page = c->first_page;
    ch->page_count = c->count;
    ch->data_pages = c->data_pages;
    ch->encoding = encoding;
    ch->stored_size = stored;
    ch->data_xxh64 = data_hash;
    memcpy((uint8_t *)ch + sizeof *ch, c->bitmap, bitmap_bytes(c->count));
    if (c->free_pages) {
        ch->flags |= SOS_CHUNKF_FREE;
        memcpy((uint8_t *)ch + sizeof *ch + bitmap_bytes(c->count), c->free_bitmap,
               bitmap_bytes(c->count));
    }
}

__attribute__((cold)) static void seal_header(struct sos_chunk_header *ch)
{
    ch->header_xxh64 = 0;
    ch->header_xxh64 = xxh64(ch, sizeof *ch + bitmaps_bytes(ch->page_count,
                                                            ch->flags & SOS_CHUNKF_FREE), 0);
}

/* Raw, zero-copy: [512-byte header from scratch][the data pages, straight from RAM].
 * A worker checksums the pages and seals the header; the boot CPU writes. */
__attribute__((cold)) static void prepare_raw_chunk(struct chunk *c, uint8_t *hdr_buf)
{
    struct sos_chunk_header *ch = (void *)hdr_buf;
    struct xxh64_state st;
    xxh64_reset(&st, 0);
    for (uint32_t i = 0; i < c->data_pages; i++)
        xxh64_update(&st, c->pages[i], SOS_PAGE_SIZE);
    memset(hdr_buf, 0, raw_header);
    fill_header(ch, c, (uint16_t)raw_header, SOS_CHUNK_RAW, c->data_pages * SOS_PAGE_SIZE,
                xxh64_digest(&st));
    seal_header(ch);
}

__attribute__((cold)) static uint32_t write_raw_chunk(struct stream *s, const struct chunk *c, uint8_t *hdr_buf)
{
    unsigned n = 1;
    for (uint32_t i = 0; i < c->data_pages; i++) {
        uint64_t page = (uint64_t)(uintptr_t)c->pages[i];
        if (n > 1 && sg[n - 1].addr + sg[n - 1].bytes == page &&
            sg[n - 1].bytes <= (1u << 22) - SOS_PAGE_SIZE) {
            sg[n - 1].bytes += SOS_PAGE_SIZE;
        } else {
            sg[n].addr = page;
            sg[n].bytes = SOS_PAGE_SIZE;
            n++;
        }
    }
    sg[0].addr = (uint64_t)(uintptr_t)hdr_buf;
    sg[0].bytes = raw_header;
    return stream_write(s, sg, n, raw_header + (uint64_t)c->data_pages * SOS_PAGE_SIZE);
}

/* The AEAD parameters of formats/image.py: nonce = image_id[0:4] || index (u64 LE). */
static void make_nonce(uint8_t nonce[12], const uint8_t image_id[16], uint64_t index)
{
    memcpy(nonce, image_id, 4);
    memcpy(nonce + 4, &index, 8);
}

/* Seal a chunk's stored bytes in place: AAD = image_id || header and bitmap with tag,
 * data_xxh64 and header_xxh64 zero (they are zero at this point). */
__attribute__((cold)) static void seal_chunk(struct sos_chunk_header *ch, uint8_t *data, const uint8_t image_id[16],
                       const uint8_t key[32])
{
    uint8_t aad[16 + sizeof *ch + 2 * (SOS_MAX_CHUNK_PAGES / 8)];
    uint64_t hlen = sizeof *ch + bitmaps_bytes(ch->page_count, ch->flags & SOS_CHUNKF_FREE);
    uint8_t nonce[12];
    ch->flags |= SOS_CHUNKF_ENCRYPTED;
    memcpy(aad, image_id, 16);
    memcpy(aad + 16, ch, hlen);
    make_nonce(nonce, image_id, ch->index);
    aead_seal(key, nonce, aad, 16 + hlen, data, ch->stored_size, ch->tag);
}

/* Buffered: header, then an LZ4 block of the data pages (or the pages raw if that is not
 * smaller), sealed when a key is given, then padding to SOS_CHUNK_ALIGN; built in `out`
 * (room for the worst case), returns its length. */
__attribute__((cold)) static uint64_t build_buffered_chunk(struct chunk *c, int compress, uint8_t *out,
                                     uint8_t *staging, uint8_t *lz4_work,
                                     const uint8_t *image_id, const uint8_t *key)
{
    uint64_t hsize = compact_header_size(c->count, c->free_pages != 0);
    uint32_t raw = c->data_pages * SOS_PAGE_SIZE;
    uint8_t *data = out + hsize;
    uint32_t stored = 0, encoding = SOS_CHUNK_RAW;
    if (compress && raw) {
        /* LZ4 wants contiguous input: use the pages in place when they are. */
        const uint8_t *src = c->pages[0];
        for (uint32_t i = 1; i < c->data_pages; i++)
            if (c->pages[i] != c->pages[0] + (uint64_t)i * SOS_PAGE_SIZE) {
                for (uint32_t k = 0; k < c->data_pages; k++)
                    memcpy(staging + (uint64_t)k * SOS_PAGE_SIZE, c->pages[k], SOS_PAGE_SIZE);
                src = staging;
                break;
            }
        int n = chunk_lz4_compress(src, (int)raw, data, (int)raw - 1, lz4_work);
        if (n > 0) {
            stored = (uint32_t)n;
            encoding = SOS_CHUNK_LZ4;
        }
    }
    if (encoding == SOS_CHUNK_RAW) {
        for (uint32_t k = 0; k < c->data_pages; k++)
            memcpy(data + (uint64_t)k * SOS_PAGE_SIZE, c->pages[k], SOS_PAGE_SIZE);
        stored = raw;
    }
    struct sos_chunk_header *ch = (struct sos_chunk_header *)out;
    fill_header(ch, c, (uint16_t)hsize, encoding, stored, 0);
    if (key)
        seal_chunk(ch, data, image_id, key);
    ch->data_xxh64 = xxh64(data, stored, 0);
    seal_header(ch);
    uint64_t total = (hsize + stored + SOS_CHUNK_ALIGN - 1) & ~(uint64_t)(SOS_CHUNK_ALIGN - 1);
    memset(out + hsize + stored, 0, total - hsize - stored);
    return total;
}

__attribute__((cold)) static uint32_t write_buffered_chunk(struct stream *s, const uint8_t *record, uint64_t len)
{
    uint8_t *out = stream_reserve(s, len);
    if (!out)
        return sos_run.handoff->status;
    memcpy(out, record, len);
    return stream_commit(s, len);
}

/* One chunk's preparation; `out` is its record buffer (buffered) or its raw header. A job
 * lives in a ring slot; `ready` is its sequence number + 1 once it is prepared. */
struct job {
    struct chunk c;
    uint32_t range_index;       /* the page cursor at the chunk's first page */
    uint64_t addr;
    uint32_t free_index;        /* the free filter's index at the chunk's first page */
    uint8_t *out;
    uint64_t out_len;
    uint64_t ready;             /* written with release by the CPU that prepared it */
};

/*
 * The job queue every CPU shares. The boot CPU plans chunks in image order into a ring of
 * job slots (publishing `planned` with release), any CPU claims the next planned job
 * (`claimed`, compare-and-swap) and marks it ready, and the boot CPU writes ready jobs in
 * order, preparing one itself whenever the next to write is not ready yet. There is no
 * barrier between jobs: a CPU is idle only when every planned job is claimed. A slot is
 * planned again only when its previous job is on its way to the disk (write_image).
 */
static struct {
    const struct sos_mem_range *ranges;
    uint32_t range_count;
    const struct sos_mem_range *free_list;      /* handoff.free_list, sorted */
    uint32_t free_count;
    int compress, buffered;
    const uint8_t *image_id, *key;
    uint8_t *staging, *lz4_work;        /* per CPU: chunk_pages pages, the LZ4 work area */
    uint64_t staging_size, lz4_work_size;
    struct job *jobs;
    uint32_t slots;                     /* the ring's size */
    uint64_t total;                     /* chunks in the image */
    uint64_t planned;                   /* jobs [0, planned) planned (release, boot CPU) */
    uint64_t claimed;                   /* the next job to claim (atomic) */
    uint32_t stop;                      /* the boot CPU gave up: claim nothing more */
} queue;

static void prepare_job(struct job *j, unsigned cpu, uint64_t seq)
{
    uint8_t *staging = queue.staging + cpu * queue.staging_size;
    uint8_t *work = queue.lz4_work + cpu * queue.lz4_work_size;
    struct page_cursor pc = { queue.ranges, queue.range_count, j->range_index, j->addr };
    struct free_filter ff = { queue.free_list, queue.free_count, j->free_index };
    gather(&pc, &ff, &j->c);
    if (queue.buffered)
        j->out_len = build_buffered_chunk(&j->c, queue.compress, j->out, staging, work,
                                          queue.image_id, queue.key);
    else
        prepare_raw_chunk(&j->c, j->out);
    __atomic_store_n(&j->ready, seq + 1, __ATOMIC_RELEASE);
}

/* Claim and prepare one planned job; 0 when none is free to claim right now. */
static int claim_one(unsigned cpu)
{
    uint64_t c = __atomic_load_n(&queue.claimed, __ATOMIC_RELAXED);
    if (c >= __atomic_load_n(&queue.planned, __ATOMIC_ACQUIRE))
        return 0;
    if (!__atomic_compare_exchange_n(&queue.claimed, &c, c + 1, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_RELAXED))
        return 1;                       /* another CPU took it: look again at once */
    prepare_job(&queue.jobs[c % queue.slots], cpu, c);
    return 1;
}

/* An AP's part: claim jobs until every chunk is claimed or the boot CPU stops. */
static void work_queue(unsigned cpu, unsigned cpus, void *arg)
{
    (void)cpus;
    (void)arg;
    unsigned spins = 0;
    while (__atomic_load_n(&queue.claimed, __ATOMIC_RELAXED) < queue.total &&
           !__atomic_load_n(&queue.stop, __ATOMIC_ACQUIRE) && !smp_status())
        if (!claim_one(cpu))
            cpu_relax_step(&spins);
}

/* Assigns the next chunk to a job: index, first page, count, cursor. */
struct planner {
    struct page_cursor *pc;
    struct free_filter *ff;
    uint64_t pages_total;
    uint32_t chunk_pages;
    uint64_t planned, chunk_index;
};

static void skip_pages(struct page_cursor *c, uint64_t n);

static void plan_job(struct planner *p, struct job *j)
{
    uint64_t left = p->pages_total - p->planned;
    j->c.index = p->chunk_index++;
    j->c.first_page = p->planned;
    j->c.count = left < p->chunk_pages ? (uint32_t)left : p->chunk_pages;
    j->range_index = p->pc->index;
    j->addr = p->pc->addr;
    page_is_free(p->ff, p->pc->addr);   /* the first free range not below the chunk */
    j->free_index = p->ff->index;
    skip_pages(p->pc, j->c.count);
    p->planned += j->c.count;
}

/* Move the cursor `n` pages on (next_page's rule: a range is left when it is used up). */
static void skip_pages(struct page_cursor *c, uint64_t n)
{
    while (n) {
        while (c->addr >= c->ranges[c->index].end) {
            c->index++;
            c->addr = c->ranges[c->index].start;
        }
        uint64_t avail = (c->ranges[c->index].end - c->addr) / SOS_PAGE_SIZE;
        uint64_t take = avail < n ? avail : n;
        c->addr += take * SOS_PAGE_SIZE;
        n -= take;
    }
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
    plugin_host_progress(done, p->total, SOS_PHASE_WRITING);   /* redraws on whole percents */
}

__attribute__((cold)) uint32_t write_image(void)
{
    const struct sos_payload_info *info = sos_run.info;
    struct sos_handoff *h = sos_run.handoff;
    struct stream s = {
        .block = info->block_size,
        .extents = (const void *)(uintptr_t)info->sector_list,
        .extent_count = info->sector_count,
        .capacity = info->image_sectors * info->block_size,
        .max_command = (uint64_t)info->max_command_sectors * info->block_size,
    };
    const struct sos_mem_range *ranges = (const void *)(uintptr_t)info->memory_list;
    /* Scratch after the driver's area: header block | tables | jobs | their record buffers
     * (or raw headers) | per-CPU staging and LZ4 tables | the two stream buffers. */
    uint8_t *scratch = (uint8_t *)(uintptr_t)(info->scratch_base + PAYLOAD_DISK_DMA_SIZE);
    uint8_t *scratch_end = (uint8_t *)(uintptr_t)(info->scratch_base + info->scratch_size);
    struct sos_image_header *hdr = (void *)scratch;
    uint8_t *tables = scratch + SOS_IMAGE_HEADER_BLOCK;
    uint64_t ext_bytes = info->sector_count * sizeof(struct sos_extent);
    uint64_t rng_bytes = info->memory_count * sizeof(struct sos_mem_range);
    uint64_t chunks_offset = (SOS_IMAGE_HEADER_BLOCK + ext_bytes + rng_bytes + 4095) & ~4095ull;
    uint32_t chunk_pages = info->chunk_pages;
    int compress = info->compression != SOS_COMPRESS_NONE;
    uint64_t lz4_work_size = CHUNK_LZ4_WORK_SIZE;
    int encrypt = info->encryption == SOS_ENCRYPT_CHACHA20_POLY1305;
    int buffered = compress || encrypt;
    uint8_t key[32];
    memcpy(key, (const void *)info->key, sizeof key);
    if (chunk_pages == 0 || chunk_pages > SOS_MAX_CHUNK_PAGES)
        return fail(SOS_STATUS_BAD_PAYLOAD_INFO, "chunk size %u is out of range", chunk_pages);
    if (compress && info->compression != CHUNK_COMPRESSION)
        return fail(SOS_STATUS_BAD_PAYLOAD_INFO, "compression %u, built for %u",
                    info->compression, CHUNK_COMPRESSION);
    raw_header = info->block_size > SOS_RAW_CHUNK_HEADER ? info->block_size
                                                         : SOS_RAW_CHUNK_HEADER;

    /* The ring of jobs. A raw chunk is written from its job (the header) and RAM, so its
     * slot is free again only once the writes of `depth` later chunks are issued (the
     * stream has then waited for it: stream.h); a buffered record is copied into the
     * stream, so its slot is free as soon as it is written. One CPU: one slot written, one
     * prepared (and `depth` whose writes run, raw). More CPUs: raw jobs cost little
     * scratch, so twelve a CPU; buffered records are up to a chunk each, so two a CPU and
     * two more, and fewer while the stream's buffers would get less than STREAM_BUFFER_WANT
     * each (small buffers mean many small commands, and each costs the boot CPU an issue
     * and a wait). */
    unsigned cpus = smp_cpus();
    /* Buffered records are made by the CPUs, which are then the limit, not the disk: one
     * call in flight while the next buffer fills. More cost the compressing vCPUs host time
     * under QEMU (AHCI, lz4, 1 GiB on 2 CPUs: 1.15 times as long with two, 1.09 with three;
     * BENCHMARKS.md "bench/write_depth.py"); raw writes keep the driver's depth. */
    if (buffered)
        stream_limit_depth(&s, 1);
    uint32_t lag = buffered ? 0 : stream_depth(&s);
    uint64_t record = buffered ? (chunk_header_size(chunk_pages, 0) +
                                  (uint64_t)chunk_pages * SOS_PAGE_SIZE + 2 * SOS_CHUNK_ALIGN +
                                  63) & ~63ull
                               : raw_header;
    uint64_t staging_size = buffered ? (uint64_t)chunk_pages * SOS_PAGE_SIZE : 0;
    uint64_t per_cpu = buffered ? staging_size + lz4_work_size : 0;
    uint64_t stream_min = buffered ? 2 * (record + s.block) : 2 * (uint64_t)s.block;
    uint8_t *jobs_at = tables + (chunks_offset - SOS_IMAGE_HEADER_BLOCK);
    uint64_t avail = (uint64_t)(scratch_end - scratch);
    uint64_t fixed = (uint64_t)(jobs_at - scratch) + cpus * per_cpu + 4096;
    uint64_t want = buffered ? 2 * STREAM_BUFFER_WANT : stream_min;
    uint32_t slots = cpus == 1 ? 2 + lag : buffered ? 2 * cpus + 2 : 12 * cpus + lag;
    while (slots > 2 + lag && fixed + slots * (sizeof(struct job) + record) + want > avail)
        slots--;
    if (fixed + slots * (sizeof(struct job) + record) + stream_min > avail)
        return fail(SOS_STATUS_BAD_PAYLOAD_INFO, "chunk size %u does not fit scratch",
                    chunk_pages);
    struct job *jobs = (struct job *)jobs_at;
    /* Raw headers are DMA sources: block-aligned like everything the stream writes. */
    uint8_t *outs = (uint8_t *)(((uintptr_t)(jobs + slots) + 4095) & ~(uintptr_t)4095);
    for (uint32_t k = 0; k < slots; k++) {
        jobs[k].out = outs + k * record;
        jobs[k].ready = 0;
    }
    queue.jobs = jobs;
    queue.slots = slots;
    queue.staging = outs + (uint64_t)slots * record;
    queue.staging_size = staging_size;
    queue.lz4_work = queue.staging + cpus * staging_size;
    queue.lz4_work_size = lz4_work_size;
    uint8_t *stream_at = queue.lz4_work + (buffered ? cpus * lz4_work_size : 0);
    stream_buffers(&s, stream_at, (uint64_t)(scratch_end - stream_at), STREAM_BUFFER_WANT,
                   record);

    uint64_t pages_total = 0;
    for (uint32_t i = 0; i < info->memory_count; i++)
        pages_total += (ranges[i].end - ranges[i].start) / SOS_PAGE_SIZE;
    h->pages_total = pages_total;
    uint8_t image_id[16];
    make_image_id(image_id);

    /* 1. No stale header may survive. */
    memset(hdr, 0, SOS_IMAGE_HEADER_BLOCK);
    uint32_t rc = stream_write_buffer(&s, hdr, SOS_IMAGE_HEADER_BLOCK);
    if (!rc)
        rc = stream_flush_cache(&s);
    if (rc)
        return rc;

    /* 2a. The extent and range tables, right after the header block. */
    memset(tables, 0, chunks_offset - SOS_IMAGE_HEADER_BLOCK);
    memcpy(tables, s.extents, ext_bytes);
    memcpy(tables + ext_bytes, ranges, rng_bytes);
    uint64_t tables_hash = xxh64(tables, ext_bytes + rng_bytes, 0);
    rc = stream_write_buffer(&s, tables, chunks_offset - SOS_IMAGE_HEADER_BLOCK);
    if (rc)
        return rc;

    /* 2b. The chunks, through the job queue: every CPU prepares, the boot CPU writes in
     * image order and prepares whenever the next chunk to write is not ready. */
    struct page_cursor pc = { ranges, info->memory_count, 0, ranges[0].start };
    struct progress prog = { pages_total, pages_total / 50 + 1, 0 };
    uint64_t done = 0, zero = 0, free = 0;
    uint64_t disk_tsc = 0, compute_tsc = 0;
    queue.ranges = ranges;
    queue.range_count = info->memory_count;
    queue.free_list = (const struct sos_mem_range *)(uintptr_t)h->free_list;
    queue.free_count = queue.free_list ? h->free_count : 0;
    struct free_filter plan_ff = { queue.free_list, queue.free_count, 0 };
    queue.compress = compress;
    queue.buffered = buffered;
    queue.image_id = image_id;
    queue.key = encrypt ? key : 0;
    queue.total = (pages_total + chunk_pages - 1) / chunk_pages;
    queue.planned = queue.claimed = 0;
    queue.stop = 0;
    struct planner pl = { &pc, &plan_ff, pages_total, chunk_pages, 0, 0 };
    uint64_t written = 0;
    unsigned spins = 0;
    uint64_t t0 = rdtsc();
    smp_post(work_queue, 0);
    while (written < queue.total && !rc) {
        /* Plan every slot whose previous job is on its way to the disk. */
        uint64_t planned = queue.planned;
        while (planned < queue.total && planned + lag < written + slots) {
            plan_job(&pl, &jobs[planned % slots]);
            __atomic_store_n(&queue.planned, ++planned, __ATOMIC_RELEASE);
        }
        struct job *j = &jobs[written % slots];
        if (__atomic_load_n(&j->ready, __ATOMIC_ACQUIRE) != written + 1) {
            if (!claim_one(0)) {
                if ((rc = smp_status()))
                    break;
                cpu_relax_step(&spins);
            }
            continue;
        }
        uint64_t tw = rdtsc();
        compute_tsc += tw - t0;
        rc = buffered ? write_buffered_chunk(&s, j->out, j->out_len)
                      : write_raw_chunk(&s, &j->c, j->out);
        t0 = rdtsc();
        disk_tsc += t0 - tw;
        if (rc)
            break;
        written++;
        done += j->c.count;
        zero += j->c.count - j->c.data_pages - j->c.free_pages;
        free += j->c.free_pages;
        h->pages_saved = done - free;
        h->pages_free = free;
        h->zero_pages = zero;
        h->raw_bytes = (done - zero - free) * SOS_PAGE_SIZE;
        h->chunks = j->c.index + 1;
        h->bytes_written = s.bytes_written;
        report_progress(&prog, done);
    }
    compute_tsc += rdtsc() - t0;
    __atomic_store_n(&queue.stop, 1, __ATOMIC_RELEASE);
    uint32_t ap_rc = smp_wait();
    if (rc || (rc = ap_rc))
        return rc;
    h->disk_tsc = disk_tsc;
    h->compute_tsc = compute_tsc;
    uint64_t data_end = stream_tell(&s);
    if (buffered && (rc = stream_drain(&s)))
        return rc;

    /* 3. Flush, then the header, then flush again. */
    rc = stream_flush_cache(&s);
    if (rc)
        return rc;
    plugin_host_finish(SOS_STATUS_WRITTEN);    /* last frame: a plugin fault leaves no header */
    if (h->flags & SOS_HANDOFF_PAUSE_BEFORE_HEADER)
        pause_point("before-header");           /* the tool's power-cut tests stop here */
    memset(hdr, 0, SOS_IMAGE_HEADER_BLOCK);
    memcpy(hdr->magic, SOS_IMAGE_MAGIC, SOS_IMAGE_MAGIC_LEN);
    hdr->version = SOS_IMAGE_VERSION;
    hdr->flags = h->free_fill == SOS_FREE_FILL_ZERO ? SOS_IMAGEF_FREE_ZERO :
                 h->free_fill == SOS_FREE_FILL_POISON ? SOS_IMAGEF_FREE_POISON : 0;
    hdr->header_size = sizeof *hdr;
    hdr->state = SOS_IMAGE_VALID;
    hdr->compression = compress ? SOS_COMPRESS_LZ4 : SOS_COMPRESS_NONE;  /* LZ4HC: LZ4 blocks */
    hdr->checksum = SOS_CHECKSUM_XXH64;
    hdr->encryption = info->encryption;
    hdr->page_size = SOS_PAGE_SIZE;
    hdr->block_size = s.block;
    hdr->chunk_pages = chunk_pages;
    hdr->range_count = info->memory_count;
    hdr->extent_count = info->sector_count;
    memcpy(hdr->image_id, image_id, 16);
    hdr->memmap_hash = info->memmap_hash;
    hdr->extents_offset = SOS_IMAGE_HEADER_BLOCK;
    hdr->ranges_offset = SOS_IMAGE_HEADER_BLOCK + ext_bytes;
    hdr->chunks_offset = chunks_offset;
    hdr->chunk_count = queue.total;
    hdr->data_end = data_end;
    hdr->pages_total = pages_total;
    hdr->pages_data = pages_total - zero - free;
    hdr->pages_zero = zero;
    hdr->pages_free = (uint32_t)free;
    hdr->raw_bytes = (pages_total - zero - free) * SOS_PAGE_SIZE;
    hdr->stored_bytes = data_end - chunks_offset;
    hdr->tables_xxh64 = tables_hash;
    memcpy(&hdr->context, (const void *)&h->context, sizeof hdr->context);
    if (encrypt) {
        /* key_check: the tag of sealing nothing, with the header (state, key_check and
         * header_xxh64 zero) as associated data. state is restored right after. */
        uint8_t nonce[12];
        make_nonce(nonce, image_id, ~0ull);
        hdr->state = 0;
        aead_seal(key, nonce, (const uint8_t *)hdr, sizeof *hdr, 0, 0, hdr->key_check);
        hdr->state = SOS_IMAGE_VALID;
    }
    memset(key, 0, sizeof key);
    hdr->header_xxh64 = xxh64(hdr, sizeof *hdr, 0);
    s.pos = 0;
    rc = stream_write_buffer(&s, hdr, SOS_IMAGE_HEADER_BLOCK);
    if (!rc)
        rc = stream_flush_cache(&s);
    h->bytes_written = s.bytes_written;
    return rc;
}
