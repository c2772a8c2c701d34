/*
 * The host's own pause point, for the tool's RAM dump after a resume (the payload and the
 * resume loader have theirs): "@@PAUSE <where>", then wait for one byte on serial.
 * The host has no calibrated timer, so the wait is bounded in TSC cycles: 2^42 cycles is
 * about 15 minutes at 5 GHz and more on slower clocks, far beyond a dump of a few GiB.
 */
#include <stdint.h>
#include "pause.h"
#include "printf.h"
#include "serial.h"

#define HOST_PAUSE_TSC_CYCLES (1ull << 42)

static uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

void host_pause(const char *where)
{
    while (serial_try_getc() >= 0)      /* stale input is not the tool's answer */
        ;
    kprintf("@@PAUSE %s\n", where);
    uint64_t start = rdtsc();
    while (serial_try_getc() < 0) {
        if (rdtsc() - start > HOST_PAUSE_TSC_CYCLES) {
            kprintf("@@PAUSE-TIMEOUT %s\n", where);
            return;
        }
    }
}
