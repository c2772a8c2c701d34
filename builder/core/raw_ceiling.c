/*
 * The device's ceiling, measured by the payload itself (handoff flag RAW_CEILING): as many
 * bytes as an uncompressed image of the memory list would take go through the same driver,
 * extents and command size as an image, but from one constant buffer (every PRD of a
 * command points at it), so no CPU work is in the way. The header block is zeroed first,
 * as for an image: what was there before is no image any more. bytes_written and the
 * TSC interval give the rate.
 */
#include "payload.h"
#include "printf.h"
#include "raw_ceiling.h"
#include "stream.h"
#include "string.h"

#define CEILING_PIECE (256u * 1024)     /* the constant buffer; one PRD each */
#define CEILING_MAX_SG 128

static struct disk_sg sg[CEILING_MAX_SG];

uint32_t raw_ceiling(void)
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
    uint8_t *buf = (uint8_t *)(uintptr_t)(info->scratch_base + PAYLOAD_DISK_DMA_SIZE);
    if (info->scratch_size < PAYLOAD_DISK_DMA_SIZE + CEILING_PIECE)
        return fail(SOS_STATUS_BAD_PAYLOAD_INFO, "scratch too small for the raw ceiling");
    const struct sos_mem_range *r = (const void *)(uintptr_t)info->memory_list;
    uint64_t total = 0;
    for (uint32_t i = 0; i < info->memory_count; i++)
        total += r[i].end - r[i].start;
    if (total > s.capacity)
        total = s.capacity;
    h->pages_total = total / SOS_PAGE_SIZE;

    memset(buf, 0, SOS_IMAGE_HEADER_BLOCK);
    uint32_t rc = stream_write_buffer(&s, buf, SOS_IMAGE_HEADER_BLOCK);
    if (!rc)
        rc = stream_flush_cache(&s);
    if (rc)
        return rc;
    for (uint32_t i = 0; i < CEILING_PIECE; i++)
        buf[i] = (uint8_t)(i * 131 + 7);       /* not zero: nothing may skip it */
    uint64_t per_command = s.max_command < (uint64_t)CEILING_MAX_SG * CEILING_PIECE
                               ? s.max_command : (uint64_t)CEILING_MAX_SG * CEILING_PIECE;
    per_command &= ~(uint64_t)(CEILING_PIECE - 1);
    if (!per_command)
        per_command = CEILING_PIECE;
    uint64_t done = 0, goal = total - (total % CEILING_PIECE);
    uint64_t step = goal / 50 + 1, next = 0;
    while (done < goal && !rc) {
        uint64_t bytes = goal - done < per_command ? goal - done : per_command;
        unsigned n = (unsigned)(bytes / CEILING_PIECE);
        for (unsigned k = 0; k < n; k++)
            sg[k] = (struct disk_sg){ (uint64_t)(uintptr_t)buf, CEILING_PIECE };
        rc = stream_write(&s, sg, n, bytes);
        done += bytes;
        h->pages_saved = done / SOS_PAGE_SIZE;
        h->bytes_written = s.bytes_written;
        if (done >= next) {
            kprintf("@@PROGRESS %lu %lu\n", done / SOS_PAGE_SIZE, goal / SOS_PAGE_SIZE);
            next = done + step;
        }
    }
    if (!rc)
        rc = stream_flush_cache(&s);
    h->bytes_written = s.bytes_written;
    kprintf("@@CEILING bytes=%lu\n", s.bytes_written);
    return rc;
}
