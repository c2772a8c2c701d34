/*
 * Where a CPU woken by the payload starts (ap_wake.h). ap_wake16 .. ap_wake16_end is copied
 * to the AP start page and entered by the STARTUP IPI in real mode at CS:IP = page >> 4 : 0
 * (Intel SDM vol. 3, 8.4.4.1, 10.6.1). It keeps the page's address in EBX and goes to
 * protected mode with the page's GDT (SDM vol. 3 9.9.1), then by a far pointer into
 * ap_wake32 in the payload's text, which enables PAE, the payload's PML4, EFER.LME/NXE and
 * paging (SDM vol. 3 9.8.5): the first fetch with paging on is from the payload's own
 * (executable) text, so the start page is mapped writable and never executable. ap_wake64
 * takes the payload's GDT, IDT, CR0, CR4 and XCR0 as the boot CPU has them, the AP's own
 * stack, and calls ap_wake_main(ctx). No absolute addresses are linked in: the boot CPU
 * writes them into the page (the payload may be linked anywhere; waking needs it below
 * 4 GiB, which ap_wake_prepare checks).
 */
#include "ap_wake.h"

#define CR0_PE        (1 << 0)
#define CR0_MP        (1 << 1)
#define CR0_EM        (1 << 2)
#define CR0_TS        (1 << 3)
#define CR0_NE        (1 << 5)
#define CR0_WP        (1 << 16)
#define CR0_NW        (1 << 29)
#define CR0_CD        (1 << 30)
#define CR0_PG        (1 << 31)
#define CR4_PAE       (1 << 5)
#define MSR_EFER      0xC0000080
#define EFER_LME      (1 << 8)
#define EFER_NXE      (1 << 11)

        .section .text.ap_wake, "ax"
        .code16
        .globl ap_wake16, ap_wake16_end
ap_wake16:
        cli
        cld
        movw    %cs, %ax
        movw    %ax, %ds
        movzwl  %ax, %ebx
        shll    $4, %ebx
        lgdtl   AP_WAKE_GDTR
        movl    %cr0, %eax
        orl     $CR0_PE, %eax
        movl    %eax, %cr0
        ljmpl   *AP_WAKE_PM32
ap_wake16_end:

        .code32
        .globl ap_wake32
ap_wake32:
        movw    $AP_WAKE_SEL_DATA, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movl    %cr4, %eax
        orl     $CR4_PAE, %eax
        movl    %eax, %cr4
        movl    AP_WAKE_CR3(%ebx), %eax
        movl    %eax, %cr3
        movl    $MSR_EFER, %ecx
        rdmsr
        orl     $(EFER_LME | EFER_NXE), %eax
        wrmsr
        movl    %cr0, %eax
        /* INIT leaves CD and NW set (SDM vol. 3 9.1.1, table 9-1): caches on. */
        andl    $~(CR0_CD | CR0_NW | CR0_TS | CR0_EM), %eax
        orl     $(CR0_PG | CR0_WP | CR0_MP | CR0_NE), %eax
        movl    %eax, %cr0
        ljmpl   *AP_WAKE_LM64(%ebx)

        .code64
        .globl ap_wake64
ap_wake64:
        movl    %ebx, %ebx                      /* upper halves are undefined after the switch */
        lgdt    AP_WAKE_GDTR64(%rbx)
        lidt    AP_WAKE_IDTR64(%rbx)
        movq    AP_WAKE_CR4(%rbx), %rax
        movq    %rax, %cr4
        movq    AP_WAKE_CR0(%rbx), %rax
        movq    %rax, %cr0
        movq    AP_WAKE_XCR0(%rbx), %rax
        testq   %rax, %rax
        jz      1f
        movq    %rax, %rdx
        shrq    $32, %rdx
        xorl    %ecx, %ecx
        xsetbv
1:      movq    AP_WAKE_STACK(%rbx), %rsp
        movq    AP_WAKE_CTX(%rbx), %rdi
        pushq   $AP_WAKE_PAYLOAD_CS
        leaq    2f(%rip), %rax
        pushq   %rax
        lretq
2:      movw    $AP_WAKE_PAYLOAD_DS, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        xorl    %eax, %eax
        movw    %ax, %fs
        movw    %ax, %gs
        call    ap_wake_main
3:      cli
        hlt
        jmp     3b
