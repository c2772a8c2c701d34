/*
 * LZ4 block compressor and bounds-checked decompressor, freestanding.
 *
 * Written from the LZ4 block format specification, lz4 doc/lz4_Block_format.md
 * ("the spec" below). Section names quoted are the spec's.
 *
 * Compressor: greedy single-pass LZ77, one hash table of recent positions
 * (4-byte sequences, multiplicative hash of 4 bytes, of 5 for blocks over 64 KiB,
 * so the output is byte for byte liblz4's default), skip acceleration over data that
 * does not match, 8-byte "wild" literal copies, match length counted a word at
 * a time with count-trailing-zeros. Assumes a little-endian CPU (x86-64), as
 * the format's offsets are little-endian and we compare words by xor + ctz.
 *
 * Freestanding: one global (the match-length path, lz4_use), no allocation,
 * -mgeneral-regs-only safe outside match_len_avx2. Fixed-size
 * __builtin_memcpy calls become plain (unaligned) mov instructions; the only
 * out-of-line calls are memcpy/memset for variable sizes outside hot loops.
 */
#include "lz4.h"

#include "intrinsics.h"
#include <stddef.h>
#if __STDC_HOSTED__
#include <string.h>
#else
#include "../lib/string.h"
#endif

/* ---- spec constants ---------------------------------------------------- */
#define MINMATCH     4     /* "The minimum length of a match, called minmatch, is 4" */
#define LASTLITERALS 5     /* End of block restrictions 2: "The last 5 bytes of input are always literals" */
#define MFLIMIT      12    /* End of block restrictions 3: "The last match must start at least 12 bytes before the end of block" */
#define MAX_DISTANCE 65535 /* "The maximum offset value is 65535, 65536 cannot be coded" */
#define RUN_MASK     15    /* token high 4 bits: literal length, 15 = more bytes follow */
#define ML_MASK      15    /* token low 4 bits: match length - minmatch, 15 = more bytes follow */
#define LEN_BYTE_MAX 255   /* an extra length byte of 255 means another byte follows */

/* ---- tuning (ours) ----------------------------------------------------- */
/* Blocks shorter than this store 16-bit positions: every position fits and
 * every distance back is <= MAX_DISTANCE, so no distance check is needed.
 * The last position ever inserted is src_len - MFLIMIT. The same bound as
 * liblz4's LZ4_64Klimit (its byU16 table below it), so that the table, the hash
 * and therefore the output are liblz4's for every block size. */
#define SMALL_LIMIT  (65536 + MFLIMIT - 1)
#define HASH_LOG_16  13    /* 8192 x uint16_t = LZ4_WORK_SIZE */
#define HASH_LOG_32  12    /* 4096 x uint32_t = LZ4_WORK_SIZE */
/* Skip acceleration: after 2^SKIP_TRIGGER failed probes the step grows by one
 * byte, then again after every further 2^SKIP_TRIGGER probes. Incompressible
 * data is crossed quickly; a new match resets the step to 1. */
#define SKIP_TRIGGER 6

_Static_assert((1u << HASH_LOG_16) * sizeof(uint16_t) == LZ4_WORK_SIZE, "work size");
_Static_assert((1u << HASH_LOG_32) * sizeof(uint32_t) == LZ4_WORK_SIZE, "work size");

#define LIKELY(x)   __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define ALWAYS_INLINE inline __attribute__((always_inline))

static ALWAYS_INLINE uint16_t load16(const void *p) { uint16_t v; __builtin_memcpy(&v, p, 2); return v; }
static ALWAYS_INLINE uint32_t load32(const void *p) { uint32_t v; __builtin_memcpy(&v, p, 4); return v; }
static ALWAYS_INLINE uint64_t load64(const void *p) { uint64_t v; __builtin_memcpy(&v, p, 8); return v; }
static ALWAYS_INLINE void store16(void *p, uint16_t v) { __builtin_memcpy(p, &v, 2); }
static ALWAYS_INLINE void store32(void *p, uint32_t v) { __builtin_memcpy(p, &v, 4); }
static ALWAYS_INLINE void copy8(void *d, const void *s) { __builtin_memcpy(d, s, 8); }

/* Copy [s, s + (e - d)) to [d, e) in 8-byte steps: may write up to 7 bytes
 * past e and read up to 7 bytes past the source end; callers guarantee both
 * stay inside their buffers. */
static ALWAYS_INLINE void wild_copy8(uint8_t *d, const uint8_t *s, uint8_t *e)
{
    do {
        copy8(d, s);
        d += 8;
        s += 8;
    } while (d < e);
}

/* Multiplicative hash of 4 bytes (Knuth's 2^32 / golden ratio). */
static ALWAYS_INLINE uint32_t hash4(uint32_t seq, unsigned log)
{
    return (seq * 2654435761u) >> (32 - log);
}

/* Multiplicative hash of the 5 low bytes of a little-endian 64-bit load. The 32-bit
 * position table (blocks of SMALL_LIMIT bytes or more) uses it, as liblz4's 64-bit build does for its
 * byU32 table (LZ4_hash5), so that blocks of every size parse exactly as liblz4's default
 * does: the same output bytes. The prime is liblz4's; any odd 5-byte constant would do. */
static ALWAYS_INLINE uint32_t hash5(uint64_t seq, unsigned log)
{
    return (uint32_t)(((seq << 24) * 889523592379ull) >> (64 - log));
}

/* The match-length path (lz4_use): LZ4_SCALAR until the payload's vector code has saved
 * the host's state and found AVX2 (builder/core/vector.c). Set once before any CPU
 * compresses, only read afterwards. */
static int lz4_path = LZ4_SCALAR;

int lz4_use(int path)
{
    if (path == LZ4_SCALAR || path == LZ4_AVX2)
        lz4_path = path;
    return lz4_path;
}

/* match_len's long-match tail with AVX2: 32 bytes per compare (vpcmpeqb + vpmovmskb), the
 * first differing byte from the mask's lowest clear bit. Reads only below limit, like the
 * scalar loop; the counted length, and so the output, is the same. Out of line with its
 * own target attribute, so the rest of the file stays free of vector instructions; only
 * matches longer than 12 bytes reach it. Long runs are common in RAM (zeroed and repeated
 * areas inside pages), where it counts about twice as fast. */
static __attribute__((target("avx2"), noinline)) size_t match_len_avx2(const uint8_t *p,
                                                                        const uint8_t *m,
                                                                        const uint8_t *limit)
{
    const uint8_t *const start = p;
    while (p + 32 <= limit) {
        __m256i a = _mm256_loadu_si256((const __m256i_u *)p);
        __m256i b = _mm256_loadu_si256((const __m256i_u *)m);
        uint32_t eq = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(a, b));
        if (eq != 0xFFFFFFFFu)
            return (size_t)(p - start) + (unsigned)__builtin_ctz(~eq);
        p += 32;
        m += 32;
    }
    while (p + 8 <= limit) {
        uint64_t diff = load64(p) ^ load64(m);
        if (diff)
            return (size_t)(p - start) + ((unsigned)__builtin_ctzll(diff) >> 3);
        p += 8;
        m += 8;
    }
    if (p + 4 <= limit && load32(p) == load32(m)) { p += 4; m += 4; }
    if (p + 2 <= limit && load16(p) == load16(m)) { p += 2; m += 2; }
    if (p < limit && *p == *m) p++;
    return (size_t)(p - start);
}

/* Number of equal bytes at p and m, not reading p at or past limit (m < p).
 * 32 bytes per iteration while far from the limit: long matches (zero pages,
 * repeated pages) are the common case in RAM images. */
static ALWAYS_INLINE size_t match_len(const uint8_t *p, const uint8_t *m,
                                      const uint8_t *limit)
{
    const uint8_t *const start = p;
    uint64_t diff;

    diff = load64(p) ^ load64(m);
    if (p + 8 <= limit) {
        if (diff)
            return (size_t)((unsigned)__builtin_ctzll(diff) >> 3);
        p += 8;
        m += 8;
        if (lz4_path == LZ4_AVX2)
            return 8 + match_len_avx2(p, m, limit);
        while (p + 32 <= limit) {
            uint64_t d0 = load64(p) ^ load64(m);
            uint64_t d1 = load64(p + 8) ^ load64(m + 8);
            uint64_t d2 = load64(p + 16) ^ load64(m + 16);
            uint64_t d3 = load64(p + 24) ^ load64(m + 24);
            if (UNLIKELY(d0 | d1 | d2 | d3)) {
                if (d0) return (size_t)(p - start) + ((unsigned)__builtin_ctzll(d0) >> 3);
                if (d1) return (size_t)(p - start) + 8 + ((unsigned)__builtin_ctzll(d1) >> 3);
                if (d2) return (size_t)(p - start) + 16 + ((unsigned)__builtin_ctzll(d2) >> 3);
                return (size_t)(p - start) + 24 + ((unsigned)__builtin_ctzll(d3) >> 3);
            }
            p += 32;
            m += 32;
        }
        while (p + 8 <= limit) {
            diff = load64(p) ^ load64(m);
            if (diff)
                return (size_t)(p - start) + ((unsigned)__builtin_ctzll(diff) >> 3);
            p += 8;
            m += 8;
        }
    }
    if (p + 4 <= limit && load32(p) == load32(m)) { p += 4; m += 4; }
    if (p + 2 <= limit && load16(p) == load16(m)) { p += 2; m += 2; }
    if (p < limit && *p == *m) p++;
    return (size_t)(p - start);
}

/* Extra length bytes after a 4-bit field of 15 (spec: "Each additional byte
 * then represent a value from 0 to 255 ... When the byte value is 255,
 * another byte is output"), for a field value of len >= 15. */
static ALWAYS_INLINE size_t extra_len_bytes(size_t len)
{
    return 1 + (len - RUN_MASK) / LEN_BYTE_MAX;
}

static ALWAYS_INLINE uint8_t *write_extra_len(uint8_t *op, size_t rest)
{
    while (rest >= 4 * LEN_BYTE_MAX) {
        store32(op, 0xFFFFFFFFu);
        op += 4;
        rest -= 4 * LEN_BYTE_MAX;
    }
    while (rest >= LEN_BYTE_MAX) {
        *op++ = LEN_BYTE_MAX;
        rest -= LEN_BYTE_MAX;
    }
    *op++ = (uint8_t)rest;
    return op;
}

/* The last sequence: token and literals only (End of block restrictions 1). Returns the
 * end of the output, or 0 when it does not fit before oend. */
static uint8_t *last_literals(uint8_t *op, uint8_t *oend, const uint8_t *anchor, size_t lit)
{
    size_t need = 1 + lit;
    if (lit >= RUN_MASK)
        need += extra_len_bytes(lit);
    if (need > (size_t)(oend - op))
        return 0;
    if (lit >= RUN_MASK) {
        *op++ = RUN_MASK << 4;
        op = write_extra_len(op, lit - RUN_MASK);
    } else {
        *op++ = (uint8_t)(lit << 4);
    }
    if (lit)
        memcpy(op, anchor, lit);
    return op + lit;
}

/*
 * The compressor proper; `small` is a compile-time constant selecting the
 * 16-bit position table (blocks shorter than SMALL_LIMIT) or the 32-bit one.
 *
 * Output space: every check below reserves, beyond what it writes, room for
 * whatever must still follow — at least a 2-byte offset, then the final token
 * and the final >= LASTLITERALS literals — so a block that cannot fit is
 * abandoned early, and the 8-byte wild copies (at most 7 bytes past the
 * literals) never leave dst: 2 + 1 + LASTLITERALS = 8 bytes are reserved.
 */
static ALWAYS_INLINE int compress_generic(const uint8_t *const src, const size_t src_len,
                                          uint8_t *const dst, const size_t dst_cap,
                                          void *const work, const int small)
{
    const uint8_t *const base = src;
    /* Last allowed match start (only used when src_len > MFLIMIT); matches
     * end at or before mflimit + (MFLIMIT - LASTLITERALS). */
    const uint8_t *const mflimit = src + (src_len > MFLIMIT ? src_len - MFLIMIT : 0);
    uint8_t *op = dst;
    uint8_t *const oend = dst + dst_cap;
    const uint8_t *ip = src;
    const uint8_t *anchor = src;   /* first byte not yet emitted */
    uint16_t *const t16 = work;
    uint32_t *const t32 = work;
    const unsigned hlog = small ? HASH_LOG_16 : HASH_LOG_32;

#define HASH(p)      (small ? hash4(load32(p), hlog) : hash5(load64(p), hlog))
#define T_GET(h)     (small ? (size_t)t16[h] : (size_t)t32[h])
#define T_PUT(h, p)  do { if (small) t16[h] = (uint16_t)((p) - base); \
                          else t32[h] = (uint32_t)((p) - base); } while (0)

    /* End of block restrictions 3: a block < 13 bytes is all literals. */
    if (src_len < MFLIMIT + 1)
        goto last_literals;

    __builtin_memset(work, 0, LZ4_WORK_SIZE); /* every slot -> position 0 */

    T_PUT(HASH(ip), ip);
    ip++;

    for (;;) {
        const uint8_t *match;
        uint8_t *token;
        size_t lit, ml;

        /* Find a 4-byte match. ip <= mflimit here. */
        {
            unsigned step = 1;
            unsigned probes = 1u << SKIP_TRIGGER;
            uint32_t h = HASH(ip);
            for (;;) {
                const uint8_t *next = ip + step;
                match = base + T_GET(h);
                T_PUT(h, ip);
                step = probes++ >> SKIP_TRIGGER;
                if (UNLIKELY(next > mflimit)) {
                    if ((small || (size_t)(ip - match) <= MAX_DISTANCE) &&
                        load32(match) == load32(ip))
                        break;
                    goto last_literals;
                }
                h = HASH(next);     /* the next probe's slot, ahead of this compare */
                if ((small || (size_t)(ip - match) <= MAX_DISTANCE) &&
                    load32(match) == load32(ip))
                    break;
                ip = next;
            }
        }

        /* Extend the match backwards over literals not yet emitted. */
        while (ip > anchor && match > base && ip[-1] == match[-1]) {
            ip--;
            match--;
        }

        /* Sequence: token, literal length, literals. */
        lit = (size_t)(ip - anchor);
        token = op++;
        {
            size_t need = lit + 2 + 1 + LASTLITERALS;
            if (lit >= RUN_MASK)
                need += extra_len_bytes(lit);
            if (UNLIKELY(need > (size_t)(oend - op)))
                return 0;
        }
        if (lit >= RUN_MASK) {
            *token = RUN_MASK << 4;
            op = write_extra_len(op, lit - RUN_MASK);
        } else {
            *token = (uint8_t)(lit << 4);
        }
        if (lit)
            wild_copy8(op, anchor, op + lit);
        op += lit;

        for (;;) {
            /* Offset (little-endian 16-bit) and match length. */
            store16(op, (uint16_t)(ip - match));
            op += 2;
            ml = match_len(ip + MINMATCH, match + MINMATCH,
                           mflimit + (MFLIMIT - LASTLITERALS));
            ip += ml + MINMATCH;
            {
                size_t need = 1 + LASTLITERALS; /* next token + last literals */
                if (ml >= ML_MASK)
                    need += extra_len_bytes(ml);
                if (UNLIKELY(need > (size_t)(oend - op)))
                    return 0;
            }
            if (ml >= ML_MASK) {
                *token += ML_MASK;
                op = write_extra_len(op, ml - ML_MASK);
            } else {
                *token += (uint8_t)ml;
            }
            anchor = ip;

            if (ip > mflimit)
                goto last_literals;

            /* Remember a position inside the match, then try for an
             * immediate next match (no literals) at ip. */
            T_PUT(HASH(ip - 2), ip - 2);
            {
                uint32_t h = HASH(ip);
                match = base + T_GET(h);
                T_PUT(h, ip);
                if ((small || (size_t)(ip - match) <= MAX_DISTANCE) &&
                    load32(match) == load32(ip)) {
                    token = op++;
                    *token = 0;
                    continue;
                }
            }
            break;
        }

        ip++;
        if (ip > mflimit)
            goto last_literals;
    }

last_literals:
    op = last_literals(op, oend, anchor, (size_t)(src + src_len - anchor));
    return op ? (int)(op - dst) : 0;
#undef HASH
#undef T_GET
#undef T_PUT
}

int lz4_compress(const uint8_t *src, int src_len, uint8_t *dst, int dst_cap,
                 void *work)
{
    if (src_len < 0 || src_len > LZ4_MAX_INPUT_SIZE || dst_cap <= 0)
        return 0;
    if (src_len < SMALL_LIMIT)
        return compress_generic(src, (size_t)src_len, dst, (size_t)dst_cap, work, 1);
    return compress_generic(src, (size_t)src_len, dst, (size_t)dst_cap, work, 0);
}

/* ---- high compressor --------------------------------------------------- */

/*
 * lz4_compress_high: the same block format, a more thorough search (ours; the idea is
 * the textbook hash chain of LZ77 compressors). Every position is inserted into a hash
 * table of the newest position per 4-byte hash plus a chain linking each position to the
 * previous one with the same hash; at each position up to HIGH_DEPTH candidates within
 * MAX_DISTANCE are compared and the longest match wins. One step of lazy evaluation: when
 * the next position holds a match longer by more than one byte, the current byte goes out
 * as a literal instead. On a Linux RAM image this gives about 7 % fewer bytes than
 * lz4_compress at about an eighth of its speed (BENCHMARKS.md); the decoder is the same.
 */
#define HIGH_HASH_LOG   13                  /* 8192 newest positions (uint32_t) */
#define HIGH_WINDOW     65536               /* chain links, one per position mod 64 KiB */
#define HIGH_DEPTH      16                  /* candidates compared per position */
#define HIGH_NICE       64                  /* a match this long ends the search */
#define HIGH_LAZY_BELOW 32                  /* a match this long is taken without a look on */
/* Skip acceleration over data that does not match, as in lz4_compress: after
 * 2^SKIP_TRIGGER positions without a match the step grows by one byte (and the skipped
 * positions are not inserted), so incompressible pages cost little. */

_Static_assert((1u << HIGH_HASH_LOG) * sizeof(uint32_t) + HIGH_WINDOW * sizeof(uint16_t) ==
               LZ4_HIGH_WORK_SIZE, "high work size");

struct high_state {
    const uint8_t *base;
    uint32_t *head;                         /* newest position + 1 per hash; 0: none */
    uint16_t *chain;                        /* distance to the previous same-hash position */
    size_t next;                            /* positions below this are inserted */
};

static ALWAYS_INLINE void high_insert_upto(struct high_state *st, size_t end)
{
    for (size_t p = st->next; p < end; p++) {
        uint32_t h = hash4(load32(st->base + p), HIGH_HASH_LOG);
        size_t prev = st->head[h];
        size_t dist = prev ? p - (prev - 1) : 0;
        st->chain[p & (HIGH_WINDOW - 1)] = (uint16_t)(dist <= MAX_DISTANCE ? dist : 0);
        st->head[h] = (uint32_t)(p + 1);
    }
    if (end > st->next)
        st->next = end;
}

/* The longest match for position ip (inserted first), 0 if none of MINMATCH bytes;
 * *match gets its start. Matches end at or before limit. */
static size_t high_best(struct high_state *st, const uint8_t *ip, const uint8_t *limit,
                        const uint8_t **match)
{
    size_t pos = (size_t)(ip - st->base), best = 0;
    high_insert_upto(st, pos + 1);
    size_t dist = st->chain[pos & (HIGH_WINDOW - 1)];
    uint32_t seq = load32(ip);
    for (unsigned tries = 0; dist && tries < HIGH_DEPTH; tries++) {
        const uint8_t *m = ip - dist;
        if (load32(m) == seq && (best < MINMATCH || m[best] == ip[best])) {
            size_t len = MINMATCH + match_len(ip + MINMATCH, m + MINMATCH, limit);
            if (len > best) {
                best = len;
                *match = m;
                if (len >= HIGH_NICE)
                    break;
            }
        }
        size_t step = st->chain[(pos - dist) & (HIGH_WINDOW - 1)];
        if (!step || dist + step > MAX_DISTANCE)
            break;
        dist += step;
    }
    return best >= MINMATCH ? best : 0;
}

/* One sequence: the literals [anchor, ip), then the match (offset, length ml >= MINMATCH).
 * Returns the end of the output, or 0 when it would not leave room for the last
 * literals' token before oend. */
static uint8_t *write_sequence(uint8_t *op, uint8_t *oend, const uint8_t *anchor,
                               const uint8_t *ip, const uint8_t *match, size_t ml)
{
    size_t lit = (size_t)(ip - anchor), need = 1 + lit + 2 + 1 + LASTLITERALS;
    if (lit >= RUN_MASK)
        need += extra_len_bytes(lit);
    if (ml - MINMATCH >= ML_MASK)
        need += extra_len_bytes(ml - MINMATCH);
    if (need > (size_t)(oend - op))
        return 0;
    uint8_t *token = op++;
    if (lit >= RUN_MASK) {
        *token = RUN_MASK << 4;
        op = write_extra_len(op, lit - RUN_MASK);
    } else {
        *token = (uint8_t)(lit << 4);
    }
    memcpy(op, anchor, lit);
    op += lit;
    store16(op, (uint16_t)(ip - match));
    op += 2;
    if (ml - MINMATCH >= ML_MASK) {
        *token += ML_MASK;
        op = write_extra_len(op, ml - MINMATCH - ML_MASK);
    } else {
        *token += (uint8_t)(ml - MINMATCH);
    }
    return op;
}

int lz4_compress_high(const uint8_t *src, int src_len, uint8_t *dst, int dst_cap, void *work)
{
    if (src_len < 0 || src_len > LZ4_MAX_INPUT_SIZE || dst_cap <= 0)
        return 0;
    uint8_t *op = dst, *const oend = dst + dst_cap;
    const uint8_t *ip = src, *anchor = src;
    if ((size_t)src_len > MFLIMIT) {
        /* End of block restrictions 2 and 3: matches start at or before mflimit and end
         * at or before the last LASTLITERALS bytes. */
        const uint8_t *const mflimit = src + src_len - MFLIMIT;
        const uint8_t *const limit = src + src_len - LASTLITERALS;
        struct high_state st = { src, work,
                                 (uint16_t *)((uint32_t *)work + (1u << HIGH_HASH_LOG)), 0 };
        memset(st.head, 0, (1u << HIGH_HASH_LOG) * sizeof(uint32_t));
        unsigned misses = 0;
        while (ip <= mflimit) {
            const uint8_t *match = 0;
            size_t ml = high_best(&st, ip, limit, &match);
            if (!ml) {
                ip += 1 + (misses++ >> SKIP_TRIGGER);
                if (st.next < (size_t)(ip - src))
                    st.next = (size_t)(ip - src);
                continue;
            }
            misses = 0;
            /* Lazy: a longer match one byte on is worth a literal. */
            while (ml < HIGH_LAZY_BELOW && ip + 1 <= mflimit) {
                const uint8_t *m2 = 0;
                size_t ml2 = high_best(&st, ip + 1, limit, &m2);
                if (ml2 <= ml + 1)
                    break;
                ip++;
                ml = ml2;
                match = m2;
            }
            while (ip > anchor && match > src && ip[-1] == match[-1]) {
                ip--;
                match--;
                ml++;
            }
            if (!(op = write_sequence(op, oend, anchor, ip, match, ml)))
                return 0;
            ip += ml;
            anchor = ip;
        }
    }
    op = last_literals(op, oend, anchor, (size_t)(src + src_len - anchor));
    return op ? (int)(op - dst) : 0;
}

/* ---- decompressor ------------------------------------------------------ */

/* Read the extra length bytes that follow a 4-bit field of 15. Returns 0 on
 * success, -1 if the input ends first. */
static ALWAYS_INLINE int read_extra_len(const uint8_t **ipp, const uint8_t *iend,
                                        size_t *len)
{
    const uint8_t *ip = *ipp;
    unsigned b;
    do {
        if (UNLIKELY(ip >= iend))
            return -1;
        b = *ip++;
        *len += b;
    } while (b == LEN_BYTE_MAX);
    *ipp = ip;
    return 0;
}

/* For an overlapping match with offset < 8: the smallest multiple of the
 * offset that is >= 8. The output is periodic with the offset, so once 8 bytes
 * are written, copying from this distance back gives the same bytes, in
 * 8-byte steps that never read bytes not yet written. */
static const uint8_t period_stride[8] = { 0, 8, 8, 9, 8, 10, 12, 14 };

int lz4_decompress_safe(const uint8_t *src, int src_len, uint8_t *dst,
                        int dst_cap)
{
    const uint8_t *ip = src;
    const uint8_t *const iend = src + (src_len > 0 ? src_len : 0);
    uint8_t *op = dst;
    uint8_t *const oend = dst + (dst_cap > 0 ? dst_cap : 0);

    if (src == NULL || src_len <= 0 || dst_cap < 0 || (dst == NULL && dst_cap))
        return -1;

    for (;;) {
        unsigned token;
        size_t lit, ml, off;
        const uint8_t *m;
        uint8_t *mend;

        /* A block ends after the literals of its last sequence, never after a
         * match (End of block restrictions 1). */
        if (UNLIKELY(ip >= iend))
            return -1;
        token = *ip++;
        lit = token >> 4;

        /* Fast path for the common short sequence (literal length < 15)
         * when both buffers have room to spare: copy 16 literal bytes and,
         * for a short non-overlapping match, 24 match bytes, unconditionally;
         * the excess is overwritten by what follows. 16 + 2 input bytes
         * remain, so this is not the last sequence. */
        if (lit < RUN_MASK && (size_t)(iend - ip) >= 16 + 2 &&
            (size_t)(oend - op) >= 16 + 24) {
            copy8(op, ip);
            copy8(op + 8, ip + 8);
            ip += lit;
            op += lit;
            off = load16(ip);
            ip += 2;
            ml = token & ML_MASK;
            if (ml < ML_MASK && off >= 8 && off <= (size_t)(op - dst)) {
                m = op - off;
                copy8(op, m);
                copy8(op + 8, m + 8);
                copy8(op + 16, m + 16);
                op += ml + MINMATCH;
                continue;
            }
            goto match_checks;
        }

        /* Literals. */
        if (lit == RUN_MASK && read_extra_len(&ip, iend, &lit))
            return -1;
        if (UNLIKELY(lit > (size_t)(iend - ip) || lit > (size_t)(oend - op)))
            return -1;
        if (LIKELY(lit + 8 <= (size_t)(iend - ip) && lit + 8 <= (size_t)(oend - op))) {
            if (lit)
                wild_copy8(op, ip, op + lit);
        } else if (lit) {
            memcpy(op, ip, lit);
        }
        ip += lit;
        op += lit;

        if (ip == iend)
            return (int)(op - dst); /* last sequence: literals only */

        /* Match: offset, then length. */
        if (UNLIKELY(iend - ip < 2))
            return -1;
        off = load16(ip);
        ip += 2;
match_checks:
        if (UNLIKELY(off == 0 || off > (size_t)(op - dst)))
            return -1; /* "0 is an invalid value"; before the block start */
        ml = token & ML_MASK;
        if (ml == ML_MASK && read_extra_len(&ip, iend, &ml))
            return -1;
        ml += MINMATCH;
        if (UNLIKELY(ml > (size_t)(oend - op)))
            return -1;

        m = op - off;
        mend = op + ml;
        if (off < 8 && (size_t)(oend - op) >= 8) {
            /* Overlap ("overlap match"): extend the period bytewise for 8
             * bytes, then copy from a whole number of periods back, >= 8
             * bytes, so that word copies only read bytes already written. */
            for (int i = 0; i < 8; i++)
                op[i] = m[i];
            op += 8;
            m = op - period_stride[off];
        }
        /* Word copies while a whole word fits in dst (they may run up to 7
         * bytes past mend), then bytes up to the end of dst. */
        while (op < mend && (size_t)(oend - op) >= 8) {
            copy8(op, m);
            op += 8;
            m += 8;
        }
        while (op < mend)
            *op++ = *m++;
        op = mend;
    }
}

/*
 * lz4_decoded_size: what lz4_decompress_safe(src, src_len, dst, dst_cap) returns, without
 * writing anything. Whether a block decodes, and to how many bytes, depends only on its
 * sequence structure (lengths and offsets); this walks exactly the checks of the decoder's
 * slow path above (its fast path only takes sequences that pass them) and skips the
 * copies. The resume loader's verify pass proves with it that every block will decode
 * before any page is written (builder/resume/image.c); tests/test_resume_lz4check.py
 * holds it to the decoder's answers.
 */
int lz4_decoded_size(const uint8_t *src, int src_len, int dst_cap)
{
    const uint8_t *ip = src;
    const uint8_t *const iend = src + (src_len > 0 ? src_len : 0);
    size_t op = 0;
    const size_t cap = dst_cap > 0 ? (size_t)dst_cap : 0;

    if (src == NULL || src_len <= 0 || dst_cap < 0)
        return -1;
    for (;;) {
        size_t lit, ml, off;
        unsigned token;
        if (UNLIKELY(ip >= iend))
            return -1;
        token = *ip++;
        lit = token >> 4;
        if (lit == RUN_MASK && read_extra_len(&ip, iend, &lit))
            return -1;
        if (UNLIKELY(lit > (size_t)(iend - ip) || lit > cap - op))
            return -1;
        ip += lit;
        op += lit;
        if (ip == iend)
            return (int)op;
        if (UNLIKELY(iend - ip < 2))
            return -1;
        off = load16(ip);
        ip += 2;
        if (UNLIKELY(off == 0 || off > op))
            return -1;
        ml = token & ML_MASK;
        if (ml == ML_MASK && read_extra_len(&ip, iend, &ml))
            return -1;
        ml += MINMATCH;
        if (UNLIKELY(ml > cap - op))
            return -1;
        op += ml;
    }
}
