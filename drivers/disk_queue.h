#ifndef SOS_DISK_QUEUE_H
#define SOS_DISK_QUEUE_H
/* What the queued drivers (NVMe, virtio-blk) share behind disk.h. A transfer becomes
 * several commands in flight, each with its own deadline; the first failure among them is
 * kept until someone waits. A driver provides these four; disk_queue.c builds disk_write,
 * disk_read, disk_write_async, disk_wait_calls and disk_wait from them, so the waiting
 * rules are written once. */
#include <stdint.h>
#include "disk.h"

/* Issue the commands for the byte stream `sg` describes at `lba` and return without waiting
 * for them. `call` numbers an asynchronous write (1, 2, ...: commands of earlier calls may
 * still be in flight, and each of these commands is tagged with it); 0 is a synchronous
 * transfer, which first finishes everything in flight. 0, or the status of a request the
 * driver refused or of a command that already failed. */
int queue_issue(uint64_t lba, const struct disk_sg *sg, unsigned n, int write, uint64_t call);
/* 1 if a command in flight has already failed (its status waits in the driver). */
int queue_failed(void);
/* Wait until no command tagged with a call numbered `upto` or less is in flight. */
int queue_wait_calls(uint64_t upto);
/* Wait for every command in flight; return the first failure among them and forget it. */
int queue_drain(void);
/* How many asynchronous write calls may overlap (disk_write_depth), chosen per driver by
 * measurement (bench/write_depth.py, BENCHMARKS.md). */
extern const unsigned queue_write_calls;

#endif
