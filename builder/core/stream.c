#include "stream.h"
#include "payload.h"
#include "string.h"

#define MAX_PIECES 1100          /* a 1024-page raw chunk + header, plus splits */

/* The command in flight, kept to name the failing sector if it fails (corner_write_error). */
static struct disk_sg inflight[MAX_PIECES];
static unsigned inflight_n;
static uint64_t inflight_lba, inflight_bytes;
static int inflight_busy;

static uint32_t disk_error(struct stream *s, int rc, int write)
{
    const struct disk_error *e = disk_last_error();
    (void)s;
    sos_run.handoff->failed_lba = e->lba;
    sos_run.handoff->detail = e->detail;
    if (disk_media_error(rc))
        return fail(rc, "%s error at LBA %lu (%s %x)", write ? "write" : "read", e->lba,
                    disk_detail_name, e->detail);
    return fail(rc, "%s", e->what ? e->what : "disk command failed");
}

/* Copy the part [off, off + len) of a gather list into `out`; returns the piece count. */
static unsigned slice(const struct disk_sg *v, unsigned n, uint64_t off, uint64_t len,
                      struct disk_sg *out)
{
    unsigned k = 0;
    for (unsigned i = 0; i < n && len; i++) {
        if (off >= v[i].bytes) {
            off -= v[i].bytes;
            continue;
        }
        uint64_t take = v[i].bytes - off < len ? v[i].bytes - off : len;
        out[k].addr = v[i].addr + off;
        out[k].bytes = (uint32_t)take;
        k++;
        len -= take;
        off = 0;
    }
    return k;
}

/*
 * A write command failed. The run stops either way (a write error is not retried: the
 * medium is suspect and a half-trusted image is worse than none), but the device reports
 * only the command's first LBA. To name the failing sector, rewrite halves of the failed
 * range until the error is cornered in one sector (at most 2 * 16 commands). When it does
 * not repeat, the whole range is named.
 */
static uint32_t corner_write_error(struct stream *s, int first_status, uint64_t lba,
                                   const struct disk_sg *v, unsigned n, uint64_t bytes)
{
    static struct disk_sg piece[MAX_PIECES];
    uint64_t lo = 0, hi = bytes / s->block;             /* the error is in [lo, hi) */
    struct disk_error first = *disk_last_error();
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2, halves[2][2] = { { lo, mid }, { mid, hi } };
        int found = 0;
        for (int h = 0; h < 2 && !found; h++) {
            uint64_t a = halves[h][0], b = halves[h][1];
            unsigned k = slice(v, n, a * s->block, (b - a) * s->block, piece);
            int rc = disk_write(lba + a, piece, k);
            if (disk_media_error(rc)) {
                lo = a;
                hi = b;
                found = 1;
            }
        }
        if (!found)
            break;
    }
    uint32_t status = (uint32_t)first_status;
    sos_run.handoff->detail = first.detail;
    if (hi - lo == 1) {
        sos_run.handoff->failed_lba = lba + lo;
        return fail(status, "write error at LBA %lu (%s %x)", lba + lo, disk_detail_name,
                    first.detail);
    }
    sos_run.handoff->failed_lba = lba + lo;
    return fail(status, "write error in LBAs %lu-%lu, not repeated (%s %x)", lba + lo,
                lba + hi - 1, disk_detail_name, first.detail);
}

/* The LBA holding image byte `pos`, and how many bytes of its extent follow. */
static int locate(const struct stream *s, uint64_t pos, uint64_t *lba, uint64_t *room)
{
    uint64_t start = 0;
    for (uint32_t i = 0; i < s->extent_count; i++) {
        uint64_t len = s->extents[i].count * s->block;
        if (pos < start + len) {
            *lba = s->extents[i].lba + (pos - start) / s->block;
            *room = start + len - pos;
            return 1;
        }
        start += len;
    }
    return 0;
}

uint32_t stream_wait(struct stream *s)
{
    if (!inflight_busy)
        return 0;
    inflight_busy = 0;
    int rc = disk_wait();
    if (disk_media_error(rc))
        return corner_write_error(s, rc, inflight_lba, inflight, inflight_n, inflight_bytes);
    return rc ? disk_error(s, rc, 1) : 0;
}

/* Both directions: the gather list <-> image bytes [pos, pos + total), split at extents
 * and command size. Writes leave their last command running (stream_wait finishes it);
 * reads finish before returning. */
static uint32_t transfer(struct stream *s, const struct disk_sg *v, unsigned n, uint64_t total,
                         int write)
{
    if (s->pos + total > s->capacity)
        return fail(SOS_STATUS_IMAGE_FULL, "image extents full at byte %lu (%lu more needed)",
                    s->pos, s->pos + total - s->capacity);
    unsigned i = 0;
    uint64_t skip = 0;              /* bytes of v[i] already transferred */
    while (total) {
        uint64_t lba, room;
        if (!locate(s, s->pos, &lba, &room))
            return fail(SOS_STATUS_IMAGE_FULL, "no extent holds image byte %lu", s->pos);
        uint64_t want = total < room ? total : room;
        if (want > s->max_command)
            want = s->max_command;
        /* The previous command must end before `inflight` describes the next one. */
        uint32_t waited = stream_wait(s);
        if (waited)
            return waited;
        unsigned k = 0;
        uint64_t got = 0;
        while (got < want && k < MAX_PIECES) {
            uint64_t left = v[i].bytes - skip, take = want - got < left ? want - got : left;
            inflight[k].addr = v[i].addr + skip;
            inflight[k].bytes = (uint32_t)take;
            k++;
            got += take;
            skip += take;
            if (skip == v[i].bytes) {
                i++;
                skip = 0;
            }
        }
        if (got != want)
            return fail(SOS_STATUS_AHCI_BAD_REQUEST, "gather list too long");
        int rc = write ? disk_write_async(lba, inflight, k) : disk_read(lba, inflight, k);
        if (disk_media_error(rc) && write)
            return corner_write_error(s, rc, lba, inflight, k, want);
        if (rc)
            return disk_error(s, rc, write);
        if (write) {
            inflight_busy = 1;
            inflight_n = k;
            inflight_lba = lba;
            inflight_bytes = want;
        }
        s->pos += want;
        s->bytes_written += want;
        total -= want;
    }
    return 0;
}

uint32_t stream_write(struct stream *s, const struct disk_sg *v, unsigned n, uint64_t total)
{
    return transfer(s, v, n, total, 1);
}

uint32_t stream_read(struct stream *s, const struct disk_sg *v, unsigned n, uint64_t total)
{
    return transfer(s, v, n, total, 0);
}

uint32_t stream_write_buffer(struct stream *s, const void *buf, uint64_t bytes)
{
    struct disk_sg one = { (uint64_t)(uintptr_t)buf, (uint32_t)bytes };
    return stream_write(s, &one, 1, bytes);
}

uint32_t stream_flush_cache(struct stream *s)
{
    uint32_t waited = stream_wait(s);
    if (waited)
        return waited;
    int rc = disk_flush();
    return rc ? disk_error(s, rc, 1) : 0;
}

/* Send every whole sector of the buffer to the disk and carry on in the other buffer,
 * which starts with the partial last sector. The other buffer is free: stream_write
 * waited for the command that read it before issuing this one. */
static uint32_t write_whole_sectors(struct stream *s)
{
    uint64_t whole = s->buf_len & ~(uint64_t)(s->block - 1);
    if (!whole)
        return 0;
    uint32_t rc = stream_write_buffer(s, s->buf, whole);
    if (rc)
        return rc;
    uint8_t *sent = s->buf;
    memcpy(s->other, sent + whole, s->buf_len - whole);
    s->buf = s->other;
    s->other = sent;
    s->buf_len -= whole;
    return 0;
}

uint8_t *stream_reserve(struct stream *s, uint64_t bytes)
{
    if (s->buf_len + bytes > s->buf_cap && write_whole_sectors(s))
        return 0;
    if (s->buf_len + bytes > s->buf_cap) {
        fail(SOS_STATUS_BAD_PAYLOAD_INFO, "chunk of %lu bytes does not fit the scratch buffer",
             bytes);
        return 0;
    }
    return s->buf + s->buf_len;
}

uint32_t stream_commit(struct stream *s, uint64_t bytes)
{
    s->buf_len += bytes;
    return s->buf_len >= s->flush_at ? write_whole_sectors(s) : 0;
}

uint32_t stream_drain(struct stream *s)
{
    uint64_t padded = (s->buf_len + s->block - 1) & ~(uint64_t)(s->block - 1);
    memset(s->buf + s->buf_len, 0, padded - s->buf_len);
    s->buf_len = padded;
    return write_whole_sectors(s);
}
