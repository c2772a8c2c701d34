/*
 * The firmware's runtime services around a restore (docs/RESUME.md, "The EFI loader").
 *
 * The firmware in memory is this boot's, in physical mode; the resumed kernel calls it at the
 * virtual addresses it gave its own boot's firmware. So before ExitBootServices the runtime
 * regions must be where the kernel mapped them (runtime_map.c), and after the restore the
 * loader does what the kernel did once at that boot: SetVirtualAddressMap (UEFI 2.10, 8.4)
 * with the kernel's map, from physical mode. Linux's own hibernation needs no such step
 * because its boot kernel calls SetVirtualAddressMap with the same fixed addresses; kexec
 * passes the map instead (drivers/firmware/efi/runtime-map.c), and the target carries it.
 */
#include "runtime.h"
#include "runtime_map.h"
#include "resume.h"
#include "printf.h"

#define EFIAPI __attribute__((ms_abi))
#define EFI_RUNTIME_SERVICES_SIGNATURE 0x56524553544e5552ull      /* "RUNTSERV" (4.5) */
#define EFI_ERROR_BIT (1ull << 63)
#define EFI_UNSUPPORTED (EFI_ERROR_BIT | 3)                          /* Appendix D */

/* The target's list, in .lists (suspendos/build/resume.py): EFI_MEMORY_DESCRIPTORs. */
extern const struct sos_efi_runtime_list sos_resume_efi_runtime;

/* 4.5 EFI_RUNTIME_SERVICES up to SetVirtualAddressMap: the header, the four time services. */
struct efi_runtime_services {
    uint64_t signature;
    uint32_t revision, header_size, crc32, reserved;
    void *get_time, *set_time, *get_wakeup_time, *set_wakeup_time;
    uint64_t (EFIAPI *set_virtual_address_map)(uint64_t map_size, uint64_t descriptor_size,
                                               uint32_t descriptor_version, void *virtual_map);
};

void efi_runtime_check(const struct sos_efi_entry *e)
{
    const struct sos_efi_runtime_list *list = &sos_resume_efi_runtime;
    struct efi_runtime_mismatch m;
    const uint8_t *map = (const void *)(uintptr_t)e->efi_map;
    /* The firmware's runtime regions as they are, for whoever compares them with a target
     * (tests/test_efi_resume_qemu.py reads OVMF's here). */
    for (uint64_t off = 0; e->efi_descriptor_size >= sizeof(struct sos_efi_runtime_entry) &&
         off + e->efi_descriptor_size <= e->efi_map_size; off += e->efi_descriptor_size) {
        const struct sos_efi_runtime_entry *d = (const void *)(map + off);
        if (d->attribute & SOS_EFI_MEMORY_RUNTIME)
            kprintf("@@EFI runtime-region type=%u start=0x%lx pages=%lu attribute=0x%lx\n",
                    d->type, d->physical_start, d->number_of_pages, d->attribute);
    }
    kprintf("@@EFI runtime-services 0x%lx\n", e->runtime_services);
    switch (efi_runtime_compare(list, (const void *)(uintptr_t)e->efi_map, e->efi_map_size,
                                e->efi_descriptor_size, &m)) {
    case EFI_RT_MATCH:
        /* The resumed kernel calls through the table it found at its boot (Linux:
         * efi.runtime), so this firmware's must be at the same place (4.3, RuntimeServices). */
        if (list->runtime_services && list->runtime_services != e->runtime_services)
            refuse(REFUSE_EFI_RUNTIME_MAP, "the firmware's runtime services table is at "
                   "0x%lx, the target's efi_runtime_services at 0x%lx", e->runtime_services,
                   list->runtime_services);
        kprintf("@@EFI runtime regions: %u, as the target's efi_runtime\n", list->count);
        return;
    case EFI_RT_BAD_MAP:
        refuse(REFUSE_EFI_RUNTIME_MAP, "the firmware's descriptor size %lu is below "
               "version 1's", e->efi_descriptor_size);
    case EFI_RT_NOT_CAPTURED:
        refuse(REFUSE_EFI_RUNTIME_MAP, "firmware runtime region type %u at 0x%lx (%lu pages) "
               "is not in the target's efi_runtime (%u entries)", m.type, m.start, m.pages,
               list->count);
    case EFI_RT_DIFFERS:
        refuse(REFUSE_EFI_RUNTIME_MAP, "firmware runtime region at 0x%lx is type %u, %lu "
               "pages; the target's efi_runtime has type %u, %lu pages at 0x%lx", m.start,
               m.type, m.pages, m.list_type, m.list_pages, m.list_start);
    case EFI_RT_NOT_FIRMWARE:
        refuse(REFUSE_EFI_RUNTIME_MAP, "the target's efi_runtime region type %u at 0x%lx "
               "(%lu pages) is not the firmware's: its runtime regions of that type cover %lu "
               "of them", m.type, m.start, m.pages, m.covered);
    }
}

/* After the restore, from resume_run (resume_before_return, entry.c): interrupts off, the APs
 * stopped, on the loader's identity map of the first 512 GiB (entry64.S: writable,
 * executable, so the firmware's code and data and MMIO below that are all reachable at
 * their physical addresses, as 8.4 wants of a caller in physical mode) and on the loader's
 * 64 KiB stack (qemu-boot/boot.S): more than Linux gives runtime services, which it calls on
 * a 16 KiB kernel stack. The firmware may use SSE (2.3.4): entry64.S turned on
 * CR4.OSFXSR and OSXMMEXCPT and cleared CR0.EM; nothing in the loader sets CR0.TS. The call
 * is the Microsoft x64 convention (2.3.4.2), which the compiler makes for EFIAPI.
 *
 * A failure does not stop the resume: every saved page is already back and the image is
 * marked resumed, so halting here would lose the hibernated system for the sake of its EFI
 * variables. It is said on serial and in the handoff block's message, for the host to
 * report. */
void efi_runtime_set_virtual(struct sos_handoff *h)
{
    const struct sos_efi_runtime_list *list = &sos_resume_efi_runtime;
    struct efi_runtime_services *rt = (void *)(uintptr_t)resume_efi.runtime_services;
    uint64_t status;
    if (!list->count) {             /* the check found no runtime regions: nothing to move */
        kprintf("@@EFI set-virtual-address-map skipped: no runtime regions\n");
        return;
    }
    if (!rt || rt->signature != EFI_RUNTIME_SERVICES_SIGNATURE) {
        status = EFI_UNSUPPORTED;
        kprintf("@@EFI set-virtual-address-map status=0x%lx: no runtime services table at "
                "0x%lx\n", status, (uint64_t)(uintptr_t)rt);
    } else {
        /* The list is the VirtualMap: version 1 descriptors, VirtualStart = the kernel's
         * virt_addr, DescriptorSize our entries' size (8.4: the size of an entry in VirtualMap). */
        status = rt->set_virtual_address_map(
            (uint64_t)list->count * sizeof list->entries[0], sizeof list->entries[0],
            SOS_EFI_DESCRIPTOR_VERSION, (void *)list->entries);
        kprintf("@@EFI set-virtual-address-map status=0x%lx (%u regions)\n", status,
                list->count);
    }
    if (status)
        ksnprintf((char *)h->message, sizeof h->message,
                  "efi set-virtual-address-map status=0x%lx", status);
}
