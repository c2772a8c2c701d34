/*
 * chacha20poly1305 — the AEAD_CHACHA20_POLY1305 construction, freestanding.
 *
 * Written from RFC 8439 ("ChaCha20 and Poly1305 for IETF Protocols"); section
 * numbers below are the RFC's. Output is interchangeable with any RFC 8439
 * implementation: python's cryptography ChaCha20Poly1305(key).encrypt(nonce,
 * pt, aad) returns exactly our ciphertext || tag, and its decrypt() accepts it.
 *
 * One global (the keystream path, chacha20_use), no allocation, reentrant; no
 * SSE or AVX outside chacha20_simd.h's functions, which only run when chosen; at
 * most about 1.6 KiB of stack (AVX2 path; tests/test_chacha20poly1305.py measures it
 * from gcc's call graph). Assumes a little-endian CPU (x86-64). Key material
 * held in our own stack frames (ChaCha20 state, Poly1305 key) is wiped
 * before return.
 *
 * Lengths: one (key, nonce) encrypts at most 2^32 - 1 ChaCha20 blocks (2.8:
 * P_MAX = 274,877,906,880 bytes); the block counter is not checked.
 * Buffers: dst may equal src exactly; partial overlap is not supported.
 * A nonce MUST NOT be used twice with the same key (4).
 */
#ifndef SOS_CHACHA20POLY1305_H
#define SOS_CHACHA20POLY1305_H

#include <stddef.h>
#include <stdint.h>

#define AEAD_KEY_SIZE   32    /* 2.8: K_LEN is 32 octets */
#define AEAD_NONCE_SIZE 12    /* 2.8: N_MIN = N_MAX = 12 octets */
#define AEAD_TAG_SIZE   16    /* 2.8: a 128-bit tag */
#define AEAD_PAGE_SIZE  4096  /* one page of aead_seal_pages() (ours) */

/* ---- AEAD (2.8) ---------------------------------------------------------- */

/* In-place AEAD over one contiguous buffer. nonce: 12 bytes (RFC 8439 2.8).
 * aead_seal: buf[0..len) plaintext -> ciphertext, tag written.
 * aead_open: 0 = tag good, buf[0..len) ciphertext -> plaintext;
 *           -1 = bad tag, buf unchanged. The tag is compared in constant time.
 * aad may be NULL when aad_len is 0 (any pointer is fine then). */
void aead_seal(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad, size_t aad_len,
               uint8_t *buf, size_t len, uint8_t tag[16]);
int  aead_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad, size_t aad_len,
               uint8_t *buf, size_t len, const uint8_t tag[16]);

/* Copy forms: read src (never written, may be read-only memory), write dst;
 * dst == src is the in-place form. aead_open_copy leaves dst untouched on -1. */
void aead_seal_copy(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
                    size_t aad_len, const uint8_t *src, uint8_t *dst, size_t len,
                    uint8_t tag[16]);
int  aead_open_copy(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
                    size_t aad_len, const uint8_t *src, uint8_t *dst, size_t len,
                    const uint8_t tag[16]);

/* Tag only: 0 when tag is the AEAD tag of (aad, the ciphertext src[0..len)) under (key,
 * nonce), -1 otherwise; src is only read and no plaintext is produced. The MAC covers the
 * ciphertext (2.8), so this needs one ChaCha20 block (the one-time key, 2.6) instead of
 * len / 64: the cost of aead_open_copy() without its decryption. */
int  aead_verify(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
                 size_t aad_len, const uint8_t *src, size_t len, const uint8_t tag[16]);

/* Scatter form: the plaintext is the concatenation of npages pages of
 * AEAD_PAGE_SIZE bytes each, pages[0] first, anywhere in memory (read only);
 * the ciphertext (npages * AEAD_PAGE_SIZE bytes) goes to contiguous dst.
 * Same ciphertext and tag as aead_seal_copy() over the concatenation. */
void aead_seal_pages(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
                     size_t aad_len, const uint8_t *const *pages, unsigned npages,
                     uint8_t *dst, uint8_t tag[16]);

/* ---- the keystream path ------------------------------------------------ */

/* ChaCha20's keystream: scalar (the default), SSE2 (4 blocks in parallel) or AVX2 (8).
 * Every path gives the same bytes. chacha20_use(impl) selects one for every later call and
 * returns the one in use (unchanged for an unknown value). The caller must have made sure
 * the CPU and its control registers allow it (builder/core/vector.c in the payload); call
 * it before other CPUs use the AEAD, never while they do. */
enum { CHACHA20_SCALAR = 0, CHACHA20_SSE2 = 1, CHACHA20_AVX2 = 2 };
int chacha20_use(int impl);

/* ---- the pieces, for the known-answer tests ---------------------------- */

/* 2.3: the ChaCha20 block function; out = serialized state (64 bytes). */
void chacha20_block(const uint8_t key[32], uint32_t counter, const uint8_t nonce[12],
                    uint8_t out[64]);

/* 2.4: ChaCha20 encryption (= decryption) of len bytes starting at block
 * counter `counter`. dst may equal src. */
void chacha20_xor(const uint8_t key[32], uint32_t counter, const uint8_t nonce[12],
                  const uint8_t *src, uint8_t *dst, size_t len);

/* 2.5: Poly1305 of msg under a 32-byte one-time key (r || s). */
void poly1305_mac(const uint8_t key[32], const uint8_t *msg, size_t len, uint8_t tag[16]);

/* 2.6: the Poly1305 one-time key AEAD uses for (key, nonce). */
void poly1305_key_gen(const uint8_t key[32], const uint8_t nonce[12], uint8_t otk[32]);

#endif
