/*
 * Waking the CPUs a host took offline (CpuSlot state OFFLINE, formats/smp.py): Linux's
 * offline CPUs sit in its play-dead loop and poll nothing, so the payload starts them itself
 * with INIT, STARTUP, STARTUP (Intel SDM vol. 3, 8.4.4.1) at the target's AP start page, a
 * page below 1 MiB the host keeps from its own use (PayloadInfo.ap_start_page). Each runs
 * real mode -> protected mode (in the start page) -> long mode (in ap_start.S, payload text)
 * under the payload's CR3, GDT and IDT, on its own stack, then the same AP loop as a parked
 * CPU. At the end each gets INIT again and waits for a STARTUP IPI: the state Linux's CPU
 * bring-up (do_boot_cpu: INIT, STARTUP, STARTUP) starts it from.
 */
#ifndef SOS_AP_WAKE_H
#define SOS_AP_WAKE_H

/* The start page (one AP starts at a time, so the boot CPU fills it per AP). The real-mode
 * code is copied to its start; the rest is data the three steps read through EBX/RBX = the
 * page's address (CS << 4). */
#define AP_WAKE_GDT      0x800   /* 0, 32-bit code, data, 64-bit code: for the switch only */
#define AP_WAKE_GDTR     0x820   /* limit (2 bytes), 32-bit base */
#define AP_WAKE_PM32     0x828   /* far pointer m16:32 to ap_wake32 (payload text < 4 GiB) */
#define AP_WAKE_LM64     0x830   /* far pointer m16:32 to ap_wake64 */
#define AP_WAKE_CR3      0x838   /* the payload's PML4 (below 4 GiB) */
#define AP_WAKE_CTX      0x840   /* this AP's struct sos_ap_context */
#define AP_WAKE_STACK    0x848   /* its stack top */
#define AP_WAKE_CR0      0x850   /* the boot CPU's, under the payload */
#define AP_WAKE_CR4      0x858
#define AP_WAKE_XCR0     0x860   /* 0: no XSAVE */
#define AP_WAKE_GDTR64   0x870   /* the payload's GDT and IDT (SGDT/SIDT images) */
#define AP_WAKE_IDTR64   0x880
#define AP_WAKE_SEL_CODE32 0x08
#define AP_WAKE_SEL_DATA   0x10
#define AP_WAKE_SEL_CODE64 0x18
/* The payload's own GDT (build/trampoline.py): flat 64-bit code and data. */
#define AP_WAKE_PAYLOAD_CS 0x08
#define AP_WAKE_PAYLOAD_DS 0x10

#ifndef __ASSEMBLER__
#include <stdint.h>
#include "suspendos_abi.h"

/* Check the local APIC and the start page; 0 when CPUs can be woken, else a reason. */
const char *ap_wake_prepare(void);
/* INIT, STARTUP, STARTUP to apic_id, which starts in ap_wake_main(ctx) on ctx's stack;
 * 0, or -1 when the local APIC did not take an IPI. */
int ap_wake_start(uint32_t apic_id, struct sos_ap_context *ctx);
/* INIT to apic_id: whatever it does, it then waits for a STARTUP IPI. */
void ap_wake_stop(uint32_t apic_id);
/* A woken AP's end: state LEFT as its last store, then halted until the INIT. */
__attribute__((noreturn)) void ap_wake_halt(struct sos_ap_context *ctx);
#endif

#endif
