/*
 * EFI memory types after ExitBootServices, as the E820 types the loader's RAM check reads.
 * The rule is Linux's, for the E820 table its EFI stub builds from the same map
 * (drivers/firmware/efi/libstub/x86-stub.c, setup_e820): loader and boot services code and
 * data are free once boot services are gone (UEFI 2.10, 7.2, the table "Memory Type Usage
 * after ExitBootServices()"), so they count as RAM with conventional memory; runtime
 * services, ACPI, MMIO, PAL code, reserved memory do not, nor does unaccepted memory (the
 * loader cannot accept it, 7.2 EfiUnacceptedMemoryType).
 */
#include "memmap.h"
#include "efi.h"
#include "string.h"

#define E820_RAM        1
#define E820_RESERVED   2
#define E820_ACPI       3
#define E820_NVS        4
#define E820_UNUSABLE   5
#define E820_PMEM       7

static uint32_t e820_type(uint32_t efi_type)
{
    switch (efi_type) {
    case EFI_LOADER_CODE:
    case EFI_LOADER_DATA:
    case EFI_BOOT_SERVICES_CODE:
    case EFI_BOOT_SERVICES_DATA:
    case EFI_CONVENTIONAL_MEMORY:
        return E820_RAM;
    case EFI_ACPI_RECLAIM_MEMORY:
        return E820_ACPI;
    case EFI_ACPI_MEMORY_NVS:
        return E820_NVS;
    case EFI_UNUSABLE_MEMORY:
        return E820_UNUSABLE;
    case EFI_PERSISTENT_MEMORY:
        return E820_PMEM;
    default:                /* reserved, runtime code/data, MMIO, PAL code, unknown */
        return E820_RESERVED;
    }
}

/* Put [start, end) of `type` into the sorted list, merged with a neighbour it touches. */
static int add(struct boot_info *bi, uint64_t start, uint64_t end, uint32_t type)
{
    struct mb_mmap_entry *m = bi->mmap;
    unsigned i = 0;
    while (i < bi->mmap_count && m[i].start < start)
        i++;
    int left = i > 0 && m[i - 1].end == start && m[i - 1].type == type;
    int right = i < bi->mmap_count && m[i].start == end && m[i].type == type;
    if (left && right) {                /* fills the gap between two: one entry */
        m[i - 1].end = m[i].end;
        memmove(&m[i], &m[i + 1], (bi->mmap_count - i - 1) * sizeof *m);
        bi->mmap_count--;
    } else if (left) {
        m[i - 1].end = end;
    } else if (right) {
        m[i].start = start;
    } else {
        if (bi->mmap_count == MB_MAX_MMAP)
            return -1;
        memmove(&m[i + 1], &m[i], (bi->mmap_count - i) * sizeof *m);
        m[i] = (struct mb_mmap_entry){ start, end, type };
        bi->mmap_count++;
    }
    return 0;
}

int efi_memmap_convert(const void *map, uint64_t map_size, uint64_t descriptor_size,
                       struct boot_info *bi)
{
    bi->mmap_count = 0;
    if (descriptor_size < sizeof(struct efi_memory_descriptor))
        return -1;
    for (uint64_t off = 0; off + descriptor_size <= map_size; off += descriptor_size) {
        const struct efi_memory_descriptor *d = (const void *)((const uint8_t *)map + off);
        uint64_t start = d->physical_start, bytes = d->number_of_pages * EFI_PAGE_SIZE;
        if (!d->number_of_pages || d->number_of_pages > (~0ull - start) / EFI_PAGE_SIZE)
            continue;                   /* empty, or wrapping past 2^64: not a range */
        if (add(bi, start, start + bytes, e820_type(d->type)))
            return -1;
    }
    return 0;
}
