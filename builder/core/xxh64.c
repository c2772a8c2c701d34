/*
 * XXH64, written from the xxHash specification (doc/xxhash_spec.md,
 * "XXH64 Algorithm Description"; step numbers below are the spec's).
 * Freestanding: no libc calls; loads are builder/lib/le.h's (single unaligned-safe movs).
 * Assumes a little-endian CPU (x86-64), as the spec reads lanes little-endian.
 */
#include "xxh64.h"
#include "../lib/le.h"

/* Spec "XXH64 Algorithm Description": the five 64-bit primes. */
#define PRIME64_1 0x9E3779B185EBCA87ULL
#define PRIME64_2 0xC2B2AE3D27D4EB4FULL
#define PRIME64_3 0x165667B19E3779F9ULL
#define PRIME64_4 0x85EBCA77C2B2AE63ULL
#define PRIME64_5 0x27D4EB2F165667C5ULL

#define STRIPE_LEN 32 /* spec step 2: a stripe is 32 bytes, 4 lanes of 8 */

static inline uint64_t rotl64(uint64_t x, unsigned r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t xxh_round(uint64_t acc, uint64_t lane)
{
    acc += lane * PRIME64_2;
    acc = rotl64(acc, 31);
    return acc * PRIME64_1;
}

/* Spec step 3: mergeAccumulator(acc, accN). */
static inline uint64_t merge_acc(uint64_t acc, uint64_t accn)
{
    acc ^= xxh_round(0, accn);
    return acc * PRIME64_1 + PRIME64_4;
}

/* Spec step 1: initial accumulator values. */
static inline void init_acc(uint64_t acc[4], uint64_t seed)
{
    acc[0] = seed + PRIME64_1 + PRIME64_2;
    acc[1] = seed + PRIME64_2;
    acc[2] = seed;
    acc[3] = seed - PRIME64_1;
}

/* Spec step 2 over whole stripes; returns the number of bytes consumed. */
static size_t process_stripes(uint64_t acc[4], const uint8_t *p, size_t len)
{
    uint64_t a1 = acc[0], a2 = acc[1], a3 = acc[2], a4 = acc[3];
    const uint8_t *const start = p;
    const uint8_t *const end = p + (len & ~(size_t)(STRIPE_LEN - 1));

    /* Four independent dependency chains: the CPU runs them in parallel. */
    while (p < end) {
        a1 = xxh_round(a1, le_load64(p));
        a2 = xxh_round(a2, le_load64(p + 8));
        a3 = xxh_round(a3, le_load64(p + 16));
        a4 = xxh_round(a4, le_load64(p + 24));
        p += STRIPE_LEN;
    }
    acc[0] = a1; acc[1] = a2; acc[2] = a3; acc[3] = a4;
    return (size_t)(p - start);
}

/* Spec step 3: accumulator convergence. */
static inline uint64_t converge(const uint64_t acc[4])
{
    uint64_t h = rotl64(acc[0], 1) + rotl64(acc[1], 7) +
                 rotl64(acc[2], 12) + rotl64(acc[3], 18);
    h = merge_acc(h, acc[0]);
    h = merge_acc(h, acc[1]);
    h = merge_acc(h, acc[2]);
    h = merge_acc(h, acc[3]);
    return h;
}

/* Spec steps 5 and 6: remaining (< 32) bytes, then the avalanche. */
static uint64_t finish(uint64_t h, const uint8_t *p, size_t rem)
{
    while (rem >= 8) {
        h ^= xxh_round(0, le_load64(p));
        h = rotl64(h, 27) * PRIME64_1 + PRIME64_4;
        p += 8;
        rem -= 8;
    }
    if (rem >= 4) {
        h ^= (uint64_t)le_load32(p) * PRIME64_1;
        h = rotl64(h, 23) * PRIME64_2 + PRIME64_3;
        p += 4;
        rem -= 4;
    }
    while (rem > 0) {
        h ^= (uint64_t)*p * PRIME64_5;
        h = rotl64(h, 11) * PRIME64_1;
        p++;
        rem--;
    }
    /* Step 6: final mix (avalanche). */
    h ^= h >> 33;
    h *= PRIME64_2;
    h ^= h >> 29;
    h *= PRIME64_3;
    h ^= h >> 32;
    return h;
}

uint64_t xxh64(const void *data, size_t len, uint64_t seed)
{
    const uint8_t *p = data;
    uint64_t h;

    if (len >= STRIPE_LEN) {
        uint64_t acc[4];
        init_acc(acc, seed);
        size_t done = process_stripes(acc, p, len);
        p += done;
        h = converge(acc);
    } else {
        h = seed + PRIME64_5; /* spec step 1, special case: input < 32 bytes */
    }
    h += (uint64_t)len; /* step 4 */
    return finish(h, p, len & (STRIPE_LEN - 1));
}

void xxh64_reset(struct xxh64_state *s, uint64_t seed)
{
    s->total_len = 0;
    init_acc(s->acc, seed);
    s->seed = seed;
    s->buf_len = 0;
    s->reserved = 0;
}

void xxh64_update(struct xxh64_state *s, const void *data, size_t len)
{
    const uint8_t *p = data;

    s->total_len += len;

    /* Complete a stripe left over from an earlier call. */
    if (s->buf_len) {
        size_t take = STRIPE_LEN - s->buf_len;
        if (take > len)
            take = len;
        for (size_t i = 0; i < take; i++)
            s->buf[s->buf_len + i] = p[i];
        s->buf_len += (uint32_t)take;
        p += take;
        len -= take;
        if (s->buf_len < STRIPE_LEN)
            return;
        process_stripes(s->acc, s->buf, STRIPE_LEN);
        s->buf_len = 0;
    }

    size_t done = process_stripes(s->acc, p, len);
    p += done;
    len -= done;

    for (size_t i = 0; i < len; i++) /* len < 32 */
        s->buf[i] = p[i];
    s->buf_len = (uint32_t)len;
}

uint64_t xxh64_digest(const struct xxh64_state *s)
{
    uint64_t h;

    if (s->total_len >= STRIPE_LEN)
        h = converge(s->acc);
    else
        h = s->seed + PRIME64_5; /* spec step 1, special case */
    h += s->total_len; /* step 4 */
    return finish(h, s->buf, s->buf_len);
}
