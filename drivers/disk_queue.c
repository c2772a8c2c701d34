/* disk.h's transfer calls for the queued drivers (disk_queue.h): a synchronous call is an
 * issue followed by a drain; an asynchronous one returns at once unless a command in
 * flight has already failed, so a failure is reported at the earliest call that can. */
#include "disk_queue.h"

static int transfer(uint64_t lba, const struct disk_sg *sg, unsigned n, int write, int wait)
{
    int rc = queue_issue(lba, sg, n, write);
    if (rc)
        return rc;
    if (!wait && !queue_failed())
        return 0;
    return queue_drain();
}

int disk_write(uint64_t lba, const struct disk_sg *sg, unsigned n)
{
    return transfer(lba, sg, n, 1, 1);
}

int disk_read(uint64_t lba, const struct disk_sg *sg, unsigned n)
{
    return transfer(lba, sg, n, 0, 1);
}

int disk_write_async(uint64_t lba, const struct disk_sg *sg, unsigned n)
{
    return transfer(lba, sg, n, 1, 0);
}

int disk_wait(void)
{
    return queue_drain();
}

/* One call at a time (queue_issue finishes the previous call first): with at most one in
 * flight, only left == 0 has anything to wait for. */
int disk_wait_calls(unsigned left)
{
    return left ? 0 : queue_drain();
}

unsigned disk_write_depth(void)
{
    return 1;
}
