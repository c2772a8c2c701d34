/*
 * chacha_bench — the payload's ChaCha20 keystream paths (builder/core/chacha20poly1305.c,
 * compiled with the payload's flags) side by side: scalar, SSE2 and, where this CPU has
 * it, AVX2, each forced with chacha20_use.
 *
 *   chacha_bench [BYTES [REPS]]
 *
 * Per path and repetition: ChaCha20 alone (chacha20_xor) and the AEAD (aead_seal) over a
 * BYTES buffer, repeated for at least 0.2 s; the paths take turns within a repetition so
 * load hits all alike; times are the thread's CPU time (on a shared machine the wall clock
 * also counts other processes). Prints one JSON object: median MB/s (10^6 bytes of input per
 * second) per path and form, and each path's median ratio to scalar over repetitions.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/chacha20poly1305.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double rate(int form, uint8_t *buf, size_t n)
{
    static const uint8_t key[32] = {7}, nonce[12] = {9};
    uint8_t tag[16];
    size_t done = 0;
    double t0 = now(), t;
    do {
        for (int i = 0; i < 16; i++) {
            if (form == 0)
                chacha20_xor(key, 1, nonce, buf, buf, n);
            else
                aead_seal(key, nonce, NULL, 0, buf, n, tag);
            done += n;
        }
        t = now() - t0;
    } while (t < 0.2);
    return (double)done / t / 1e6;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 0) : 65536;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    if (n == 0 || reps < 1 || reps > 100) {
        fprintf(stderr, "chacha_bench: usage: chacha_bench [BYTES [REPS]]\n");
        return 2;
    }
    static const char *const name[3] = {"scalar", "sse2", "avx2"};
    int paths = __builtin_cpu_supports("avx2") ? 3 : 2;
    uint8_t *buf = calloc(1, n);
    double (*mb)[2][100] = calloc(3, sizeof *mb);
    if (!buf || !mb)
        return 3;
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < paths; k++) {
            int p = (k + r) % paths;
            if (chacha20_use(p) != p)
                return 4;
            for (int form = 0; form < 2; form++)
                mb[p][form][r] = rate(form, buf, n);
        }
    printf("{\"bytes\": %zu, \"reps\": %d", n, reps);
    for (int p = 0; p < paths; p++)
        for (int form = 0; form < 2; form++) {
            double ratio[100];
            for (int r = 0; r < reps; r++)
                ratio[r] = mb[p][form][r] / mb[0][form][r];
            const char *f = form ? "aead_seal" : "chacha20";
            printf(", \"%s_%s_mb_s\": %.1f, \"%s_%s_vs_scalar\": %.3f", name[p], f,
                   median(mb[p][form], reps), name[p], f, median(ratio, reps));
        }
    printf("}\n");
    return 0;
}
