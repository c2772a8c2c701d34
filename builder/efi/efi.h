/*
 * The few UEFI types the stage uses, declared from the UEFI specification 2.10: only what
 * stage.c and memmap.c touch; a table's unused members are untyped slots that keep the
 * offsets. Every firmware call goes through an EFIAPI (Microsoft x64 ABI, 2.3.4.2) pointer.
 */
#ifndef SOS_EFI_H
#define SOS_EFI_H
#include <stdint.h>

#define EFIAPI __attribute__((ms_abi))

typedef uint64_t efi_status;
typedef void *efi_handle;

/* Appendix D, status codes: errors have the top bit set. */
#define EFI_ERROR_BIT             (1ull << 63)
#define EFI_SUCCESS               0
#define EFI_LOAD_ERROR            (EFI_ERROR_BIT | 1)
#define EFI_INVALID_PARAMETER     (EFI_ERROR_BIT | 2)
#define EFI_BUFFER_TOO_SMALL      (EFI_ERROR_BIT | 5)
#define EFI_OUT_OF_RESOURCES      (EFI_ERROR_BIT | 9)
#define EFI_NOT_FOUND             (EFI_ERROR_BIT | 14)
#define EFI_ABORTED               (EFI_ERROR_BIT | 21)

struct efi_guid {
    uint32_t data1;
    uint16_t data2, data3;
    uint8_t data4[8];
};

/* 4.2 EFI_TABLE_HEADER */
struct efi_table_header {
    uint64_t signature;
    uint32_t revision, header_size, crc32, reserved;
};

#define EFI_SYSTEM_TABLE_SIGNATURE  0x5453595320494249ull      /* "IBI SYST" */

/* 7.2 EFI_ALLOCATE_TYPE and EFI_MEMORY_TYPE */
enum { EFI_ALLOCATE_ANY_PAGES, EFI_ALLOCATE_MAX_ADDRESS, EFI_ALLOCATE_ADDRESS };
enum {
    EFI_RESERVED_MEMORY_TYPE, EFI_LOADER_CODE, EFI_LOADER_DATA, EFI_BOOT_SERVICES_CODE,
    EFI_BOOT_SERVICES_DATA, EFI_RUNTIME_SERVICES_CODE, EFI_RUNTIME_SERVICES_DATA,
    EFI_CONVENTIONAL_MEMORY, EFI_UNUSABLE_MEMORY, EFI_ACPI_RECLAIM_MEMORY,
    EFI_ACPI_MEMORY_NVS, EFI_MEMORY_MAPPED_IO, EFI_MEMORY_MAPPED_IO_PORT_SPACE,
    EFI_PAL_CODE, EFI_PERSISTENT_MEMORY, EFI_UNACCEPTED_MEMORY_TYPE,
};

/* 7.2 EFI_MEMORY_DESCRIPTOR. Walk a map by the descriptor size GetMemoryMap returns, never
 * by sizeof: later revisions may append fields. */
struct efi_memory_descriptor {
    uint32_t type;
    uint64_t physical_start, virtual_start, number_of_pages, attribute;
};

#define EFI_PAGE_SIZE 4096

/* 4.4 EFI_BOOT_SERVICES, up to ExitBootServices. */
struct efi_boot_services {
    struct efi_table_header hdr;
    void *raise_tpl, *restore_tpl;
    efi_status (EFIAPI *allocate_pages)(int type, int memory_type, uint64_t pages,
                                        uint64_t *memory);
    efi_status (EFIAPI *free_pages)(uint64_t memory, uint64_t pages);
    efi_status (EFIAPI *get_memory_map)(uint64_t *map_size, void *map, uint64_t *map_key,
                                        uint64_t *descriptor_size,
                                        uint32_t *descriptor_version);
    efi_status (EFIAPI *allocate_pool)(int pool_type, uint64_t size, void **buffer);
    efi_status (EFIAPI *free_pool)(void *buffer);
    void *create_event, *set_timer, *wait_for_event, *signal_event, *close_event,
         *check_event;
    void *install_protocol_interface, *reinstall_protocol_interface,
         *uninstall_protocol_interface, *handle_protocol, *reserved, *register_protocol_notify,
         *locate_handle, *locate_device_path, *install_configuration_table;
    void *load_image, *start_image, *exit, *unload_image;
    efi_status (EFIAPI *exit_boot_services)(efi_handle image, uint64_t map_key);
};

/* 4.6 EFI_CONFIGURATION_TABLE */
struct efi_configuration_table {
    struct efi_guid vendor_guid;
    void *vendor_table;
};

/* 4.3 EFI_SYSTEM_TABLE */
struct efi_system_table {
    struct efi_table_header hdr;
    uint16_t *firmware_vendor;
    uint32_t firmware_revision;
    efi_handle console_in_handle;
    void *con_in;
    efi_handle console_out_handle;
    void *con_out;
    efi_handle standard_error_handle;
    void *std_err;
    void *runtime_services;
    struct efi_boot_services *boot_services;
    uint64_t number_of_table_entries;
    struct efi_configuration_table *configuration_table;
};

/* 4.6, the industry standard configuration tables (ACPI) */
#define EFI_ACPI_20_TABLE_GUID \
    { 0x8868e871, 0xe4f1, 0x11d3, { 0xbc, 0x22, 0x00, 0x80, 0xc7, 0x3c, 0x88, 0x81 } }
#define EFI_ACPI_TABLE_GUID \
    { 0xeb9d2d30, 0x2d88, 0x11d3, { 0x9a, 0x16, 0x00, 0x90, 0x27, 0x3f, 0xc1, 0x4d } }

#endif
