/*
 * resume_efi_start: the loader's 64-bit entry after ExitBootServices (efi_entry.h). The
 * firmware left us in long mode on its own identity map (UEFI 2.10, 2.3.4 "x64 Platforms"),
 * so this is boot.S without its 32-bit part: the same identity map of the first 512 GiB
 * with 1 GiB pages in boot_pml4 / boot_pdpt (Intel SDM vol. 3, table 4-17), the same GDT,
 * the loader's own stack, then resume_efi_main(RDI). Every page it writes is in .bss, inside
 * the reserved region the stage allocated.
 */
#define CR0_WP        (1 << 16)
#define CR0_EM        (1 << 2)
#define CR0_MP        (1 << 1)
#define CR4_PAE       (1 << 5)
#define CR4_OSFXSR    (1 << 9)
#define CR4_OSXMMEXCPT (1 << 10)
#define MSR_EFER      0xC0000080
#define EFER_NXE      (1 << 11)
#define PTE_P         0x001
#define PTE_W         0x002
#define PTE_PS        0x080

        .section .text.efi_entry, "ax"
        .code64
        .globl resume_efi_start
resume_efi_start:
        cli
        movq    %rdi, %r12                      /* the entry block: kept in a callee-saved */

        movabsq $boot_pdpt, %rdi
        xorl    %ecx, %ecx
1:      movq    %rcx, %rax
        shlq    $30, %rax
        orq     $(PTE_P | PTE_W | PTE_PS), %rax
        movq    %rax, (%rdi,%rcx,8)
        incl    %ecx
        cmpl    $512, %ecx
        jb      1b
        movabsq $boot_pml4, %rsi
        movq    %rdi, %rax
        orq     $(PTE_P | PTE_W), %rax
        movq    %rax, (%rsi)

        movq    %cr4, %rax
        orq     $(CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT), %rax
        movq    %rax, %cr4
        movl    $MSR_EFER, %ecx
        rdmsr
        orl     $EFER_NXE, %eax
        wrmsr
        movq    %cr0, %rax
        andq    $~CR0_EM, %rax
        orq     $(CR0_WP | CR0_MP), %rax
        movq    %rax, %cr0
        movq    %rsi, %cr3

        /* boot.S's GDT; lgdt in 64-bit mode reads a 64-bit base, so the pseudo-descriptor
         * (limit, base) is made here, on the stack we came in on. */
        movabsq $boot_gdt, %rdx
        movabsq $boot_gdt_end, %rax
        subq    %rdx, %rax
        decq    %rax
        subq    $16, %rsp
        movw    %ax, (%rsp)
        movq    %rdx, 2(%rsp)
        lgdt    (%rsp)
        addq    $16, %rsp
        movabsq $2f, %rax
        pushq   $0x08                           /* boot.S's 64-bit code selector */
        pushq   %rax
        lretq
2:      movw    $0x10, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        xorw    %ax, %ax
        movw    %ax, %fs
        movw    %ax, %gs
        movabsq $boot_stack_top, %rsp
        movq    %r12, %rdi
        call    resume_efi_main
3:      cli
        hlt
        jmp     3b

