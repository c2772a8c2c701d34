/*
 * Where the test host's APs start: copied to AP_START_PAGE (below 1 MiB, a page the host
 * keeps for itself: layout.c) and entered by the STARTUP IPI in real mode at
 * CS:IP = (AP_START_PAGE >> 4):0 (Intel SDM vol. 3, 8.4.4.1 and 10.6.1, vector field).
 * Real mode -> protected mode -> long mode with the boot CPU's page tables (the same
 * steps as boot.S, SDM vol. 3 9.9.1 and 9.8.5), then ap_main() on the stack in
 * ap_boot_stack. Only reads this page: it is checked like the host's code.
 */
#include "smp.h"

#define CR0_PE        (1 << 0)
#define CR0_MP        (1 << 1)
#define CR0_WP        (1 << 16)
#define CR0_PG        (1 << 31)
#define CR4_PAE       (1 << 5)
#define CR4_OSFXSR    (1 << 9)
#define CR4_OSXMMEXCPT (1 << 10)
#define MSR_EFER      0xC0000080
#define EFER_LME      (1 << 8)
#define EFER_NXE      (1 << 11)
#define AT(label)     (AP_START_PAGE + (label) - ap_start)

        .section .text
        .code16
        .globl ap_start, ap_start_end
ap_start:
        cli
        movw    %cs, %ax
        movw    %ax, %ds
        lgdtl   ap_gdtr - ap_start
        movl    %cr0, %eax
        orl     $CR0_PE, %eax
        movl    %eax, %cr0
        ljmpl   $0x08, $AT(ap_pm32)

        .code32
ap_pm32:
        movw    $0x10, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movl    %cr4, %eax
        orl     $(CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT), %eax
        movl    %eax, %cr4
        movl    $boot_pml4, %eax
        movl    %eax, %cr3
        movl    $MSR_EFER, %ecx
        rdmsr
        orl     $(EFER_LME | EFER_NXE), %eax
        wrmsr
        movl    %cr0, %eax
        andl    $~(1 << 2), %eax                /* EM off: SSE usable, as on the BSP */
        orl     $(CR0_PG | CR0_WP | CR0_MP), %eax
        movl    %eax, %cr0
        ljmpl   $0x18, $AT(ap_lm64)

        .code64
ap_lm64:
        movw    $0x10, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        xorw    %ax, %ax
        movw    %ax, %fs
        movw    %ax, %gs
        movq    ap_boot_stack, %rsp
        movabsq $ap_main, %rax
        call    *%rax
1:      cli
        hlt
        jmp     1b

        .align 16
ap_gdt:
        .quad   0
        .quad   0x00cf9a000000ffff              /* 0x08: 32-bit code */
        .quad   0x00cf92000000ffff              /* 0x10: data */
        .quad   0x00af9a000000ffff              /* 0x18: 64-bit code */
ap_gdt_end:
ap_gdtr:
        .word   ap_gdt_end - ap_gdt - 1
        .long   AT(ap_gdt)
ap_start_end:
