/*
 * Back into the host: load the CPU context the blob's trampoline saved at the handoff
 * (suspendos/build/trampoline.py; struct sos_cpu_context, carried in the image header) and
 * return SOS_STATUS_RESUMED to the host's handoff call, exactly as the trampoline's exit
 * path does: RSP = context.rsp points at the return address of that call.
 *
 * Order (Intel SDM vol. 3):
 *  1. EFER (NXE must match the host's page tables before they are live), PAT.
 *  2. CR3, CR4 (then XCR0 if CR4.OSXSAVE: XSETBV needs it), CR0 with WP clear for now.
 *     The host's tables map the reserved region 1:1 (the handoff contract), so this code,
 *     its stack and `ctx` stay reachable. From here on addresses are the host's.
 *  3. The TSS descriptor's busy bit cleared in the host's GDT (ltr faults on a busy TSS,
 *     7.2.3; the saved GDT holds it busy since the host had loaded TR), through the host's
 *     own mapping of its GDT, with CR0.WP still clear in case that mapping is read-only.
 *  4. GDTR, IDTR, TR, LDTR; SS DS ES FS GS; CS by a far return; CR0 as saved.
 *  5. The FS/GS/KERNEL_GS bases (selector loads clear them) and the SYSCALL MSRs.
 *  6. FXRSTOR, the callee-saved registers, RSP, RFLAGS; EAX = RESUMED; ret.
 * Not restored because not saved: debug registers, CR8, the APIC; the firmware's are in
 * place. CR4.PCIDE with a non-zero PCID in CR3, and CR4.LA57, cannot be loaded this way.
 * Offsets come from the generated suspendos_abi.h (offsetof); none are kept by hand.
 */
#include <stddef.h>
#include "resume.h"
#include "string.h"

#define MSR_PAT            0x277
#define MSR_EFER           0xC0000080
#define MSR_STAR           0xC0000081
#define MSR_LSTAR          0xC0000082
#define MSR_CSTAR          0xC0000083
#define MSR_FMASK          0xC0000084
#define MSR_FS_BASE        0xC0000100
#define MSR_GS_BASE        0xC0000101
#define MSR_KERNEL_GS_BASE 0xC0000102
#define CR0_WP             (1ull << 16)
#define CR4_OSXSAVE        (1ull << 18)
#define DESC_TYPE_MASK     0x0f
#define DESC_TSS_BUSY      0x0b        /* 64-bit TSS, busy (SDM vol. 3, table 3-2) */
#define DESC_BUSY_BIT      0x02

static struct sos_cpu_context ctx;     /* 16-byte aligned (the ABI header says so): FXRSTOR */

struct __attribute__((packed)) table_register {
    uint16_t limit;
    uint64_t base;
};

static inline void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" :: "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

static inline void write_cr(int n, uint64_t v)
{
    switch (n) {
    case 0: __asm__ volatile("mov %0, %%cr0" :: "r"(v) : "memory"); break;
    case 3: __asm__ volatile("mov %0, %%cr3" :: "r"(v) : "memory"); break;
    case 4: __asm__ volatile("mov %0, %%cr4" :: "r"(v) : "memory"); break;
    }
}

void cpu_resume(const struct sos_cpu_context *saved)
{
    memcpy(&ctx, saved, sizeof ctx);

    wrmsr(MSR_EFER, ctx.efer);
    wrmsr(MSR_PAT, ctx.pat);
    write_cr(3, ctx.cr3);
    write_cr(4, ctx.cr4);
    if (ctx.cr4 & CR4_OSXSAVE)
        __asm__ volatile("xsetbv" :: "c"(0), "a"((uint32_t)ctx.xcr0),
                         "d"((uint32_t)(ctx.xcr0 >> 32)));
    write_cr(0, ctx.cr0 & ~CR0_WP);

    if (ctx.tr & ~7u) {
        volatile uint8_t *access = (volatile uint8_t *)(uintptr_t)(ctx.gdt_base +
                                                                  (ctx.tr & ~7u) + 5);
        if ((*access & DESC_TYPE_MASK) == DESC_TSS_BUSY)
            *access &= (uint8_t)~DESC_BUSY_BIT;
    }
    struct table_register gdtr = { ctx.gdt_limit, ctx.gdt_base };
    struct table_register idtr = { ctx.idt_limit, ctx.idt_base };
    __asm__ volatile("lgdt %0\n\tlidt %1" :: "m"(gdtr), "m"(idtr) : "memory");
    if (ctx.tr & ~7u)
        __asm__ volatile("ltr %0" :: "r"(ctx.tr) : "memory");
    __asm__ volatile("lldt %0" :: "r"(ctx.ldtr) : "memory");
    __asm__ volatile(
        "movw %[ss], %%ss\n\t"
        "movw %[ds], %%ds\n\t"
        "movw %[es], %%es\n\t"
        "movw %[fs], %%fs\n\t"
        "movw %[gs], %%gs\n\t"
        "pushq %q[cs]\n\t"
        "leaq 1f(%%rip), %%rax\n\t"
        "pushq %%rax\n\t"
        "lretq\n"
        "1:"
        :: [ss] "r"(ctx.ss), [ds] "r"(ctx.ds), [es] "r"(ctx.es), [fs] "r"(ctx.fs),
           [gs] "r"(ctx.gs), [cs] "r"((uint64_t)ctx.cs)
        : "rax", "memory");
    write_cr(0, ctx.cr0);

    wrmsr(MSR_FS_BASE, ctx.fs_base);
    wrmsr(MSR_GS_BASE, ctx.gs_base);
    wrmsr(MSR_KERNEL_GS_BASE, ctx.kernel_gs_base);
    wrmsr(MSR_STAR, ctx.star);
    wrmsr(MSR_LSTAR, ctx.lstar);
    wrmsr(MSR_CSTAR, ctx.cstar);
    wrmsr(MSR_FMASK, ctx.fmask);

    /* Nothing but this block runs from here: -mgeneral-regs-only keeps the compiler off
     * the x87/SSE state FXRSTOR loads, and the registers it sets are the host's. */
    __asm__ volatile(
        "fxrstor64 %c[fx](%[c])\n\t"
        "movq %c[rbp](%[c]), %%rbp\n\t"
        "movq %c[r12](%[c]), %%r12\n\t"
        "movq %c[r13](%[c]), %%r13\n\t"
        "movq %c[r14](%[c]), %%r14\n\t"
        "movq %c[r15](%[c]), %%r15\n\t"
        "movq %c[rsp](%[c]), %%rsp\n\t"
        "pushq %c[rflags](%[c])\n\t"
        "movq %c[rbx](%[c]), %%rbx\n\t"
        "movl %[status], %%eax\n\t"
        "popfq\n\t"
        "ret"
        :: [c] "c"(&ctx),
           [fx] "i"(offsetof(struct sos_cpu_context, fxsave)),
           [rbx] "i"(offsetof(struct sos_cpu_context, rbx)),
           [rbp] "i"(offsetof(struct sos_cpu_context, rbp)),
           [r12] "i"(offsetof(struct sos_cpu_context, r12)),
           [r13] "i"(offsetof(struct sos_cpu_context, r13)),
           [r14] "i"(offsetof(struct sos_cpu_context, r14)),
           [r15] "i"(offsetof(struct sos_cpu_context, r15)),
           [rsp] "i"(offsetof(struct sos_cpu_context, rsp)),
           [rflags] "i"(offsetof(struct sos_cpu_context, rflags)),
           [status] "i"(SOS_STATUS_RESUMED)
        : "memory");
    __builtin_unreachable();
}
