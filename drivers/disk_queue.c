/* disk.h's transfer calls for the queued drivers (disk_queue.h). A synchronous call is an
 * issue followed by a drain. Asynchronous writes are numbered and may overlap, up to the
 * driver's queue_write_calls (its own slots bound the commands); a wait finishes the
 * commands of every call but the newest ones. A failure is reported at the earliest call
 * that can, after everything still in flight has been drained, so the caller may rewrite
 * what it had in flight on an idle device. */
#include "disk_queue.h"

static uint64_t calls;          /* asynchronous writes issued so far */

/* rc (or a failure met meanwhile) once nothing is in flight any more. */
static int failed(int rc)
{
    int drained = queue_drain();
    return rc ? rc : drained;
}

static int transfer(uint64_t lba, const struct disk_sg *sg, unsigned n, int write)
{
    int rc = queue_issue(lba, sg, n, write, 0);
    return rc ? failed(rc) : queue_drain();
}

int disk_write(uint64_t lba, const struct disk_sg *sg, unsigned n)
{
    return transfer(lba, sg, n, 1);
}

int disk_read(uint64_t lba, const struct disk_sg *sg, unsigned n)
{
    return transfer(lba, sg, n, 0);
}

int disk_write_async(uint64_t lba, const struct disk_sg *sg, unsigned n)
{
    int rc = queue_issue(lba, sg, n, 1, ++calls);
    return rc || queue_failed() ? failed(rc) : 0;
}

int disk_wait_calls(unsigned left)
{
    int rc = calls > left ? queue_wait_calls(calls - left) : 0;
    return rc || queue_failed() ? failed(rc) : 0;
}

int disk_wait(void)
{
    return queue_drain();
}

unsigned disk_write_depth(void)
{
    return queue_write_calls;
}
