/*
 * handoff_call(entry, handoff, before, after): see handoff_call.h.
 * The canaries are values nothing in the host or a payload would produce by chance, so a
 * trampoline that forgets to restore a register is caught even when the register's usual
 * value would happen to match. MSR numbers: SDM vol. 4, table 2-2.
 */
#include "handoff_call.h"

#define MSR_PAT            0x277
#define MSR_EFER           0xC0000080
#define MSR_STAR           0xC0000081
#define MSR_LSTAR          0xC0000082
#define MSR_CSTAR          0xC0000083
#define MSR_FMASK          0xC0000084
#define MSR_FS_BASE        0xC0000100
#define MSR_GS_BASE        0xC0000101
#define MSR_KERNEL_GS_BASE 0xC0000102
#define CR4_OSXSAVE        (1 << 18)
#define XCR0_AVX           (1 << 2)

/* Callee-saved GPR canaries (System V AMD64 ABI, section 3.2.1). */
#define CANARY_RBX 0xC0DE5AFE0000B0B0
#define CANARY_RBP 0xC0DE5AFE0000B1B1
#define CANARY_R12 0xC0DE5AFE0000C12C
#define CANARY_R13 0xC0DE5AFE0000C13C
#define CANARY_R14 0xC0DE5AFE0000C14C
#define CANARY_R15 0xC0DE5AFE0000C15C

/* wrmsr of a 64-bit constant; clobbers eax, ecx, edx. */
.macro WRMSR64 msr, value
        movl    $\msr, %ecx
        movl    $((\value) & 0xffffffff), %eax
        movl    $((\value) >> 32), %edx
        wrmsr
.endm

/* rdmsr into snapshot field at \off(%rdi); clobbers eax, ecx, edx. */
.macro RDMSR64 msr, off
        movl    $\msr, %ecx
        rdmsr
        movl    %eax, \off(%rdi)
        movl    %edx, \off+4(%rdi)
.endm

        .text
/* snap_system(rdi = snapshot): everything but the GPRs and RSP. Clobbers rax, rcx, rdx. */
snap_system:
        pushfq
        popq    SNAP_RFLAGS(%rdi)
        movq    %cr0, %rax
        movq    %rax, SNAP_CR0(%rdi)
        movq    %cr3, %rax
        movq    %rax, SNAP_CR3(%rdi)
        movq    %cr4, %rax
        movq    %rax, SNAP_CR4(%rdi)
        RDMSR64 MSR_EFER, SNAP_EFER
        RDMSR64 MSR_PAT, SNAP_PAT
        RDMSR64 MSR_FS_BASE, SNAP_FS_BASE
        RDMSR64 MSR_GS_BASE, SNAP_GS_BASE
        RDMSR64 MSR_KERNEL_GS_BASE, SNAP_KERNEL_GS_BASE
        RDMSR64 MSR_STAR, SNAP_STAR
        RDMSR64 MSR_LSTAR, SNAP_LSTAR
        RDMSR64 MSR_CSTAR, SNAP_CSTAR
        RDMSR64 MSR_FMASK, SNAP_FMASK
        sgdt    SNAP_GDT_LIMIT(%rdi)
        sidt    SNAP_IDT_LIMIT(%rdi)
        movw    %cs, SNAP_CS(%rdi)
        movw    %ss, SNAP_SS(%rdi)
        movw    %ds, SNAP_DS(%rdi)
        movw    %es, SNAP_ES(%rdi)
        movw    %fs, SNAP_FS(%rdi)
        movw    %gs, SNAP_GS(%rdi)
        str     SNAP_TR(%rdi)
        fnstcw  SNAP_FCW(%rdi)
        stmxcsr SNAP_MXCSR(%rdi)
        .irp    n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
        movdqu  %xmm\n, SNAP_XMM+16*\n(%rdi)
        .endr
        /* XCR0 and the ymm upper halves: only while CR4.OSXSAVE (else XGETBV faults) and
         * XCR0.AVX (else VEX instructions fault) are on; otherwise they stay 0 and differ. */
        movq    $0, SNAP_XCR0(%rdi)
        cmpl    $0, host_avx(%rip)
        je      1f
        testq   $CR4_OSXSAVE, SNAP_CR4(%rdi)
        jz      1f
        xorl    %ecx, %ecx
        xgetbv
        movl    %eax, SNAP_XCR0(%rdi)
        movl    %edx, SNAP_XCR0+4(%rdi)
        testl   $XCR0_AVX, %eax
        jz      1f
        .irp    n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
        vextractf128 $1, %ymm\n, SNAP_YMMH+16*\n(%rdi)
        .endr
1:      ret

        .globl  handoff_call
handoff_call:
        cli
        pushq   %rbx
        pushq   %rbp
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        movq    %rdi, hc_entry(%rip)
        movq    %rsi, hc_handoff(%rip)
        movq    %rdx, hc_before(%rip)
        movq    %rcx, hc_after(%rip)
        movq    %rsp, hc_host_rsp(%rip)
        andq    $-16, %rsp                  /* ABI: RSP 16-byte aligned at the call */

        /* Canaries in the state the trampoline must save and restore. */
        fninit
        fldcw   fcw_canary(%rip)
        ldmxcsr mxcsr_canary(%rip)
        .irp    n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
        movdqa  xmm_canaries+16*\n(%rip), %xmm\n
        .endr
        cmpl    $0, host_avx(%rip)
        je      2f
        .irp    n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
        vinsertf128 $1, ymmh_canaries+16*\n(%rip), %ymm\n, %ymm\n
        .endr
2:
        WRMSR64 MSR_FS_BASE, 0x00007C0DE0F50000
        WRMSR64 MSR_GS_BASE, 0x00007C0DE0650000
        WRMSR64 MSR_KERNEL_GS_BASE, 0x00007C0DE06B0000
        WRMSR64 MSR_STAR, 0x0023001000000000
        WRMSR64 MSR_LSTAR, 0x00007C0DE05C0000
        WRMSR64 MSR_CSTAR, 0x00007C0DE0CC0000
        WRMSR64 MSR_FMASK, 0x0000000000047700

        movq    hc_before(%rip), %rdi
        call    snap_system
        movabsq $CANARY_RBX, %rbx
        movabsq $CANARY_RBP, %rbp
        movabsq $CANARY_R12, %r12
        movabsq $CANARY_R13, %r13
        movabsq $CANARY_R14, %r14
        movabsq $CANARY_R15, %r15
        movq    %rbx, SNAP_RBX(%rdi)
        movq    %rbp, SNAP_RBP(%rdi)
        movq    %r12, SNAP_R12(%rdi)
        movq    %r13, SNAP_R13(%rdi)
        movq    %r14, SNAP_R14(%rdi)
        movq    %r15, SNAP_R15(%rdi)
        movq    %rsp, SNAP_RSP(%rdi)
        movq    hc_entry(%rip), %rax
        movq    hc_handoff(%rip), %rdi
        call    *%rax

        /* Back from the payload (or from a resume): record before changing anything. */
        movq    %rax, hc_status(%rip)
        movq    hc_after(%rip), %rax
        movq    %rsp, SNAP_RSP(%rax)
        movq    %rbx, SNAP_RBX(%rax)
        movq    %rbp, SNAP_RBP(%rax)
        movq    %r12, SNAP_R12(%rax)
        movq    %r13, SNAP_R13(%rax)
        movq    %r14, SNAP_R14(%rax)
        movq    %r15, SNAP_R15(%rax)
        movq    hc_host_rsp(%rip), %rsp     /* the host's stack, whatever RSP came back */
        movq    %rax, %rdi
        call    snap_system

        /* Put back what the host itself needs to go on and report. */
        movq    hc_before(%rip), %rsi
        lgdt    SNAP_GDT_LIMIT(%rsi)
        lidt    SNAP_IDT_LIMIT(%rsi)
        movw    SNAP_DS(%rsi), %ax
        movw    %ax, %ds
        movw    SNAP_ES(%rsi), %ax
        movw    %ax, %es
        movw    SNAP_SS(%rsi), %ax
        movw    %ax, %ss
        movzwq  SNAP_CS(%rsi), %rax
        pushq   %rax
        leaq    1f(%rip), %rax
        pushq   %rax
        lretq
1:      movq    SNAP_CR3(%rsi), %rax
        movq    %rax, %cr3
        movq    SNAP_CR4(%rsi), %rax
        movq    %rax, %cr4
        movq    SNAP_CR0(%rsi), %rax
        movq    %rax, %cr0
        movl    $MSR_EFER, %ecx
        movl    SNAP_EFER(%rsi), %eax
        movl    SNAP_EFER+4(%rsi), %edx
        wrmsr
        pushq   SNAP_RFLAGS(%rsi)
        popfq

        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbp
        popq    %rbx
        movq    hc_status(%rip), %rax
        ret

        .section .rodata
        .align  16
xmm_canaries:
        .set    n, 0
        .rept   16
        .quad   0x584D4D0000C0DE00 + n, 0xA5A5C0DE5AFE0000 + (n << 8)
        .set    n, n + 1
        .endr
ymmh_canaries:
        .set    n, 0
        .rept   16
        .quad   0x594D4D48C0DE0000 + n, 0x5AFEC0DEA5A50000 + (n << 8)
        .set    n, n + 1
        .endr
mxcsr_canary:
        .long   0xFF80          /* all exceptions masked, round toward zero, flush to zero */
fcw_canary:
        .word   0x027F          /* all exceptions masked, 53-bit precision */

        .bss
        .align  8
hc_entry:       .quad 0
hc_handoff:     .quad 0
hc_before:      .quad 0
hc_after:       .quad 0
hc_host_rsp:    .quad 0
hc_status:      .quad 0

        .section .note.GNU-stack, "", @progbits
