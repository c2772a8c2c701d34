/*
 * xxh64 — XXH64 (xxHash, 64-bit variant), freestanding.
 *
 * Written from the xxHash specification ("xxHash fast digest algorithm",
 * doc/xxhash_spec.md, section "XXH64 Algorithm Description"). The result is
 * the same 64-bit value the reference library returns (python: xxhash.xxh64
 * (data, seed).intdigest()).
 *
 * One-shot:   h = xxh64(buf, len, seed);
 * Streaming:  struct xxh64_state s; xxh64_reset(&s, seed);
 *             xxh64_update(&s, page_a, 4096); xxh64_update(&s, page_b, 4096);
 *             h = xxh64_digest(&s);
 * The streaming form gives the same value as the one-shot form over the
 * concatenation of everything passed to xxh64_update, however it was split.
 * The state is plain data (no pointers into it): it may be copied, and
 * xxh64_digest does not modify it (more data may be added afterwards).
 */
#ifndef SOS_XXH64_H
#define SOS_XXH64_H

#include <stddef.h>
#include <stdint.h>

struct xxh64_state {
    uint64_t total_len;   /* bytes passed to xxh64_update so far */
    uint64_t acc[4];      /* spec step 1/2: the four lane accumulators */
    uint64_t seed;
    uint8_t  buf[32];     /* a partial stripe (spec: 32-byte "stripe") */
    uint32_t buf_len;     /* bytes held in buf, 0..31 */
    uint32_t reserved;
};

uint64_t xxh64(const void *data, size_t len, uint64_t seed);

void     xxh64_reset(struct xxh64_state *s, uint64_t seed);
void     xxh64_update(struct xxh64_state *s, const void *data, size_t len);
uint64_t xxh64_digest(const struct xxh64_state *s);

#endif
