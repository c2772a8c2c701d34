#include "stream.h"
#include "payload.h"
#include "string.h"

#define MAX_PIECES 1100          /* a 1024-page raw chunk + header, plus splits */

/* The disk calls in flight, numbered from 0 in issue order: call k is inflight[k %
 * STREAM_DEPTH] while calls_finished <= k < calls_issued. Each is kept whole so a failed
 * write can be cornered to its sector (corner_write_error) and its pieces stay valid for
 * the driver however the caller reuses its own list. One stream per run, so static. */
static struct call {
    struct disk_sg piece[MAX_PIECES];
    unsigned n;
    uint64_t lba, bytes;
} inflight[STREAM_DEPTH];
static uint64_t calls_issued, calls_finished;

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
 * A write failed while calls [from, to) were in flight. The run stops either way (a write
 * error is not retried: the medium is suspect and a half-trusted image is worse than
 * none), but the device reports only a command's first LBA, and with several commands in
 * flight not even surely the failing command's. So the calls still in flight are written
 * again, oldest first, until one fails again; its halves are then rewritten until the
 * error is cornered in one sector (at most 2 * 16 commands). When the error does not
 * repeat, the LBAs the calls in flight spanned are named (or the part of the failing
 * call the halving narrowed it to).
 */
static uint32_t corner_write_error(struct stream *s, int first_status, uint64_t from,
                                   uint64_t to)
{
    static struct disk_sg piece[MAX_PIECES];
    uint32_t detail = disk_last_error()->detail;
    const struct call *c = 0;                           /* the call that failed again */
    uint64_t lo = ~0ull, hi = 0;                        /* the error is in LBAs [lo, hi) */
    for (uint64_t k = from; k < to && !c; k++) {
        const struct call *t = &inflight[k % STREAM_DEPTH];
        uint64_t end = t->lba + t->bytes / s->block;
        lo = t->lba < lo ? t->lba : lo;
        hi = end > hi ? end : hi;
        if (disk_media_error(disk_write(t->lba, t->piece, t->n))) {
            c = t;
            lo = t->lba;
            hi = end;
        }
    }
    while (c && hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2, halves[2][2] = { { lo, mid }, { mid, hi } };
        int found = 0;
        for (int h = 0; h < 2 && !found; h++) {
            uint64_t a = halves[h][0], b = halves[h][1];
            unsigned k = slice(c->piece, c->n, (a - c->lba) * s->block, (b - a) * s->block,
                               piece);
            if (disk_media_error(disk_write(a, piece, k))) {
                lo = a;
                hi = b;
                found = 1;
            }
        }
        if (!found)
            break;
    }
    uint32_t status = (uint32_t)first_status;
    sos_run.handoff->detail = detail;
    sos_run.handoff->failed_lba = lo;
    if (c && hi - lo == 1)
        return fail(status, "write error at LBA %lu (%s %x)", lo, disk_detail_name, detail);
    return fail(status, "write error in LBAs %lu-%lu, not repeated (%s %x)", lo, hi - 1,
                disk_detail_name, detail);
}

/* A disk call reported a failure: nothing of ours is in flight any more. */
static uint32_t write_failed(struct stream *s, int rc)
{
    uint64_t from = calls_finished, to = calls_issued;
    calls_finished = calls_issued;
    if (disk_media_error(rc) && from < to)
        return corner_write_error(s, rc, from, to);
    return disk_error(s, rc, 1);
}

/* Wait until at most `left` calls are in flight (the newest ones). */
static uint32_t wait_calls(struct stream *s, uint64_t left)
{
    if (calls_issued - calls_finished <= left)
        return 0;
    int rc = disk_wait_calls((unsigned)left);
    if (rc)
        return write_failed(s, rc);
    calls_finished = calls_issued - left;
    return 0;
}

unsigned stream_depth(struct stream *s)
{
    if (!s->depth) {
        unsigned d = disk_write_depth();
        s->depth = d < 1 ? 1 : d > STREAM_DEPTH ? STREAM_DEPTH : d;
    }
    return s->depth;
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
    return wait_calls(s, 0);
}

/* One disk call of `transfer`, described by c: a write is left running, a read finishes.
 * Passed as a pointer so that a build which never reads (the payload) links no read. */
typedef uint32_t (*issue_fn)(struct stream *s, struct call *c);

static uint32_t issue_write(struct stream *s, struct call *c)
{
    calls_issued++;                 /* counted first: a failure corners this call too */
    int rc = disk_write_async(c->lba, c->piece, c->n);
    return rc ? write_failed(s, rc) : 0;
}

static uint32_t issue_read(struct stream *s, struct call *c)
{
    int rc = disk_read(c->lba, c->piece, c->n);
    return rc ? disk_error(s, rc, 0) : 0;
}

/* Both directions: the gather list <-> image bytes [pos, pos + total), split at extents
 * and command size. Before each call at most `keep` calls stay in flight: writes keep up
 * to the stream's depth running (the oldest is finished first when all are taken); reads
 * keep none, so they first finish every write. */
static uint32_t transfer(struct stream *s, const struct disk_sg *v, unsigned n, uint64_t total,
                         issue_fn issue, unsigned keep)
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
        uint32_t waited = wait_calls(s, keep);
        if (waited)
            return waited;
        struct call *c = &inflight[calls_issued % STREAM_DEPTH];
        unsigned k = 0;
        uint64_t got = 0;
        while (got < want && k < MAX_PIECES) {
            uint64_t left = v[i].bytes - skip, take = want - got < left ? want - got : left;
            c->piece[k].addr = v[i].addr + skip;
            c->piece[k].bytes = (uint32_t)take;
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
        c->n = k;
        c->lba = lba;
        c->bytes = want;
        if ((waited = issue(s, c)))
            return waited;
        s->pos += want;
        s->bytes_written += want;
        total -= want;
    }
    return 0;
}

uint32_t stream_write(struct stream *s, const struct disk_sg *v, unsigned n, uint64_t total)
{
    return transfer(s, v, n, total, issue_write, stream_depth(s) - 1);
}

uint32_t stream_read(struct stream *s, const struct disk_sg *v, unsigned n, uint64_t total)
{
    return transfer(s, v, n, total, issue_read, 0);
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

void stream_buffers(struct stream *s, uint8_t *base, uint64_t bytes, uint64_t want_each,
                    uint64_t record)
{
    unsigned n = stream_depth(s) + 1;
    while (n > 2 && bytes / n < want_each)
        n--;
    s->nbufs = n;
    s->buf_cap = bytes / n & ~(uint64_t)(s->block - 1);
    for (unsigned k = 0; k < n; k++) {
        s->bufs[k] = base + k * s->buf_cap;
        s->buf_call[k] = 0;
    }
    s->cur = 0;
    s->buf = s->bufs[0];
    s->buf_len = 0;
    s->flush_at = (s->buf_cap - record) & ~(uint64_t)(s->block - 1);
}

/* Send every whole sector of the buffer to the disk and carry on in the next buffer of
 * the ring, which starts with the partial last sector; it is first waited for if a call
 * that reads it may still be in flight. */
static uint32_t write_whole_sectors(struct stream *s)
{
    uint64_t whole = s->buf_len & ~(uint64_t)(s->block - 1);
    if (!whole)
        return 0;
    uint32_t rc = stream_write_buffer(s, s->buf, whole);
    if (rc)
        return rc;
    s->buf_call[s->cur] = calls_issued;         /* free once calls_finished reaches it */
    unsigned next = (s->cur + 1) % s->nbufs;
    if (s->buf_call[next] > calls_finished &&
        (rc = wait_calls(s, calls_issued - s->buf_call[next])))
        return rc;
    memcpy(s->bufs[next], s->buf + whole, s->buf_len - whole);
    s->cur = next;
    s->buf = s->bufs[next];
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
