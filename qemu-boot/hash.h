/* The 64-bit mixing functions the fill and the page checksums are built from. */
#ifndef HOST_HASH_H
#define HOST_HASH_H
#include <stdint.h>

static inline uint64_t rotl64(uint64_t x, unsigned r) { return (x << r) | (x >> (64 - r)); }

/* SplitMix64's finaliser (Steele, Lea, Flood 2014): a bijection with full avalanche. */
static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/* xorshift64* (Vigna 2016): one step of the per-page generator; state must not be 0. */
static inline uint64_t xorshift64s(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

#endif
