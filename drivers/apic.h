/*
 * Starting another CPU (an AP) from 64-bit code: the local APIC's INIT-SIPI-SIPI sequence
 * (Intel SDM vol. 3, 8.4.4.1 "Typical BSP Initialization Sequence" and 10.6.1 "Interrupt
 * Command Register") plus the real-mode start code in drivers/ap_start.S, which this file
 * copies to a page the caller gives and which takes the AP from real mode to long mode
 * (SDM vol. 3, 9.9.1 and 9.8.5) and into a C function on a stack of the caller's.
 *
 * Both xAPIC (memory-mapped ICR) and x2APIC (ICR as MSR 0x830) mode are handled, chosen by
 * IA32_APIC_BASE.EXTD on the calling CPU (xAPIC: the caller's page tables must map the
 * local APIC page 1:1, uncached, SDM vol. 3 10.4.1). One AP at a time: the start page holds
 * the parameters of the AP being started.
 *
 * Used by the QEMU test host (qemu-boot/smp.c) and the resume loader (builder/resume/).
 * Needs drivers/timer.c calibrated (timer_init) for the deadlines.
 */
#ifndef SOS_APIC_H
#define SOS_APIC_H

/* SDM vol. 3 8.4.4.1: wait 10 ms after INIT, 200 us after each STARTUP IPI. */
#define APIC_INIT_DELAY_US      10000
#define APIC_SIPI_DELAY_US      200
/* The xAPIC takes an IPI within microseconds; Linux polls its delivery status for up to
 * about 100 ms (native_safe_apic_wait_icr_idle, arch/x86/kernel/apic/apic.c). */
#define APIC_ICR_DEADLINE_US    100000
/* A typical caller's deadline for an AP to reach its entry: microseconds on hardware;
 * Linux waits 10 s (do_boot_cpu, arch/x86/kernel/smpboot.c). */
#define APIC_AP_DEADLINE_US     (10ull * 1000 * 1000)

/* The parameter block at the end of the start code (offsets shared with ap_start.S). */
#define AP_PARAM_PM32           0       /* m16:32 far pointer to the 32-bit part */
#define AP_PARAM_LM64           8       /* m16:32 far pointer to the 64-bit part */
#define AP_PARAM_GDTR           16      /* limit (2 bytes), base (4 bytes) */
#define AP_PARAM_CR3            24
#define AP_PARAM_CR4            28
#define AP_PARAM_EFER           32      /* bits ORed into IA32_EFER */
#define AP_PARAM_CR0            36
#define AP_PARAM_STACK          40
#define AP_PARAM_ENTRY          48
#define AP_PARAM_ARG            56
#define AP_PARAM_STARTED        64      /* the AP writes 1 once it holds all of the above */
#define AP_PARAM_SIZE           72

#ifndef __ASSEMBLER__
#include <stdint.h>

struct ap_start_request {
    uint32_t apic_id;           /* the AP's local APIC id */
    uint32_t page;              /* physical address of the start page: 4 KiB aligned, below
                                   1 MiB, not 0xA0000-0xBFFFF (the SIPI vector is page >> 12),
                                   identity-mapped by cr3; its old contents are overwritten */
    uint32_t cr3;               /* 4-level page tables below 4 GiB (loaded in 32-bit mode)
                                   mapping the page 1:1, the entry code and the stack */
    uint64_t stack_top;         /* 16-byte aligned; the AP's own */
    void (*entry)(void *arg);   /* entered in long mode, interrupts off, with the start page's
                                   GDT (0x08 32-bit code, 0x10 data, 0x18 64-bit code) and no
                                   IDT: load your own tables before the page is reused */
    void *arg;
    uint64_t deadline_us;       /* how long to wait for the AP to reach `entry` */
};

enum apic_start_result {
    APIC_AP_STARTED = 0,        /* it holds its parameters and is on its way into entry */
    APIC_AP_NO_ANSWER = 1,      /* not within the deadline: it was sent INIT again, so it
                                   waits for a STARTUP IPI and never reads the page */
    APIC_ICR_STUCK = 2,         /* the xAPIC kept an IPI pending past APIC_ICR_DEADLINE_US */
};

/* Copy the start code to r->page, send INIT, wait, STARTUP twice, and wait until the AP
 * has read its parameters (or r->deadline_us passed). An entry that returns halts the AP. */
enum apic_start_result apic_start_ap(const struct ap_start_request *r);
/* Send INIT to one AP: it stops whatever it runs and waits for a STARTUP IPI, the state a
 * kernel's CPU bring-up (Linux: add_cpu) expects. 0, or APIC_ICR_STUCK. */
enum apic_start_result apic_send_init(uint32_t apic_id);
/* The calling CPU's local APIC id (xAPIC: ID register bits 31:24; x2APIC: MSR 0x802). */
uint32_t apic_self_id(void);
#endif

#endif
