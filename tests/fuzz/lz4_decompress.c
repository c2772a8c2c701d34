/*
 * libFuzzer harness for lz4_decompress_safe() and lz4_decoded_size()
 * (builder/core/lz4.c), the LZ4 decoder the resume loader uses on blocks read
 * from disk.
 *
 * Input: u16 little-endian dst_cap, then the block (any bytes).
 *
 * Checks, on every input:
 *  - no access outside src[0..src_len) or dst[0..dst_cap): both are heap
 *    blocks of exactly those sizes, so AddressSanitizer aborts on any overread
 *    or overwrite; UBSan aborts on undefined behaviour;
 *  - the result is -1 or a size in 0..dst_cap;
 *  - lz4_decoded_size(), which the resume loader's verify pass uses to prove a block
 *    decodes before any page is written, returns exactly the same;
 *  - the verdict and output equal a plain reading of the block format spec
 *    (spec_decode below: literals and matches, offset 1..output so far, the
 *    block ends right after the literals of a sequence);
 *  - when liblz4's LZ4_decompress_safe() and the spec both accept a block, we
 *    accept it with the same output as liblz4. The two may differ otherwise:
 *    liblz4 rejects some blocks that break the spec's end-of-block
 *    restrictions 2 and 3 (a decoder may; we decode those, lz4.h says so), and
 *    liblz4 1.9.4 accepts some blocks with a match offset of 0, which the spec
 *    calls invalid (input 0a 2a a9 a9 a9 a9 a9 12 00 00 00 45 00 00 00 45 01 00
 *    00 00: ten literals, then offset 0; liblz4 decodes 27 bytes, we reject).
 *
 * Built by tests/test_fuzz_c.py and bench/fuzz_long.sh (tests/fuzz/build.py):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
 *         tests/fuzz/lz4_decompress.c builder/core/lz4.c -llz4
 */
#include <lz4.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../builder/core/lz4.h"

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "lz4_decompress harness: check failed: %s (line %d)\n",  \
                    #cond, __LINE__);                                                \
            abort();                                                                 \
        }                                                                            \
    } while (0)

/* The block format spec, read plainly; -1 = reject. */
static int spec_decode(const uint8_t *s, size_t n, uint8_t *out, size_t cap)
{
    size_t ip = 0, op = 0;
    if (n == 0)
        return -1;
    for (;;) {
        if (ip >= n)
            return -1; /* ended after a match */
        uint8_t token = s[ip++];
        size_t lit = token >> 4;
        if (lit == 15) {
            uint8_t b;
            do {
                if (ip >= n)
                    return -1;
                b = s[ip++];
                lit += b;
            } while (b == 255);
        }
        if (lit > n - ip || lit > cap - op)
            return -1;
        memcpy(out + op, s + ip, lit);
        op += lit;
        ip += lit;
        if (ip == n)
            return (int)op;
        if (n - ip < 2)
            return -1;
        size_t off = s[ip] | (size_t)s[ip + 1] << 8;
        ip += 2;
        if (off == 0 || off > op)
            return -1;
        size_t ml = token & 15;
        if (ml == 15) {
            uint8_t b;
            do {
                if (ip >= n)
                    return -1;
                b = s[ip++];
                ml += b;
            } while (b == 255);
        }
        ml += 4;
        if (ml > cap - op)
            return -1;
        for (size_t i = 0; i < ml; i++, op++)
            out[op] = out[op - off];
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t cap = data[0] | (size_t)data[1] << 8;
    size_t n = size - 2;
    /* Exact-size heap copies: ASan reports a read one byte past either. */
    uint8_t *src = malloc(n ? n : 1);
    uint8_t *dst = malloc(cap ? cap : 1);
    uint8_t *want = malloc(cap ? cap : 1);
    uint8_t *ref = malloc(cap ? cap : 1);
    CHECK(src && dst && want && ref);
    memcpy(src, data + 2, n);
    memset(dst, 0xA5, cap ? cap : 1);

    int r = lz4_decompress_safe(src, (int)n, dst, (int)cap);
    CHECK(r == -1 || (r >= 0 && (size_t)r <= cap));

    /* lz4_decoded_size: the resume loader's verify pass trusts it to predict the
     * decoder's answer exactly, reading only src[0..n). */
    CHECK(lz4_decoded_size(src, (int)n, (int)cap) == r);

    int s = spec_decode(src, n, want, cap);
    CHECK(r == s);
    if (r > 0)
        CHECK(memcmp(dst, want, (size_t)r) == 0);

    int l = LZ4_decompress_safe((const char *)src, (char *)ref, (int)n, (int)cap);
    if (l >= 0 && s >= 0) {
        CHECK(r == l);
        CHECK(memcmp(dst, ref, (size_t)l) == 0);
    }
    free(src);
    free(dst);
    free(want);
    free(ref);
    return 0;
}
