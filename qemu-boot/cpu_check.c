/*
 * Comparing the CPU state before and after the handoff. RFLAGS' arithmetic flags (CF PF
 * AF ZF SF OF) are results, not state, and are not compared; everything else must come
 * back exactly as it was: the System V callee-saved registers and RSP, the system
 * registers and MSRs, the descriptor tables, selectors and task register, the x87 control
 * word, MXCSR and all sixteen xmm registers (the design's trampoline saves FPU/SSE state),
 * and, where the CPU has AVX, XCR0 and the upper halves of the ymm registers (the payload's
 * vector code saves and restores them, builder/core/vector.c).
 */
#include "handoff_call.h"
#include "printf.h"
#include "string.h"

#define RFLAGS_ARITH 0x8D5ull       /* CF, PF, AF, ZF, SF, OF */

struct field {
    const char *name;
    uint16_t offset, size;
    uint64_t ignore;                /* bits not compared */
};

#define F(name, size) { #name, __builtin_offsetof(struct cpu_snapshot, name), size, 0 }
static const struct field fields[] = {
    F(rbx, 8), F(rbp, 8), F(r12, 8), F(r13, 8), F(r14, 8), F(r15, 8), F(rsp, 8),
    { "rflags", __builtin_offsetof(struct cpu_snapshot, rflags), 8, RFLAGS_ARITH },
    F(cr0, 8), F(cr3, 8), F(cr4, 8), F(efer, 8), F(pat, 8), F(fs_base, 8), F(gs_base, 8),
    F(kernel_gs_base, 8), F(star, 8), F(lstar, 8), F(cstar, 8), F(fmask, 8),
    F(gdt_base, 8), F(gdt_limit, 2), F(idt_base, 8), F(idt_limit, 2),
    F(cs, 2), F(ss, 2), F(ds, 2), F(es, 2), F(fs, 2), F(gs, 2), F(tr, 2), F(fcw, 2),
    F(mxcsr, 4),
};

static uint64_t load(const struct cpu_snapshot *s, const struct field *f)
{
    uint64_t v = 0;
    memcpy(&v, (const uint8_t *)s + f->offset, f->size);
    return v & ~f->ignore;
}

int host_avx;

/* CPUID.1:ECX bits 26 (XSAVE) and 28 (AVX); XCR0 bits x87, SSE, AVX (SDM vol. 1 13.3). */
int cpu_enable_avx(void)
{
    uint32_t a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
    if (!(c & (1u << 26)) || !(c & (1u << 28)))
        return host_avx = 0;
    uint64_t cr4;
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    __asm__ volatile("mov %0, %%cr4" :: "r"(cr4 | (1ull << 18)));
    __asm__ volatile("xsetbv" :: "c"(0), "a"(7), "d"(0));
    return host_avx = 1;
}

int cpu_compare(const struct cpu_snapshot *before, const struct cpu_snapshot *after,
                int resumed)
{
    int ok = 1;
    for (unsigned i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        uint64_t b = load(before, &fields[i]), a = load(after, &fields[i]);
        if (a != b) {
            kprintf("@@CPU %s 0x%lx 0x%lx\n", fields[i].name, b, a);
            ok = 0;
        }
    }
    for (int n = 0; n < 16; n++) {
        uint64_t b[2], a[2];
        memcpy(b, before->xmm[n], 16);
        memcpy(a, after->xmm[n], 16);
        if (a[0] != b[0] || a[1] != b[1]) {
            kprintf("@@CPU xmm%d 0x%016lx%016lx 0x%016lx%016lx\n", n, b[1], b[0], a[1], a[0]);
            ok = 0;
        }
    }
    if (before->xcr0 != after->xcr0) {
        kprintf("@@CPU xcr0 0x%lx 0x%lx\n", before->xcr0, after->xcr0);
        ok = 0;
    }
    for (int n = 0; n < 16 && !resumed; n++) {
        uint64_t b[2], a[2];
        memcpy(b, before->ymmh[n], 16);
        memcpy(a, after->ymmh[n], 16);
        if (a[0] != b[0] || a[1] != b[1]) {
            kprintf("@@CPU ymm%d.hi 0x%016lx%016lx 0x%016lx%016lx\n", n, b[1], b[0], a[1], a[0]);
            ok = 0;
        }
    }
    return ok;
}
