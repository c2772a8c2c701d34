/*
 * Sanitizer driver for builder/core/lz4.c (built by tests/test_lz4.py with
 * -fsanitize=address,undefined -fno-sanitize-recover=all).
 *
 * Reads requests from stdin until EOF, answers each on stdout:
 *   request:  u8 op ('D' decompress, 'C' compress), u32 src_len, u32 dst_cap,
 *             src_len bytes
 *   answer:   i32 result, then result bytes of output if result > 0
 * (little-endian). src and dst are heap buffers of exactly src_len and
 * dst_cap bytes, so any access outside them is reported by AddressSanitizer
 * and aborts the process.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../builder/core/lz4.h"

static int read_all(void *p, size_t n)
{
    return fread(p, 1, n, stdin) == n;
}

int main(void)
{
    static uint64_t work[LZ4_WORK_SIZE / 8];
    for (;;) {
        uint8_t op;
        uint32_t src_len, dst_cap;
        if (!read_all(&op, 1))
            return 0;
        if (!read_all(&src_len, 4) || !read_all(&dst_cap, 4))
            return 3;
        /* malloc(0) may return NULL; keep exact sizes but a valid pointer. */
        uint8_t *src = malloc(src_len ? src_len : 1);
        uint8_t *dst = malloc(dst_cap ? dst_cap : 1);
        if (!src || !dst)
            return 4;
        if (src_len && !read_all(src, src_len))
            return 3;
        /* Poison-free but garbage destination: results must not depend on it. */
        memset(dst, 0xA5, dst_cap ? dst_cap : 1);
        int32_t r;
        if (op == 'D')
            r = lz4_decompress_safe(src, (int)src_len, dst, (int)dst_cap);
        else if (op == 'C')
            r = lz4_compress(src, (int)src_len, dst, (int)dst_cap, work);
        else
            return 5;
        fwrite(&r, 4, 1, stdout);
        if (r > 0)
            fwrite(dst, 1, (size_t)r, stdout);
        fflush(stdout);
        free(src);
        free(dst);
    }
}
