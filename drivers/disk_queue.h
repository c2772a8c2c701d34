#ifndef SOS_DISK_QUEUE_H
#define SOS_DISK_QUEUE_H
/* What the queued drivers (NVMe, virtio-blk) share behind disk.h. A transfer becomes
 * several commands in flight, each with its own deadline; the first failure among them is
 * kept until someone waits. A driver provides these three; disk_queue.c builds disk_write,
 * disk_read, disk_write_async and disk_wait from them, so the waiting rules are written
 * once. */
#include <stdint.h>
#include "disk.h"

/* Issue the commands for the byte stream `sg` describes at `lba` and return without waiting
 * (after finishing what an earlier call left in flight). 0, or the status of a request the
 * driver refused or of a command that already failed. */
int queue_issue(uint64_t lba, const struct disk_sg *sg, unsigned n, int write);
/* 1 if a command in flight has already failed (its status waits in the driver). */
int queue_failed(void);
/* Wait for every command in flight; return the first failure among them and forget it. */
int queue_drain(void);

#endif
