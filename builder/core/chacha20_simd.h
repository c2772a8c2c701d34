/*
 * ChaCha20 keystream for several blocks at once in vector registers: SSE2 (4 blocks, one
 * block per 32-bit lane of 16 xmm registers) and AVX2 (8 blocks in ymm registers).
 * Included by chacha20poly1305.c only; the state layout and the quarter round are RFC 8439
 * 2.1-2.3, exactly as the scalar path computes them, so the output is identical.
 *
 * Every function here carries its own target attribute: the rest of the payload is built
 * -mgeneral-regs-only and must stay free of vector instructions (the vector units are
 * usable only between the state save and restore, builder/core/vector.c). Callers choose
 * a path only after the CPU (CPUID) and the OS state (CR4.OSFXSR, XCR0) allow it.
 *
 * Layout trick: lane b of register i holds word i of block b. After the rounds a 4x4
 * transpose of registers 4g..4g+3 gives bytes 16g..16g+15 of each block; for AVX2 the
 * transpose works within 128-bit halves, so the low half holds block b and the high half
 * block b+4, and _mm256_permute2x128_si256 joins two groups into 32 output bytes.
 */
#ifndef SOS_CHACHA20_SIMD_H
#define SOS_CHACHA20_SIMD_H

#include "intrinsics.h"
#include <stdint.h>

#define SIMD_SSE2 __attribute__((target("sse2"), noinline))
#define SIMD_AVX2 __attribute__((target("avx2"), noinline))

/* ---- SSE2: 4 blocks ------------------------------------------------------- */

/* 2.1's roll; SSE2 has no byte shuffle, so every roll is two shifts and an or. */
#define ROTL_SSE2(v, n) _mm_or_si128(_mm_slli_epi32(v, n), _mm_srli_epi32(v, 32 - (n)))

#define QR_SSE2(a, b, c, d) do {                                                      \
        a = _mm_add_epi32(a, b); d = _mm_xor_si128(d, a); d = ROTL_SSE2(d, 16);       \
        c = _mm_add_epi32(c, d); b = _mm_xor_si128(b, c); b = ROTL_SSE2(b, 12);       \
        a = _mm_add_epi32(a, b); d = _mm_xor_si128(d, a); d = ROTL_SSE2(d, 8);        \
        c = _mm_add_epi32(c, d); b = _mm_xor_si128(b, c); b = ROTL_SSE2(b, 7);        \
    } while (0)

/* Rows a..d (word j of 4 blocks each) -> a..d = 16 bytes of block 0..3. */
#define TRANSPOSE_SSE2(a, b, c, d) do {                                               \
        __m128i t0 = _mm_unpacklo_epi32(a, b), t1 = _mm_unpacklo_epi32(c, d);         \
        __m128i t2 = _mm_unpackhi_epi32(a, b), t3 = _mm_unpackhi_epi32(c, d);         \
        a = _mm_unpacklo_epi64(t0, t1); b = _mm_unpackhi_epi64(t0, t1);               \
        c = _mm_unpacklo_epi64(t2, t3); d = _mm_unpackhi_epi64(t2, t3);               \
    } while (0)

/* dst[0..256) = src[0..256) ^ keystream blocks st[12] .. st[12] + 3. The caller advances
 * the counter. */
static SIMD_SSE2 void chacha_xor4_sse2(const uint32_t st[16], const uint8_t *src,
                                       uint8_t *dst)
{
    const __m128i lanes = _mm_set_epi32(3, 2, 1, 0);     /* block b: counter + b */
    __m128i x[16];
    for (int i = 0; i < 16; i++)
        x[i] = _mm_set1_epi32((int)st[i]);
    x[12] = _mm_add_epi32(x[12], lanes);
    for (int i = 0; i < 10; i++) {
        QR_SSE2(x[0], x[4], x[8], x[12]);
        QR_SSE2(x[1], x[5], x[9], x[13]);
        QR_SSE2(x[2], x[6], x[10], x[14]);
        QR_SSE2(x[3], x[7], x[11], x[15]);
        QR_SSE2(x[0], x[5], x[10], x[15]);
        QR_SSE2(x[1], x[6], x[11], x[12]);
        QR_SSE2(x[2], x[7], x[8], x[13]);
        QR_SSE2(x[3], x[4], x[9], x[14]);
    }
    /* 2.3: add the input state (reloaded: holding it would double the registers spilled). */
    for (int i = 0; i < 16; i++)
        x[i] = _mm_add_epi32(x[i], _mm_set1_epi32((int)st[i]));
    x[12] = _mm_add_epi32(x[12], lanes);
    for (int g = 0; g < 4; g++) {
        TRANSPOSE_SSE2(x[4 * g], x[4 * g + 1], x[4 * g + 2], x[4 * g + 3]);
        for (int b = 0; b < 4; b++) {
            const __m128i_u *in = (const __m128i_u *)(src + 64 * b + 16 * g);
            __m128i_u *out = (__m128i_u *)(dst + 64 * b + 16 * g);
            _mm_storeu_si128(out, _mm_xor_si128(_mm_loadu_si128(in), x[4 * g + b]));
        }
    }
}

/* ---- AVX2: 8 blocks ------------------------------------------------------- */

/* Rolls by 12 and 7: two shifts and an or; those by 16 and 8 move whole bytes, so QR_AVX2
 * does them with one byte shuffle (vpshufb, per 128-bit half). */
#define ROTL_AVX2(v, n) _mm256_or_si256(_mm256_slli_epi32(v, n), _mm256_srli_epi32(v, 32 - (n)))

#define QR_AVX2(a, b, c, d) do {                                                      \
        a = _mm256_add_epi32(a, b); d = _mm256_xor_si256(d, a);                       \
        d = _mm256_shuffle_epi8(d, rot16);                                            \
        c = _mm256_add_epi32(c, d); b = _mm256_xor_si256(b, c); b = ROTL_AVX2(b, 12); \
        a = _mm256_add_epi32(a, b); d = _mm256_xor_si256(d, a);                       \
        d = _mm256_shuffle_epi8(d, rot8);                                             \
        c = _mm256_add_epi32(c, d); b = _mm256_xor_si256(b, c); b = ROTL_AVX2(b, 7);  \
    } while (0)

#define TRANSPOSE_AVX2(a, b, c, d) do {                                               \
        __m256i t0 = _mm256_unpacklo_epi32(a, b), t1 = _mm256_unpacklo_epi32(c, d);   \
        __m256i t2 = _mm256_unpackhi_epi32(a, b), t3 = _mm256_unpackhi_epi32(c, d);   \
        a = _mm256_unpacklo_epi64(t0, t1); b = _mm256_unpackhi_epi64(t0, t1);         \
        c = _mm256_unpacklo_epi64(t2, t3); d = _mm256_unpackhi_epi64(t2, t3);         \
    } while (0)

/* dst[0..512) = src[0..512) ^ keystream blocks st[12] .. st[12] + 7. */
static SIMD_AVX2 void chacha_xor8_avx2(const uint32_t st[16], const uint8_t *src,
                                       uint8_t *dst)
{
    const __m256i rot16 = _mm256_set_epi8(13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2,
                                          13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2);
    const __m256i rot8 = _mm256_set_epi8(14, 13, 12, 15, 10, 9, 8, 11, 6, 5, 4, 7, 2, 1, 0, 3,
                                         14, 13, 12, 15, 10, 9, 8, 11, 6, 5, 4, 7, 2, 1, 0, 3);
    const __m256i lanes = _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0);
    __m256i x[16];
    for (int i = 0; i < 16; i++)
        x[i] = _mm256_set1_epi32((int)st[i]);
    x[12] = _mm256_add_epi32(x[12], lanes);
    for (int i = 0; i < 10; i++) {
        QR_AVX2(x[0], x[4], x[8], x[12]);
        QR_AVX2(x[1], x[5], x[9], x[13]);
        QR_AVX2(x[2], x[6], x[10], x[14]);
        QR_AVX2(x[3], x[7], x[11], x[15]);
        QR_AVX2(x[0], x[5], x[10], x[15]);
        QR_AVX2(x[1], x[6], x[11], x[12]);
        QR_AVX2(x[2], x[7], x[8], x[13]);
        QR_AVX2(x[3], x[4], x[9], x[14]);
    }
    for (int i = 0; i < 16; i++)
        x[i] = _mm256_add_epi32(x[i], _mm256_set1_epi32((int)st[i]));
    x[12] = _mm256_add_epi32(x[12], lanes);
    for (int g = 0; g < 4; g++)
        TRANSPOSE_AVX2(x[4 * g], x[4 * g + 1], x[4 * g + 2], x[4 * g + 3]);
    /* x[4g + b]: low half bytes 16g.. of block b, high half the same of block b + 4. */
    for (int b = 0; b < 4; b++) {
        for (int half = 0; half < 2; half++) {      /* half 0: bytes 0..31, 1: 32..63 */
            __m256i lo = _mm256_permute2x128_si256(x[8 * half + b], x[8 * half + 4 + b], 0x20);
            __m256i hi = _mm256_permute2x128_si256(x[8 * half + b], x[8 * half + 4 + b], 0x31);
            const uint8_t *in0 = src + 64 * b + 32 * half, *in1 = in0 + 256;
            uint8_t *out0 = dst + 64 * b + 32 * half, *out1 = out0 + 256;
            _mm256_storeu_si256((__m256i_u *)out0,
                                _mm256_xor_si256(_mm256_loadu_si256((const __m256i_u *)in0), lo));
            _mm256_storeu_si256((__m256i_u *)out1,
                                _mm256_xor_si256(_mm256_loadu_si256((const __m256i_u *)in1), hi));
        }
    }
    _mm256_zeroupper();     /* no AVX-to-SSE transition penalty in whatever runs next */
}

#endif
