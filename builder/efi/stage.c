/*
 * The EFI stage of the resume loader: the PE32+ EFI application (UEFI 2.10, 2.1.2) the
 * firmware starts. While boot services are up it
 *   1. finds the ACPI RSDP in the configuration table (4.6, EFI_ACPI_20_TABLE_GUID),
 *   2. reserves the target's reserved region (7.2 AllocatePages, AllocateAddress) so the
 *      firmware owns none of it, and copies the loader's flat image to its link address,
 *   3. converts the firmware's memory map into the loader's RAM map (memmap.c),
 *   4. lets the loader check the machine's RAM, the firmware's runtime regions against the
 *      target's, the disk and the image header and tables
 *      (efi_entry.h: check). Nothing to resume, or an image the loader refuses: the region
 *      is freed, "@@EFI back-to-firmware ..." printed, and an error status returned, so the
 *      boot manager goes on to its next boot option (3.1.2, load option processing) and the machine boots as usual;
 *   5. otherwise exits boot services (7.4.6) with a fresh memory map and enters the loader
 *      on its 64-bit entry with that map. No way back to the firmware after this.
 * Progress goes to the loader's serial port in its "@@" line style.
 */
#include "efi.h"
#include "efi_entry.h"
#include "memmap.h"
#include "resume.h"
#include "printf.h"
#include "serial.h"
#include "string.h"
#include "timer.h"

#ifndef RESUME_SERIAL_PORT
#define RESUME_SERIAL_PORT SERIAL_COM1
#endif
/* ExitBootServices fails with EFI_INVALID_PARAMETER when the map changed since the key was
 * taken (an event allocated); each retry takes a fresh map. A firmware whose map changes
 * every time is not waited for forever. */
#define EXIT_ATTEMPTS   8
/* Room for the descriptors a map can gain between sizing it and reading it: the pool
 * allocation itself adds one or two (7.2 GetMemoryMap, "the actual size of the buffer
 * allocated for the consequent call to GetMemoryMap() should be bigger"). */
#define MAP_SLACK       16

/* The builder's (suspendos/build/efi.py): the loader's image, where it goes, its entries. */
extern const struct sos_efi_loader sos_efi_loader;

static struct sos_efi_entry entry;

static int same_guid(const struct efi_guid *a, const struct efi_guid *b)
{
    return !memcmp(a, b, sizeof *a);
}

/* The ACPI 2.0 RSDP, or ACPI 1.0's when the firmware offers only that (4.6). */
static uint64_t find_rsdp(const struct efi_system_table *st)
{
    static const struct efi_guid acpi20 = EFI_ACPI_20_TABLE_GUID, acpi10 = EFI_ACPI_TABLE_GUID;
    uint64_t old = 0;
    for (uint64_t i = 0; i < st->number_of_table_entries; i++) {
        const struct efi_configuration_table *t = &st->configuration_table[i];
        if (same_guid(&t->vendor_guid, &acpi20))
            return (uint64_t)(uintptr_t)t->vendor_table;
        if (same_guid(&t->vendor_guid, &acpi10))
            old = (uint64_t)(uintptr_t)t->vendor_table;
    }
    return old;
}

static efi_status back(efi_status status, const char *why)
{
    kprintf("@@EFI back-to-firmware status=0x%lx %s\n", status, why);
    return status;
}

/* The firmware's map into `*buf` (allocated here, with slack, when *buf is 0). */
static efi_status get_map(struct efi_boot_services *bs, void **buf, uint64_t *cap,
                          uint64_t *size, uint64_t *key, uint64_t *desc_size)
{
    uint32_t version;
    efi_status s;
    if (!*buf) {
        *size = 0;
        s = bs->get_memory_map(size, 0, key, desc_size, &version);
        if (s != EFI_BUFFER_TOO_SMALL)
            return s;
        *cap = *size + MAP_SLACK * *desc_size;
        s = bs->allocate_pool(EFI_LOADER_DATA, *cap, buf);
        if (s)
            return s;
    }
    *size = *cap;
    s = bs->get_memory_map(size, *buf, key, desc_size, &version);
    entry.efi_map = (uint64_t)(uintptr_t)*buf;     /* the loader checks its runtime regions */
    entry.efi_map_size = s ? 0 : *size;
    entry.efi_descriptor_size = *desc_size;
    return s;
}

EFIAPI efi_status efi_main(efi_handle image, struct efi_system_table *st)
{
    const struct sos_efi_loader *ld = &sos_efi_loader;
    struct efi_boot_services *bs = st->boot_services;
    uint64_t base = ld->load_base, pages = (ld->reserved_end - base) / EFI_PAGE_SIZE;
    uint64_t cap = 0, size, key, desc_size;
    void *map = 0;
    efi_status s;

    timer_init(0);              /* serial's deadline on the TSC (PIT channel 2: no IRQ) */
    serial_init(RESUME_SERIAL_PORT);
    kprintf("\n@@EFI start\n");
    if (st->hdr.signature != EFI_SYSTEM_TABLE_SIGNATURE)
        return back(EFI_LOAD_ERROR, "the system table's signature is wrong");
    entry.magic = SOS_EFI_ENTRY_MAGIC;
    entry.size = sizeof entry;
    entry.system_table = (uint64_t)(uintptr_t)st;
    entry.runtime_services = (uint64_t)(uintptr_t)st->runtime_services;
    entry.rsdp = find_rsdp(st);
    kprintf("@@EFI rsdp 0x%lx\n", entry.rsdp);

    /* Code pages: a firmware that maps data pages no-execute (DXE NX policies) must not
     * make the loader's own text unrunnable before ExitBootServices. */
    uint64_t at = base;
    s = bs->allocate_pages(EFI_ALLOCATE_ADDRESS, EFI_LOADER_CODE, pages, &at);
    if (s) {
        kprintf("@@EFI reserved region 0x%lx-0x%lx is not free in the firmware's map\n", base,
                ld->reserved_end);
        return back(s, "reserved-region");
    }
    memcpy((void *)(uintptr_t)base, ld->image, ld->image_bytes);
    memset((void *)(uintptr_t)(base + ld->image_bytes), 0, ld->zero_end - base - ld->image_bytes);

    s = get_map(bs, &map, &cap, &size, &key, &desc_size);
    if (s || efi_memmap_convert(map, size, desc_size, &entry.boot)) {
        bs->free_pages(base, pages);
        if (map)
            bs->free_pool(map);
        return back(s ? s : EFI_OUT_OF_RESOURCES, "memory-map: the firmware's map does not "
                    "convert");
    }
    kprintf("@@EFI memory map: %lu descriptors, %u RAM map entries\n", size / desc_size,
            entry.boot.mmap_count);
    for (unsigned i = 0; i < entry.boot.mmap_count; i++)      /* as the test host prints */
        kprintf("@@MMAP 0x%lx 0x%lx %u\n", entry.boot.mmap[i].start, entry.boot.mmap[i].end,
                entry.boot.mmap[i].type);

    int (*check)(struct sos_efi_entry *) = (void *)(uintptr_t)ld->check;
    if (check(&entry)) {
        char why[64];
        ksnprintf(why, sizeof why, "%s", entry.refused_name);
        bs->free_pages(base, pages);
        bs->free_pool(map);
        /* Nothing on the disk to resume is "not found"; anything else is refused. */
        return back(entry.refused == REFUSE_NO_IMAGE ? EFI_NOT_FOUND : EFI_ABORTED, why);
    }

    /* 7.4.6: the key must be of the latest map; on EFI_INVALID_PARAMETER only
     * GetMemoryMap may be called again (into the buffer we have) before the retry. */
    int tried = 0;
    for (;;) {
        s = get_map(bs, &map, &cap, &size, &key, &desc_size);
        if (!s && efi_memmap_convert(map, size, desc_size, &entry.boot))
            s = EFI_OUT_OF_RESOURCES;
        if (s && !tried) {                      /* boot services untouched: go back */
            bs->free_pages(base, pages);
            bs->free_pool(map);
            return back(s, "memory-map: the firmware's map does not convert");
        }
        if (s)
            break;
        s = bs->exit_boot_services(image, key);
        if (s != EFI_INVALID_PARAMETER || ++tried == EXIT_ATTEMPTS)
            break;
    }
    if (s) {
        /* Boot services may be partly gone (7.4.6): nothing more is asked of them. */
        kprintf("@@EFI ExitBootServices failed status=0x%lx: halted\n", s);
        for (;;)
            __asm__ volatile("cli; hlt");
    }
    void (*start)(struct sos_efi_entry *) = (void *)(uintptr_t)ld->start;
    start(&entry);
    for (;;)                            /* resume_efi_start does not return */
        __asm__ volatile("cli; hlt");
}
