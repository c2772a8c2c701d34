/*
 * What the host needs from the Multiboot (v1) information structure (Multiboot spec
 * 0.6.96, section 3.3): the memory map, the modules, the command line. Everything else in
 * the structure is ignored.
 */
#ifndef HOST_MULTIBOOT_H
#define HOST_MULTIBOOT_H
#include <stdint.h>
#include "range.h"

#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002u
#define MB_MAX_MMAP    64       /* raw memory map entries kept */
#define MB_MAX_MODULES 8

struct mb_mmap_entry {
    uint64_t start, end;        /* [start, end) */
    uint32_t type;              /* 1 = available RAM */
};

struct mb_module {
    uint64_t start, end;        /* [start, end): the file's bytes */
    const char *string;         /* its command line (QEMU: the file name) */
};

struct boot_info {
    struct mb_mmap_entry mmap[MB_MAX_MMAP];
    unsigned mmap_count;
    struct mb_module modules[MB_MAX_MODULES];
    unsigned module_count;
    const char *cmdline;        /* "" when the loader passed none */
    /* Where the loader left the structures themselves: the host must neither fill nor
     * expect to change these pages. */
    struct range info_ranges[5 + 2 * MB_MAX_MODULES];
    unsigned info_range_count;
};

/* Reads the structure at `mbi`; on failure prints @@ERROR and exits EXIT_BAD_BOOT_INFO. */
void multiboot_read(uint32_t magic, uint32_t mbi, struct boot_info *out);

#endif
