"""The EFI runtime map: the firmware's runtime regions and the virtual addresses the
hibernated kernel gave them (Linux: /sys/firmware/efi/runtime-map).

The EFI resume loader carries it in its .lists (the EFI build only). Before
ExitBootServices it checks the firmware's current memory map against it; after the restore
it hands the entries to SetVirtualAddressMap (UEFI 2.10, 8.4), so the fresh firmware runs at
the addresses the resumed kernel calls it at. An entry is laid out as EFI_MEMORY_DESCRIPTOR
version 1 (UEFI 2.10, 7.2), so `entries[0 .. count)` is the VirtualMap argument itself,
with DescriptorSize = the entry's size.
"""
import construct as c

from .common import Constants, u32, u64

# Linux x86-64 maps every descriptor with EFI_MEMORY_RUNTIME and gives SetVirtualAddressMap
# those; firmware seen in practice has a few dozen (OVMF about ten). Room for more than
# twice that, at 40 bytes an entry in the loader.
MAX_ENTRIES = 128
DESCRIPTOR_VERSION = 1                  # EFI_MEMORY_DESCRIPTOR_VERSION (UEFI 2.10, 7.2)
MEMORY_RUNTIME = 1 << 63                # EFI_MEMORY_RUNTIME attribute (UEFI 2.10, 7.2)

MEMORY_TYPE = Constants(
    "SOS_EFI_", "EFI memory types (UEFI 2.10, 7.2 EFI_MEMORY_TYPE).",
    RESERVED_MEMORY=0, LOADER_CODE=1, LOADER_DATA=2, BOOT_SERVICES_CODE=3,
    BOOT_SERVICES_DATA=4, RUNTIME_SERVICES_CODE=5, RUNTIME_SERVICES_DATA=6,
    CONVENTIONAL_MEMORY=7, UNUSABLE_MEMORY=8, ACPI_RECLAIM_MEMORY=9, ACPI_MEMORY_NVS=10,
    MEMORY_MAPPED_IO=11, MEMORY_MAPPED_IO_PORT_SPACE=12, PAL_CODE=13, PERSISTENT_MEMORY=14,
    UNACCEPTED_MEMORY=15)

# Types a runtime-map entry has when the kernel kept firmware memory for itself
# (efi_mem_reserve: the ESRT, the TPM log, ...) rather than the firmware asking for it: where
# they lie follows the boot's allocations, so they move from one boot to the next
# (builder/resume/efi/runtime_map.c efi_runtime_kernel_kept says the same to the loader).
KERNEL_KEPT_TYPES = frozenset({MEMORY_TYPE.LOADER_CODE, MEMORY_TYPE.LOADER_DATA,
                               MEMORY_TYPE.BOOT_SERVICES_CODE, MEMORY_TYPE.BOOT_SERVICES_DATA,
                               MEMORY_TYPE.CONVENTIONAL_MEMORY})

EfiRuntimeEntry = c.Struct(
    "type" / u32,               # EFI_MEMORY_TYPE (UEFI 2.10, 7.2)
    "_pad" / c.Bytes(4),
    "physical_start" / u64,     # page-aligned
    "virtual_start" / u64,      # where the hibernated kernel maps it (its virt_addr)
    "number_of_pages" / u64,    # 4 KiB pages
    "attribute" / u64,          # EFI_MEMORY_* bits; EFI_MEMORY_RUNTIME always set
)

EfiRuntimeList = c.Struct(
    "count" / u32,              # entries in use; 0: none captured (a BIOS machine)
    "_pad" / c.Bytes(4),
    "runtime_services" / u64,   # 0, or where the kernel's EFI_RUNTIME_SERVICES table is
                                # (physical, UEFI 2.10, 4.5): the firmware's must be there
    "entries" / c.Array(MAX_ENTRIES, EfiRuntimeEntry),
)


def runtime_list(entries, runtime_services=0):
    """The EfiRuntimeList bytes of (type, physical_start, virtual_start, pages, attribute)
    tuples, at most MAX_ENTRIES (the target description checks), and the runtime services
    table's address (0: not checked)."""
    rows = [dict(type=t, _pad=bytes(4), physical_start=p, virtual_start=v, number_of_pages=n,
                 attribute=a) for t, p, v, n, a in entries]
    empty = dict(type=0, _pad=bytes(4), physical_start=0, virtual_start=0, number_of_pages=0,
                 attribute=0)
    return EfiRuntimeList.build(dict(count=len(rows), _pad=bytes(4),
                                     runtime_services=runtime_services,
                                     entries=rows + [empty] * (MAX_ENTRIES - len(rows))))
