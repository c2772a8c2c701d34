/*
 * The image as a byte stream over the sector list: image byte offsets map through the
 * extents, in order, to LBAs. Writes never go past the last listed sector (IMAGE_FULL).
 * Sectors are the disk's logical blocks (`block` bytes: 512 or 4096); the disk is the one
 * drivers/disk.h drives.
 */
#ifndef SOS_STREAM_H
#define SOS_STREAM_H
#include <stdint.h>
#include "disk.h"

#define STREAM_DEPTH 3          /* disk calls in flight at most (AHCI_MAX_SLOTS) */

struct stream {
    uint32_t block;             /* logical block size: extents, pos and writes are in these */
    const struct sos_extent *extents;
    uint32_t extent_count;
    uint64_t capacity;          /* bytes */
    uint64_t pos;               /* next image byte to write, sector aligned */
    uint64_t max_command;       /* bytes per disk command */
    uint64_t bytes_written;
    /* Writes in flight: up to `depth` disk calls at once (disk_write_depth(), at most
     * STREAM_DEPTH; 0 until the first write or stream_depth() asks the driver). */
    unsigned depth;
    /* Buffered mode (compressed or encrypted chunks are built in memory first): a ring of
     * `nbufs` buffers, `buf` (= bufs[cur]) filling while the others are on their way to
     * the disk; buf_call[k] is the last disk call that reads bufs[k]. */
    uint8_t *bufs[STREAM_DEPTH + 1];
    uint64_t buf_call[STREAM_DEPTH + 1];
    unsigned nbufs, cur;
    uint8_t *buf;
    uint64_t buf_len, buf_cap, flush_at;
};

/* Disk calls the stream keeps in flight at most. */
unsigned stream_depth(struct stream *s);
/* Keep at most `most` calls in flight (before anything is written). */
static inline void stream_limit_depth(struct stream *s, unsigned most)
{
    if (stream_depth(s) > most)
        s->depth = most;
}
/* Buffered mode: split [base, base + bytes) into 2 .. depth + 1 buffers of at least
 * `want_each` bytes where room allows (2 otherwise), each flushed once it holds more than
 * its size less `record`. */
void stream_buffers(struct stream *s, uint8_t *base, uint64_t bytes, uint64_t want_each,
                    uint64_t record);

/* Write a gather list (total a multiple of the block size) at pos, split at extents and
 * command size. The calls are left running (the CPU prepares the next chunk meanwhile):
 * the buffers they read must stay untouched until `stream_depth()` later calls have been
 * issued, or stream_wait. */
uint32_t stream_write(struct stream *s, const struct disk_sg *v, unsigned n, uint64_t total);
/* The same split for reading image bytes [pos, pos + total) into a gather list (the resume
 * loader); pos advances and bytes_written counts these too. */
uint32_t stream_read(struct stream *s, const struct disk_sg *v, unsigned n, uint64_t total);
uint32_t stream_write_buffer(struct stream *s, const void *buf, uint64_t bytes);
uint32_t stream_flush_cache(struct stream *s);
uint32_t stream_wait(struct stream *s);

/* Buffered mode: reserve room for `bytes` at the buffer's end (after writing out whole
 * sectors if needed); commit them with stream_commit. stream_drain pads the last sector. */
uint8_t *stream_reserve(struct stream *s, uint64_t bytes);
uint32_t stream_commit(struct stream *s, uint64_t bytes);
uint32_t stream_drain(struct stream *s);
static inline uint64_t stream_tell(const struct stream *s) { return s->pos + s->buf_len; }

#endif
