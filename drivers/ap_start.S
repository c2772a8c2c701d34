/*
 * Where an AP starts (drivers/apic.c copies ap_start..ap_start_end to the caller's page and
 * fills the parameter block). The STARTUP IPI enters it in real mode at CS:IP = page >> 4 : 0
 * (Intel SDM vol. 3, 8.4.4.1 and 10.6.1, vector field). Position-independent: real mode
 * addresses the page through CS, 32-bit mode through EBX (= the page's physical address,
 * from CS), 64-bit mode RIP-relative; the only absolute addresses (the far-jump targets and
 * the GDT base) are in the parameter block, which apic.c computes for the page.
 * Real mode -> protected mode -> long mode (SDM vol. 3 9.9.1, 9.8.5), then
 * entry(arg) on the given stack. It writes nothing but the `started` word.
 */
#include "apic.h"

#define CR0_PE          (1 << 0)

        .section .text.ap_start, "ax"
        .code16
        .globl ap_start, ap_start_end, ap_start_params, ap_start_pm32, ap_start_lm64
        .globl ap_start_gdt, ap_start_gdt_end
ap_start:
        cli
        cld
        movw    %cs, %ax
        movw    %ax, %ds
        xorl    %ebx, %ebx
        movw    %ax, %bx
        shll    $4, %ebx                        /* EBX = the page's physical address */
        lgdtl   ap_start_params + AP_PARAM_GDTR - ap_start
        movl    %cr0, %eax
        orl     $CR0_PE, %eax
        movl    %eax, %cr0
        ljmpl   *(ap_start_params + AP_PARAM_PM32 - ap_start)

        .code32
ap_start_pm32:
        movw    $0x10, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movl    (ap_start_params + AP_PARAM_CR4 - ap_start)(%ebx), %eax
        movl    %eax, %cr4
        movl    (ap_start_params + AP_PARAM_CR3 - ap_start)(%ebx), %eax
        movl    %eax, %cr3
        movl    $0xC0000080, %ecx               /* IA32_EFER: LME (and NXE) before paging */
        rdmsr
        orl     (ap_start_params + AP_PARAM_EFER - ap_start)(%ebx), %eax
        wrmsr
        movl    (ap_start_params + AP_PARAM_CR0 - ap_start)(%ebx), %eax
        movl    %eax, %cr0                      /* PG on: IA-32e mode, compatibility */
        ljmpl   *(ap_start_params + AP_PARAM_LM64 - ap_start)(%ebx)

        .code64
ap_start_lm64:
        movw    $0x10, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        xorw    %ax, %ax
        movw    %ax, %fs
        movw    %ax, %gs
        movq    ap_start_params + AP_PARAM_STACK(%rip), %rsp
        movq    ap_start_params + AP_PARAM_ARG(%rip), %rdi
        movq    ap_start_params + AP_PARAM_ENTRY(%rip), %rax
        /* From here on the parameters may be rewritten for the next AP. */
        movl    $1, ap_start_params + AP_PARAM_STARTED(%rip)
        call    *%rax
1:      cli
        hlt
        jmp     1b

        .balign 16
ap_start_gdt:
        .quad   0
        .quad   0x00cf9a000000ffff              /* 0x08: 32-bit code */
        .quad   0x00cf92000000ffff              /* 0x10: data */
        .quad   0x00af9a000000ffff              /* 0x18: 64-bit code */
ap_start_gdt_end:
        .balign 8
ap_start_params:
        .skip   AP_PARAM_SIZE
ap_start_end:
