"""The CPU context the blob's trampoline saves at the handoff and the image carries for resume.

Everything the host expects to find unchanged when the handoff call returns (System V
callee-saved registers, control registers, descriptor tables, segment selectors, the MSRs a
64-bit kernel relies on) plus the legacy FXSAVE area (SDM vol. 1, section 10.5.1), which must
sit at a 16-byte aligned offset.
"""
import construct as c

from .common import u16, u64

_REGS = ["rbx", "rbp", "r12", "r13", "r14", "r15", "rsp", "rip", "rflags",
         "cr0", "cr3", "cr4", "efer", "pat", "fs_base", "gs_base", "kernel_gs_base",
         "star", "lstar", "cstar", "fmask", "xcr0", "gdt_base", "idt_base"]
_SELECTORS = ["gdt_limit", "idt_limit", "cs", "ss", "ds", "es", "fs", "gs", "tr", "ldtr"]

CpuContext = c.Struct(
    *[r / u64 for r in _REGS],
    *[s / u16 for s in _SELECTORS],
    "_pad0" / c.Bytes(12),
    "fxsave" / c.Bytes(512),
)

assert (len(_REGS) * 8 + len(_SELECTORS) * 2 + 12) % 16 == 0, "fxsave must be 16-byte aligned"
