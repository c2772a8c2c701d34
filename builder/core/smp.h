/*
 * The other CPUs in the payload. The host parks its APs and hands them in through the
 * handoff block's CPU slots (formats/smp.py); smp_start wakes them, smp_run gives every CPU
 * a share of one job, smp_stop sends them back. CPU 0 is the boot CPU; the APs that answer
 * get 1, 2, ... in slot order.
 */
#ifndef SOS_SMP_H
#define SOS_SMP_H
#include <stdint.h>
#include "suspendos_abi.h"

/* A parked AP polls its slot in a tight loop of the host's code: a healthy one answers in
 * microseconds. Linux gives an AP it has just started 10 s (arch/x86/kernel/smpboot.c,
 * do_boot_cpu); ours is already running, so a tenth of that is generous. One that does not
 * answer in time is left out of the run, which says so (@@CPU line, handoff.cpus_missing). */
#define SMP_ANSWER_DEADLINE_US  (1000ull * 1000)
/* An AP leaves as soon as its current share of a job is done; a share is one chunk of work
 * (milliseconds). Past this the boot CPU returns without it and the status says so. */
#define SMP_LEAVE_DEADLINE_US   (5000ull * 1000)

typedef void (*smp_job_fn)(unsigned cpu, unsigned cpus, void *arg);

/* Wake every AP the host handed in; returns the CPUs in the run (boot CPU included). */
unsigned smp_start(void);
/* Number of CPUs in the run (1 before smp_start). */
unsigned smp_cpus(void);
/* smp_post: every AP starts fn(cpu, cpus, arg) and the boot CPU goes on (it usually runs
 * fn(0, ...) itself, or writes meanwhile); smp_wait: until every AP has finished it, 0, or
 * the status of a fault on an AP. Nothing is posted without APs; one job at a time. */
void smp_post(smp_job_fn fn, void *arg);
uint32_t smp_wait(void);
/* Every CPU runs fn(cpu, cpus, arg) once; returns when all have finished, 0, or the status
 * of a fault on an AP (the run is over then). */
uint32_t smp_run(smp_job_fn fn, void *arg);
/* 0, or the status of a fault on an AP (the run is over). */
uint32_t smp_status(void);
/* Send every AP back to the host (bounded by SMP_LEAVE_DEADLINE_US); safe to call twice
 * and from the boot CPU's fault handler. */
void smp_stop(void);
/* The AP context of the calling CPU, or 0 on the boot CPU. */
struct sos_ap_context *smp_this_ap(void);
/* Called by the fault handler on an AP: the run ends, this AP goes home. */
__attribute__((noreturn)) void smp_ap_fault_exit(struct sos_ap_context *ap);
/* The calling CPU's local APIC id (CPUID.01H:EBX[31:24], SDM vol. 3 10.4.6). */
uint32_t smp_apic_id(void);

/* Where the AP trampoline calls in (build/trampoline.py). */
void payload_ap_main(struct sos_ap_context *ctx);

/* Spin-wait step. PAUSE only every 256th step: under QEMU's multi-threaded TCG each PAUSE
 * leaves the vCPU's execution loop, which takes QEMU's global lock, so a CPU that paused on
 * every step would fight the boot CPU's disk MMIO (which needs that lock) for it. On
 * hardware the occasional PAUSE still keeps the loop polite to a sibling thread. */
static inline void cpu_relax_step(unsigned *spins)
{
    if ((++*spins & 255) == 0)
        __asm__ volatile("pause" ::: "memory");
    else
        __asm__ volatile("" ::: "memory");
}
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }

#endif
