"""Fake suspend-module blobs for testing the QEMU test host (qemu-boot/).

A real blob comes from the builder; these carry a few hand-assembled instructions as the
trampoline at load_base implementing `status = entry(handoff)`, plus the initialised
handoff block, so each variant exercises one check of the host: a clean return, a
clobbered callee-saved register, a write to a host page, a fault, a broken IDT...

    python tests/testhost_fake_blob.py VARIANT OUT.bin   # writes one blob
"""
import sys

from keystone import KS_ARCH_X86, KS_MODE_64, Ks

from suspendos.formats import blob
from suspendos.formats.common import offset_of
from suspendos.formats.handoff import Handoff, new_handoff
from suspendos.formats.status import STATUS

LOAD_BASE = 0x1000000           # 16 MiB
RESERVED_SIZE = 0x200000        # 2 MiB
HANDOFF_ADDR = LOAD_BASE + 0x1000
HOST_PAGE = 0x3000000           # 48 MiB: filled RAM in every machine the tests boot
STATUS_OFF = offset_of(Handoff, "status")


def _ret(status):
    return f"mov dword ptr [rdi + {STATUS_OFF}], {status}; mov eax, {status}; ret"


# Trampoline bodies (Intel syntax). rdi = handoff on entry.
VARIANTS = {
    "written": _ret(STATUS.WRITTEN),
    "resumed": _ret(STATUS.RESUMED),
    "nothing": "xor eax, eax; ret",
    "abort": _ret(STATUS.AHCI_TIMEOUT),
    "clobber-rbx": "xor ebx, ebx; " + _ret(STATUS.WRITTEN),
    "clobber-r15": "mov r15, 1; " + _ret(STATUS.WRITTEN),
    "clobber-xmm6": "pxor xmm6, xmm6; " + _ret(STATUS.WRITTEN),
    # The host turns AVX on (QEMU -cpu max has it): the upper half of a ymm register, and
    # XCR0 itself, must come back too.
    "clobber-ymm6-high": "vinsertf128 ymm6, ymm6, xmm0, 1; " + _ret(STATUS.WRITTEN),
    "clobber-xcr0": "xor ecx, ecx; xor edx, edx; mov eax, 3; xsetbv; " + _ret(STATUS.WRITTEN),
    "clobber-gsbase": "mov ecx, 0xc0000101; xor eax, eax; xor edx, edx; wrmsr; "
                      + _ret(STATUS.WRITTEN),
    "set-df": "std; " + _ret(STATUS.WRITTEN),
    "write-host-page": f"mov rax, {HOST_PAGE + 0x123}; not byte ptr [rax]; "
                       + _ret(STATUS.WRITTEN),
    "write-host-code": "mov rax, 0x100000; not byte ptr [rax]; " + _ret(STATUS.WRITTEN),
    "ud2": "ud2",
    # Never returns: RAM stays as the host filled it, for QMP pmemsave.
    "spin": f"pause; jmp {LOAD_BASE}",
    # Leaves an empty IDT behind and returns: the host must report it, not triple-fault.
    "break-idt": "sub rsp, 16; mov word ptr [rsp], 0; mov qword ptr [rsp + 2], 0; "
                 "lidt [rsp]; add rsp, 16; " + _ret(STATUS.WRITTEN),
    # Returns with RSP one word off (the host must survive it and say so).
    "bad-rsp": f"mov dword ptr [rdi + {STATUS_OFF}], 1; mov eax, 1; pop rcx; push rcx; "
               "push rcx; ret",
}


def assemble(source, address=LOAD_BASE):
    code, _ = Ks(KS_ARCH_X86, KS_MODE_64).asm(source, address)
    return bytes(code)


def make(variant="written", load_base=LOAD_BASE, reserved_size=RESERVED_SIZE, code=None):
    """A packed blob whose trampoline runs VARIANTS[variant] (or the given code bytes)."""
    handoff_addr = load_base + 0x1000
    tramp = code if code is not None else assemble(VARIANTS[variant], load_base)
    handoff = Handoff.build(new_handoff())
    header = dict(magic=blob.BLOB_MAGIC, flags=0, load_base=load_base,
                  reserved_size=reserved_size, entry=load_base, handoff=handoff_addr,
                  payload_info=0)
    segments = [
        dict(addr=load_base, mem_size=0x1000, kind=blob.SEGMENT_KIND.TRAMPOLINE,
             perm=blob.SEGMENT_PERM.R | blob.SEGMENT_PERM.X),
        dict(addr=handoff_addr, mem_size=0x1000, kind=blob.SEGMENT_KIND.HANDOFF,
             perm=blob.SEGMENT_PERM.R | blob.SEGMENT_PERM.W),
    ]
    return blob.pack(header, segments, [tramp, handoff])


if __name__ == "__main__":
    with open(sys.argv[2], "wb") as f:
        f.write(make(sys.argv[1]))
