/*
 * compress_bench — our LZ4 block compressor (builder/core/lz4.c) against
 * liblz4's LZ4_compress_default, in one process, on the same chunks.
 *
 *   compress_bench CORPUS [CHUNK [REPS [PATH]]]
 *
 * PATH: our match-length path, "auto" (default: what the payload picks on this CPU, AVX2
 * where the CPU has it, builder/core/vector.c), "scalar" or "avx2".
 * Times are the thread's CPU time (CLOCK_THREAD_CPUTIME_ID): on a shared machine the wall
 * clock also counts the time other processes ran, the CPU time only ours.
 *
 * Every repetition compresses every chunk of CORPUS with both, chunk by chunk
 * back to back (alternating which goes first), timing each call; the median
 * total time over the repetitions gives MB/s (1 MB = 10^6 bytes of input) and
 * speed_ratio is the median over repetitions of liblz4 time / our time. Both outputs are checked to decode back to
 * the input with liblz4's LZ4_decompress_safe and with ours, and compared byte for byte
 * (identical_output). Decompression
 * speed of both decoders on liblz4's output is measured the same way.
 * Prints one JSON object on stdout.
 */
#define _POSIX_C_SOURCE 200809L
#include <lz4.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/lz4.h"

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

static void die(const char *msg)
{
    fprintf(stderr, "compress_bench: %s\n", msg);
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        die("usage: compress_bench CORPUS [CHUNK [REPS]]");
    size_t chunk = argc > 2 ? strtoul(argv[2], NULL, 0) : 65536;
    int reps = argc > 3 ? atoi(argv[3]) : 7;
    if (chunk == 0 || chunk > LZ4_MAX_INPUT_SIZE || reps < 1)
        die("bad chunk size or repetitions");
    const char *want = argc > 4 ? argv[4] : "auto";
    int path = !strcmp(want, "scalar") ? LZ4_SCALAR : !strcmp(want, "avx2") ? LZ4_AVX2
             : !strcmp(want, "auto") ? (__builtin_cpu_supports("avx2") ? LZ4_AVX2 : LZ4_SCALAR)
             : -1;
    if (path < 0)
        die("PATH is auto, scalar or avx2");
    if (path == LZ4_AVX2 && !__builtin_cpu_supports("avx2"))
        die("this CPU has no AVX2");
    lz4_use(path);

    FILE *f = fopen(argv[1], "rb");
    if (!f)
        die("cannot open corpus");
    fseek(f, 0, SEEK_END);
    long flen = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (flen <= 0)
        die("empty corpus");
    size_t n = (size_t)flen;
    uint8_t *in = malloc(n);
    if (!in || fread(in, 1, n, f) != n)
        die("cannot read corpus");
    fclose(f);

    size_t nchunks = (n + chunk - 1) / chunk;
    int cap = LZ4_COMPRESSBOUND((int)chunk);
    uint8_t *out_ours = malloc((size_t)cap * nchunks);
    uint8_t *out_ref = malloc((size_t)cap * nchunks);
    int *len_ours = malloc(sizeof(int) * nchunks);
    int *len_ref = malloc(sizeof(int) * nchunks);
    uint8_t *back = malloc(chunk + 64);
    static uint64_t work[LZ4_WORK_SIZE / 8];
    double *t_ours = malloc(sizeof(double) * (size_t)reps);
    double *t_ref = malloc(sizeof(double) * (size_t)reps);
    double *d_ours = malloc(sizeof(double) * (size_t)reps);
    double *d_ref = malloc(sizeof(double) * (size_t)reps);
    double *ratio = malloc(sizeof(double) * (size_t)reps);
    if (!out_ours || !out_ref || !len_ours || !len_ref || !back || !t_ours || !t_ref || !d_ours || !d_ref || !ratio)
        die("out of memory");

    /* Chunk by chunk, both compressors back to back (alternating which goes
     * first), so that frequency changes and other load hit both alike. */
    for (int r = 0; r < reps; r++) {
        double to = 0, tr = 0;
        for (size_t i = 0; i < nchunks; i++) {
            const uint8_t *src = in + i * chunk;
            int sl = (int)(i + 1 < nchunks ? chunk : n - i * chunk);
            for (int pass = 0; pass < 2; pass++) {
                int ours = (pass == 0) == ((r + i) % 2 == 0);
                double t0 = now();
                if (ours)
                    len_ours[i] = lz4_compress(src, sl, out_ours + i * (size_t)cap, cap, work);
                else
                    len_ref[i] = LZ4_compress_default((const char *)src,
                                                      (char *)out_ref + i * (size_t)cap, sl, cap);
                double dt = now() - t0;
                if (ours)
                    to += dt;
                else
                    tr += dt;
            }
        }
        t_ours[r] = to;
        t_ref[r] = tr;
        ratio[r] = tr / to;
    }

    /* Correctness: both outputs decode back with both decoders. */
    unsigned long long tot_ours = 0, tot_ref = 0;
    int identical = 1;              /* our blocks are liblz4's, byte for byte */
    for (size_t i = 0; i < nchunks; i++) {
        const uint8_t *src = in + i * chunk;
        int sl = (int)(i + 1 < nchunks ? chunk : n - i * chunk);
        if (len_ours[i] <= 0 || len_ref[i] <= 0)
            die("a compressor failed");
        if (len_ours[i] != len_ref[i] ||
            memcmp(out_ours + i * (size_t)cap, out_ref + i * (size_t)cap, (size_t)len_ours[i]))
            identical = 0;
        tot_ours += (unsigned)len_ours[i];
        tot_ref += (unsigned)len_ref[i];
        if (LZ4_decompress_safe((const char *)out_ours + i * (size_t)cap, (char *)back,
                                len_ours[i], sl) != sl || memcmp(back, src, (size_t)sl))
            die("liblz4 cannot decode our block");
        if (lz4_decompress_safe(out_ours + i * (size_t)cap, len_ours[i], back, sl) != sl ||
            memcmp(back, src, (size_t)sl))
            die("our decoder cannot decode our block");
        if (lz4_decompress_safe(out_ref + i * (size_t)cap, len_ref[i], back, sl) != sl ||
            memcmp(back, src, (size_t)sl))
            die("our decoder cannot decode liblz4's block");
    }

    /* Decompression of liblz4's blocks by both decoders, the same way. */
    for (int r = 0; r < reps; r++) {
        double to = 0, tr = 0;
        for (size_t i = 0; i < nchunks; i++) {
            int sl = (int)(i + 1 < nchunks ? chunk : n - i * chunk);
            const uint8_t *c = out_ref + i * (size_t)cap;
            for (int pass = 0; pass < 2; pass++) {
                int ours = (pass == 0) == ((r + i) % 2 == 0);
                double t0 = now();
                if (ours)
                    lz4_decompress_safe(c, len_ref[i], back, sl);
                else
                    LZ4_decompress_safe((const char *)c, (char *)back, len_ref[i], sl);
                double dt = now() - t0;
                if (ours)
                    to += dt;
                else
                    tr += dt;
            }
        }
        d_ours[r] = to;
        d_ref[r] = tr;
    }

    double mo = median(t_ours, reps), mr = median(t_ref, reps);
    double dmo = median(d_ours, reps), dmr = median(d_ref, reps);
    double mr_ratio = median(ratio, reps);
    double mb = (double)n / 1e6;
    printf("{\"ours_path\": \"%s\", \"identical_output\": %s, ",
           path == LZ4_AVX2 ? "avx2" : "scalar", identical ? "true" : "false");
    printf("\"corpus_bytes\": %zu, \"chunk\": %zu, \"chunks\": %zu, \"reps\": %d, "
           "\"liblz4_version\": \"%s\", "
           "\"ours_mb_s\": %.1f, \"liblz4_mb_s\": %.1f, "
           "\"ours_bytes\": %llu, \"liblz4_bytes\": %llu, "
           "\"speed_ratio\": %.4f, \"size_ratio\": %.4f, "
           "\"ours_decomp_mb_s\": %.1f, \"liblz4_decomp_mb_s\": %.1f}\n",
           n, chunk, nchunks, reps, LZ4_versionString(),
           mb / mo, mb / mr, tot_ours, tot_ref, mr_ratio,
           (double)tot_ours / (double)tot_ref, mb / dmo, mb / dmr);
    return 0;
}
