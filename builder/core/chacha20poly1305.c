/*
 * ChaCha20-Poly1305 AEAD, freestanding.
 *
 * Written from RFC 8439 ("the RFC" below); section numbers are the RFC's.
 *
 * ChaCha20 (2.3, 2.4): the 16-word state lives in our context with the block
 * counter in word 12; each 64-byte keystream block is computed in 16 scalar
 * 32-bit variables and XORed into the data 8 bytes at a time (two state words
 * make one little-endian 64-bit word, 2.3's serialization).
 *
 * Poly1305 (2.5): the accumulator is h = h0 + h1*2^64 + h2*2^128 (h2 small),
 * r = r0 + r1*2^64 (clamped). Products are 64x64->128 (unsigned __int128,
 * plain mul instructions). Because 2^130 = 5 (mod p) and clamping leaves the
 * low two bits of r1 clear, a term x*r1*2^128 equals x*(r1/4)*2^130 = x *
 * (5*r1/4) = x*s1 with s1 = r1 + (r1 >> 2), exactly; so one block step is
 *     d0 = h0*r0 + h1*s1
 *     d1 = h0*r1 + h1*r0 + h2*s1
 *     d2 = h2*r0
 * then the bits of h above 2^130 are folded back in multiplied by 5. Bounds
 * (r0, r1 < 2^60 from clamping; h2 <= 6 before a multiply, <= 4 after the
 * fold) keep every sum below 2^127. The result is reduced completely only at
 * the end (h < 5*2^128 < 2p, so one conditional subtraction of p). No branch
 * or memory access depends on secret data.
 *
 * AEAD (2.8): Poly1305 runs over aad | pad16 | ciphertext | pad16 | le64
 * aad_len | le64 ct_len, with the one-time key from 2.6 (ChaCha20 block 0);
 * the data is encrypted from block counter 1. Sealing MACs each 64-byte
 * ciphertext block right after producing it (one pass over the data);
 * opening MACs the whole ciphertext first and decrypts only if the tag
 * matches (two passes; the buffer is untouched on failure). Verifying is
 * opening without the decryption: the tag is computed over the ciphertext,
 * so only ChaCha20 block 0 (the one-time key) is needed, never the
 * keystream of the data.
 *
 * Word loads and stores are builder/lib/le.h's (plain unaligned moves); the only
 * out-of-line calls are memcpy/memset on tails and for wiping.
 */
#include "chacha20poly1305.h"
#include "chacha20_simd.h"
#include "../lib/le.h"

#include <stddef.h>
#if __STDC_HOSTED__
#include <string.h>
#else
#include "../lib/string.h"
#endif

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "chacha20poly1305.c assumes a little-endian CPU"
#endif

/* ---- RFC constants -------------------------------------------------------- */
/* 2.3: "The first four words (0-3) are constants: 0x61707865, 0x3320646e,
 * 0x79622d32, 0x6b206574." */
#define CHACHA_CONST0 0x61707865u
#define CHACHA_CONST1 0x3320646eu
#define CHACHA_CONST2 0x79622d32u
#define CHACHA_CONST3 0x6b206574u
#define CHACHA_BLOCK_SIZE    64  /* 2.3: "The output is 64 random-looking bytes." */
#define CHACHA_DOUBLE_ROUNDS 10  /* 2.3: 20 rounds, "10 iterations of the above list" */
#define CHACHA_COUNTER_WORD  12  /* 2.3: "Word 12 is a block counter." */
#define AEAD_FIRST_COUNTER   1   /* 2.8: encrypt "with the initial counter set to 1" */
#define OTK_COUNTER          0   /* 2.6: "The block counter is set to zero." */
#define POLY_BLOCK_SIZE      16  /* 2.5: "divide the message into 16-byte blocks" */
/* 2.5.1: clamp(r): r &= 0x0ffffffc0ffffffc0ffffffc0fffffff, as two 64-bit halves. */
#define POLY_CLAMP_LO 0x0ffffffc0fffffffull
#define POLY_CLAMP_HI 0x0ffffffc0ffffffcull
/* 2.5: P = 2^130 - 5; 2^130 = POLY_P_FOLD (mod P). */
#define POLY_P_FOLD   5u

#define ALWAYS_INLINE inline __attribute__((always_inline))

typedef unsigned __int128 u128;

/* Clear secrets; the empty asm keeps the compiler from dropping the memset. */
static void wipe(void *p, size_t n)
{
    memset(p, 0, n);
    __asm__ __volatile__("" : : "r"(p) : "memory");
}

/* ---- ChaCha20 (2.1-2.4) ---------------------------------------------------- */

/* 2.1: "<<< n denotes an n-bit left roll" (n is 7, 8, 12 or 16 here). */
#define ROTL32(v, n) (((v) << (n)) | ((v) >> (32 - (n))))

/* 2.1: the quarter round. */
#define QUARTERROUND(a, b, c, d) do {             \
        a += b; d ^= a; d = ROTL32(d, 16);        \
        c += d; b ^= c; b = ROTL32(b, 12);        \
        a += b; d ^= a; d = ROTL32(d, 8);         \
        c += d; b ^= c; b = ROTL32(b, 7);         \
    } while (0)

/* 2.3: state = constants | key | counter | nonce, all little-endian words. */
static void chacha_init(uint32_t st[16], const uint8_t key[32], uint32_t counter,
                        const uint8_t nonce[12])
{
    st[0] = CHACHA_CONST0;
    st[1] = CHACHA_CONST1;
    st[2] = CHACHA_CONST2;
    st[3] = CHACHA_CONST3;
    for (int i = 0; i < 8; i++)
        st[4 + i] = le_load32(key + 4 * i);
    st[CHACHA_COUNTER_WORD] = counter;
    st[13] = le_load32(nonce);
    st[14] = le_load32(nonce + 4);
    st[15] = le_load32(nonce + 8);
}

/* 2.3 / 2.3.1: ks = inner_block^10(st) + st (word-wise, mod 2^32). */
static ALWAYS_INLINE void chacha_core(const uint32_t st[16], uint32_t ks[16])
{
    uint32_t x0 = st[0], x1 = st[1], x2 = st[2], x3 = st[3];
    uint32_t x4 = st[4], x5 = st[5], x6 = st[6], x7 = st[7];
    uint32_t x8 = st[8], x9 = st[9], x10 = st[10], x11 = st[11];
    uint32_t x12 = st[12], x13 = st[13], x14 = st[14], x15 = st[15];
    for (int i = 0; i < CHACHA_DOUBLE_ROUNDS; i++) {
        /* column round */
        QUARTERROUND(x0, x4, x8, x12);
        QUARTERROUND(x1, x5, x9, x13);
        QUARTERROUND(x2, x6, x10, x14);
        QUARTERROUND(x3, x7, x11, x15);
        /* diagonal round */
        QUARTERROUND(x0, x5, x10, x15);
        QUARTERROUND(x1, x6, x11, x12);
        QUARTERROUND(x2, x7, x8, x13);
        QUARTERROUND(x3, x4, x9, x14);
    }
    ks[0] = x0 + st[0];    ks[1] = x1 + st[1];    ks[2] = x2 + st[2];    ks[3] = x3 + st[3];
    ks[4] = x4 + st[4];    ks[5] = x5 + st[5];    ks[6] = x6 + st[6];    ks[7] = x7 + st[7];
    ks[8] = x8 + st[8];    ks[9] = x9 + st[9];    ks[10] = x10 + st[10]; ks[11] = x11 + st[11];
    ks[12] = x12 + st[12]; ks[13] = x13 + st[13]; ks[14] = x14 + st[14]; ks[15] = x15 + st[15];
}

/* The same, out of line, for the once-per-message blocks (one-time key, last partial
 * block, chacha20_block): only the bulk loop needs the rounds inlined, and each inlined
 * copy costs about 900 bytes of a blob that must stay within 64 KiB. */
static __attribute__((noinline)) void chacha_core_once(const uint32_t st[16], uint32_t ks[16])
{
    chacha_core(st, ks);
}

/* 2.4: dst[0..64) = src[0..64) ^ one keystream block; advances the counter.
 * Words 2i and 2i+1 serialized little-endian are one little-endian u64. */
static ALWAYS_INLINE void chacha_xor64(uint32_t st[16], const uint8_t *src, uint8_t *dst)
{
    uint32_t ks[16];
    chacha_core(st, ks);
    st[CHACHA_COUNTER_WORD]++;
#define XOR8(i) le_store64(dst + 8 * (i), le_load64(src + 8 * (i)) ^ \
                        ((uint64_t)ks[2 * (i)] | (uint64_t)ks[2 * (i) + 1] << 32))
    XOR8(0); XOR8(1); XOR8(2); XOR8(3); XOR8(4); XOR8(5); XOR8(6); XOR8(7);
#undef XOR8
}

/* The last len (< 64) bytes of a message; 2.4: "If there is extra keystream
 * from the last block, it is discarded." On a little-endian CPU the bytes of
 * ks[] in memory are the serialized block. */
static void chacha_xor_tail(uint32_t st[16], const uint8_t *src, uint8_t *dst, size_t len)
{
    uint32_t ks[16];
    chacha_core_once(st, ks);
    st[CHACHA_COUNTER_WORD]++;
    const uint8_t *k = (const uint8_t *)ks;
    for (size_t i = 0; i < len; i++)
        dst[i] = src[i] ^ k[i];
    wipe(ks, sizeof ks);
}

/* The keystream path in use (CHACHA20_SCALAR until chacha20_use picks another). Set once
 * by the boot CPU before any other CPU runs ChaCha20, only read afterwards. */
static int chacha_impl = CHACHA20_SCALAR;

int chacha20_use(int impl)
{
    if (impl >= CHACHA20_SCALAR && impl <= CHACHA20_AVX2)
        chacha_impl = impl;
    return chacha_impl;
}

/* 2.4: XOR nblocks whole blocks with the keystream from the current counter on: 8 or 4
 * blocks at a time in vector registers where chacha_impl allows, the rest one by one.
 * The counter wraps modulo 2^32 in every path alike (RFC 8439 2.3: a 32-bit word). */
static __attribute__((noinline)) void chacha_xor_blocks(uint32_t st[16], const uint8_t *src,
                                                        uint8_t *dst, size_t nblocks)
{
    const int impl = chacha_impl;
    if (impl >= CHACHA20_AVX2)
        for (; nblocks >= 8; nblocks -= 8, src += 8 * CHACHA_BLOCK_SIZE,
             dst += 8 * CHACHA_BLOCK_SIZE) {
            chacha_xor8_avx2(st, src, dst);
            st[CHACHA_COUNTER_WORD] += 8;
        }
    if (impl >= CHACHA20_SSE2)
        for (; nblocks >= 4; nblocks -= 4, src += 4 * CHACHA_BLOCK_SIZE,
             dst += 4 * CHACHA_BLOCK_SIZE) {
            chacha_xor4_sse2(st, src, dst);
            st[CHACHA_COUNTER_WORD] += 4;
        }
    for (; nblocks; nblocks--, src += CHACHA_BLOCK_SIZE, dst += CHACHA_BLOCK_SIZE)
        chacha_xor64(st, src, dst);
}

/* 2.4: XOR len bytes with the keystream from the current counter on. */
static void chacha_xor_run(uint32_t st[16], const uint8_t *src, uint8_t *dst, size_t len)
{
    size_t whole = len / CHACHA_BLOCK_SIZE, rem = len % CHACHA_BLOCK_SIZE;
    chacha_xor_blocks(st, src, dst, whole);
    if (rem)
        chacha_xor_tail(st, src + whole * CHACHA_BLOCK_SIZE, dst + whole * CHACHA_BLOCK_SIZE, rem);
}

/* ---- Poly1305 (2.5) ---------------------------------------------------------- */

struct poly1305 {
    uint64_t r0, r1, s1;    /* clamped r; s1 = r1 + r1/4 (see the top comment) */
    uint64_t h0, h1, h2;    /* accumulator, partially reduced */
    uint64_t pad0, pad1;    /* s, added at the end */
};

/* 2.5: r = key[0..15] clamped, s = key[16..31], accumulator = 0. */
static void poly_init(struct poly1305 *p, const uint8_t key[32])
{
    p->r0 = le_load64(key) & POLY_CLAMP_LO;
    p->r1 = le_load64(key + 8) & POLY_CLAMP_HI;
    p->s1 = p->r1 + (p->r1 >> 2);
    p->h0 = p->h1 = p->h2 = 0;
    p->pad0 = le_load64(key + 16);
    p->pad1 = le_load64(key + 24);
}

/* 2.5: for each 16-byte block: Acc = ((Acc + block + hibit*2^128) * r) % P
 * (partially reduced). hibit is 1 for a full block ("add one bit beyond the
 * number of octets"), 0 for a final short block that carries its own 0x01. */
static inline void poly_blocks(struct poly1305 *p, const uint8_t *m, size_t nblocks,
                               uint64_t hibit)
{
    const uint64_t r0 = p->r0, r1 = p->r1, s1 = p->s1;
    uint64_t h0 = p->h0, h1 = p->h1, h2 = p->h2;

    for (; nblocks; nblocks--, m += POLY_BLOCK_SIZE) {
        /* Acc += block (64-bit adds with explicit carries: gcc handles
         * these better than 128-bit sums of zero-extended words) */
        uint64_t m0 = le_load64(m), m1 = le_load64(m + 8), c;
        h0 += m0;
        c = h0 < m0;
        h1 += c;
        c = h1 < c;
        h1 += m1;
        c += h1 < m1;
        h2 += c + hibit;                                /* h2 <= 6 */

        /* Acc *= r, the 2^128 and 2^192 terms folded through s1 */
        u128 d0 = (u128)h0 * r0 + (u128)h1 * s1;
        u128 d1 = (u128)h0 * r1 + (u128)h1 * r0 + h2 * s1;
        uint64_t d2 = h2 * r0;

        /* carry, then fold bits >= 130 back in: c*2^130 = 5*c (mod P) */
        h0 = (uint64_t)d0;
        d1 += (uint64_t)(d0 >> 64);
        h1 = (uint64_t)d1;
        h2 = (uint64_t)(d1 >> 64) + d2;
        c = (h2 >> 2) * POLY_P_FOLD;
        h2 &= 3;
        h0 += c;
        c = h0 < c;
        h1 += c;
        c = h1 < c;
        h2 += c;                                        /* h2 <= 4 */
    }
    p->h0 = h0;
    p->h1 = h1;
    p->h2 = h2;
}

/* 2.8: MAC len bytes followed by pad16 (zeros up to a multiple of 16). */
static void poly_padded(struct poly1305 *p, const uint8_t *m, size_t len)
{
    size_t full = len / POLY_BLOCK_SIZE, rem = len % POLY_BLOCK_SIZE;
    poly_blocks(p, m, full, 1);
    if (rem) {
        uint8_t b[POLY_BLOCK_SIZE];
        memset(b, 0, sizeof b);
        memcpy(b, m + full * POLY_BLOCK_SIZE, rem);
        poly_blocks(p, b, 1, 1);
    }
}

/* 2.5: reduce mod P fully, add s, serialize the low 128 bits little-endian. */
static void poly_finish(struct poly1305 *p, uint8_t tag[16])
{
    uint64_t h0 = p->h0, h1 = p->h1, h2 = p->h2;
    /* h < 5*2^128 < 2P: h mod P is h - P when h + 5 >= 2^130, else h. */
    u128 t = (u128)h0 + POLY_P_FOLD;
    uint64_t g0 = (uint64_t)t;
    t = (u128)h1 + (uint64_t)(t >> 64);
    uint64_t g1 = (uint64_t)t;
    uint64_t g2 = h2 + (uint64_t)(t >> 64);
    uint64_t use_g = 0 - (g2 >> 2);        /* all ones iff h >= P (g2 >> 2 is 0 or 1) */
    h0 = (h0 & ~use_g) | (g0 & use_g);
    h1 = (h1 & ~use_g) | (g1 & use_g);
    /* + s, mod 2^128 */
    t = (u128)h0 + p->pad0;
    h0 = (uint64_t)t;
    h1 = h1 + p->pad1 + (uint64_t)(t >> 64);
    le_store64(tag, h0);
    le_store64(tag + 8, h1);
}

/* ---- public pieces ------------------------------------------------------------ */

void chacha20_block(const uint8_t key[32], uint32_t counter, const uint8_t nonce[12],
                    uint8_t out[64])
{
    uint32_t st[16], ks[16];
    chacha_init(st, key, counter, nonce);
    chacha_core_once(st, ks);
    for (int i = 0; i < 16; i++)
        le_store32(out + 4 * i, ks[i]);
    wipe(st, sizeof st);
    wipe(ks, sizeof ks);
}

void chacha20_xor(const uint8_t key[32], uint32_t counter, const uint8_t nonce[12],
                  const uint8_t *src, uint8_t *dst, size_t len)
{
    uint32_t st[16];
    chacha_init(st, key, counter, nonce);
    chacha_xor_run(st, src, dst, len);
    wipe(st, sizeof st);
}

void poly1305_mac(const uint8_t key[32], const uint8_t *msg, size_t len, uint8_t tag[16])
{
    struct poly1305 p;
    poly_init(&p, key);
    size_t full = len / POLY_BLOCK_SIZE, rem = len % POLY_BLOCK_SIZE;
    poly_blocks(&p, msg, full, 1);
    if (rem) {
        /* 2.5: a short last block gets its 0x01 byte right after the data. */
        uint8_t b[POLY_BLOCK_SIZE];
        memset(b, 0, sizeof b);
        memcpy(b, msg + full * POLY_BLOCK_SIZE, rem);
        b[rem] = 1;
        poly_blocks(&p, b, 1, 0);
    }
    poly_finish(&p, tag);
    wipe(&p, sizeof p);
}

void poly1305_key_gen(const uint8_t key[32], const uint8_t nonce[12], uint8_t otk[32])
{
    uint8_t block[CHACHA_BLOCK_SIZE];
    chacha20_block(key, OTK_COUNTER, nonce, block);   /* 2.6.1: block[0..31] */
    memcpy(otk, block, 32);
    wipe(block, sizeof block);
}

/* ---- AEAD (2.8) -------------------------------------------------------------- */

struct aead_ctx {
    uint32_t st[16];           /* ChaCha20 state, counter at AEAD_FIRST_COUNTER and up */
    struct poly1305 mac;
};

/* 2.6 / 2.8: the Poly1305 one-time key is the first 32 bytes of ChaCha20
 * block 0; the data is then encrypted from counter 1. Out of line so its
 * frame is gone before the data is touched. */
static __attribute__((noinline)) void aead_keys(struct aead_ctx *c, const uint8_t key[32],
                                                const uint8_t nonce[12])
{
    uint32_t ks[16];
    chacha_init(c->st, key, OTK_COUNTER, nonce);
    chacha_core_once(c->st, ks);
    poly_init(&c->mac, (const uint8_t *)ks);   /* little-endian: ks[0..7] serialized */
    wipe(ks, sizeof ks);
    c->st[CHACHA_COUNTER_WORD] = AEAD_FIRST_COUNTER;
}

/* One-time key and counter, then aad | pad16 into the MAC. */
static void aead_begin(struct aead_ctx *c, const uint8_t key[32], const uint8_t nonce[12],
                       const uint8_t *aad, size_t aad_len)
{
    aead_keys(c, key, nonce);
    poly_padded(&c->mac, aad, aad_len);
}

/* 2.8: le64(aad_len) | le64(ct_len), then the tag; wipes the MAC state. */
static void mac_end(struct poly1305 *p, size_t aad_len, size_t ct_len, uint8_t tag[16])
{
    uint8_t lens[POLY_BLOCK_SIZE];
    le_store64(lens, (uint64_t)aad_len);
    le_store64(lens + 8, (uint64_t)ct_len);
    poly_blocks(p, lens, 1, 1);
    poly_finish(p, tag);
    wipe(p, sizeof *p);
}

/* Encrypt src -> dst and MAC the ciphertext as it is produced, nblocks whole
 * 64-byte blocks. Kept out of line so its frame (the ChaCha20 working set)
 * is never stacked on top of the tail helpers' frames. */
static __attribute__((noinline)) void seal_blocks(struct aead_ctx *c, const uint8_t *src,
                                                  uint8_t *dst, size_t nblocks)
{
    /* Runs of up to 8 blocks (one AVX2 step; 512 bytes, still in L1 when the MAC reads
     * them back). */
    while (nblocks) {
        size_t n = nblocks < 8 ? nblocks : 8;
        chacha_xor_blocks(c->st, src, dst, n);
        poly_blocks(&c->mac, dst, n * (CHACHA_BLOCK_SIZE / POLY_BLOCK_SIZE), 1);
        nblocks -= n;
        src += n * CHACHA_BLOCK_SIZE;
        dst += n * CHACHA_BLOCK_SIZE;
    }
}

/* seal_blocks for any length; only the last run of a message may have a
 * length that is not a multiple of 64. */
static void seal_run(struct aead_ctx *c, const uint8_t *src, uint8_t *dst, size_t len)
{
    size_t whole = len / CHACHA_BLOCK_SIZE, rem = len % CHACHA_BLOCK_SIZE;
    seal_blocks(c, src, dst, whole);
    if (rem) {
        src += whole * CHACHA_BLOCK_SIZE;
        dst += whole * CHACHA_BLOCK_SIZE;
        chacha_xor_tail(c->st, src, dst, rem);
        poly_padded(&c->mac, dst, rem);
    }
}

/* 2.5 / 4: compare tags in constant time; 0 when equal. */
static int tag_differs(const uint8_t a[16], const uint8_t b[16])
{
    uint64_t d = (le_load64(a) ^ le_load64(b)) | (le_load64(a + 8) ^ le_load64(b + 8));
    __asm__ ("" : "+r"(d));   /* no early exit can be derived from d */
    return (int)((d | (0 - d)) >> 63);
}

void aead_seal_copy(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
                    size_t aad_len, const uint8_t *src, uint8_t *dst, size_t len,
                    uint8_t tag[16])
{
    struct aead_ctx c;
    aead_begin(&c, key, nonce, aad, aad_len);
    seal_run(&c, src, dst, len);
    mac_end(&c.mac, aad_len, len, tag);
    wipe(c.st, sizeof c.st);
}

void aead_seal(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad, size_t aad_len,
               uint8_t *buf, size_t len, uint8_t tag[16])
{
    aead_seal_copy(key, nonce, aad, aad_len, buf, buf, len, tag);
}

void aead_seal_pages(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
                     size_t aad_len, const uint8_t *const *pages, unsigned npages,
                     uint8_t *dst, uint8_t tag[16])
{
    _Static_assert(AEAD_PAGE_SIZE % CHACHA_BLOCK_SIZE == 0, "pages are whole ChaCha20 blocks");
    struct aead_ctx c;
    aead_begin(&c, key, nonce, aad, aad_len);
    for (unsigned i = 0; i < npages; i++)
        seal_run(&c, pages[i], dst + (size_t)i * AEAD_PAGE_SIZE, AEAD_PAGE_SIZE);
    mac_end(&c.mac, aad_len, (size_t)npages * AEAD_PAGE_SIZE, tag);
    wipe(c.st, sizeof c.st);
}

/* One-time key, then the MAC of aad and ciphertext against `tag`: 0 when it matches. The
 * ChaCha20 state is left at counter AEAD_FIRST_COUNTER for the caller to decrypt with, or
 * to wipe. */
static int tag_check(struct aead_ctx *c, const uint8_t key[32], const uint8_t nonce[12],
                     const uint8_t *aad, size_t aad_len, const uint8_t *src, size_t len,
                     const uint8_t tag[16])
{
    uint8_t want[AEAD_TAG_SIZE];
    aead_begin(c, key, nonce, aad, aad_len);
    poly_padded(&c->mac, src, len);         /* 2.8: the MAC covers the ciphertext */
    mac_end(&c->mac, aad_len, len, want);
    int bad = tag_differs(want, tag);
    wipe(want, sizeof want);
    return bad;
}

int aead_open_copy(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
                   size_t aad_len, const uint8_t *src, uint8_t *dst, size_t len,
                   const uint8_t tag[16])
{
    struct aead_ctx c;
    int bad = tag_check(&c, key, nonce, aad, aad_len, src, len, tag);
    if (!bad)
        chacha_xor_run(c.st, src, dst, len);
    wipe(c.st, sizeof c.st);
    return bad ? -1 : 0;
}

int aead_verify(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
                size_t aad_len, const uint8_t *src, size_t len, const uint8_t tag[16])
{
    struct aead_ctx c;
    int bad = tag_check(&c, key, nonce, aad, aad_len, src, len, tag);
    wipe(c.st, sizeof c.st);
    return bad ? -1 : 0;
}

int aead_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad, size_t aad_len,
              uint8_t *buf, size_t len, const uint8_t tag[16])
{
    return aead_open_copy(key, nonce, aad, aad_len, buf, buf, len, tag);
}
