/*
 * Verifying and loading the blob. The checks mirror suspendos.formats.blob.unpack so that a
 * blob the Python side accepts is accepted here, and one it refuses is refused here.
 */
#include "blob.h"
#include "crc32.h"
#include "exit_codes.h"
#include "fastmem.h"
#include "range.h"
#include "string.h"

#define BAD(...) host_fail(EXIT_BAD_BLOB, "bad blob: " __VA_ARGS__)

/* [addr, addr + len) inside [base, base + size), without overflow. */
static int inside(uint64_t addr, uint64_t len, uint64_t base, uint64_t size)
{
    return addr >= base && len <= size && addr - base <= size - len;
}

void blob_verify(const void *data, uint64_t size, struct blob *b)
{
    const struct sos_blob_header *h = data;
    b->data = data;
    b->size = size;
    b->header = h;
    if (size < sizeof *h)
        BAD("%lu bytes, shorter than its header (%lu)", size, (uint64_t)sizeof *h);
    if (memcmp(h->magic, SOS_BLOB_MAGIC, SOS_BLOB_MAGIC_LEN))
        BAD("magic is not %s", SOS_BLOB_MAGIC);
    if (h->version != SOS_BLOB_VERSION)
        BAD("version %u, this host reads %u", h->version, SOS_BLOB_VERSION);
    if (h->header_size != sizeof *h)
        BAD("header_size %u, expected %lu", h->header_size, (uint64_t)sizeof *h);
    if (h->blob_size != size)
        BAD("header says %lu bytes, the module has %lu", h->blob_size, size);
    if (h->segment_count > SOS_BLOB_MAX_SEGMENTS)
        BAD("%u segments (at most %u)", h->segment_count, SOS_BLOB_MAX_SEGMENTS);
    if (sizeof *h + (uint64_t)h->segment_count * sizeof(struct sos_blob_segment) > size)
        BAD("segment table runs past the end");

    /* CRC over the whole blob with the crc32 field taken as zero (blob.crc_of). */
    uint64_t off = __builtin_offsetof(struct sos_blob_header, crc32);
    static const uint8_t zero[4];
    uint32_t crc = crc32_update(0, data, off);
    crc = crc32_update(crc, zero, 4);
    crc = crc32_update(crc, (const uint8_t *)data + off + 4, size - off - 4);
    if (crc != h->crc32)
        BAD("CRC32 0x%x, header says 0x%x (the blob is damaged)", crc, h->crc32);

    uint64_t base = h->load_base, rsize = h->reserved_size;
    if (!rsize || base % PAGE_SIZE || rsize % PAGE_SIZE || base + rsize < base)
        BAD("reserved region 0x%lx+0x%lx is not page-aligned", base, rsize);
    b->segments = (const struct sos_blob_segment *)((const uint8_t *)data + sizeof *h);
    for (uint32_t i = 0; i < h->segment_count; i++) {
        const struct sos_blob_segment *s = &b->segments[i];
        if (s->file_size && !inside(s->file_offset, s->file_size, 0, size))
            BAD("segment %u data lies past the end of the blob", i);
        if (s->file_size > s->mem_size)
            BAD("segment %u file size exceeds its memory size", i);
        if (!inside(s->addr, s->mem_size, base, rsize))
            BAD("segment %u at 0x%lx lies outside the reserved region", i, s->addr);
    }
    if (!inside(h->entry, 1, base, rsize))
        BAD("entry 0x%lx outside the reserved region", h->entry);
    if (!inside(h->handoff, sizeof(struct sos_handoff), base, rsize) || h->handoff % 8)
        BAD("handoff block 0x%lx misplaced", h->handoff);
}

struct sos_handoff *blob_load(const struct blob *b)
{
    const struct sos_blob_header *h = b->header;
    fast_zero((void *)(uintptr_t)h->load_base, h->reserved_size);
    for (uint32_t i = 0; i < h->segment_count; i++) {
        const struct sos_blob_segment *s = &b->segments[i];
        uint8_t *dst = (uint8_t *)(uintptr_t)s->addr;
        memcpy(dst, b->data + s->file_offset, s->file_size);
        memset(dst + s->file_size, 0, s->mem_size - s->file_size);
    }
    struct sos_handoff *ho = (struct sos_handoff *)(uintptr_t)h->handoff;
    if (ho->magic != SOS_HANDOFF_MAGIC || ho->revision != SOS_HANDOFF_REVISION ||
        ho->size != sizeof *ho)
        BAD("handoff block at 0x%lx: magic 0x%x revision %u size %u, expected 0x%x %u %lu",
            h->handoff, ho->magic, ho->revision, ho->size, SOS_HANDOFF_MAGIC,
            SOS_HANDOFF_REVISION, (uint64_t)sizeof *ho);
    return ho;
}
