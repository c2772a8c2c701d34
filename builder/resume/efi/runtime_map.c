/*
 * Does the firmware booting now have the runtime regions the hibernated kernel mapped?
 * Linux x86-64 maps every EFI_MEMORY_RUNTIME descriptor at a fixed virtual address and
 * gives SetVirtualAddressMap (UEFI 2.10, 8.4) that map once a boot; after our restore the
 * kernel calls the firmware at those addresses, so a fresh firmware must hold its runtime
 * code and data at the same physical places, or the kernel's mapping points at something
 * else. Linux first merges neighbouring descriptors of one type and attribute
 * (arch/x86/platform/efi/efi.c, efi_merge_regions), so one list entry may stand for several
 * firmware descriptors. The rule both ways (docs/RESUME.md, "The EFI loader"):
 *   - every firmware descriptor with EFI_MEMORY_RUNTIME lies inside a list entry of its type;
 *   - every list entry of a firmware-owned type is covered exactly by such descriptors of
 *     its type (the kernel-kept types excepted: efi_runtime_kernel_kept).
 * An empty list (a target captured without a runtime map) therefore matches only a firmware
 * with no runtime regions.
 */
#include "runtime_map.h"

int efi_runtime_kernel_kept(uint32_t type)
{
    return type == SOS_EFI_LOADER_CODE || type == SOS_EFI_LOADER_DATA ||
           type == SOS_EFI_BOOT_SERVICES_CODE || type == SOS_EFI_BOOT_SERVICES_DATA ||
           type == SOS_EFI_CONVENTIONAL_MEMORY;
}

/* A version 1 descriptor has the layout of a list entry (formats/efi_runtime.py). */
static const struct sos_efi_runtime_entry *at(const void *map, uint64_t off)
{
    return (const struct sos_efi_runtime_entry *)((const uint8_t *)map + off);
}

static int firmware_runtime(const struct sos_efi_runtime_entry *d)
{
    return (d->attribute & SOS_EFI_MEMORY_RUNTIME) && d->number_of_pages;
}

/* End of a range, saturated: a firmware's page count may be anything. */
static uint64_t end_of(const struct sos_efi_runtime_entry *d)
{
    uint64_t room = (~0ull - d->physical_start) / SOS_PAGE_SIZE;
    return d->number_of_pages > room ? ~0ull
                                     : d->physical_start + d->number_of_pages * SOS_PAGE_SIZE;
}

enum efi_runtime_verdict efi_runtime_compare(const struct sos_efi_runtime_list *list,
                                             const void *map, uint64_t map_size,
                                             uint64_t descriptor_size,
                                             struct efi_runtime_mismatch *m)
{
    uint32_t count = list->count < SOS_EFI_RUNTIME_MAX ? list->count : SOS_EFI_RUNTIME_MAX;
    *m = (struct efi_runtime_mismatch){ EFI_RT_MATCH, 0, 0, 0, 0, 0, 0, 0 };
    /* Walk by the firmware's size, never sizeof (7.2: later revisions may append fields). */
    if (descriptor_size < sizeof(struct sos_efi_runtime_entry)) {
        m->verdict = EFI_RT_BAD_MAP;
        return m->verdict;
    }
    for (uint64_t off = 0; off + descriptor_size <= map_size; off += descriptor_size) {
        const struct sos_efi_runtime_entry *d = at(map, off);
        if (!firmware_runtime(d))
            continue;
        const struct sos_efi_runtime_entry *e = 0;
        for (uint32_t i = 0; i < count && !e; i++)      /* the list's entries do not overlap */
            if (list->entries[i].physical_start < end_of(d) &&
                d->physical_start < end_of(&list->entries[i]))
                e = &list->entries[i];
        m->type = d->type;
        m->start = d->physical_start;
        m->pages = d->number_of_pages;
        if (!e) {
            m->verdict = EFI_RT_NOT_CAPTURED;
            return m->verdict;
        }
        if (e->type != d->type || d->physical_start < e->physical_start ||
                end_of(e) < end_of(d)) {
            m->list_type = e->type;
            m->list_start = e->physical_start;
            m->list_pages = e->number_of_pages;
            m->verdict = EFI_RT_DIFFERS;
            return m->verdict;
        }
    }
    for (uint32_t i = 0; i < count; i++) {
        const struct sos_efi_runtime_entry *e = &list->entries[i];
        if (efi_runtime_kernel_kept(e->type))
            continue;
        uint64_t covered = 0;           /* firmware descriptors do not overlap (7.2) */
        for (uint64_t off = 0; off + descriptor_size <= map_size; off += descriptor_size) {
            const struct sos_efi_runtime_entry *d = at(map, off);
            if (firmware_runtime(d) && d->type == e->type &&
                    e->physical_start <= d->physical_start && end_of(d) <= end_of(e))
                covered += d->number_of_pages;
        }
        if (covered != e->number_of_pages) {
            *m = (struct efi_runtime_mismatch){ EFI_RT_NOT_FIRMWARE, e->type, e->physical_start,
                                                e->number_of_pages, 0, 0, 0, covered };
            return m->verdict;
        }
    }
    return EFI_RT_MATCH;
}
