/*
 * lz4 — LZ4 block compressor and bounds-checked decompressor, freestanding.
 *
 * Written from the LZ4 block format specification (lz4 doc/lz4_Block_format.md).
 * Output is a raw LZ4 *block* (no frame, no size prefix): python-lz4's
 * lz4.block.decompress(data, uncompressed_size=n) and liblz4's
 * LZ4_decompress_safe() read it, and lz4_decompress_safe() reads theirs.
 *
 * No globals, no allocation, no SSE; reentrant.
 */
#ifndef SOS_LZ4_H
#define SOS_LZ4_H

#include <stdint.h>

/* Size in bytes of the work area lz4_compress() needs (its hash table).
 * Any alignment of 4 or more; contents on entry do not matter (it is
 * cleared by lz4_compress), contents on return are garbage. */
#define LZ4_WORK_SIZE 16384

/* Largest input lz4_compress() accepts (a limit of ours, not of the format). */
#define LZ4_MAX_INPUT_SIZE 0x7E000000

/* Worst-case compressed size of n input bytes: a dst_cap of this always
 * succeeds. Same value as liblz4's LZ4_COMPRESSBOUND(n). */
#define LZ4_COMPRESS_BOUND(n) ((n) + (n) / 255 + 16)

/* The compressor's match-length count: scalar (the default) or AVX2 (32 bytes per
 * compare). Same output either way. lz4_use(path) selects one for every later call and
 * returns the one in use (unchanged for an unknown value); the caller must have made sure
 * the CPU and its XCR0 allow AVX2 (builder/core/vector.c in the payload), and call it
 * before other CPUs compress, never while they do. */
enum { LZ4_SCALAR = 0, LZ4_AVX2 = 2 };
int lz4_use(int path);

/*
 * Compress src[0..src_len) into dst[0..dst_cap) as one LZ4 block.
 * work: LZ4_WORK_SIZE bytes of scratch, 4-byte aligned.
 * Returns the compressed size (> 0), or 0 if the block does not fit in
 * dst_cap bytes (the caller then stores the data raw) or src_len is out of
 * range (< 0 or > LZ4_MAX_INPUT_SIZE). src_len == 0 gives a 1-byte block.
 * Never writes outside dst[0..dst_cap) and never reads outside
 * src[0..src_len), whatever it returns; dst contents are unspecified when it
 * returns 0.
 */
int lz4_compress(const uint8_t *src, int src_len, uint8_t *dst, int dst_cap,
                 void *work);

/* The work area lz4_compress_high() needs (hash heads and chain links). */
#define LZ4_HIGH_WORK_SIZE (8192 * 4 + 65536 * 2)

/*
 * Like lz4_compress() (same contract, any LZ4 decoder reads the block) with a slower,
 * more thorough match search: smaller output, not liblz4's bytes. work:
 * LZ4_HIGH_WORK_SIZE bytes, 4-byte aligned, contents irrelevant on entry.
 */
int lz4_compress_high(const uint8_t *src, int src_len, uint8_t *dst, int dst_cap,
                      void *work);

/*
 * Decompress one LZ4 block src[0..src_len) into dst[0..dst_cap).
 * Returns the decompressed size (0..dst_cap), or -1 if the block is malformed
 * or would decompress to more than dst_cap bytes. Never reads outside
 * src[0..src_len) and never writes outside dst[0..dst_cap), whatever the
 * input. It may use any of dst[0..dst_cap) as scratch: bytes after the
 * returned size, and all of dst on -1, are unspecified.
 * Blocks whose last sequence has a match (spec "End of block restrictions",
 * rule 1) are rejected; the other end-of-block rules are not enforced.
 */
int lz4_decompress_safe(const uint8_t *src, int src_len, uint8_t *dst,
                        int dst_cap);

/*
 * What lz4_decompress_safe(src, src_len, dst, dst_cap) would return (the decoded size or
 * -1), computed from the block's sequence structure alone: writes nothing, reads only
 * src[0..src_len). Several times faster than decoding.
 */
int lz4_decoded_size(const uint8_t *src, int src_len, int dst_cap);

#endif
