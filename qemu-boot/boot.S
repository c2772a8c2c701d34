/*
 * Multiboot (v1) entry for the QEMU test host.
 *
 * QEMU's -kernel loader only takes 32-bit multiboot ELFs, so this file starts in 32-bit
 * protected mode (flat segments, paging off: Multiboot spec 0.6.96, section 3.2), builds an
 * identity map of the first 512 GiB with 1 GiB pages, enters long mode (Intel SDM vol. 3,
 * section 9.8.5) and calls host_main(magic, mbi) in 64-bit C. The object is assembled as
 * x86-64 and the linked ELF converted to elf32-i386 with objcopy.
 * The resume loader (builder/resume/) boots through this same stub, built with
 * -DBOOT_MAIN=resume_main.
 */
#ifndef BOOT_MAIN
#define BOOT_MAIN     host_main
#endif
#define MB_MAGIC      0x1BADB002
#define MB_FLAGS      0x00000003      /* bit 0: page-align modules, bit 1: memory map */
#define CR0_PG        (1 << 31)
#define CR0_WP        (1 << 16)
#define CR0_EM        (1 << 2)
#define CR0_MP        (1 << 1)
#define CR4_PAE       (1 << 5)
#define CR4_OSFXSR    (1 << 9)
#define CR4_OSXMMEXCPT (1 << 10)
#define MSR_EFER      0xC0000080
#define EFER_LME      (1 << 8)
#define EFER_NXE      (1 << 11)
#define PTE_P         0x001
#define PTE_W         0x002
#define PTE_PS        0x080

        .section .multiboot, "a"
        .align 4
        .long MB_MAGIC
        .long MB_FLAGS
        .long -(MB_MAGIC + MB_FLAGS)

        .section .boot32, "ax"
        .code32
        .globl _start
_start:
        cli
        movl    %eax, boot_magic
        movl    %ebx, boot_mbi
        movl    $boot_stack_top, %esp

        /* PML4[0] -> PDPT; PDPT[i] -> 1 GiB page i (SDM vol. 3, table 4-17). */
        movl    $boot_pdpt, %eax
        orl     $(PTE_P | PTE_W), %eax
        movl    %eax, boot_pml4
        xorl    %ecx, %ecx
1:      movl    %ecx, %eax
        shll    $30, %eax
        orl     $(PTE_P | PTE_W | PTE_PS), %eax
        movl    %eax, boot_pdpt(,%ecx,8)
        movl    %ecx, %eax
        shrl    $2, %eax                /* bits 32..38 of the page base */
        movl    %eax, boot_pdpt+4(,%ecx,8)
        incl    %ecx
        cmpl    $512, %ecx
        jb      1b

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
        andl    $~CR0_EM, %eax
        orl     $(CR0_PG | CR0_WP | CR0_MP), %eax
        movl    %eax, %cr0
        lgdt    boot_gdt_ptr
        ljmp    $0x08, $long_mode_entry

        .code64
long_mode_entry:
        movw    $0x10, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        xorw    %ax, %ax
        movw    %ax, %fs
        movw    %ax, %gs
        movq    $boot_stack_top, %rsp
        movl    boot_magic, %edi
        movl    boot_mbi, %esi
        call    BOOT_MAIN
2:      cli
        hlt
        jmp     2b

        .section .rodata
        .align 16
        .globl boot_gdt, boot_gdt_end           /* the resume loader's APs load it too */
boot_gdt:
        .quad   0                       /* null */
        .quad   0x00af9a000000ffff      /* 0x08: 64-bit code, DPL 0 */
        .quad   0x00cf92000000ffff      /* 0x10: data */
boot_gdt_end:
boot_gdt_ptr:
        .word   boot_gdt_end - boot_gdt - 1
        .long   boot_gdt

        .section .data
boot_magic:     .long 0
boot_mbi:       .long 0

        .section .bss
        .align 4096
        .globl boot_pml4
boot_pml4:      .skip 4096
        .globl boot_pdpt                /* the EFI entry builds the same map */
boot_pdpt:      .skip 4096
        .globl boot_stack_bottom
boot_stack_bottom:
        .skip 65536
        .globl boot_stack_top
boot_stack_top:
