/* Parsing the host's command line; see cmdline.h for the options. */
#include "cmdline.h"
#include "exit_codes.h"
#include "string.h"
#include "suspendos_abi.h"

#define MAX_WORD 128

static int word_is(const char *w, const char *lit)
{
    size_t n = strlen(lit);
    return strlen(w) == n && !memcmp(w, lit, n);
}

static int has_prefix(const char *w, const char *prefix)
{
    size_t n = strlen(prefix);
    return strlen(w) >= n && !memcmp(w, prefix, n);
}

/* Unsigned number, decimal or 0x-hex, ending at `end` (or NUL); 0 on junk or overflow. */
static int parse_u64(const char *s, char end, uint64_t *out)
{
    unsigned base = 10;
    uint64_t v = 0;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    if (!*s || *s == end)
        return 0;
    for (; *s && *s != end; s++) {
        unsigned d;
        if (*s >= '0' && *s <= '9')
            d = *s - '0';
        else if (base == 16 && *s >= 'a' && *s <= 'f')
            d = *s - 'a' + 10;
        else if (base == 16 && *s >= 'A' && *s <= 'F')
            d = *s - 'A' + 10;
        else
            return 0;
        if (v > (UINT64_MAX - d) / base)
            return 0;
        v = v * base + d;
    }
    *out = v;
    return 1;
}

static void parse_mix(const char *v, struct host_options *o)
{
    unsigned sum = 0;
    for (int k = 0; k < KIND_COUNT; k++) {
        uint64_t pct;
        char end = k == KIND_COUNT - 1 ? 0 : ',';
        if (!parse_u64(v, end, &pct) || pct > 100)
            host_fail(EXIT_BAD_BOOT_INFO, "bad command line: mix wants Z,R,T,P percentages");
        o->mix[k] = (unsigned)pct;
        sum += (unsigned)pct;
        while (*v && *v != end)
            v++;
        if (k != KIND_COUNT - 1) {
            if (*v != ',')
                host_fail(EXIT_BAD_BOOT_INFO, "bad command line: mix wants 4 numbers");
            v++;
        }
    }
    if (sum != 100)
        host_fail(EXIT_BAD_BOOT_INFO, "bad command line: mix sums to %u, not 100", sum);
}

/* vbe=WxHxBPP or vbe=off */
static void parse_vbe(const char *v, struct host_options *o)
{
    uint64_t n[3];
    if (word_is(v, "off")) {
        o->vbe_width = o->vbe_height = o->vbe_bpp = 0;
        return;
    }
    for (int i = 0; i < 3; i++) {
        char end = i < 2 ? 'x' : 0;
        if (!parse_u64(v, end, &n[i]))
            host_fail(EXIT_BAD_BOOT_INFO, "bad command line: vbe=WxHxBPP or vbe=off");
        while (*v && *v != end)
            v++;
        if (i < 2) {
            if (*v != 'x')
                host_fail(EXIT_BAD_BOOT_INFO, "bad command line: vbe=WxHxBPP or vbe=off");
            v++;
        }
    }
    if (n[0] < 320 || n[0] > 2560 || n[1] < 200 || n[1] > 1600 ||
        (n[2] != 16 && n[2] != 24 && n[2] != 32))
        host_fail(EXIT_BAD_BOOT_INFO, "bad command line: vbe mode out of range");
    o->vbe_width = (unsigned)n[0];
    o->vbe_height = (unsigned)n[1];
    o->vbe_bpp = (unsigned)n[2];
}

static void apply(const char *w, struct host_options *o)
{
    if (has_prefix(w, "seed=")) {
        if (!parse_u64(w + 5, 0, &o->seed))
            host_fail(EXIT_BAD_BOOT_INFO, "bad command line: seed '%s'", w + 5);
    } else if (has_prefix(w, "mix=")) {
        parse_mix(w + 4, o);
    } else if (has_prefix(w, "pause=")) {
        uint32_t pause = SOS_HANDOFF_PAUSE_BEFORE_READ | SOS_HANDOFF_PAUSE_BEFORE_RETURN;
        o->handoff_flags &= ~pause;
        if (word_is(w + 6, "before"))
            o->handoff_flags |= SOS_HANDOFF_PAUSE_BEFORE_READ;
        else if (word_is(w + 6, "after"))
            o->handoff_flags |= SOS_HANDOFF_PAUSE_BEFORE_RETURN;
        else if (word_is(w + 6, "both"))
            o->handoff_flags |= pause;
        else
            host_fail(EXIT_BAD_BOOT_INFO, "bad command line: pause=before|after|both");
    } else if (word_is(w, "raw_ceiling")) {
        o->handoff_flags |= SOS_HANDOFF_RAW_CEILING;
    } else if (has_prefix(w, "tsc_hz=")) {
        if (!parse_u64(w + 7, 0, &o->tsc_hz))
            host_fail(EXIT_BAD_BOOT_INFO, "bad command line: tsc_hz '%s'", w + 7);
    } else if (word_is(w, "pause_header")) {
        o->handoff_flags |= SOS_HANDOFF_PAUSE_BEFORE_HEADER;
    } else if (word_is(w, "quiet")) {
        o->handoff_flags |= SOS_HANDOFF_QUIET;
    } else if (has_prefix(w, "vbe=")) {
        parse_vbe(w + 4, o);
    } else if (word_is(w, "ap_offline")) {
        o->ap_offline = 1;
    } else if (has_prefix(w, "ap_deaf=")) {
        uint64_t id;
        if (!parse_u64(w + 8, 0, &id) || id > 254)
            host_fail(EXIT_BAD_BOOT_INFO, "bad command line: ap_deaf '%s'", w + 8);
        o->ap_deaf = (int)id;
    } else {
        host_fail(EXIT_BAD_BOOT_INFO, "bad command line: unknown option '%s'", w);
    }
}

void cmdline_parse(const char *s, struct host_options *o)
{
    *o = (struct host_options){ .seed = 1, .mix = { 25, 25, 25, 25 }, .handoff_flags = 0,
                                .vbe_width = 800, .vbe_height = 600, .vbe_bpp = 32,
                                .ap_deaf = -1 };
    int first = 1;
    while (*s) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            break;
        char w[MAX_WORD];
        size_t n = 0;
        for (; *s && *s != ' ' && *s != '\t'; s++) {
            if (n + 1 == sizeof w)
                host_fail(EXIT_BAD_BOOT_INFO, "bad command line: word longer than %d",
                          MAX_WORD - 1);
            w[n++] = *s;
        }
        w[n] = 0;
        if (first)              /* the kernel's file name */
            first = 0;
        else
            apply(w, o);
    }
}
