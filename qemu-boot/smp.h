/*
 * The test host's APs: started with INIT-SIPI-SIPI, parked in a loop of the host's code
 * that polls their slot of the handoff block, handed to the payload through those slots
 * (suspendos/formats/smp.py), and checked after the handoff returns.
 */
#ifndef HOST_SMP_H
#define HOST_SMP_H

/* The real-mode start page: below 1 MiB, 4 KiB aligned (SIPI vector = page number). The
 * host keeps it (layout.c), so it is never filled and is checked like the host's code. */
#define AP_START_PAGE 0x8000

#ifndef __ASSEMBLER__
#include <stdint.h>
#include "suspendos_abi.h"

/* How many CPUs QEMU was started with (fw_cfg FW_CFG_NB_CPUS), 1 if fw_cfg is absent. */
unsigned smp_cpu_count(void);
/* Start every AP (APIC ids 1 .. count-1: QEMU numbers a plain -smp N that way) and park
 * it on h->cpus[i]; fills h->cpu_count. deaf: APIC id of the AP that ignores the payload,
 * or -1. Exits EXIT_AP_STATE when an AP does not start. */
void smp_start_aps(struct sos_handoff *h, int deaf);
/* After the handoff returned: every AP back in its park loop with its state intact, the
 * deaf one never called. Returns 1 if all is well (prints @@AP lines either way). */
int smp_check_aps(struct sos_handoff *h, int resumed);
/* ap_offline: hand APIC ids 1 .. count-1 in as OFFLINE without starting them (and `deaf`,
 * an id no CPU has, if >= 0), for the payload to wake. */
void smp_hand_in_offline(struct sos_handoff *h, int deaf);
/* After the return: every slot handed in offline was sent INIT by the payload (STOPPED). */
int smp_check_offline(struct sos_handoff *h);
#endif

#endif
