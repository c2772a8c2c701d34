"""ELF-64 layouts. Used for the ELF core file of an extracted image (System V gABI, ELF-64; x86-64 psABI), so gdb can
read the saved memory by physical address: one PT_LOAD per saved range (p_vaddr = p_paddr =
physical address) and a PT_NOTE with an NT_PRSTATUS holding the registers saved at the
handoff (Linux's struct elf_prstatus layout, which gdb reads); and for the kexec-loadable
blob (suspendos/build/kexec.py).

Written with construct rather than lief: lief 1.0 refuses to add segments to an ET_CORE
file ("Adding segment not implemented for CORE"). tests/test_image_tools.py reads the result
back with lief and with gdb.
"""
import construct as c

from .common import u16, u32, u64

ELFCLASS64, ELFDATA2LSB, EV_CURRENT, ET_EXEC, ET_CORE, EM_X86_64 = 2, 1, 1, 2, 4, 62
PT_LOAD, PT_NOTE = 1, 4
PF_X, PF_W, PF_R = 1, 2, 4
NT_PRSTATUS = 1

ElfHeader = c.Struct(
    "e_ident" / c.Const(b"\x7fELF" + bytes([ELFCLASS64, ELFDATA2LSB, EV_CURRENT]) + bytes(9)),
    "e_type" / u16, "e_machine" / u16, "e_version" / u32, "e_entry" / u64,
    "e_phoff" / u64, "e_shoff" / u64, "e_flags" / u32, "e_ehsize" / u16,
    "e_phentsize" / u16, "e_phnum" / u16, "e_shentsize" / u16, "e_shnum" / u16,
    "e_shstrndx" / u16,
)

ProgramHeader = c.Struct(
    "p_type" / u32, "p_flags" / u32, "p_offset" / u64, "p_vaddr" / u64, "p_paddr" / u64,
    "p_filesz" / u64, "p_memsz" / u64, "p_align" / u64,
)

NoteHeader = c.Struct("n_namesz" / u32, "n_descsz" / u32, "n_type" / u32)

# struct user_regs_struct (x86-64), the order gdb expects inside elf_prstatus.
USER_REGS = ["r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx",
             "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base",
             "gs_base", "ds", "es", "fs", "gs"]

PrStatus = c.Struct(
    "_info_and_signals" / c.Bytes(32),   # pr_info, pr_cursig, pr_sigpend, pr_sighold
    "pr_pid" / u32, "pr_ppid" / u32, "pr_pgrp" / u32, "pr_sid" / u32,
    "_times" / c.Bytes(64),              # pr_utime, pr_stime, pr_cutime, pr_cstime
    "pr_reg" / c.Struct(*[r / u64 for r in USER_REGS]),
    "pr_fpvalid" / u32, "_pad" / c.Bytes(4),
)
assert PrStatus.sizeof() == 336


def prstatus_note(regs):
    name = b"CORE\0\0\0\0"
    desc = PrStatus.build(dict(_info_and_signals=bytes(32), pr_pid=1, pr_ppid=0, pr_pgrp=0,
                               pr_sid=0, _times=bytes(64),
                               pr_reg={r: regs.get(r, 0) for r in USER_REGS},
                               pr_fpvalid=0, _pad=bytes(4)))
    return NoteHeader.build(dict(n_namesz=5, n_descsz=len(desc), n_type=NT_PRSTATUS)) + name + desc


def layout(ranges, note):
    """(header bytes, [(range, file offset)]): the file is header, notes, then the ranges,
    each page-aligned."""
    phnum = 1 + len(ranges)
    phoff = ElfHeader.sizeof()
    note_off = phoff + phnum * ProgramHeader.sizeof()
    data_off = -(-(note_off + len(note)) // 4096) * 4096
    phdrs = [dict(p_type=PT_NOTE, p_flags=0, p_offset=note_off, p_vaddr=0, p_paddr=0,
                  p_filesz=len(note), p_memsz=0, p_align=4)]
    placed = []
    for start, end in ranges:
        phdrs.append(dict(p_type=PT_LOAD, p_flags=PF_R | PF_W | PF_X, p_offset=data_off,
                          p_vaddr=start, p_paddr=start, p_filesz=end - start,
                          p_memsz=end - start, p_align=4096))
        placed.append(((start, end), data_off))
        data_off += end - start
    head = ElfHeader.build(dict(e_type=ET_CORE, e_machine=EM_X86_64, e_version=EV_CURRENT,
                                e_entry=0, e_phoff=phoff, e_shoff=0, e_flags=0,
                                e_ehsize=ElfHeader.sizeof(), e_phentsize=ProgramHeader.sizeof(),
                                e_phnum=phnum, e_shentsize=0, e_shnum=0, e_shstrndx=0))
    head += b"".join(ProgramHeader.build(p) for p in phdrs) + note
    return head, placed
