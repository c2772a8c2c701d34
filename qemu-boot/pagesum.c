/*
 * Page checksums. Each step (h ^ word) * odd constant, rotated, is a bijection in the word
 * and in h, so any single changed word always changes the result; two independent lanes
 * keep the dependency chains short. Four TCG ops per word: fast enough to checksum 3 GiB
 * twice in seconds.
 */
#include "pagesum.h"
#include "fastmem.h"
#include "hash.h"
#include "printf.h"

#define K1 0x9E3779B185EBCA87ull
#define K2 0xC2B2AE3D27D4EB4Full

static uint64_t page_hash(const uint64_t *p)
{
    uint64_t a = 0x243F6A8885A308D3ull, b = 0x13198A2E03707344ull;
    for (unsigned i = 0; i < PAGE_SIZE / 8; i += 4) {
        a = rotl64((a ^ p[i + 0]) * K1, 31);
        b = rotl64((b ^ p[i + 1]) * K2, 29);
        a = rotl64((a ^ p[i + 2]) * K1, 31);
        b = rotl64((b ^ p[i + 3]) * K2, 29);
    }
    return mix64(a ^ rotl64(b, 32));
}

uint64_t pagesum_record(const struct layout *l)
{
    uint64_t *table = (uint64_t *)(uintptr_t)l->table_addr, ramhash = 0;
    fast_zero(table, l->table_size);          /* SKIP pages' slots stay 0 */
    for (unsigned r = 0; r < l->region_count; r++) {
        const struct region *g = &l->regions[r];
        if (g->cls == RC_SKIP)
            continue;
        uint64_t slot = g->slot;
        for (uint64_t a = g->start; a < g->end; a += PAGE_SIZE, slot++) {
            uint64_t h = page_hash((const uint64_t *)(uintptr_t)a);
            table[slot] = h;
            if (g->cls == RC_FILL)
                ramhash = mix64(ramhash + h);
        }
    }
    return ramhash;
}

uint64_t pagesum_compare(const struct layout *l)
{
    const uint64_t *table = (const uint64_t *)(uintptr_t)l->table_addr;
    uint64_t changed = 0;
    for (unsigned r = 0; r < l->region_count; r++) {
        const struct region *g = &l->regions[r];
        if (g->cls == RC_SKIP)
            continue;
        uint64_t slot = g->slot;
        for (uint64_t a = g->start; a < g->end; a += PAGE_SIZE, slot++) {
            if (page_hash((const uint64_t *)(uintptr_t)a) == table[slot])
                continue;
            if (changed++ < MAX_CHANGED_PRINTED)
                kprintf("@@CHANGED 0x%lx\n", a);
        }
    }
    return changed;
}
