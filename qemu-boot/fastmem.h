/*
 * Bulk memory loops written for TCG: QEMU emulates `rep stos`/`rep movs` one element per
 * iteration through a helper, while a plain unrolled loop of 64-bit moves is translated
 * once and runs as host code. These are the loops the fill, the reserved-region clear and
 * the checksums are made of.
 */
#ifndef HOST_FASTMEM_H
#define HOST_FASTMEM_H
#include <stdint.h>

/* An 8-byte load/store that may be unaligned (x86 allows it; this tells the compiler). */
typedef uint64_t u64_unaligned __attribute__((aligned(1), may_alias));

/* Zero `len` bytes at `p`; both multiples of 8. */
static inline void fast_zero(void *p, uint64_t len)
{
    uint64_t *q = p, *end = q + len / 8;
    for (; q + 8 <= end; q += 8) {
        q[0] = 0; q[1] = 0; q[2] = 0; q[3] = 0;
        q[4] = 0; q[5] = 0; q[6] = 0; q[7] = 0;
    }
    for (; q < end; q++)
        *q = 0;
}

#endif
