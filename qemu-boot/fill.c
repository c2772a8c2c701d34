/*
 * The fill generators (see fill.h for the algorithm). Speed matters: 3 GiB under TCG is
 * ~800k pages, so each page is a tight loop of 64-bit stores; nothing calls a function per
 * byte or per word. The compiler barriers (`asm("" : "+r"(p))`) stop gcc from turning the
 * loops back into calls to memset/memcpy, whose `rep` instructions TCG runs slowly.
 */
#include "fill.h"
#include "fastmem.h"
#include "hash.h"
#include "range.h"

#define SALT_RANDOM  0x52414e444f4d2121ull
#define SALT_TEXT    0x544558542d2d2d2dull
#define SALT_PATTERN 0x5041545445524e21ull
#define SALT_CORPUS  0x434f525055532121ull
#define GOLDEN       0x9E3779B97F4A7C15ull

#define CORPUS_SIZE (256u * 1024)
#define LINE_WIDTH  72

static uint64_t seed_key;
static unsigned cumulative[KIND_COUNT];     /* cumulative percent thresholds */
/* Slack at the end: the generator may write one word past CORPUS_SIZE. */
static char corpus[CORPUS_SIZE + 64] __attribute__((aligned(64)));

static const char *const words[] = {
    "the", "of", "and", "a", "to", "in", "is", "that", "it", "was", "for", "on", "are",
    "with", "as", "be", "at", "this", "have", "from", "or", "by", "not", "but", "what",
    "all", "when", "there", "can", "more", "if", "no", "out", "so", "up", "into", "than",
    "memory", "page", "disk", "sector", "kernel", "suspend", "resume", "image", "block",
    "driver", "port", "command", "table", "region", "address", "buffer", "checksum",
    "write", "read", "flush", "machine", "power", "state", "register", "interrupt",
    "timeout", "status", "header", "module", "entry", "frame", "queue", "device",
    "controller", "compress", "restore", "reserved", "physical", "virtual", "cache",
};
#define NWORDS (sizeof words / sizeof words[0])

/* Text with the look of a log or a document: words, commas, full stops starting a
 * capitalised sentence, lines of about LINE_WIDTH columns, now and then a blank line. */
static void make_corpus(uint64_t seed)
{
    uint64_t s = mix64(seed ^ SALT_CORPUS) | 1;
    unsigned pos = 0, col = 0;
    int capital = 1;
    while (pos < CORPUS_SIZE) {
        uint64_t r = xorshift64s(&s);
        const char *w = words[(r >> 8) % NWORDS];
        unsigned i;
        for (i = 0; w[i]; i++)
            corpus[pos++] = (char)(i == 0 && capital ? w[i] - 'a' + 'A' : w[i]);
        col += i + 1;
        capital = 0;
        unsigned p = (r >> 40) % 32;
        if (p == 0) {
            corpus[pos++] = '.';
            capital = 1;
        } else if (p < 3) {
            corpus[pos++] = ',';
        } else if (p == 3 && col > 20) {
            corpus[pos++] = ':';
        }
        if (col >= LINE_WIDTH) {
            corpus[pos++] = '\n';
            if (capital && (r >> 48) % 4 == 0)
                corpus[pos++] = '\n';
            col = 0;
        } else {
            corpus[pos++] = ' ';
        }
    }
}

void fill_init(const struct host_options *opt)
{
    seed_key = mix64(opt->seed);
    unsigned sum = 0;
    for (int k = 0; k < KIND_COUNT; k++)
        cumulative[k] = sum += opt->mix[k];
    make_corpus(opt->seed);
}

static void fill_zero(uint64_t *p)
{
    for (unsigned i = 0; i < PAGE_SIZE / 8; i += 8) {
        __asm__("" : "+r"(p));
        p[i + 0] = 0; p[i + 1] = 0; p[i + 2] = 0; p[i + 3] = 0;
        p[i + 4] = 0; p[i + 5] = 0; p[i + 6] = 0; p[i + 7] = 0;
    }
}

static void fill_random(uint64_t *p, uint64_t key)
{
    uint64_t s = mix64(key ^ SALT_RANDOM) | 1;
    for (unsigned i = 0; i < PAGE_SIZE / 8; i += 4) {
        p[i + 0] = xorshift64s(&s);
        p[i + 1] = xorshift64s(&s);
        p[i + 2] = xorshift64s(&s);
        p[i + 3] = xorshift64s(&s);
    }
}

static void fill_text(uint64_t *p, uint64_t key)
{
    const char *src = corpus + mix64(key ^ SALT_TEXT) % (CORPUS_SIZE - PAGE_SIZE + 1);
    for (unsigned i = 0; i < PAGE_SIZE / 8; i += 4) {
        __asm__("" : "+r"(src));
        p[i + 0] = ((const u64_unaligned *)src)[i + 0];
        p[i + 1] = ((const u64_unaligned *)src)[i + 1];
        p[i + 2] = ((const u64_unaligned *)src)[i + 2];
        p[i + 3] = ((const u64_unaligned *)src)[i + 3];
    }
}

static void fill_pattern(uint64_t *p, uint64_t key)
{
    uint64_t k = mix64(key ^ SALT_PATTERN), s = k | 1;
    unsigned len = 8 + (unsigned)(k % 249), i;
    char *b = (char *)p;
    /* The pattern itself, rounded up to whole words (the excess is overwritten below). */
    for (i = 0; i < len; i += 8)
        *(u64_unaligned *)(b + i) = xorshift64s(&s);
    /* Each word copies the one `len` bytes back, already written since len >= 8. */
    for (i = len; i + 8 <= PAGE_SIZE; i += 8) {
        __asm__("" : "+r"(b));
        *(u64_unaligned *)(b + i) = *(const u64_unaligned *)(b + i - len);
    }
    for (; i < PAGE_SIZE; i++)
        b[i] = b[i - len];
}

enum page_kind fill_page(uint64_t addr)
{
    uint64_t key = mix64(seed_key + (addr >> PAGE_SHIFT) * GOLDEN);
    unsigned pick = (unsigned)(((key >> 32) * 100) >> 32);
    uint64_t *p = (uint64_t *)(uintptr_t)addr;
    enum page_kind kind = KIND_ZERO;
    while (kind < KIND_PATTERN && pick >= cumulative[kind])
        kind++;
    switch (kind) {
    case KIND_ZERO:    fill_zero(p); break;
    case KIND_RANDOM:  fill_random(p, key); break;
    case KIND_TEXT:    fill_text(p, key); break;
    default:           fill_pattern(p, key); break;
    }
    return kind;
}
