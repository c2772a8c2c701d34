/*
 * Reproducible RAM content. Every page's bytes are a function of (seed, mix, page frame
 * number) only, never of where the host, module or table happen to sit, so the same seed
 * and mix give the same bytes at the same address on every run. Algorithm (fill.c):
 *   key  = mix64(mix64(seed) + pfn * 0x9E3779B97F4A7C15)
 *   kind = ((key >> 32) * 100) >> 32 compared against the cumulative mix percentages
 *   zero:    4096 zero bytes
 *   random:  512 outputs of xorshift64* seeded with mix64(key ^ SALT_RANDOM) | 1
 *   text:    4096 bytes of a 256 KiB text corpus (words, spaces, punctuation, newlines,
 *            generated once from the seed) starting at byte mix64(key ^ SALT_TEXT) mod
 *            (corpus size - 4095)
 *   pattern: a pattern of L = 8 + mix64(key ^ SALT_PATTERN) % 249 bytes (8..256), taken
 *            from xorshift64* outputs, repeated across the page
 */
#ifndef HOST_FILL_H
#define HOST_FILL_H
#include <stdint.h>
#include "cmdline.h"

void fill_init(const struct host_options *opt);

/* Fill the page at `addr` (page-aligned) and say which kind it got. */
enum page_kind fill_page(uint64_t addr);

#endif
