"""The payload's IDT, generated from the ISR stub addresses in the linked ELF.

64-bit interrupt gates (SDM vol. 3, 6.14.1): offset split over three fields, the payload's
code selector, type 0xE, DPL 0, present. Vectors 0-31 go to isr_<n>; every other vector
goes to isr_spurious, so nothing can reach a not-present gate (which would be a #NP, then a
double fault).
"""
import struct

IDT_ENTRIES = 256
IDT_BYTES = IDT_ENTRIES * 16
GATE_INTERRUPT_64 = 0x8E       # P=1, DPL=0, type=1110b


def gate(offset, selector):
    return struct.pack("<HHBBHII", offset & 0xFFFF, selector, 0, GATE_INTERRUPT_64,
                       (offset >> 16) & 0xFFFF, offset >> 32, 0)


def build_idt(symbols, selector):
    out = bytearray()
    for v in range(IDT_ENTRIES):
        out += gate(symbols[f"isr_{v}"] if v < 32 else symbols["isr_spurious"], selector)
    return bytes(out)
