/*
 * The resume loader's other CPUs. The machine was just booted, so its APs wait for a
 * STARTUP IPI: the loader finds them (madt.c), starts them itself through drivers/apic.c on
 * a low page it gives back afterwards, and gives every CPU a share of each batch of chunks
 * (image.c). Before the return into the restored system every AP gets INIT again: it waits
 * for a STARTUP IPI, as the system's own CPU bring-up expects (Linux's add_cpu; the test
 * host starts its APs again). An AP that does not reach the loader within
 * CPUS_ANSWER_DEADLINE_US is left out (handoff.cpus_missing, "@@CPU ... left out").
 */
#ifndef SOS_RESUME_CPUS_H
#define SOS_RESUME_CPUS_H
#include <stdint.h>
#include "suspendos_abi.h"

/* An AP runs a few dozen instructions from the STARTUP IPI to the loader: microseconds on
 * hardware. Linux allows 10 s for a CPU it brings up (do_boot_cpu); this is a tenth of
 * that, as the payload gives a parked AP (builder/core/smp.h). */
#define CPUS_ANSWER_DEADLINE_US  (1000ul * 1000)
/* Each AP's stack: its share of a batch needs little (AEAD open and LZ4, ~2 KiB). */
#define CPUS_AP_STACK            (8 * 1024)

typedef void (*cpus_job)(unsigned cpu, void *arg);

/* madt.c: the ACPI RSDP's physical address when the boot path found it (the EFI entry,
 * from the EFI configuration table); 0: scan the BIOS areas for it. */
extern uint64_t cpus_rsdp;

/* The loader's command line, for the tests (qemu resume --inject ap-deaf:ID / ap-fault:ID):
 * "ap-deaf=ID" makes the AP with that APIC id start but never answer, "ap-fault=ID" makes
 * it take a #GP in its first job. */
void cpus_options(const char *cmdline);
/* madt.c: the local APIC ids of the other enabled CPUs (not `self`), at most `max`;
 * *source names where they came from: "madt", "fw_cfg" or "none". */
unsigned cpus_find(uint32_t self, uint32_t *ids, unsigned max, const char **source);

/* How many APs this machine has (cpus_find), remembered for cpus_start. */
unsigned cpus_discover(void);
unsigned cpus_found(void);
/* Start up to `n` of them; AP i gets the stack ending at stacks + (i + 1) * stride.
 * Fills handoff cpus_used / cpus_missing; returns the CPUs in the run, the boot CPU
 * included. Needs the multiboot memory map (for the start page) and the timer. */
struct boot_info;
unsigned cpus_start(const struct boot_info *boot, unsigned n, uint8_t *stacks, uint64_t stride);
unsigned cpus_in_run(void);
/* Every AP runs fn(cpu, arg) (cpu 1..); the boot CPU goes on and usually runs fn(0, arg)
 * itself, then cpus_wait. A fault on an AP ends the run there (RESUME_EXIT_FAULT). */
void cpus_post(cpus_job fn, void *arg);
void cpus_wait(void);
/* INIT to every AP of the run (they wait for a STARTUP IPI afterwards). Idempotent. */
void cpus_stop(void);
/* From the fault handler: 0 on the boot CPU; on an AP, records the fault for the boot CPU
 * (which ends the run in order) and never returns. */
int cpus_fault_on_ap(uint64_t vector, uint64_t error, uint64_t rip, uint64_t cr2);

#endif
