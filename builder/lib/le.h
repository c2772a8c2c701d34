/*
 * Little-endian loads and stores at any alignment, for the codecs that read byte streams
 * as words (chacha20poly1305.c, xxh64.c; RFC 8439 and the XXH64 spec both read lanes
 * little-endian). x86-64 is little-endian, so each is a constant-size __builtin_memcpy that
 * the compiler turns into one unaligned-safe mov: no libc call, no alignment assumption.
 */
#ifndef SOS_LE_H
#define SOS_LE_H
#include <stdint.h>

#define LE_INLINE static inline __attribute__((always_inline))

LE_INLINE uint32_t le_load32(const void *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}

LE_INLINE uint64_t le_load64(const void *p)
{
    uint64_t v;
    __builtin_memcpy(&v, p, 8);
    return v;
}

LE_INLINE void le_store32(void *p, uint32_t v) { __builtin_memcpy(p, &v, 4); }
LE_INLINE void le_store64(void *p, uint64_t v) { __builtin_memcpy(p, &v, 8); }

#undef LE_INLINE
#endif
