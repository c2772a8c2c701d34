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

struct stream {
    uint32_t block;             /* logical block size: extents, pos and writes are in these */
    const struct sos_extent *extents;
    uint32_t extent_count;
    uint64_t capacity;          /* bytes */
    uint64_t pos;               /* next image byte to write, sector aligned */
    uint64_t max_command;       /* bytes per disk command */
    uint64_t bytes_written;
    /* Buffered mode (compressed or encrypted chunks are built in memory first): two
     * buffers, one filling while the other is on its way to the disk. */
    uint8_t *buf, *other;
    uint64_t buf_len, buf_cap, flush_at;
};

/* Write a gather list (total a multiple of the block size) at pos, split at extents and command size.
 * The last command is left running (the CPU prepares the next chunk meanwhile); the
 * buffers it reads must stay untouched until the next stream call or stream_wait. */
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
