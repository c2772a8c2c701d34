/* Building the page ownership map described in layout.h. */
#include "layout.h"
#include "smp.h"
#include "exit_codes.h"
#include "printf.h"
#include "string.h"

/* From host.ld: [host_image_start, host_rw_start) is code, read-only data and the
 * descriptor tables, which must not change; [host_rw_start, host_image_end) is the host's
 * writable data, bss and stacks. */
extern char host_image_start[], host_rw_start[], host_image_end[];

/* boot.S identity-maps [0, 512 GiB) with 1 GiB pages; RAM above is left alone. */
#define IDENTITY_MAP_END (512ull << 30)

/* Lowest address the checksum table may take: keep it clear of the legacy first MiB. */
#define TABLE_MIN_ADDR 0x100000ull

struct special {
    uint64_t start, end;
    enum region_class cls;
};

static struct special specials[MAX_SPECIAL];
static unsigned special_count;

static void add_special(uint64_t start, uint64_t end, enum region_class cls)
{
    if (special_count == MAX_SPECIAL)
        host_fail(EXIT_BAD_BOOT_INFO, "layout: more than %d special ranges", MAX_SPECIAL);
    specials[special_count++] = (struct special){ page_down(start), page_up(end), cls };
}

/* Usable ranges sorted, merged where they touch, and shrunk to whole pages. */
static void collect_usable(const struct boot_info *bi, struct layout *l)
{
    struct range r[MAX_USABLE];
    unsigned n = 0;
    for (unsigned i = 0; i < bi->mmap_count; i++) {
        if (bi->mmap[i].type != 1)
            continue;
        struct range x = { bi->mmap[i].start, bi->mmap[i].end };
        if (x.end > IDENTITY_MAP_END)
            x.end = IDENTITY_MAP_END;
        if (x.start >= x.end)
            continue;
        unsigned j = n++;
        for (; j > 0 && r[j - 1].start > x.start; j--)     /* insertion sort */
            r[j] = r[j - 1];
        r[j] = x;
    }
    l->usable_count = 0;
    for (unsigned i = 0; i < n; i++) {
        struct range *last = l->usable_count ? &l->usable[l->usable_count - 1] : 0;
        if (last && r[i].start <= last->end) {
            if (r[i].end > last->end)
                last->end = r[i].end;
        } else {
            l->usable[l->usable_count++] = r[i];
        }
    }
    /* Shrink to whole pages only after merging, so two entries that meet mid-page keep
     * that page. */
    unsigned k = 0;
    l->total_pages = 0;
    for (unsigned i = 0; i < l->usable_count; i++) {
        struct range x = { page_up(l->usable[i].start), page_down(l->usable[i].end) };
        if (x.start >= x.end)
            continue;
        l->usable[k] = x;
        l->usable_slot[k++] = l->total_pages;
        l->total_pages += (x.end - x.start) >> PAGE_SHIFT;
    }
    l->usable_count = k;
    if (!k)
        host_fail(EXIT_BAD_BOOT_INFO, "layout: the memory map has no usable page");
}

static int in_one_usable(const struct layout *l, uint64_t start, uint64_t end)
{
    for (unsigned i = 0; i < l->usable_count; i++)
        if (start >= l->usable[i].start && end <= l->usable[i].end)
            return 1;
    return 0;
}

static int hits_special(uint64_t start, uint64_t end)
{
    for (unsigned i = 0; i < special_count; i++)
        if (ranges_overlap(start, end, specials[i].start, specials[i].end))
            return 1;
    return 0;
}

/* The lowest page-aligned place for the table: a candidate is the start of a usable range
 * or the end of a special range; the first that fits wins. */
static void place_table(struct layout *l)
{
    uint64_t size = page_up(l->total_pages * 8), best = UINT64_MAX;
    for (unsigned i = 0; i < l->usable_count + special_count; i++) {
        uint64_t a = i < l->usable_count ? l->usable[i].start : specials[i - l->usable_count].end;
        if (a < TABLE_MIN_ADDR)
            a = TABLE_MIN_ADDR;
        if (a < best && in_one_usable(l, a, a + size) && !hits_special(a, a + size))
            best = a;
    }
    if (best == UINT64_MAX)
        host_fail(EXIT_BAD_BOOT_INFO, "layout: no room for the %lu-byte checksum table", size);
    l->table_addr = best;
    l->table_size = size;
}

/* Class of the page at `a`: the strongest special covering it, FILL if none. */
static enum region_class class_at(uint64_t a, uint64_t *next)
{
    enum region_class cls = RC_FILL;
    for (unsigned i = 0; i < special_count; i++) {
        const struct special *s = &specials[i];
        if (s->start > a && s->start < *next)
            *next = s->start;
        if (s->start <= a && a < s->end) {
            if (s->end < *next)
                *next = s->end;
            if (s->cls > cls)
                cls = s->cls;
        }
    }
    return cls;
}

static void build_regions(struct layout *l)
{
    l->region_count = 0;
    l->fill_pages = l->keep_pages = 0;
    for (unsigned u = 0; u < l->usable_count; u++) {
        for (uint64_t a = l->usable[u].start; a < l->usable[u].end;) {
            uint64_t next = l->usable[u].end;
            enum region_class cls = class_at(a, &next);
            struct region *prev = l->region_count ? &l->regions[l->region_count - 1] : 0;
            if (prev && prev->end == a && prev->cls == cls) {
                prev->end = next;
            } else {
                if (l->region_count == MAX_REGIONS)
                    host_fail(EXIT_BAD_BOOT_INFO, "layout: more than %d regions", MAX_REGIONS);
                l->regions[l->region_count++] = (struct region){
                    a, next, l->usable_slot[u] + ((a - l->usable[u].start) >> PAGE_SHIFT), cls };
            }
            if (cls == RC_FILL)
                l->fill_pages += (next - a) >> PAGE_SHIFT;
            else if (cls == RC_KEEP)
                l->keep_pages += (next - a) >> PAGE_SHIFT;
            a = next;
        }
    }
}

static int ap_page_given;

void layout_give_ap_page(void)
{
    ap_page_given = 1;
}

void layout_build(const struct boot_info *bi, uint64_t rbase, uint64_t rsize, struct layout *l)
{
    memset(l, 0, sizeof *l);
    special_count = 0;
    collect_usable(bi, l);

    add_special((uintptr_t)host_image_start, (uintptr_t)host_rw_start, RC_KEEP);
    add_special((uintptr_t)host_rw_start, (uintptr_t)host_image_end, RC_SKIP);
    /* The APs' real-mode start page: written once before the checksums, then only read. */
    add_special(AP_START_PAGE, AP_START_PAGE + 4096, ap_page_given ? RC_SKIP : RC_KEEP);
    for (unsigned i = 0; i < bi->info_range_count; i++)
        add_special(bi->info_ranges[i].start, bi->info_ranges[i].end, RC_KEEP);

    if (!in_one_usable(l, rbase, rbase + rsize))
        host_fail(EXIT_BAD_RESERVED, "reserved region 0x%lx-0x%lx is not inside usable RAM",
                  rbase, rbase + rsize);
    for (unsigned i = 0; i < special_count; i++)
        if (ranges_overlap(rbase, rbase + rsize, specials[i].start, specials[i].end))
            host_fail(EXIT_BAD_RESERVED,
                      "reserved region 0x%lx-0x%lx overlaps host pages 0x%lx-0x%lx",
                      rbase, rbase + rsize, specials[i].start, specials[i].end);
    add_special(rbase, rbase + rsize, RC_SKIP);

    place_table(l);
    add_special(l->table_addr, l->table_addr + l->table_size, RC_SKIP);
    build_regions(l);
}
