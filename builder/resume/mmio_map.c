/*
 * Device registers above the loader's identity map. boot.S and efi/entry64.S map the first
 * 512 GiB (PML4 entry 0, 1 GiB pages): all the RAM the loader restores and every BAR SeaBIOS
 * places. UEFI firmware puts 64-bit BARs in a window above RAM that can start beyond that
 * (OVMF on q35: an NVMe BAR at 0xe0_0000_0000), so before a controller's registers are
 * touched, the 512 GiB slot holding them is mapped too, identity, with 1 GiB pages, uncached
 * (PCD|PWT, Intel SDM vol. 3, 4.9.2 and table 11-11: registers must not be cached).
 */
#include "resume.h"

#define PTE_P   0x001ull
#define PTE_W   0x002ull
#define PTE_PWT 0x008ull
#define PTE_PCD 0x010ull
#define PTE_PS  0x080ull
#define SLOT_SHIFT 39               /* one PML4 entry: 512 GiB */
#define GIB_SHIFT  30

extern uint64_t boot_pml4[512];
static uint64_t mmio_pdpt[512] __attribute__((aligned(4096)));

int resume_map_mmio(uint64_t base)
{
    uint64_t slot = base >> SLOT_SHIFT;
    if (slot == 0)
        return 0;                   /* inside the boot map */
    if (slot >= 256)                /* beyond the lower canonical half (48-bit) */
        return -1;
    if (boot_pml4[slot] & PTE_P)
        return (boot_pml4[slot] & ~0xfffull) == (uint64_t)(uintptr_t)mmio_pdpt ? 0 : -1;
    for (uint64_t i = 0; i < 512; i++)
        mmio_pdpt[i] = (slot << SLOT_SHIFT) + (i << GIB_SHIFT) | PTE_P | PTE_W | PTE_PS |
                       PTE_PWT | PTE_PCD;
    /* written each time the loader starts (the EFI entry runs it twice, the second time on
     * its own map); only one slot beyond the first is ever needed: one disk */
    boot_pml4[slot] = (uint64_t)(uintptr_t)mmio_pdpt | PTE_P | PTE_W;
    uint64_t cr3;
    __asm__ volatile("mov %%cr3, %0; mov %0, %%cr3" : "=r"(cr3) : : "memory");
    return 0;
}
