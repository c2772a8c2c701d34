/*
 * Who owns which page of usable RAM. Usable RAM (multiboot type 1, merged, shrunk to whole
 * pages) is cut into regions of three classes:
 *   FILL  filled with the seeded mix, checksummed, must not change
 *   KEEP  not filled but checksummed and must not change: the host's code and read-only
 *         data and descriptor tables, the multiboot structures, command lines and modules
 *   SKIP  neither: the host's writable data/bss/stacks, the checksum table itself, and
 *         the reserved region (the payload's to write)
 * Every usable page has one u64 slot in the checksum table, in address order; a region
 * records the slot of its first page.
 */
#ifndef HOST_LAYOUT_H
#define HOST_LAYOUT_H
#include <stdint.h>
#include "multiboot.h"
#include "range.h"

enum region_class { RC_FILL, RC_KEEP, RC_SKIP };

#define MAX_USABLE  MB_MAX_MMAP
#define MAX_REGIONS 128
#define MAX_SPECIAL 32

struct region {
    uint64_t start, end;
    uint64_t slot;              /* table index of the region's first page */
    enum region_class cls;
};

struct layout {
    struct range usable[MAX_USABLE];
    uint64_t usable_slot[MAX_USABLE];
    unsigned usable_count;
    uint64_t total_pages;       /* usable pages = table entries */
    struct region regions[MAX_REGIONS];
    unsigned region_count;
    uint64_t table_addr, table_size;    /* the checksum table: total_pages u64s */
    uint64_t fill_pages, keep_pages;
};

/* Builds the layout; refuses (EXIT_BAD_RESERVED) a reserved region that is not wholly
 * inside one usable range or that overlaps the host's own pages, and fails
 * (EXIT_BAD_BOOT_INFO) when no room is left for the checksum table. */
void layout_build(const struct boot_info *bi, uint64_t reserved_base, uint64_t reserved_size,
                  struct layout *out);
/* Before layout_build: AP_START_PAGE is the payload's (ap_offline), not the host's. */
void layout_give_ap_page(void);

#endif
