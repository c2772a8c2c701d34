"""`suspendos build --format kexec-elf`: the blob as an ELF that `kexec --load-preserve-context`
can load on a kernel with CONFIG_KEXEC_JUMP.

relocate_kernel's preserve-context convention (arch/x86/kernel/relocate_kernel_64.S): the
image's entry is *called*, with page tables that identity-map memory and a stack in the
control page, and returns with `ret`; what it returns in RAX is where the next jump into the
image starts. Our entry is a small stub in the tail of the trampoline page: it passes the
handoff block to the trampoline (which loads its own GDT, IDT and page tables and restores the
caller's), then returns its own address so that every jump re-enters the same way.

Not tested under a kernel with CONFIG_KEXEC_JUMP: Debian's 6.1 kernel is built without it
(docs/LINUX.md). tests/test_kexec_elf.py reads the ELF back with lief and pyelftools.
"""
import keystone

from ..errors import BuildError
from ..formats import blob as blobfmt
from ..formats import elfcore
from ..formats.common import PAGE_SIZE

STUB_OFFSET = 0xF00          # in the trampoline page, after the trampoline's code
PF = {blobfmt.SEGMENT_PERM.R: elfcore.PF_R, blobfmt.SEGMENT_PERM.W: elfcore.PF_W,
      blobfmt.SEGMENT_PERM.X: elfcore.PF_X}


def stub(addr, handoff, entry):
    src = "\n".join([
        "push rbx",                      # keeps RSP 16-byte aligned at the call below
        f"mov rdi, {handoff:#x}",
        f"mov rax, {entry:#x}",
        "call rax",                      # the trampoline saves and restores everything
        f"mov rax, {addr:#x}",           # the next kexec jump comes back here
        "pop rbx",
        "ret"])
    code, _ = keystone.Ks(keystone.KS_ARCH_X86, keystone.KS_MODE_64).asm(src, addr)
    return bytes(code)


def kexec_elf(blob):
    head, segs = blobfmt.unpack(blob)
    code = stub(head.entry + STUB_OFFSET, head.handoff, head.entry)
    phdrs, datas = [], []
    offset = -(-(elfcore.ElfHeader.sizeof() + elfcore.ProgramHeader.sizeof() * len(segs))
               // PAGE_SIZE) * PAGE_SIZE
    for s in segs:
        data = blob[s.file_offset:s.file_offset + s.file_size]
        if s.kind == blobfmt.SEGMENT_KIND.TRAMPOLINE:
            if len(data) > STUB_OFFSET:
                raise BuildError("kexec-elf: the trampoline leaves no room for the entry stub")
            data = data.ljust(STUB_OFFSET, b"\0") + code
            if len(data) > s.mem_size:
                raise BuildError("kexec-elf: the entry stub does not fit the trampoline page")
        flags = sum(bit for perm, bit in PF.items() if s.perm & perm)
        phdrs.append(dict(p_type=elfcore.PT_LOAD, p_flags=flags, p_offset=offset,
                          p_vaddr=s.addr, p_paddr=s.addr, p_filesz=len(data),
                          p_memsz=s.mem_size, p_align=PAGE_SIZE))
        datas.append((offset, data))
        offset = -(-(offset + len(data)) // PAGE_SIZE) * PAGE_SIZE
    out = bytearray(elfcore.ElfHeader.build(dict(
        e_type=elfcore.ET_EXEC, e_machine=elfcore.EM_X86_64, e_version=elfcore.EV_CURRENT,
        e_entry=head.entry + STUB_OFFSET, e_phoff=elfcore.ElfHeader.sizeof(), e_shoff=0,
        e_flags=0, e_ehsize=elfcore.ElfHeader.sizeof(),
        e_phentsize=elfcore.ProgramHeader.sizeof(), e_phnum=len(phdrs), e_shentsize=0,
        e_shnum=0, e_shstrndx=0)))
    for p in phdrs:
        out += elfcore.ProgramHeader.build(p)
    for off, data in datas:
        out = out.ljust(off, b"\0") + data
    return bytes(out)
