/*
 * Interrupt and exception entry stubs, one per vector, ISR_STUB_SIZE bytes apart so that
 * cpu_tables.c computes their addresses. Each pushes a zero where the CPU pushes no error
 * code (SDM vol. 3, table 6-1: vectors 8, 10-14, 17, 21, 29, 30 have one), then the vector
 * number, saves the GPRs and calls host_exception(frame), which never returns.
 */
#define ISR_STUB_SIZE 16

        .text
        .align  ISR_STUB_SIZE
        .globl  isr_stubs
isr_stubs:
        .set    vec, 0
        .rept   256
        .align  ISR_STUB_SIZE
        .if     (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
        .else
        pushq   $0
        .endif
        pushq   $vec
        jmp     isr_common
        .set    vec, vec + 1
        .endr

isr_common:
        pushq   %rax
        pushq   %rbx
        pushq   %rcx
        pushq   %rdx
        pushq   %rsi
        pushq   %rdi
        pushq   %rbp
        pushq   %r8
        pushq   %r9
        pushq   %r10
        pushq   %r11
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        cld
        movq    %rsp, %rdi
        andq    $-16, %rsp
        call    host_exception
1:      cli
        hlt
        jmp     1b

        .section .note.GNU-stack, "", @progbits
