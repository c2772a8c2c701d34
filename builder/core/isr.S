/*
 * Exception entry stubs. The builder points IDT vectors 0-31 at isr_<n> and every other
 * vector at isr_spurious (it reads the symbols from the ELF). Each stub makes the frame
 * uniform — vector, error code (0 where the CPU pushes none: SDM vol. 3, table 6-1) — and
 * calls fault_handler, which never returns.
 */
        .section .text.isr, "ax"
        .macro  ISR_NOERR n
        .globl  isr_\n
isr_\n:
        pushq   $0
        pushq   $\n
        jmp     isr_common
        .endm
        .macro  ISR_ERR n
        .globl  isr_\n
isr_\n:
        pushq   $\n
        jmp     isr_common
        .endm

        ISR_NOERR 0
        ISR_NOERR 1
        ISR_NOERR 2
        ISR_NOERR 3
        ISR_NOERR 4
        ISR_NOERR 5
        ISR_NOERR 6
        ISR_NOERR 7
        ISR_ERR   8
        ISR_NOERR 9
        ISR_ERR   10
        ISR_ERR   11
        ISR_ERR   12
        ISR_ERR   13
        ISR_ERR   14
        ISR_NOERR 15
        ISR_NOERR 16
        ISR_ERR   17
        ISR_NOERR 18
        ISR_NOERR 19
        ISR_NOERR 20
        ISR_ERR   21
        ISR_NOERR 22
        ISR_NOERR 23
        ISR_NOERR 24
        ISR_NOERR 25
        ISR_NOERR 26
        ISR_NOERR 27
        ISR_NOERR 28
        ISR_ERR   29
        ISR_ERR   30
        ISR_NOERR 31

        .globl  isr_spurious
isr_spurious:
        pushq   $0
        pushq   $255
        /* fall through */
isr_common:
        movq    %rsp, %rdi              /* struct fault_frame * */
        andq    $-16, %rsp              /* SysV: 16-byte aligned at the call */
        call    fault_handler
1:      cli
        hlt
        jmp     1b
