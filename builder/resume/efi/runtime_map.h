/*
 * The firmware's runtime regions against the target's efi_runtime list (the hibernated
 * kernel's runtime map, suspendos/formats/efi_runtime.py). Pure: no firmware call, no
 * output, so a host build tests it (tests/test_efi_runtime_map.py).
 */
#ifndef SOS_EFI_RUNTIME_MAP_H
#define SOS_EFI_RUNTIME_MAP_H
#include <stdint.h>
#include "suspendos_abi.h"

enum efi_runtime_verdict {
    EFI_RT_MATCH,           /* the same runtime memory on both sides, type for type */
    EFI_RT_BAD_MAP,         /* the firmware's descriptor size is below version 1's */
    EFI_RT_NOT_CAPTURED,    /* a firmware runtime region no list entry overlaps */
    EFI_RT_DIFFERS,         /* the list entry overlapping it is of another type or does
                             * not hold all of it */
    EFI_RT_NOT_FIRMWARE,    /* a firmware-owned list entry the firmware's runtime regions
                             * of its type do not cover exactly */
};

struct efi_runtime_mismatch {
    enum efi_runtime_verdict verdict;
    uint32_t type;          /* the region named: the firmware's (NOT_CAPTURED, DIFFERS) or */
    uint64_t start, pages;  /* the list's (NOT_FIRMWARE) */
    uint32_t list_type;     /* DIFFERS: the list entry overlapping it */
    uint64_t list_start, list_pages;
    uint64_t covered;       /* NOT_FIRMWARE: the pages of it the firmware's regions cover */
};

/* Walk `map` (map_size bytes of EFI_MEMORY_DESCRIPTORs, descriptor_size apart: UEFI 2.10,
 * 7.2 GetMemoryMap) against `list`. Returns the verdict, the first mismatch in *m. */
enum efi_runtime_verdict efi_runtime_compare(const struct sos_efi_runtime_list *list,
                                             const void *map, uint64_t map_size,
                                             uint64_t descriptor_size,
                                             struct efi_runtime_mismatch *m);

/* Entries of these types are memory the hibernated kernel itself kept for runtime use (Linux's
 * efi_mem_reserve: ESRT, the memory attributes table, ...), which a fresh firmware's map
 * shows as ordinary memory without EFI_MEMORY_RUNTIME: not the firmware's regions. */
int efi_runtime_kernel_kept(uint32_t type);

#endif
