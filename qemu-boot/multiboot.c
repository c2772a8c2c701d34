/*
 * Multiboot (v1) information structure, as QEMU's -kernel loader builds it (Multiboot
 * spec 0.6.96, section 3.3). Addresses in it are 32-bit physical; the host runs with an
 * identity map, so they are used as pointers directly.
 */
#include "multiboot.h"
#include "exit_codes.h"
#include "string.h"

/* Bits of mbi.flags (spec section 3.3). */
#define MBI_FLAG_CMDLINE (1u << 2)
#define MBI_FLAG_MODS    (1u << 3)
#define MBI_FLAG_MMAP    (1u << 6)
#define MBI_FLAG_LOADER  (1u << 9)

struct mbi {
    uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
    uint32_t syms[4];
    uint32_t mmap_length, mmap_addr;
    uint32_t drives_length, drives_addr, config_table, boot_loader_name, apm_table;
    uint32_t vbe[6];
} __attribute__((packed));

struct mbi_mod {
    uint32_t mod_start, mod_end, string, reserved;
} __attribute__((packed));

/* A memory map entry; `size` does not count itself (spec: next entry at base + size + 4). */
struct mbi_mmap {
    uint32_t size;
    uint64_t base_addr, length;
    uint32_t type;
} __attribute__((packed));

static void keep(struct boot_info *bi, uint64_t start, uint64_t len)
{
    if (len && bi->info_range_count < sizeof bi->info_ranges / sizeof bi->info_ranges[0])
        bi->info_ranges[bi->info_range_count++] = (struct range){ start, start + len };
}

void multiboot_read(uint32_t magic, uint32_t mbi_addr, struct boot_info *bi)
{
    memset(bi, 0, sizeof *bi);
    bi->cmdline = "";
    if (magic != MULTIBOOT_BOOTLOADER_MAGIC)
        host_fail(EXIT_BAD_BOOT_INFO, "multiboot: magic 0x%x, expected 0x%x", magic,
                  MULTIBOOT_BOOTLOADER_MAGIC);
    const struct mbi *m = (const struct mbi *)(uintptr_t)mbi_addr;
    keep(bi, mbi_addr, sizeof *m);

    if (!(m->flags & MBI_FLAG_MMAP))
        host_fail(EXIT_BAD_BOOT_INFO, "multiboot: no memory map (flags 0x%x)", m->flags);
    keep(bi, m->mmap_addr, m->mmap_length);
    for (uint32_t off = 0; off + sizeof(struct mbi_mmap) <= m->mmap_length;) {
        const struct mbi_mmap *e = (const struct mbi_mmap *)(uintptr_t)(m->mmap_addr + off);
        if (bi->mmap_count == MB_MAX_MMAP)
            host_fail(EXIT_BAD_BOOT_INFO, "multiboot: more than %d memory map entries",
                      MB_MAX_MMAP);
        if (e->length && e->base_addr + e->length > e->base_addr)
            bi->mmap[bi->mmap_count++] = (struct mb_mmap_entry){
                e->base_addr, e->base_addr + e->length, e->type };
        off += e->size + 4;
    }

    if (m->flags & MBI_FLAG_CMDLINE && m->cmdline) {
        bi->cmdline = (const char *)(uintptr_t)m->cmdline;
        keep(bi, m->cmdline, strlen(bi->cmdline) + 1);
    }

    if (m->flags & MBI_FLAG_LOADER && m->boot_loader_name)
        keep(bi, m->boot_loader_name,
             strlen((const char *)(uintptr_t)m->boot_loader_name) + 1);

    if (m->flags & MBI_FLAG_MODS && m->mods_count) {
        const struct mbi_mod *mods = (const struct mbi_mod *)(uintptr_t)m->mods_addr;
        keep(bi, m->mods_addr, (uint64_t)m->mods_count * sizeof *mods);
        if (m->mods_count > MB_MAX_MODULES)
            host_fail(EXIT_BAD_BOOT_INFO, "multiboot: %u modules, at most %d",
                      m->mods_count, MB_MAX_MODULES);
        for (uint32_t i = 0; i < m->mods_count; i++) {
            if (mods[i].mod_end < mods[i].mod_start)
                host_fail(EXIT_BAD_BOOT_INFO, "multiboot: module %u ends before it starts", i);
            struct mb_module *mod = &bi->modules[bi->module_count++];
            mod->start = mods[i].mod_start;
            mod->end = mods[i].mod_end;
            mod->string = mods[i].string ? (const char *)(uintptr_t)mods[i].string : "";
            keep(bi, mod->start, mod->end - mod->start);
            if (mods[i].string)
                keep(bi, mods[i].string, strlen(mod->string) + 1);
        }
    }
}
