/*
 * Waking the CPUs a host took offline (CpuSlot state OFFLINE, formats/smp.py): Linux's
 * offline CPUs sit in its play-dead loop and poll nothing, so the payload starts them itself
 * with INIT, STARTUP, STARTUP (drivers/apic.c) at the target's AP start page, a page below
 * 1 MiB the host keeps from its own use (PayloadInfo.ap_start_page). Each comes up in long
 * mode under the payload's CR3 on its own stack, loads the payload's GDT, IDT and control
 * registers, and runs the same AP loop as a parked CPU. At the end each gets INIT again and
 * waits for a STARTUP IPI: the state Linux's CPU bring-up (do_boot_cpu: INIT, STARTUP,
 * STARTUP) starts it from.
 */
#ifndef SOS_AP_WAKE_H
#define SOS_AP_WAKE_H
#include <stdint.h>
#include "suspendos_abi.h"

/* Check the local APIC, the start page and the payload's place; 0 when CPUs can be woken,
 * else the reason they cannot. */
const char *ap_wake_prepare(void);
/* Start apic_id into ap_wake_main(ctx) on ctx's stack: 0 when it is on its way, -1 when it
 * did not answer within deadline_us (it was sent INIT again) or the local APIC is stuck. */
int ap_wake_start(uint32_t apic_id, struct sos_ap_context *ctx, uint64_t deadline_us);
/* INIT to apic_id: whatever it does, it then waits for a STARTUP IPI. */
void ap_wake_stop(uint32_t apic_id);
/* A woken AP's end: state LEFT as its last store, then halted until the INIT. */
__attribute__((noreturn)) void ap_wake_halt(struct sos_ap_context *ctx);

#endif
