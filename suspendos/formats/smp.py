"""The other CPUs (application processors, APs): how the host hands them to the payload.

The host starts its APs itself (INIT-SIPI-SIPI, or the kernel's own CPU bring-up) and parks
each in a loop of its own code that polls one `CpuSlot` of the handoff block. The slots live
in the handoff page because that is the only memory both sides may write: the host's RAM is
read-only under the payload's page tables.

Protocol for one slot (docs/ARCHITECTURE.md, "CPUs"):
  host     fills apic_id, sets state = PARKED, and polls `command` with its own CR3/IDT;
  payload  fills entry (the blob's AP trampoline) and arg (that CPU's ApContext), then sets
           command = GO;
  host AP  swaps command GO -> ACK (lock cmpxchg: the payload may withdraw GO by the same
           swap when the AP is late), sets state = CALLED and calls entry(slot) (System V,
           RDI = slot) on its own stack;
  payload  the AP trampoline saves the AP's host state in the ApContext, loads the payload's
           CR3, GDT, IDT and the AP's own stack, runs the payload's AP loop, restores the host
           state, writes state = LEFT as its last store into the reserved region and returns;
  host AP  writes state = PARKED again and polls for the next GO.
A host that cannot park its APs (Linux: the module takes them offline, and an offline CPU
sits in the kernel's play-dead loop) fills apic_id and state = OFFLINE instead; the payload
then wakes that CPU itself from the target's AP start page (PayloadInfo.ap_start_page, a page
below 1 MiB the host keeps from its own use), runs it like a parked one, and ends with INIT,
state = STOPPED: the CPU waits for a STARTUP IPI, as the host's CPU bring-up expects.
The host AP's call of `entry` pushes onto its own stack, in saved RAM: the payload wakes
the APs before it reads any RAM, and writes nothing there after. The boot CPU's handoff
call returns only after every AP it woke has written LEFT; the host
must wait for PARKED before it reuses the reserved region (a few instructions of the AP
trampoline run after LEFT).
"""
import construct as c

from .common import Constants, u16, u32, u64

MAX_CPUS = 32            # slots in the handoff block, the boot CPU not included

CPU_STATE = Constants(
    "SOS_CPU_", "CpuSlot.state: where an AP is.",
    EMPTY=0,             # no AP in this slot
    PARKED=1,            # in the host's park loop, polling `command`
    CALLED=2,            # the host AP took GO and is calling `entry`
    LEFT=3,              # back out of the payload (written by the AP trampoline)
    OFFLINE=4,           # host fills: offline in the host (Linux's play-dead loop), not
                         # polling; the payload wakes it (INIT-SIPI-SIPI to its AP start page)
    STOPPED=5,           # payload: a CPU it woke was sent INIT again and waits for a STARTUP
                         # IPI, the state the host's own CPU bring-up starts it from
)
CPU_COMMAND = Constants(
    "SOS_CPU_CMD_", "CpuSlot.command: what the payload asks of a parked AP.",
    NONE=0, GO=1, ACK=2,
)

CpuSlot = c.Struct(
    "apic_id" / u32,      # host fills: the AP's local APIC id
    "state" / u32,        # CPU_STATE
    "command" / u32,      # CPU_COMMAND
    "_pad0" / c.Bytes(4),
    "entry" / u64,        # payload fills: where the AP calls in (RDI = this slot)
    "arg" / u64,          # payload fills: that AP's ApContext
)

# What the AP trampoline saves of an AP's host state and needs to run it in the payload.
# Lives in the payload's .bss, one per slot; build/trampoline.py reads the offsets from here.
ApContext = c.Struct(
    "slot" / u64,         # the CpuSlot this AP came through
    "stack_top" / u64,    # the AP's own payload stack
    "index" / u32,        # slot number
    "_pad0" / c.Bytes(4),
    "rsp" / u64,          # the host's, after the trampoline pushed the callee-saved registers
    "cr0" / u64, "cr3" / u64, "cr4" / u64, "efer" / u64,
    "fs_base" / u64, "gs_base" / u64, "kernel_gs_base" / u64,
    "gdtr" / c.Bytes(16),   # SGDT image: limit (2 bytes), base (8 bytes)
    "idtr" / c.Bytes(16),
    "cs" / u16, "ss" / u16, "ds" / u16, "es" / u16, "fs" / u16, "gs" / u16,
    "_pad1" / c.Bytes(4),
)
