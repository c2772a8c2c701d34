/*
 * Reading the image back (layout: suspendos/formats/image.py).
 *
 * image_open    the header block and the tables: every check that needs no chunk.
 * image_verify  pass 1: every chunk, read into scratch only: header checksum, magic, index
 *               and first_page continuity, data_xxh64, the AEAD tag of encrypted chunks
 *               (over the ciphertext: nothing is decrypted), and for unencrypted LZ4 chunks
 *               the block decoding to exactly data_pages * 4096 bytes. Nothing outside the
 *               reserved region is written; any failure refuses the image.
 * image_restore pass 2: the checks again on what is read now (the tag, or data_xxh64), the
 *               one decryption, and the pages written: raw chunks DMA'd straight into their
 *               pages (then hashed from RAM), other chunks decoded in scratch and copied or
 *               straight into contiguous pages, zero pages zero-filled. A failure here ends
 *               in restore_failed(): never in a return into the host.
 *
 * Reads go through stream.c (image offsets to LBAs over the extents), through one read
 * buffer in scratch; the data of raw chunks in the restore pass bypasses it.
 *
 * With several CPUs (cpus.c) both passes go by batches instead: the boot CPU reads as many
 * whole chunks as fit one half of the read buffer and checks their headers in order, then
 * every CPU takes chunks of the batch (an atomic counter) and checks, decrypts and decodes
 * them, each into its own LZ4 output or straight into the chunk's pages; meanwhile the boot
 * CPU reads the next batch into the other half, then joins in. Verdicts are taken in chunk
 * order after each batch, so the first bad chunk is the one reported, as with one CPU.
 * Streamed raw chunks end a batch and go the one-CPU way.
 */
#include "resume.h"
#include "payload.h"
#include "disk.h"
#include "chacha20poly1305.h"
#include "cpus.h"
#include "fastmem.h"
#include "lz4.h"
#include "parse.h"
#include "printf.h"
#include "stream.h"
#include "string.h"
#include "timer.h"
#include "xxh64.h"

#define SECTOR ((uint64_t)im.s.block)   /* the disk's logical block */
#define PAGE   SOS_PAGE_SIZE
#define CHUNK_FIXED sizeof(struct sos_chunk_header)
#define MAX_BITMAP  PARSE_MAX_BITMAP

static struct {
    const struct sos_payload_info *info;
    const struct sos_mem_range *ranges;         /* our memory list */
    struct stream s;
    struct sos_image_header *hdr;               /* the header block as read (scratch) */
    uint8_t *tables;                            /* [4096, chunks_offset) as read (scratch) */
    uint64_t tables_bytes;
    uint8_t *out;                               /* LZ4 output, out_cap bytes */
    uint64_t out_cap;
    uint8_t *buf;                               /* read buffer: image bytes [base, base+len) */
    uint64_t cap, base, len;
    uint64_t end;                               /* data_end rounded up to a sector */
    uint8_t key[AEAD_KEY_SIZE];
    int restoring;
    uint64_t bytes_read;
    uint8_t *cpu_out[SOS_MAX_CPUS + 1];         /* each CPU's LZ4 output ([0] = out) */
    uint64_t half;                              /* batch buffer size: cap / 2, or cap */
} im;

static struct disk_sg sg[SOS_MAX_CHUNK_PAGES + 1];

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

/* Raw chunks' header fills one logical block (image_writer.c): 512 or 4096 bytes. */
static uint64_t raw_header_size(void)
{
    return SECTOR > SOS_RAW_CHUNK_HEADER ? SECTOR : SOS_RAW_CHUNK_HEADER;
}

static uint64_t bitmap_bytes(uint32_t pages)
{
    return parse_bitmap_bytes(pages);
}

/* ---- pages of the memory list ------------------------------------------------------- */

/* Where saved page number `page` lives. The cursor remembers the range it was found in,
 * so walking forward costs nothing; going back starts over. */
struct cursor {
    uint32_t range;
    uint64_t base;                              /* page number of that range's first page */
};

static uint64_t page_address(uint64_t page, struct cursor *k)
{
    const struct sos_mem_range *r = im.ranges;
    if (page < k->base)
        *k = (struct cursor){ 0, 0 };
    for (; k->range < im.info->memory_count; k->range++) {
        uint64_t n = (r[k->range].end - r[k->range].start) / PAGE;
        if (page < k->base + n)
            return r[k->range].start + (page - k->base) * PAGE;
        k->base += n;
    }
    return 0;                                   /* past the list: the callers check first */
}

/* ---- reading ---------------------------------------------------------------------------- */

static void read_failed(void)
{
    const char *why = (const char *)sos_run.handoff->message;
    if (im.restoring)
        restore_failed("read error: %s", why);
    refuse(REFUSE_READ_ERROR, "%s", why);
}

static void read_image(uint64_t pos, const struct disk_sg *v, unsigned n, uint64_t bytes)
{
    uint64_t t = rdtsc();
    im.s.pos = pos;
    if (stream_read(&im.s, v, n, bytes))
        read_failed();
    im.bytes_read += bytes;
    sos_run.handoff->disk_tsc += rdtsc() - t;   /* a resume's handoff: the boot CPU reading */
}

static void read_buffer(uint64_t pos, void *dst, uint64_t bytes)
{
    struct disk_sg one = { (uint64_t)(uintptr_t)dst, (uint32_t)bytes };
    read_image(pos, &one, 1, bytes);
}

/* Image bytes [pos, pos + n) in the read buffer, reading what is missing: as much as fits,
 * from the sector holding pos, keeping what is already there. n <= cap - SECTOR. */
static const uint8_t *window(uint64_t pos, uint64_t n)
{
    if (pos >= im.base && pos + n <= im.base + im.len)
        return im.buf + (pos - im.base);
    uint64_t from = pos & ~(uint64_t)(SECTOR - 1), kept = 0;
    if (from >= im.base && from < im.base + im.len) {
        kept = im.base + im.len - from;
        memmove(im.buf, im.buf + (from - im.base), kept);
    }
    im.base = from;
    im.len = kept;
    uint64_t want = im.cap - kept;
    if (want > im.end - (from + kept))
        want = im.end - (from + kept);
    if (pos + n > from + kept + want)           /* callers check bounds first: a bug */
        refuse(REFUSE_BAD_CONFIG, "read window 0x%lx+0x%lx does not fit", pos, n);
    if (want)
        read_buffer(from + kept, im.buf + kept, want);
    im.len += want;
    return im.buf + (pos - im.base);
}

/* How many bytes from pos (at most max) the buffer holds, refilling it if none. */
static uint64_t span(uint64_t pos, uint64_t max)
{
    if (!(pos >= im.base && pos < im.base + im.len))
        window(pos, max < SECTOR ? max : SECTOR);
    uint64_t have = im.base + im.len - pos;
    return have < max ? have : max;
}

/* Image bytes [pos, pos + n) without reading ahead: the restore pass reads a chunk header
 * this way, since a raw chunk's data then goes straight to its pages, not to the buffer. */
static const uint8_t *peek(uint64_t pos, uint64_t n)
{
    if (pos >= im.base && pos + n <= im.base + im.len)
        return im.buf + (pos - im.base);
    im.base = pos & ~(uint64_t)(SECTOR - 1);
    im.len = align_up(pos + n, SECTOR) - im.base;
    if (im.base + im.len > im.end)
        im.len = im.end - im.base;
    read_buffer(im.base, im.buf, im.len);
    return im.buf + (pos - im.base);
}

/* ---- the header and the tables -------------------------------------------------------- */

static void make_nonce(uint8_t nonce[AEAD_NONCE_SIZE], uint64_t index)
{
    memcpy(nonce, im.hdr->image_id, 4);
    memcpy(nonce + 4, &index, 8);
}

/* key_check: the tag of sealing nothing under nonce image_id[0:4] || 2^64-1, with the
 * header (state, key_check, header_xxh64 zeroed) as associated data. */
static int key_opens_header(void)
{
    static struct sos_image_header aad;
    uint8_t nonce[AEAD_NONCE_SIZE], none[1];
    memcpy(&aad, im.hdr, sizeof aad);
    aad.state = 0;
    memset(aad.key_check, 0, sizeof aad.key_check);
    aad.header_xxh64 = 0;
    make_nonce(nonce, ~0ull);
    return aead_open(im.key, nonce, (const uint8_t *)&aad, sizeof aad, none, 0,
                     im.hdr->key_check) == 0;
}

static struct image_expect expected(uint64_t disk_sectors)
{
    const struct sos_payload_info *info = im.info;
    return (struct image_expect){
        .memmap_hash = info->memmap_hash,
        .extents = im.s.extents, .extent_count = info->sector_count,
        .ranges = im.ranges, .range_count = info->memory_count,
        .capacity = info->image_sectors * SECTOR, .disk_sectors = disk_sectors,
        .block_size = info->block_size,
    };
}

/* parse.c checks; a failure is a refusal (nothing is written yet). */
static void check_header(uint64_t disk_sectors)
{
    struct image_expect e = expected(disk_sectors);
    struct parse_error err;
    if (parse_header(im.hdr, &e, &err))
        refuse(err.why, "%s", err.msg);
}

static void check_tables(uint64_t disk_sectors)
{
    struct image_expect e = expected(disk_sectors);
    struct parse_error err;
    if (parse_tables(im.tables, im.hdr, &e, &err))
        refuse(err.why, "%s", err.msg);
    if (im.hdr->encryption != SOS_ENCRYPT_NONE && !key_opens_header())
        refuse(REFUSE_WRONG_KEY, "wrong key: the image's key_check does not open with the "
               "loader's key");
}

/* The APs' stacks and LZ4 outputs come out of scratch, after the boot CPU's: as many APs
 * as leave the read buffer room for four of the biggest chunks (two batch buffers). */
static void start_cpus(const struct boot_info *boot, uint8_t **p, uint8_t *end,
                       uint64_t biggest)
{
    uint64_t stride = align_up(CPUS_AP_STACK + im.out_cap, PAGE);
    uint64_t room = (uint64_t)(end - *p), keep = 4 * biggest;
    unsigned n = room > keep ? (unsigned)((room - keep) / stride) : 0;
    if (n > SOS_MAX_CPUS)
        n = SOS_MAX_CPUS;
    if (!n && cpus_found())
        kprintf("@@CPU the loader's scratch leaves no room for APs: one CPU\n");
    /* Raw chunks go by DMA straight into their pages: nothing for the APs to do. */
    if (im.hdr->compression == SOS_COMPRESS_NONE && im.hdr->encryption == SOS_ENCRYPT_NONE &&
        n && cpus_found()) {
        kprintf("@@CPU an uncompressed, unencrypted image is streamed: one CPU\n");
        n = 0;
    }
    im.cpu_out[0] = im.out;
    /* CPU c (1..): stack [*p + (c-1)*stride, + CPUS_AP_STACK), then its LZ4 output. */
    uint8_t *base = *p;
    unsigned cpus = cpus_start(boot, n, base - stride + CPUS_AP_STACK, stride);
    for (unsigned c = 1; c < cpus; c++)
        im.cpu_out[c] = base + (uint64_t)(c - 1) * stride + CPUS_AP_STACK;
    *p += (uint64_t)(cpus - 1) * stride;
}

void image_check(uint64_t disk_sectors)
{
    const struct sos_payload_info *info = sos_run.info;
    im.info = info;
    im.ranges = (const void *)(uintptr_t)info->memory_list;
    im.s = (struct stream){
        .block = info->block_size,
        .extents = (const void *)(uintptr_t)info->sector_list,
        .extent_count = info->sector_count,
        .capacity = info->image_sectors * info->block_size,
        .max_command = (uint64_t)info->max_command_sectors * info->block_size,
    };
    memcpy(im.key, (const void *)info->key, sizeof im.key);

    /* Scratch after the driver's area: header block | tables | LZ4 output | read buffer */
    uint8_t *p = (uint8_t *)(uintptr_t)(info->scratch_base + PAYLOAD_DISK_DMA_SIZE);
    uint8_t *scratch_end = (uint8_t *)(uintptr_t)(info->scratch_base + info->scratch_size);
    im.hdr = (void *)p;
    p += SOS_IMAGE_HEADER_BLOCK;
    im.tables = p;
    im.tables_bytes = align_up(SOS_IMAGE_HEADER_BLOCK +
                               info->sector_count * sizeof(struct sos_extent) +
                               info->memory_count * sizeof(struct sos_mem_range), PAGE) -
                      SOS_IMAGE_HEADER_BLOCK;
    p += im.tables_bytes;
    if (p + 4 * PAGE > scratch_end)
        refuse(REFUSE_BAD_CONFIG, "scratch too small for the tables");

    const struct sos_extent *ext = im.s.extents;
    if (ext[0].lba + SOS_IMAGE_HEADER_BLOCK / SECTOR > disk_sectors)
        refuse(REFUSE_TRUNCATED, "truncated disk: %lu sectors, the image header is at LBA %lu",
               disk_sectors, ext[0].lba);
    read_buffer(0, im.hdr, SOS_IMAGE_HEADER_BLOCK);
    check_header(disk_sectors);
    read_buffer(SOS_IMAGE_HEADER_BLOCK, im.tables, im.tables_bytes);
    check_tables(disk_sectors);
}

void image_open(uint64_t disk_sectors, const struct boot_info *boot)
{
    const struct sos_payload_info *info = sos_run.info;
    image_check(disk_sectors);
    uint8_t *p = im.tables + im.tables_bytes;
    uint8_t *scratch_end = (uint8_t *)(uintptr_t)(info->scratch_base + info->scratch_size);

    /* LZ4 output holds one chunk's pages; the read buffer at least one whole buffered
     * chunk (raw unencrypted chunks of any size are streamed). */
    const struct sos_image_header *h = im.hdr;
    im.out = p;
    im.out_cap = h->compression == SOS_COMPRESS_LZ4 ? (uint64_t)h->chunk_pages * PAGE : 0;
    p += im.out_cap;
    uint64_t biggest = align_up(CHUNK_FIXED + parse_bitmaps_bytes(h->chunk_pages,
                                                                  SOS_CHUNKF_FREE),
                                SOS_CHUNK_ALIGN) +
                       (uint64_t)h->chunk_pages * PAGE + SOS_CHUNK_ALIGN + SECTOR;
    if (h->compression == SOS_COMPRESS_NONE && h->encryption == SOS_ENCRYPT_NONE)
        biggest = 4 * PAGE;
    if (p > scratch_end || (uint64_t)(scratch_end - p) < biggest)
        refuse(REFUSE_UNSUPPORTED, "chunks of %u pages do not fit the loader's scratch "
               "(%lu bytes)", h->chunk_pages, info->scratch_size);
    start_cpus(boot, &p, scratch_end, biggest);
    im.buf = p;
    im.cap = (uint64_t)(scratch_end - p) & ~(uint64_t)(SECTOR - 1);
    im.end = align_up(h->data_end, SECTOR);
    /* Two batch buffers when two of the biggest chunks fit each: read while decoding. */
    im.half = im.cap;
    if (cpus_in_run() > 1 && (im.cap / 2 & ~(uint64_t)(SECTOR - 1)) >= 2 * biggest)
        im.half = im.cap / 2 & ~(uint64_t)(SECTOR - 1);
    kprintf("@@RESUME image pages=%lu data=%lu zero=%lu chunks=%lu bytes=%lu compression=%u "
            "encryption=%u free=%u\n", h->pages_total, h->pages_data, h->pages_zero,
            h->chunk_count, h->data_end, h->compression, h->encryption, h->pages_free);
}

const struct sos_cpu_context *image_context(void)
{
    return &im.hdr->context;
}

/* ---- chunks ------------------------------------------------------------------------------ */

/* Physical range of a chunk's pages, for messages ("[first, last page end)"). */
static void chunk_where(const struct parsed_chunk *c, uint64_t *from, uint64_t *to)
{
    struct cursor k = { 0, 0 };
    uint64_t pages = c->h.page_count ? c->h.page_count : 1;
    *from = page_address(c->first_page, &k);
    *to = page_address(c->first_page + pages - 1, &k) + PAGE;
}

static __attribute__((noreturn)) void chunk_bad(const struct parsed_chunk *c, const char *what)
{
    uint64_t from, to;
    chunk_where(c, &from, &to);
    if (im.restoring)
        restore_failed("chunk %lu (RAM 0x%lx-0x%lx) changed on disk after the verify pass: %s",
                       c->index, from, to, what);
    refuse(REFUSE_CHUNK_DAMAGED, "chunk %lu (RAM 0x%lx-0x%lx, image byte %lu): %s", c->index,
           from, to, c->offset, what);
}

/* Raw, unencrypted chunks with the one-block header are never decoded: the verify pass
 * streams them through the buffer, the restore pass DMAs them into their pages. */
static int streamed(const struct parsed_chunk *c)
{
    return c->h.encoding == SOS_CHUNK_RAW && !(c->h.flags & SOS_CHUNKF_ENCRYPTED) &&
           c->h.header_size == raw_header_size() && c->offset % SECTOR == 0;
}

/* Read and check the header of the chunk at c->offset: through the read buffer in the
 * verify pass, without reading ahead in the restore pass. */
static void next_chunk_header(struct parsed_chunk *c)
{
    const uint8_t *(*get)(uint64_t, uint64_t) = im.restoring ? peek : window;
    if (c->offset + CHUNK_FIXED > im.hdr->data_end)
        chunk_bad(c, "missing: the image's data ends before it");
    const uint8_t *p = get(c->offset, CHUNK_FIXED);
    uint32_t pages = ((const struct sos_chunk_header *)p)->page_count;
    uint32_t flags = ((const struct sos_chunk_header *)p)->flags;
    uint64_t need = CHUNK_FIXED + parse_bitmaps_bytes(pages <= SOS_MAX_CHUNK_PAGES ? pages : 0,
                                                      flags);
    if (c->offset + need > im.hdr->data_end)
        need = CHUNK_FIXED;
    const char *what = parse_chunk_header(get(c->offset, need), need, im.hdr, c);
    if (what)
        chunk_bad(c, what);
}

/* An encrypted chunk's AEAD inputs: nonce image_id[0:4] || index, associated data image_id
 * || its header and bitmaps with tag, data_xxh64 and header_xxh64 zeroed (formats/image.py).
 * Returns the associated data's length. */
#define CHUNK_AAD_MAX (16 + CHUNK_FIXED + 2 * MAX_BITMAP)
static uint64_t chunk_aead_inputs(const struct parsed_chunk *c, uint8_t aad[CHUNK_AAD_MAX],
                                  uint8_t nonce[AEAD_NONCE_SIZE])
{
    const struct sos_chunk_header *h = &c->h;
    struct sos_chunk_header *a = (struct sos_chunk_header *)(aad + 16);
    uint64_t blen = bitmap_bytes(h->page_count);
    memcpy(aad, im.hdr->image_id, 16);
    memcpy(a, h, CHUNK_FIXED);
    memset(a->tag, 0, sizeof a->tag);
    a->data_xxh64 = 0;
    a->header_xxh64 = 0;
    memcpy(aad + 16 + CHUNK_FIXED, c->bitmap, blen);
    if (h->flags & SOS_CHUNKF_FREE)
        memcpy(aad + 16 + CHUNK_FIXED + blen, c->free_bitmap, blen);
    make_nonce(nonce, c->index);
    return 16 + CHUNK_FIXED + parse_bitmaps_bytes(h->page_count, h->flags);
}

/* A chunk's stored bytes, checked; what is wrong, or 0.
 *
 * Verify pass: data_xxh64 and, when encrypted, the AEAD tag alone (aead_verify: Poly1305
 * over the ciphertext, one ChaCha20 block for its key): no plaintext is produced, so an
 * encrypted image is decrypted once, in the restore pass, not twice.
 * Restore pass (what is read now may differ from what was verified): an encrypted chunk is
 * opened (its tag checked again, then decrypted in place); the tag covers everything
 * data_xxh64 does and more, so the hash is not computed twice. An unencrypted one is
 * checked against data_xxh64 again. */
static const char *check_stored(const struct parsed_chunk *c, uint8_t *data)
{
    const struct sos_chunk_header *h = &c->h;
    int encrypted = (h->flags & SOS_CHUNKF_ENCRYPTED) != 0;
    if ((!im.restoring || !encrypted) && xxh64(data, h->stored_size, 0) != h->data_xxh64)
        return "data checksum mismatch";
    if (encrypted) {
        uint8_t aad[CHUNK_AAD_MAX], nonce[AEAD_NONCE_SIZE];
        uint64_t alen = chunk_aead_inputs(c, aad, nonce);
        int bad = im.restoring
                  ? aead_open(im.key, nonce, aad, alen, data, h->stored_size, h->tag)
                  : aead_verify(im.key, nonce, aad, alen, data, h->stored_size, h->tag);
        if (bad)
            return "authentication tag mismatch";
    }
    return 0;
}

/* Whether the verify pass can prove an LZ4 block decodes to exactly its data pages: only
 * from plaintext, so not for an encrypted chunk, whose plaintext the verify pass no longer
 * makes. Why that is safe (docs/RELIABILITY.md, "Encrypted images: one decryption"): the
 * tag the verify pass checked binds the ciphertext, the chunk header (encoding, data_pages,
 * stored_size, bitmaps), this image's id and the chunk's index to the key, so the block is
 * byte for byte the one our payload's compressor sealed, and that compressor only emits
 * blocks that decode to their pages. Only a holder of the key could seal a malformed one,
 * and a key holder can already seal any page contents at all. Even then the restore pass's
 * decoder is bounds-checked: it writes nothing outside the chunk's own data pages (or
 * scratch), and a block that does not decode exactly ends in restore_failed(). */
static int lz4_provable(const struct parsed_chunk *c)
{
    return c->h.encoding == SOS_CHUNK_LZ4 && !(c->h.flags & SOS_CHUNKF_ENCRYPTED);
}

/* The stored bytes of a buffered chunk, checked (data_xxh64, AEAD tag) and, in the restore
 * pass, decoded to `out`: returns where its data pages are, data_pages * 4096 bytes (`out`
 * for LZ4, the read buffer for raw). Decrypts in the read buffer. */
static const uint8_t *open_chunk(struct parsed_chunk *c, uint8_t *out)
{
    const struct sos_chunk_header *h = &c->h;
    uint64_t total = h->header_size + (uint64_t)h->stored_size;
    if (total + SECTOR > im.cap)
        chunk_bad(c, "larger than the loader's read buffer");
    uint8_t *data = (uint8_t *)window(c->offset, total) + h->header_size;
    const char *why = check_stored(c, data);
    if (why)
        chunk_bad(c, why);
    if (h->encoding == SOS_CHUNK_LZ4) {
        int want = (int)(h->data_pages * PAGE);
        if ((uint64_t)want > im.out_cap)
            chunk_bad(c, "LZ4 block does not decode to its data pages");
        /* Verify: the structure proves the block decodes to exactly its pages (an
         * encrypted block: its tag does, lz4_provable()). */
        int got = im.restoring ? lz4_decompress_safe(data, (int)h->stored_size, out, want)
                  : lz4_provable(c) ? lz4_decoded_size(data, (int)h->stored_size, want)
                  : want;
        if (got != want)
            chunk_bad(c, "LZ4 block does not decode to its data pages");
        return out;
    }
    return data;
}

static uint64_t stream_hash(uint64_t pos, uint64_t bytes)
{
    struct xxh64_state st;
    xxh64_reset(&st, 0);
    while (bytes) {
        uint64_t n = span(pos, bytes);
        xxh64_update(&st, im.buf + (pos - im.base), n);
        pos += n;
        bytes -= n;
    }
    return xxh64_digest(&st);
}

static void copy_page(uint64_t dst, const uint8_t *src)
{
    uint64_t *d = (uint64_t *)(uintptr_t)dst;
    const u64_unaligned *s = (const u64_unaligned *)src;
    for (unsigned i = 0; i < PAGE / 8; i += 8) {
        d[i + 0] = s[i + 0]; d[i + 1] = s[i + 1]; d[i + 2] = s[i + 2]; d[i + 3] = s[i + 3];
        d[i + 4] = s[i + 4]; d[i + 5] = s[i + 5]; d[i + 6] = s[i + 6]; d[i + 7] = s[i + 7];
    }
}

static int is_zero_page(const struct parsed_chunk *c, uint32_t i)
{
    return (c->bitmap[i / 8] >> (i % 8)) & 1;
}

/* A page free in the host at the handoff: not in the image. Left as this boot left it,
 * unless the host's allocator expects its free pages zeroed or poisoned (image flags). */
static int free_page(const struct parsed_chunk *c, uint32_t i, uint64_t addr)
{
    if (!((c->free_bitmap[i / 8] >> (i % 8)) & 1))
        return 0;
    if (im.hdr->flags & SOS_IMAGEF_FREE_ZERO)
        fast_zero((void *)(uintptr_t)addr, PAGE);
    else if (im.hdr->flags & SOS_IMAGEF_FREE_POISON)
        memset((void *)(uintptr_t)addr, SOS_FREE_POISON_BYTE, PAGE);
    return 1;
}

/* Zero-copy: the data pages by DMA straight into RAM, then hashed where they landed. */
static void restore_streamed(struct parsed_chunk *c, struct cursor *k)
{
    unsigned n = 0;
    for (uint32_t i = 0; i < c->h.page_count; i++) {
        uint64_t a = page_address(c->first_page + i, k);
        if (free_page(c, i, a))
            continue;
        if (is_zero_page(c, i)) {
            fast_zero((void *)(uintptr_t)a, PAGE);
        } else if (n && sg[n - 1].addr + sg[n - 1].bytes == a &&
                   sg[n - 1].bytes <= (1u << 22) - PAGE) {
            sg[n - 1].bytes += PAGE;
        } else {
            sg[n].addr = a;
            sg[n].bytes = PAGE;
            n++;
        }
    }
    if (n)
        read_image(c->offset + c->h.header_size, sg, n, c->h.stored_size);
    struct xxh64_state st;
    xxh64_reset(&st, 0);
    for (unsigned j = 0; j < n; j++)
        xxh64_update(&st, (const void *)(uintptr_t)sg[j].addr, sg[j].bytes);
    if (xxh64_digest(&st) != c->h.data_xxh64)
        chunk_bad(c, "data checksum mismatch in RAM after the DMA");
}

/* Decoded (or decrypted) in scratch, then copied to the pages; an LZ4 block whose data
 * pages are contiguous in RAM is decoded straight into them. */
static void restore_buffered(struct parsed_chunk *c, struct cursor *k)
{
    static uint64_t where[SOS_MAX_CHUNK_PAGES];
    uint64_t expect = 0;
    int contiguous = c->h.encoding == SOS_CHUNK_LZ4, seen = 0;
    uint8_t *direct = 0;
    for (uint32_t i = 0; i < c->h.page_count; i++) {
        where[i] = page_address(c->first_page + i, k);
        if (is_zero_page(c, i) || ((c->free_bitmap[i / 8] >> (i % 8)) & 1))
            continue;
        if (!seen++)
            expect = where[i];          /* page 0 is saved RAM too: no 0 sentinel */
        contiguous &= where[i] == expect;
        expect += PAGE;
    }
    if (contiguous && seen)             /* (a span at address 0 is copied: 0 = none) */
        direct = (uint8_t *)(uintptr_t)(expect - (uint64_t)seen * PAGE);
    const uint8_t *src = open_chunk(c, direct ? direct : im.out);
    int in_place = direct && src == direct;     /* zero pages lie outside that span */
    for (uint32_t i = 0; i < c->h.page_count; i++) {
        if (free_page(c, i, where[i]))
            continue;
        if (is_zero_page(c, i)) {
            fast_zero((void *)(uintptr_t)where[i], PAGE);
        } else {
            if (!in_place)
                copy_page(where[i], src);
            src += PAGE;
        }
    }
}

/* ---- several CPUs: batches --------------------------------------------------------------- */

#define BATCH_MAX 96                            /* chunks in one batch */

struct item {
    struct parsed_chunk c;
    uint8_t *p;                                 /* its header in the batch buffer */
    struct cursor k;                            /* page cursor at or before its first page */
    const char *bad;                            /* set by the CPU that opened it */
};

struct batch {
    uint8_t *buf;
    uint64_t base, len;                         /* image bytes [base, base + len) in buf */
    unsigned n;
    uint32_t next_item;                         /* the CPUs' work counter */
    struct parsed_chunk stop;                   /* the chunk after the batch */
    const char *stop_bad;                       /* its header is wrong: that, in order */
    int stop_streamed;                          /* it is a streamed raw chunk */
    struct item items[BATCH_MAX];
};

static struct batch batches[2];

/* Image bytes from c's sector on into b (as much as fits: what `prev` already holds past
 * its last chunk is copied, the rest read), then the headers of the whole chunks there
 * checked in order, until one is missing, wrong, streamed, or the batch is full. c becomes
 * b->stop. Boot CPU only; `prev` may be b itself, or the batch the CPUs are working on
 * (they touch only its chunks, which lie before c). */
static void fill(struct batch *b, struct parsed_chunk *c, struct cursor *k,
                 const struct batch *prev)
{
    const struct sos_image_header *ih = im.hdr;
    uint64_t base = c->offset & ~(uint64_t)(SECTOR - 1), len = im.half, have = 0;
    if (len > im.end - base)
        len = im.end - base;
    if (prev && base >= prev->base && base < prev->base + prev->len) {
        have = prev->base + prev->len - base;
        if (have > len)
            have = len;
        memmove(b->buf, prev->buf + (base - prev->base), have);
    }
    b->n = 0;
    b->stop_bad = 0;
    b->stop_streamed = 0;
    b->next_item = 0;
    b->base = base;
    b->len = have;
    if (len > have && c->index < ih->chunk_count && c->offset + CHUNK_FIXED <= ih->data_end) {
        read_buffer(base + have, b->buf + have, len - have);
        b->len = len;
    }
    len = b->len;
    while (c->index < ih->chunk_count && b->n < BATCH_MAX) {
        if (c->offset + CHUNK_FIXED > ih->data_end) {
            b->stop_bad = "missing: the image's data ends before it";
            break;
        }
        uint64_t avail = base + len - c->offset;
        uint8_t *p = b->buf + (c->offset - base);
        if (avail < CHUNK_FIXED)
            break;
        uint32_t pages = ((const struct sos_chunk_header *)p)->page_count;
        uint32_t flags = ((const struct sos_chunk_header *)p)->flags;
        uint64_t need = CHUNK_FIXED +
                        parse_bitmaps_bytes(pages <= SOS_MAX_CHUNK_PAGES ? pages : 0, flags);
        if (c->offset + need > ih->data_end)
            need = CHUNK_FIXED;
        if (need > avail)
            break;
        const char *what = parse_chunk_header(p, need, ih, c);
        if (what) {
            b->stop_bad = what;
            break;
        }
        if (streamed(c)) {
            b->stop_streamed = 1;
            break;
        }
        uint64_t total = c->h.header_size + (uint64_t)c->h.stored_size;
        if (total > avail) {
            if (!b->n)
                b->stop_bad = "larger than the loader's read buffer";
            break;
        }
        struct item *it = &b->items[b->n++];
        page_address(c->first_page, k);         /* moves the cursor up to this chunk */
        it->c = *c;
        it->p = p;
        it->k = *k;
        it->bad = 0;
        c->first_page += c->h.page_count;
        c->offset = c->next;
        c->index++;
    }
    if (!b->n && !b->stop_bad && !b->stop_streamed && c->index < ih->chunk_count)
        b->stop_bad = "larger than the loader's read buffer";     /* never loops empty */
    b->stop = *c;
}

/* Checks (and in the restore pass decodes and writes) one chunk of a batch; what is
 * wrong, or 0. Any CPU: touches only the item, its pages and this CPU's LZ4 output. */
static const char *open_item(struct item *it, unsigned cpu)
{
    struct parsed_chunk *c = &it->c;
    const struct sos_chunk_header *h = &c->h;
    uint8_t *data = it->p + h->header_size;
    const char *why = check_stored(c, data);
    if (why)
        return why;
    int want = (int)(h->data_pages * PAGE);
    if (h->encoding == SOS_CHUNK_LZ4 && (uint64_t)want > im.out_cap)
        return "LZ4 block does not decode to its data pages";
    if (!im.restoring) {
        if (lz4_provable(c) && lz4_decoded_size(data, (int)h->stored_size, want) != want)
            return "LZ4 block does not decode to its data pages";
        return 0;
    }
    /* Where the data pages go: one contiguous span is decoded in place (restore_buffered). */
    struct cursor k = it->k;
    uint64_t expect = 0, seen = 0;
    int contiguous = h->encoding == SOS_CHUNK_LZ4;
    for (uint32_t i = 0; i < h->page_count; i++) {
        uint64_t a = page_address(c->first_page + i, &k);
        if (is_zero_page(c, i) || ((c->free_bitmap[i / 8] >> (i % 8)) & 1))
            continue;
        if (!seen++)
            expect = a;
        contiguous &= a == expect;
        expect += PAGE;
    }
    uint8_t *direct = contiguous && seen ? (uint8_t *)(uintptr_t)(expect - seen * PAGE) : 0;
    const uint8_t *src = data;
    if (h->encoding == SOS_CHUNK_LZ4) {
        uint8_t *out = direct ? direct : im.cpu_out[cpu];
        if (lz4_decompress_safe(data, (int)h->stored_size, out, want) != want)
            return "LZ4 block does not decode to its data pages";
        src = out;
    }
    int in_place = direct && src == direct;
    k = it->k;
    for (uint32_t i = 0; i < h->page_count; i++) {
        uint64_t a = page_address(c->first_page + i, &k);
        if (free_page(c, i, a))
            continue;
        if (is_zero_page(c, i)) {
            fast_zero((void *)(uintptr_t)a, PAGE);
        } else {
            if (!in_place)
                copy_page(a, src);
            src += PAGE;
        }
    }
    return 0;
}

static void batch_job(unsigned cpu, void *arg)
{
    struct batch *b = arg;
    uint32_t i;
    while ((i = __atomic_fetch_add(&b->next_item, 1, __ATOMIC_RELAXED)) < b->n)
        b->items[i].bad = open_item(&b->items[i], cpu);
}

/* pass() on every CPU. */
static void pass_parallel(int restoring)
{
    const struct sos_image_header *ih = im.hdr;
    struct sos_handoff *h = sos_run.handoff;
    struct parsed_chunk c = { .offset = ih->chunks_offset };
    struct cursor k = { 0, 0 };
    uint64_t zero = 0, free = 0;
    struct batch *cur = &batches[0], *nxt = &batches[1];
    batches[0].buf = im.buf;
    batches[1].buf = im.buf + (im.half < im.cap ? im.half : 0);
    im.restoring = restoring;
    im.len = 0;                                 /* the one-CPU window holds nothing now */
    resume_progress(0, ih->pages_total);
    batches[0].len = batches[1].len = 0;
    fill(cur, &c, &k, 0);
    for (;;) {
        if (restoring && cur->n)
            resume_ram_touched = 1;
        cpus_post(batch_job, cur);
        int ahead = im.half < im.cap && cur->n && !cur->stop_bad && !cur->stop_streamed &&
                    cur->stop.index < ih->chunk_count;
        struct parsed_chunk n = cur->stop;
        if (ahead)
            fill(nxt, &n, &k, cur);             /* the disk works while the APs decode */
        batch_job(0, cur);
        cpus_wait();
        for (unsigned i = 0; i < cur->n; i++) {
            struct parsed_chunk *ci = &cur->items[i].c;
            if (cur->items[i].bad)
                chunk_bad(ci, cur->items[i].bad);
            if (restoring) {
                h->pages_saved = ci->first_page + ci->h.page_count - (free + ci->free);
                h->pages_free = free + ci->free;
                h->zero_pages += ci->zero;
                h->raw_bytes += (uint64_t)ci->h.data_pages * PAGE;
                h->chunks = ci->index + 1;
            }
            zero += ci->zero;
            free += ci->free;
        }
        c = cur->stop;
        h->bytes_written = im.bytes_read;
        resume_progress(c.first_page, ih->pages_total);
        if (cur->stop_bad)
            chunk_bad(&c, cur->stop_bad);
        if (cur->stop_streamed) {               /* the one-CPU way, through the window */
            im.len = 0;
            batches[0].len = batches[1].len = 0;    /* the window overwrites them */
            if (!restoring) {
                if (stream_hash(c.offset + c.h.header_size, c.h.stored_size) != c.h.data_xxh64)
                    chunk_bad(&c, "data checksum mismatch");
            } else {
                resume_ram_touched = 1;
                restore_streamed(&c, &k);
                h->pages_saved = c.first_page + c.h.page_count - (free + c.free);
                h->pages_free = free + c.free;
                h->zero_pages += c.zero;
                h->raw_bytes += (uint64_t)c.h.data_pages * PAGE;
                h->chunks = c.index + 1;
            }
            zero += c.zero;
            free += c.free;
            c.first_page += c.h.page_count;
            c.offset = c.next;
            c.index++;
            im.len = 0;
            h->bytes_written = im.bytes_read;
        }
        if (c.index >= ih->chunk_count)
            break;
        if (ahead) {
            struct batch *t = cur;
            cur = nxt;
            nxt = t;
        } else {
            fill(cur, &c, &k, cur);
        }
    }
    if (c.first_page != ih->pages_total || c.offset != ih->data_end || zero != ih->pages_zero ||
        free != ih->pages_free)
        refuse(REFUSE_HEADER_DAMAGED, "the chunks end at page %lu, byte %lu with %lu zero and "
               "%lu free pages; the header says %lu, %lu, %lu, %u", c.first_page, c.offset,
               zero, free, ih->pages_total, ih->data_end, ih->pages_zero, ih->pages_free);
}

/* One pass over every chunk: checks only (verify) or checks and writes (restore). */
static void pass(int restoring)
{
    const struct sos_image_header *ih = im.hdr;
    struct sos_handoff *h = sos_run.handoff;
    struct parsed_chunk c = { .offset = ih->chunks_offset };
    struct cursor k = { 0, 0 };
    uint64_t zero = 0, free = 0;
    im.restoring = restoring;
    resume_progress(0, ih->pages_total);
    for (c.index = 0; c.index < ih->chunk_count; c.index++) {
        next_chunk_header(&c);
        if (!restoring && streamed(&c)) {
            if (stream_hash(c.offset + c.h.header_size, c.h.stored_size) != c.h.data_xxh64)
                chunk_bad(&c, "data checksum mismatch");
        } else if (!restoring) {
            open_chunk(&c, im.out);
        } else {
            resume_ram_touched = 1;
            if (streamed(&c))
                restore_streamed(&c, &k);
            else
                restore_buffered(&c, &k);
            h->pages_saved = c.first_page + c.h.page_count - (free + c.free);
            h->pages_free = free + c.free;
            h->zero_pages += c.zero;
            h->raw_bytes += (uint64_t)c.h.data_pages * PAGE;
            h->chunks = c.index + 1;
        }
        zero += c.zero;
        free += c.free;
        c.first_page += c.h.page_count;
        c.offset = c.next;
        h->bytes_written = im.bytes_read;      /* a resume's handoff: bytes read */
        resume_progress(c.first_page, ih->pages_total);
    }
    if (c.first_page != ih->pages_total || c.offset != ih->data_end || zero != ih->pages_zero ||
        free != ih->pages_free)
        refuse(REFUSE_HEADER_DAMAGED, "the chunks end at page %lu, byte %lu with %lu zero and "
               "%lu free pages; the header says %lu, %lu, %lu, %u", c.first_page, c.offset,
               zero, free, ih->pages_total, ih->data_end, ih->pages_zero, ih->pages_free);
}

/* The boot CPU's time in a pass that was not reading: checking, decoding, writing pages,
 * waiting for the other CPUs (handoff.compute_tsc; disk_tsc counts the reads). */
static void account_compute(uint64_t start, uint64_t disk_at_start)
{
    struct sos_handoff *h = sos_run.handoff;
    uint64_t spent = rdtsc() - start, disk = h->disk_tsc - disk_at_start;
    h->compute_tsc += spent > disk ? spent - disk : 0;
}

void image_verify(void)
{
    uint64_t start = rdtsc(), disk0 = sos_run.handoff->disk_tsc;
    kprintf("@@RESUME verifying\n");
    if (cpus_in_run() > 1)
        pass_parallel(0);
    else
        pass(0);
    account_compute(start, disk0);
    kprintf("@@RESUME verified us=%lu bytes=%lu\n", timer_tsc_to_us(rdtsc() - start),
            im.bytes_read);
}

void image_restore(void)
{
    struct sos_handoff *h = sos_run.handoff;
    uint64_t start = rdtsc(), before = im.bytes_read, disk0 = h->disk_tsc;

    /* The header once more, before the first page is written: an image that changed
     * since the verify pass is still refused with RAM untouched. */
    static uint8_t again[SOS_IMAGE_HEADER_BLOCK];
    read_buffer(0, again, SOS_IMAGE_HEADER_BLOCK);
    if (memcmp(again, im.hdr, SOS_IMAGE_HEADER_BLOCK))
        refuse(REFUSE_HEADER_DAMAGED, "the image header changed during the verify pass");
    im.len = 0;

    kprintf("@@RESUME restoring\n");
    h->pages_total = im.hdr->pages_total;
    /* refuse() there becomes restore_failed(): RAM is touched */
    if (cpus_in_run() > 1)
        pass_parallel(1);
    else
        pass(1);
    account_compute(start, disk0);
    h->detail = im.hdr->data_end;          /* a resume's handoff: the image size in bytes */
    kprintf("@@RESUME restored us=%lu bytes=%lu\n", timer_tsc_to_us(rdtsc() - start),
            im.bytes_read - before);
}

/* One image, one resume: state RESUMED and a new header checksum (key_check stays valid,
 * it does not cover state), written and flushed before the host gets control back. */
void image_mark_resumed(void)
{
    struct sos_image_header *h = im.hdr;
    h->state = SOS_IMAGE_RESUMED;
    h->header_xxh64 = parse_header_hash(h);
    im.s.pos = 0;
    if (stream_write_buffer(&im.s, h, SOS_IMAGE_HEADER_BLOCK) || stream_flush_cache(&im.s))
        restore_failed("could not mark the image resumed: %s",
                       (const char *)sos_run.handoff->message);
    kprintf("@@RESUME image marked resumed\n");
}
