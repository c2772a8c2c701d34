/*
 * The handoff call and the CPU state recorded around it. Offsets are spelled as macros
 * because handoff_call.S fills the struct; the _Static_asserts below keep C and assembly
 * in agreement.
 */
#ifndef HOST_HANDOFF_CALL_H
#define HOST_HANDOFF_CALL_H

#define SNAP_RBX            0
#define SNAP_RBP            8
#define SNAP_R12            16
#define SNAP_R13            24
#define SNAP_R14            32
#define SNAP_R15            40
#define SNAP_RSP            48
#define SNAP_RFLAGS         56
#define SNAP_CR0            64
#define SNAP_CR3            72
#define SNAP_CR4            80
#define SNAP_EFER           88
#define SNAP_PAT            96
#define SNAP_FS_BASE        104
#define SNAP_GS_BASE        112
#define SNAP_KERNEL_GS_BASE 120
#define SNAP_STAR           128
#define SNAP_LSTAR          136
#define SNAP_CSTAR          144
#define SNAP_FMASK          152
#define SNAP_GDT_LIMIT      166     /* sgdt/lgdt operand: limit, then base at +2 */
#define SNAP_GDT_BASE       168
#define SNAP_IDT_LIMIT      182
#define SNAP_IDT_BASE       184
#define SNAP_CS             192
#define SNAP_SS             194
#define SNAP_DS             196
#define SNAP_ES             198
#define SNAP_FS             200
#define SNAP_GS             202
#define SNAP_TR             204
#define SNAP_FCW            206
#define SNAP_MXCSR          208
#define SNAP_XMM            224     /* xmm0..xmm15, 16 bytes each */
#define SNAP_XCR0           480     /* 0 when CR4.OSXSAVE is clear */
#define SNAP_YMMH           496     /* bits 255:128 of ymm0..ymm15, when XCR0 enables them */
#define SNAP_SIZE           752

#ifndef __ASSEMBLER__
#include <stdint.h>
#include "suspendos_abi.h"

struct cpu_snapshot {
    uint64_t rbx, rbp, r12, r13, r14, r15, rsp, rflags;
    uint64_t cr0, cr3, cr4, efer, pat, fs_base, gs_base, kernel_gs_base;
    uint64_t star, lstar, cstar, fmask;
    uint16_t _pad0[3], gdt_limit;
    uint64_t gdt_base;
    uint16_t _pad1[3], idt_limit;
    uint64_t idt_base;
    uint16_t cs, ss, ds, es, fs, gs, tr, fcw;
    uint32_t mxcsr, _pad2[3];
    uint8_t xmm[16][16];
    uint64_t xcr0, _pad3;
    uint8_t ymmh[16][16];
} __attribute__((aligned(16)));

#define SNAP_CHECK(field, OFF) \
    _Static_assert(__builtin_offsetof(struct cpu_snapshot, field) == OFF, #field)
SNAP_CHECK(rbx, SNAP_RBX); SNAP_CHECK(rsp, SNAP_RSP); SNAP_CHECK(rflags, SNAP_RFLAGS);
SNAP_CHECK(cr0, SNAP_CR0); SNAP_CHECK(efer, SNAP_EFER); SNAP_CHECK(fmask, SNAP_FMASK);
SNAP_CHECK(gdt_limit, SNAP_GDT_LIMIT); SNAP_CHECK(gdt_base, SNAP_GDT_BASE);
SNAP_CHECK(idt_limit, SNAP_IDT_LIMIT); SNAP_CHECK(idt_base, SNAP_IDT_BASE);
SNAP_CHECK(cs, SNAP_CS); SNAP_CHECK(tr, SNAP_TR); SNAP_CHECK(fcw, SNAP_FCW);
SNAP_CHECK(mxcsr, SNAP_MXCSR); SNAP_CHECK(xmm, SNAP_XMM); SNAP_CHECK(xcr0, SNAP_XCR0);
SNAP_CHECK(ymmh, SNAP_YMMH);
_Static_assert(sizeof(struct cpu_snapshot) == SNAP_SIZE, "cpu_snapshot size");

/*
 * Calls status = entry(handoff) with interrupts disabled, every callee-saved GPR and
 * xmm0-15 (and the upper halves of ymm0-15 when host_avx), MXCSR, the x87 control word and the FS/GS/KERNEL_GS base, STAR/LSTAR/CSTAR/
 * FMASK MSRs set to canaries. `before` gets the state just before the call, `after` the
 * state just after it returns (before anything else runs). It then puts back the host's
 * own stack, GDT, IDT, segments, CR0/CR3/CR4, EFER and RFLAGS from `before`, so the host
 * can report whatever the payload left broken. Returns the payload's RAX.
 * A resume returns through here too, exactly as if the call had just ended.
 */
uint64_t handoff_call(uint64_t entry, struct sos_handoff *handoff,
                      struct cpu_snapshot *before, struct cpu_snapshot *after);

/* Turns on CR4.OSXSAVE and XCR0's x87|SSE|AVX bits where CPUID offers XSAVE and AVX, so
 * handoff_call also fills the upper halves of ymm0-15 with canaries and checks them and
 * XCR0 (the payload may use AVX2 and must give all of it back). 1 when on. */
int cpu_enable_avx(void);
extern int host_avx;

/* Prints "@@CPU <what> <before> <after>" for every difference; returns 1 when none. After a
 * resume (resumed=1) the ymm upper halves are not compared: an image's CPU context holds the
 * FXSAVE area only (formats/context.py), and a kernel saves its tasks' AVX state in RAM. */
int cpu_compare(const struct cpu_snapshot *before, const struct cpu_snapshot *after,
                int resumed);
#endif

#endif
