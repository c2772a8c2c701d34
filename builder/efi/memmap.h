/*
 * The firmware's memory map (UEFI 2.10, 7.2 GetMemoryMap) as the resume loader's RAM map
 * (struct boot_info, type 1 = RAM, the E820 numbering the multiboot map uses).
 */
#ifndef SOS_EFI_MEMMAP_H
#define SOS_EFI_MEMMAP_H
#include <stdint.h>
#include "multiboot.h"

/* 0, or -1 when the converted map needs more than MB_MAX_MMAP entries. The map is sorted
 * by address, adjacent entries of one type merged; bi->mmap and mmap_count are replaced. */
int efi_memmap_convert(const void *map, uint64_t map_size, uint64_t descriptor_size,
                       struct boot_info *bi);

#endif
