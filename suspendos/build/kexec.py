"""`suspendos build --format kexec-elf`: the blob as an ELF for `kexec --load-preserve-context
--args-none --mem-min=MIN --mem-max=MAX` (kexec_mem_range) on a kernel with CONFIG_KEXEC_JUMP
(run on Debian's 6.12 source: suspendos/linuxvm/kexec_jump.py, tests/test_kexec_jump_qemu.py).

What relocate_kernel does (arch/x86/kernel/relocate_kernel_64.S, 6.12, preserve_context):
  - before the call, machine_kexec() has loaded the kernel's data selector into SS DS ES FS
    GS and then an empty GDT and IDT (limit 0); relocate_kernel has switched to its identity
    page tables (every RAM range and every kexec segment, in 2 MiB pages) and swapped each
    segment's pages with the kernel pages that held them;
  - `call *%rdx` enters the image with RSP at the top of kexec's swap page (one kernel RAM
    page), [RSP] = the return point R inside the control page, interrupts off;
  - when the image returns to R, R reads the image's *re-entry point* from 0(%rsp) (RAX is
    overwritten: it is not the return value), swaps the segment pages back, and returns to
    machine_kexec(), which keeps the re-entry point as the start of the next `kexec -e`.
    6.12's virtual_mapped reloads the kernel's GDT (6.1's does not: suspendos/linuxvm/kernel.py).
And kexec-tools, with --load-preserve-context, turns every hole between --mem-min and
--mem-max into a zero-filled segment too (its -d output shows them).

Consequences, and what the entry stub does:
  1. The swap-back puts the kernel's old bytes over every segment on return, so a status the
     payload writes into a segment is gone by the time userspace looks. So the trampoline
     page and the handoff page (the first two pages of the region) are *not* in the kexec
     range: MIN is the page after them. The stub, which lives with a copy of the trampoline
     and the handoff page's non-zero bytes in the first page of scratch (a segment; the
     payload reuses it once the stub is done), writes both pages. The payload's status then
     stays in the handoff page after the return, readable through /dev/mem; the resume
     loader's handoff page is at the same address and says RESUMED there after a resume.
  2. The trampoline saves the GDTR it finds and loads those selectors again on its way out, and
     the resume loader loads that GDTR and those selectors (and TR): an empty GDT would fault.
     The stub writes a GDT with the kernel's layout (0x10 64-bit code, 0x18 data, 0x40 a TSS
     descriptor for the loader's `ltr`) at the bottom of the swap page, under the stack, and
     loads it. The swap page is RAM, so the image carries it and the loader restores it.
  3. The stub does not call the trampoline: it rebuilds the stack as [R, re-entry point] and
     jumps, so the trampoline's `ret` (or the resume loader's, which returns to the saved
     return address on the restored stack) lands on R with 0(%rsp) = the re-entry point.
     Nothing of ours needs to run after the return, which is what lets the resume loader,
     which occupies the reserved region at that point, come back the same way.
  4. The re-entry point (in the trampoline page) returns at once with status NOT_RUN: a
     second `kexec -e` without loading again would find the payload's data as the first run
     left it. Load again to run again.
"""
import struct

import keystone

from ..errors import BuildError
from ..formats import blob as blobfmt
from ..formats import elfcore
from ..formats.common import PAGE_SIZE, offset_of
from ..formats.handoff import Handoff
from ..formats.status import STATUS

REENTRY_OFFSET = 0xF00       # in the trampoline page, after the trampoline's code
HOST_GDT = [0, 0x00CF9B000000FFFF, 0x00AF9B000000FFFF, 0x00CF93000000FFFF, 0, 0, 0, 0,
            0x0000890000000067, 0]   # null, KERNEL32_CS, KERNEL_CS, KERNEL_DS, ..., TSS at 0x40
HOST_GDTR_OFFSET = len(HOST_GDT) * 8   # the pseudo-descriptor, after the GDT, in the swap page
KEXEC_IDENTITY_PAGE = 2 << 20          # kexec maps segments with 2 MiB pages


def _asm(lines, addr, what):
    try:
        code, _ = keystone.Ks(keystone.KS_ARCH_X86, keystone.KS_MODE_64).asm("\n".join(lines), addr)
    except keystone.KsError as e:
        raise BuildError(f"kexec-elf: keystone failed on the {what}: {e}")
    return bytes(code)


def _pieces(page):
    """(offset, bytes) runs of the non-zero bytes of `page`; 16 zeros or more split a run."""
    out, i = [], 0
    while i < len(page):
        if page[i] == 0:
            i += 1
            continue
        j = i
        while j < len(page) and any(page[j:j + 16]):
            j += 1
        data = page[i:j].rstrip(b"\0")
        out.append((i, data))
        i += len(data)
    return out


def reentry_code(addr, handoff):
    """Status NOT_RUN, then back to R keeping itself as the re-entry point."""
    return _asm([f"mov rax, {handoff + offset_of(Handoff, 'status'):#x}",
                 f"mov dword ptr [rax], {STATUS.NOT_RUN}", "pop rax", "sub rsp, 8",
                 f"mov rcx, {addr:#x}", "push rcx", "push rax", "ret"], addr, "re-entry point")


def stub(addr, trampoline, handoff, copies, reentry):
    """The entry stub at `addr`: `copies` is [(destination, source, length)] to copy after
    zeroing the trampoline and handoff pages; then the host GDT and the jump."""
    lines = ["cld", f"mov rdi, {trampoline:#x}", "xor eax, eax", f"mov ecx, {2 * PAGE_SIZE // 8}",
             "rep stosq"]
    for dst, src, n in copies:
        lines += [f"mov rsi, {src:#x}", f"mov rdi, {dst:#x}", f"mov ecx, {n}", "rep movsb"]
    lines += ["mov rbx, rsp", "and rbx, -4096"]       # kexec's swap page, under our stack
    for i, d in enumerate(HOST_GDT):
        lines += [f"mov rax, {d:#x}", f"mov [rbx + {i * 8}], rax"]
    lines += [f"mov word ptr [rbx + {HOST_GDTR_OFFSET}], {len(HOST_GDT) * 8 - 1}",
              f"mov [rbx + {HOST_GDTR_OFFSET + 2}], rbx", f"lgdt [rbx + {HOST_GDTR_OFFSET}]",
              "pop rax",                      # R, relocate_kernel's return point
              "sub rsp, 8",
              f"mov rcx, {reentry:#x}", "push rcx",   # 0(%rsp) after the return
              "push rax",
              f"mov rdi, {handoff:#x}", f"mov rax, {trampoline:#x}", "jmp rax"]
    return _asm(lines, addr, "entry stub")


def handoff_page(blob, serial_port=0, flags=0):
    """The handoff page as the blob loads it, with the host's fields (serial port, flags:
    formats/handoff.py HANDOFF_FLAGS) filled in."""
    head, segs = blobfmt.unpack(blob)
    page = bytearray(PAGE_SIZE)
    for s in segs:
        if s.kind == blobfmt.SEGMENT_KIND.HANDOFF:
            off = s.addr - head.handoff
            page[off:off + s.file_size] = blob[s.file_offset:s.file_offset + s.file_size]
    struct.pack_into("<H", page, offset_of(Handoff, "serial_port"), serial_port)
    struct.pack_into("<I", page, offset_of(Handoff, "flags"), flags)
    return bytes(page)


def kexec_mem_range(blob):
    """(--mem-min, --mem-max) for kexec-tools: the region without its first two pages."""
    head, _ = blobfmt.unpack(blob)
    return head.handoff + PAGE_SIZE, head.load_base + head.reserved_size - 1


def kexec_elf(blob, serial_port=0, flags=0):
    """One PT_LOAD from the payload's text to the stub page (the first page after the
    tables); the trampoline and handoff pages are written by the stub (see above)."""
    head, segs = blobfmt.unpack(blob)
    if head.entry != head.load_base or head.handoff != head.entry + PAGE_SIZE:
        raise BuildError("kexec-elf: the blob does not start with its trampoline and handoff pages")
    start = head.handoff + PAGE_SIZE
    if start // KEXEC_IDENTITY_PAGE != head.load_base // KEXEC_IDENTITY_PAGE:
        raise BuildError("kexec-elf: the first pages of the reserved region must share a 2 MiB "
                         "page with the rest (kexec's identity map): move the region")
    tramp = next(s for s in segs if s.kind == blobfmt.SEGMENT_KIND.TRAMPOLINE)
    code = blob[tramp.file_offset:tramp.file_offset + tramp.file_size]
    if len(code) > REENTRY_OFFSET:
        raise BuildError("kexec-elf: the trampoline leaves no room for the re-entry point")
    reentry = head.entry + REENTRY_OFFSET
    rcode = reentry_code(reentry, head.handoff)

    rest = [s for s in segs if s.addr >= start]
    stub_page = -(-max(s.addr + s.mem_size for s in rest) // PAGE_SIZE) * PAGE_SIZE
    end = stub_page + PAGE_SIZE
    if end > head.load_base + head.reserved_size:
        raise BuildError("kexec-elf: no page left after the payload's tables for the entry stub")
    # the stub's data after its code: trampoline, re-entry point, handoff bytes
    data = [(head.entry, code), (reentry, rcode)] + \
        [(head.handoff + off, piece) for off, piece in _pieces(handoff_page(blob, serial_port, flags))]
    probe = stub(stub_page, head.entry, head.handoff,
                 [(d, stub_page, len(b)) for d, b in data], reentry)
    src, copies, tail = stub_page + len(probe), [], b""
    for dst, piece in data:
        copies.append((dst, src + len(tail), len(piece)))
        tail += piece
    code_stub = stub(stub_page, head.entry, head.handoff, copies, reentry)
    if len(code_stub) != len(probe) or len(code_stub) + len(tail) > PAGE_SIZE:
        raise BuildError("kexec-elf: the entry stub and its data do not fit one page")

    image = bytearray(end - start)
    for s in rest:
        image[s.addr - start:s.addr - start + s.file_size] = \
            blob[s.file_offset:s.file_offset + s.file_size]
    image[stub_page - start:stub_page - start + len(code_stub) + len(tail)] = code_stub + tail

    first = PAGE_SIZE            # the ELF and program headers, then the segment data
    assert elfcore.ElfHeader.sizeof() + elfcore.ProgramHeader.sizeof() <= first
    ph = dict(p_type=elfcore.PT_LOAD, p_flags=elfcore.PF_R | elfcore.PF_W | elfcore.PF_X,
              p_offset=first, p_vaddr=start, p_paddr=start, p_filesz=len(image),
              p_memsz=len(image), p_align=PAGE_SIZE)
    out = bytearray(elfcore.ElfHeader.build(dict(
        e_type=elfcore.ET_EXEC, e_machine=elfcore.EM_X86_64, e_version=elfcore.EV_CURRENT,
        e_entry=stub_page, e_phoff=elfcore.ElfHeader.sizeof(), e_shoff=0,
        e_flags=0, e_ehsize=elfcore.ElfHeader.sizeof(),
        e_phentsize=elfcore.ProgramHeader.sizeof(), e_phnum=1, e_shentsize=0,
        e_shnum=0, e_shstrndx=0)))
    out += elfcore.ProgramHeader.build(ph)
    return bytes(out.ljust(first, b"\0") + image)
