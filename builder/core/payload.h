/* Internal interfaces of the payload core (everything in builder/core). */
#ifndef SOS_PAYLOAD_H
#define SOS_PAYLOAD_H
#include <stdint.h>
#include "suspendos_abi.h"

/* Scratch layout: the disk driver's DMA structures first (queues, command tables, PRP
 * lists: drivers/disk.h), the image writer's buffers after. */
#define PAYLOAD_DISK_DMA_SIZE 0x10000

/* The build-time configuration the builder patches in (formats/payload_info.py). */
extern const volatile struct sos_payload_info sos_payload_info;

/* The run: the handoff block the host passed, and the open disk (for cleanup on a fault). */
struct run {
    struct sos_handoff *handoff;
    const struct sos_payload_info *info;
    int disk_open;              /* set while the disk (drivers/disk.h) is taken over */
};
extern struct run sos_run;

/* Record a failure in the handoff block (status, message) and log it; returns status. */
uint32_t fail(uint32_t status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Serialises the first-failure-wins update of handoff.status across CPUs. */
void fail_lock(void);
void fail_unlock(void);

/* Give every borrowed device back; safe to call twice and from the fault handler. */
void release_devices(void);

/* Wait, bounded, for the test tool to take a memory dump (handoff PAUSE_* flags). */
void pause_point(const char *where);


/* Unwind to the trampoline's exit path (never returns). */
__attribute__((noreturn)) void unwind_to_host(void);

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

#endif
