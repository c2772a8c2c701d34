/* Half-open physical address ranges [start, end) and the page arithmetic on them. */
#ifndef HOST_RANGE_H
#define HOST_RANGE_H
#include <stdint.h>

#define PAGE_SIZE  4096ull
#define PAGE_SHIFT 12

struct range {
    uint64_t start, end;
};

static inline uint64_t page_down(uint64_t a) { return a & ~(PAGE_SIZE - 1); }
static inline uint64_t page_up(uint64_t a) { return (a + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1); }

static inline int ranges_overlap(uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1)
{
    return a0 < b1 && b0 < a1;
}

#endif
