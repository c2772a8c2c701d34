"""The handoff trampoline, assembled at build time with keystone.

It is generated rather than linked because its addresses are only known once the builder
has laid out the reserved region: the handoff block, the payload's page tables, GDT, IDT and
stack. It runs on one page of its own (mapped RX for the payload, identity-mapped in the
host's tables by the handoff contract, formats/handoff.py).

entry(handoff):  save the host's state into handoff->context; set EFER.NXE (the payload's
                 tables use XD, SDM vol. 3 4.1.1) and CR0.WP (read-only binds ring 0 too,
                 SDM 4.6); clear CR4.PGE while our tables are live so no global host TLB
                 entry survives (SDM 4.10.4.1); load our CR3, GDT, IDT, selectors and stack;
                 call payload_main(handoff).
exit:            (also where the fault handler unwinds to) restore GDT, IDT, CR3, CR4, CR0,
                 EFER, selectors, FS/GS bases, FXSAVE state, callee-saved registers and
                 RFLAGS, and return handoff->status to the host.
"""
import keystone

from ..errors import BuildError
from ..formats.common import offset_of
from ..formats.context import CpuContext
from ..formats.handoff import Handoff
from ..formats.smp import CPU_STATE, ApContext, CpuSlot

# Private scratch of the trampoline inside the handoff page, after the handoff block.
GDT_OFFSET = 0xC00
GDTR_OFFSET = 0xC20
IDTR_OFFSET = 0xC30
HOST_GDTR_OFFSET = 0xC40
HOST_IDTR_OFFSET = 0xC50
CODE_SELECTOR, DATA_SELECTOR = 0x08, 0x10
# Flat 64-bit code and data descriptors, accessed bit preset so the CPU never writes the GDT.
GDT_ENTRIES = [0, 0x00AF9B000000FFFF, 0x00CF93000000FFFF]

MSRS = [("efer", 0xC0000080), ("pat", 0x277), ("fs_base", 0xC0000100),
        ("gs_base", 0xC0000101), ("kernel_gs_base", 0xC0000102), ("star", 0xC0000081),
        ("lstar", 0xC0000082), ("cstar", 0xC0000083), ("fmask", 0xC0000084)]
assert Handoff.sizeof() <= GDT_OFFSET


def _source(handoff, pml4, idt_base, idt_limit, stack_top, payload_main, ap_main):
    ctx = handoff + offset_of(Handoff, "context")
    o = {sc.name: offset_of(CpuContext, sc.name) for sc in CpuContext.subcons}
    page = handoff
    lines = [f"mov rax, {ctx:#x}"]
    lines += [f"mov [rax + {o[r]}], {r}" for r in ("rbx", "rbp", "r12", "r13", "r14", "r15")]
    lines += ["mov rcx, [rsp]", f"mov [rax + {o['rip']}], rcx", f"mov [rax + {o['rsp']}], rsp",
              "pushfq", "pop rcx", f"mov [rax + {o['rflags']}], rcx", "cli",
              "mov rbx, rax", "mov r12, rdi"]
    for cr in ("cr0", "cr3", "cr4"):
        lines += [f"mov rcx, {cr}", f"mov [rbx + {o[cr]}], rcx"]
    for name, msr in MSRS:
        lines += [f"mov ecx, {msr:#x}", "rdmsr", "shl rdx, 32", "or rax, rdx",
                  f"mov [rbx + {o[name]}], rax"]
    lines += [f"mov qword ptr [rbx + {o['xcr0']}], 0", f"mov rcx, [rbx + {o['cr4']}]",
              "bt rcx, 18", "jnc no_xsave", "xor ecx, ecx", "xgetbv", "shl rdx, 32",
              "or rax, rdx", f"mov [rbx + {o['xcr0']}], rax", "no_xsave:"]
    for table, off in (("gdt", HOST_GDTR_OFFSET), ("idt", HOST_IDTR_OFFSET)):
        lines += [f"mov rax, {page + off:#x}", f"s{table} [rax]", "mov cx, [rax]",
                  f"mov [rbx + {o[table + '_limit']}], cx", "mov rcx, [rax + 2]",
                  f"mov [rbx + {o[table + '_base']}], rcx"]
    for seg in ("cs", "ss", "ds", "es", "fs", "gs"):
        lines += [f"mov ax, {seg}", f"mov [rbx + {o[seg]}], ax"]
    # TR and LDTR are never changed here; they are saved for the resume loader.
    lines += ["str ax", f"mov [rbx + {o['tr']}], ax", "sldt ax", f"mov [rbx + {o['ldtr']}], ax"]
    lines += [f"fxsave64 [rbx + {o['fxsave']}]"]
    # Into the payload's world.
    lines += ["mov ecx, 0xC0000080", "rdmsr", "or eax, 0x800", "wrmsr",
              "mov rax, cr0", "or rax, 0x10000", "mov cr0, rax",
              "mov rax, cr4", "and rax, -129", "mov cr4, rax",
              f"mov rax, {pml4:#x}", "mov cr3, rax",
              # The host's stack is read-only now: switch before the far return pushes.
              f"mov rsp, {stack_top:#x}",
              f"mov rax, {page + GDTR_OFFSET:#x}", "lgdt [rax]",
              f"mov rax, {page + IDTR_OFFSET:#x}", "lidt [rax]",
              f"push {CODE_SELECTOR}", "lea rax, [rip + payload_cs]", "push rax", "retfq",
              "payload_cs:",
              f"mov ax, {DATA_SELECTOR}", "mov ds, ax", "mov es, ax", "mov ss, ax",
              "xor eax, eax", "mov fs, ax", "mov gs, ax", "mov rdi, r12",
              f"mov rax, {payload_main:#x}", "call rax"]
    # Back to the host's.
    # A fault may arrive with any stack pointer: start the way back on our own stack.
    lines += ["trampoline_exit:", "cli", f"mov rsp, {stack_top:#x}", f"mov rbx, {ctx:#x}"]
    for table, off in (("gdt", HOST_GDTR_OFFSET), ("idt", HOST_IDTR_OFFSET)):
        lines += [f"mov rax, {page + off:#x}", f"mov cx, [rbx + {o[table + '_limit']}]",
                  "mov [rax], cx", f"mov rcx, [rbx + {o[table + '_base']}]",
                  "mov [rax + 2], rcx", f"l{table} [rax]"]
    for cr in ("cr3", "cr4", "cr0"):
        lines += [f"mov rax, [rbx + {o[cr]}]", f"mov {cr}, rax"]
    lines += [f"mov rax, [rbx + {o['efer']}]", "mov rdx, rax", "shr rdx, 32",
              "mov ecx, 0xC0000080", "wrmsr"]
    for seg in ("ss", "ds", "es", "fs", "gs"):
        lines += [f"mov ax, [rbx + {o[seg]}]", f"mov {seg}, ax"]
    for name, msr in MSRS[2:5]:     # selector loads may clobber the FS/GS bases
        lines += [f"mov ecx, {msr:#x}", f"mov rax, [rbx + {o[name]}]", "mov rdx, rax",
                  "shr rdx, 32", "wrmsr"]
    lines += [f"movzx eax, word ptr [rbx + {o['cs']}]", "push rax",
              "lea rax, [rip + host_cs]", "push rax", "retfq", "host_cs:",
              f"mov rsp, [rbx + {o['rsp']}]", f"fxrstor64 [rbx + {o['fxsave']}]",
              f"mov rax, {handoff + offset_of(Handoff, 'status'):#x}", "mov eax, [rax]"]
    lines += [f"mov {r}, [rbx + {o[r]}]" for r in ("rbp", "r12", "r13", "r14", "r15")]
    lines += [f"push qword ptr [rbx + {o['rflags']}]", f"mov rbx, [rbx + {o['rbx']}]",
              "popfq", "ret"]
    return "\n".join(lines + _ap_source(handoff, pml4, ap_main))


def _ap_source(page, pml4, ap_main):
    """ap_entry(slot): an AP the host parked calls in here (formats/smp.py). The host's
    callee-saved registers and RFLAGS go on the host's own stack; the rest of its state into
    the AP's ApContext (slot->arg). ap_exit (RDI = ApContext) is the way back, also for a
    fault on the AP: it needs nothing but RDI."""
    a = {sc.name: offset_of(ApContext, sc.name) for sc in ApContext.subcons}
    slot_arg, slot_state = offset_of(CpuSlot, "arg"), offset_of(CpuSlot, "state")
    lines = ["ap_entry:", "push rbx", "push rbp", "push r12", "push r13", "push r14", "push r15",
             "pushfq", "cli", f"mov rbx, [rdi + {slot_arg}]", f"mov [rbx + {a['rsp']}], rsp"]
    for cr in ("cr0", "cr3", "cr4"):
        lines += [f"mov rax, {cr}", f"mov [rbx + {a[cr]}], rax"]
    for name, msr in (MSRS[0], *MSRS[2:5]):
        lines += [f"mov ecx, {msr:#x}", "rdmsr", "shl rdx, 32", "or rax, rdx",
                  f"mov [rbx + {a[name]}], rax"]
    lines += [f"sgdt [rbx + {a['gdtr']}]", f"sidt [rbx + {a['idtr']}]"]
    for seg in ("cs", "ss", "ds", "es", "fs", "gs"):
        lines += [f"mov ax, {seg}", f"mov [rbx + {a[seg]}], ax"]
    # The same switch as the boot CPU's (SDM vol. 3 4.1.1, 4.6, 4.10.4.1), onto its own stack.
    lines += ["mov ecx, 0xC0000080", "rdmsr", "or eax, 0x800", "wrmsr",
              "mov rax, cr0", "or rax, 0x10000", "mov cr0, rax",
              "mov rax, cr4", "and rax, -129", "mov cr4, rax",
              f"mov rax, {pml4:#x}", "mov cr3, rax", f"mov rsp, [rbx + {a['stack_top']}]",
              f"mov rax, {page + GDTR_OFFSET:#x}", "lgdt [rax]",
              f"mov rax, {page + IDTR_OFFSET:#x}", "lidt [rax]",
              f"push {CODE_SELECTOR}", "lea rax, [rip + ap_payload_cs]", "push rax", "retfq",
              "ap_payload_cs:", f"mov ax, {DATA_SELECTOR}", "mov ds, ax", "mov es, ax",
              "mov ss, ax", "xor eax, eax", "mov fs, ax", "mov gs, ax", "mov rdi, rbx",
              f"mov rax, {ap_main:#x}", "call rax", "mov rdi, rbx"]
    lines += ["ap_exit:", "cli", "mov rbx, rdi", f"mov rsp, [rbx + {a['stack_top']}]",
              f"lgdt [rbx + {a['gdtr']}]", f"lidt [rbx + {a['idtr']}]"]
    for cr in ("cr3", "cr4", "cr0"):
        lines += [f"mov rax, [rbx + {a[cr]}]", f"mov {cr}, rax"]
    lines += [f"mov rax, [rbx + {a['efer']}]", "mov rdx, rax", "shr rdx, 32",
              "mov ecx, 0xC0000080", "wrmsr"]
    for seg in ("ss", "ds", "es", "fs", "gs"):
        lines += [f"mov ax, [rbx + {a[seg]}]", f"mov {seg}, ax"]
    for name, msr in MSRS[2:5]:
        lines += [f"mov ecx, {msr:#x}", f"mov rax, [rbx + {a[name]}]", "mov rdx, rax",
                  "shr rdx, 32", "wrmsr"]
    lines += [f"movzx eax, word ptr [rbx + {a['cs']}]", "push rax",
              "lea rax, [rip + ap_host_cs]", "push rax", "retfq", "ap_host_cs:",
              f"mov rsp, [rbx + {a['rsp']}]", f"mov rax, [rbx + {a['slot']}]",
              # The last store into the reserved region: the payload may now return.
              f"mov dword ptr [rax + {slot_state}], {CPU_STATE.LEFT}",
              "popfq", "pop r15", "pop r14", "pop r13", "pop r12", "pop rbp", "pop rbx", "ret"]
    return lines


def assemble(base, **addresses):
    """Machine code for the trampoline placed at `base`, and the addresses of its exit path,
    of the AP entry and of the AP exit."""
    src = _source(**addresses)
    try:
        ks = keystone.Ks(keystone.KS_ARCH_X86, keystone.KS_MODE_64)
        code, _ = ks.asm(src, base)
        marks = [len(ks.asm(src.split(label)[0], base)[0])
                 for label in ("trampoline_exit:", "ap_entry:", "ap_exit:")]
    except keystone.KsError as e:
        raise BuildError(f"trampoline: keystone failed: {e}")
    return (bytes(code), *(base + m for m in marks))


def gdt_page_bytes(handoff, idt_base, idt_limit):
    """The GDT and the two pseudo-descriptors the trampoline loads, at their page offsets."""
    import struct
    data = bytearray(0x1000 - GDT_OFFSET)
    for i, d in enumerate(GDT_ENTRIES):
        struct.pack_into("<Q", data, i * 8, d)
    gdt_base = handoff + GDT_OFFSET
    struct.pack_into("<HQ", data, GDTR_OFFSET - GDT_OFFSET, len(GDT_ENTRIES) * 8 - 1, gdt_base)
    struct.pack_into("<HQ", data, IDTR_OFFSET - GDT_OFFSET, idt_limit, idt_base)
    return bytes(data)
