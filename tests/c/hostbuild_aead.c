/*
 * Host driver for builder/core/chacha20poly1305.c, used by
 * tests/test_chacha20poly1305.py in two builds:
 *
 *  - with -fsanitize=address,undefined: `hostbuild_aead` serves requests from
 *    stdin until EOF, every buffer a heap block of exactly the size the call
 *    may touch, so any access outside them aborts the process;
 *  - with the payload's flags (the AEAD object compiled freestanding, this
 *    file hosted): `hostbuild_aead bench [BYTES [MIN_SECONDS]]` prints one
 *    JSON object of MB/s (1 MB = 10^6 bytes of plaintext) for each form.
 *
 * Request (little-endian): u8 op, key[32], nonce[12], u32 aad_len, u32 len,
 *   aad, data, then tag[16] for the open ops. op:
 *     'S' aead_seal (in place)      'C' aead_seal_copy (src read-only heap copy)
 *     'P' aead_seal_pages (len a multiple of 4096, every page its own block)
 *     'O' aead_open (in place)      'D' aead_open_copy
 * Answer: i32 result (0 for seal), the len bytes of the output buffer, then
 *   tag[16] (for open ops the tag sent).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../builder/core/chacha20poly1305.h"

static int read_all(void *p, size_t n)
{
    return n == 0 || fread(p, 1, n, stdin) == n;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);   /* exact size; a valid pointer even for 0 */
    if (!p) {
        fprintf(stderr, "hostbuild_aead: out of memory\n");
        exit(4);
    }
    return p;
}

static int serve(void)
{
    for (;;) {
        uint8_t op, key[32], nonce[12], tag[16];
        uint32_t aad_len, len;
        if (fread(&op, 1, 1, stdin) != 1)
            return 0;
        if (!read_all(key, 32) || !read_all(nonce, 12) || !read_all(&aad_len, 4) ||
            !read_all(&len, 4))
            return 3;
        uint8_t *aad = xmalloc(aad_len), *src = xmalloc(len), *dst = xmalloc(len);
        if (!read_all(aad, aad_len) || !read_all(src, len))
            return 3;
        if ((op == 'O' || op == 'D') && !read_all(tag, 16))
            return 3;
        memset(dst, 0xA5, len);
        int32_t r = 0;
        uint8_t *out = dst;
        switch (op) {
        case 'S':
            aead_seal(key, nonce, aad, aad_len, src, len, tag);
            out = src;
            break;
        case 'C':
            aead_seal_copy(key, nonce, aad, aad_len, src, dst, len, tag);
            break;
        case 'P': {
            if (len % AEAD_PAGE_SIZE)
                return 5;
            unsigned n = len / AEAD_PAGE_SIZE;
            const uint8_t **pages = xmalloc(n * sizeof *pages);
            for (unsigned i = 0; i < n; i++) {   /* scattered, in reverse order */
                uint8_t *pg = xmalloc(AEAD_PAGE_SIZE);
                memcpy(pg, src + (size_t)i * AEAD_PAGE_SIZE, AEAD_PAGE_SIZE);
                pages[i] = pg;
            }
            aead_seal_pages(key, nonce, aad, aad_len, pages, n, dst, tag);
            for (unsigned i = 0; i < n; i++)
                free((void *)pages[i]);
            free(pages);
            break;
        }
        case 'O':
            r = aead_open(key, nonce, aad, aad_len, src, len, tag);
            out = src;
            break;
        case 'D':
            r = aead_open_copy(key, nonce, aad, aad_len, src, dst, len, tag);
            break;
        default:
            return 5;
        }
        fwrite(&r, 4, 1, stdout);
        fwrite(out, 1, len, stdout);
        fwrite(tag, 1, 16, stdout);
        fflush(stdout);
        free(aad);
        free(src);
        free(dst);
    }
}

/* ---- benchmark ------------------------------------------------------------------ */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

enum { SEAL, SEAL_COPY, SEAL_PAGES, OPEN, CHACHA, POLY, NFORMS };
static const char *const form_name[NFORMS] = {
    "seal", "seal_copy", "seal_pages", "open", "chacha20_only", "poly1305_only"};

static void run_once(int form, size_t n, uint8_t *buf, uint8_t *dst,
                     const uint8_t *const *pages, uint8_t *tag, const uint8_t *key,
                     const uint8_t *nonce)
{
    static const uint8_t aad[16] = {1, 2, 3};
    switch (form) {
    case SEAL:       aead_seal(key, nonce, aad, sizeof aad, buf, n, tag); break;
    case SEAL_COPY:  aead_seal_copy(key, nonce, aad, sizeof aad, buf, dst, n, tag); break;
    case SEAL_PAGES: aead_seal_pages(key, nonce, aad, sizeof aad, pages,
                                     (unsigned)(n / AEAD_PAGE_SIZE), dst, tag); break;
    case OPEN:
        aead_seal(key, nonce, aad, sizeof aad, buf, n, tag);   /* timed separately below */
        break;
    case CHACHA:     chacha20_xor(key, 1, nonce, buf, buf, n); break;
    case POLY:       poly1305_mac(key, buf, n, tag); break;
    }
}

static int bench(size_t n, double min_seconds)
{
    n -= n % AEAD_PAGE_SIZE;
    if (!n)
        n = AEAD_PAGE_SIZE;
    uint8_t key[32], nonce[12], tag[16];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)(i * 7 + 1);
    memset(nonce, 0x42, sizeof nonce);
    uint8_t *buf = xmalloc(n), *dst = xmalloc(n);
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)(i * 131 + (i >> 9));
    unsigned np = (unsigned)(n / AEAD_PAGE_SIZE);
    const uint8_t **pages = xmalloc(np * sizeof *pages);
    for (unsigned i = 0; i < np; i++)
        pages[i] = buf + (size_t)(np - 1 - i) * AEAD_PAGE_SIZE;

    /* The machine may be shared: time every call and keep the fastest. */
    printf("{\"bytes\": %zu", n);
    for (int form = 0; form < NFORMS; form++) {
        double best = 1e30, t0 = now();
        do {
            double a, b;
            if (form == OPEN) {
                run_once(form, n, buf, dst, pages, tag, key, nonce);
                a = now();
                if (aead_open(key, nonce, (const uint8_t[16]){1, 2, 3}, 16, buf, n, tag)) {
                    fprintf(stderr, "hostbuild_aead: open failed\n");
                    return 6;
                }
            } else {
                a = now();
                run_once(form, n, buf, dst, pages, tag, key, nonce);
            }
            b = now();
            if (b - a < best)
                best = b - a;
        } while (now() - t0 < min_seconds);
        printf(", \"%s\": %.1f", form_name[form], (double)n / best / 1e6);
    }
    printf("}\n");
    free(pages);
    free(buf);
    free(dst);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "bench") == 0)
        return bench(argc > 2 ? (size_t)strtoull(argv[2], NULL, 0) : 65536,
                     argc > 3 ? strtod(argv[3], NULL) : 1.0);
    return serve();
}
