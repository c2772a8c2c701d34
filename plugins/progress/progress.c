/*
 * The built-in progress plugin: a splash picture and a progress bar with a percentage, drawn
 * on a linear framebuffer of 32, 24 or 16 bits per pixel (pitch honoured).
 *
 * Its picture and colours come from a theme (`suspendos plugin pack --splash`), which the
 * builder hands over as this plugin's asset: struct sos_theme, a band table, and LZ4 blocks of
 * rows already in the framebuffer's pixel format. Each band is decompressed (the core's LZ4
 * service) into scratch and copied to the screen row by row, clipped.
 *
 * Screen layout, W x H pixels (suspendos/plugins/render.py draws the same frames in Python;
 * the tests compare the two pixel for pixel):
 *   background everywhere; the splash centred (clipped if larger than the screen);
 *   the bar: W/2 wide, max(10, H/30) high, centred horizontally, top at H*4/5; a 2-pixel
 *   frame in the bar colour, a 2-pixel gap, then the fill growing from the left;
 *   the percentage, centred, 4*s pixels below the bar: 5x7 glyphs scaled by
 *   s = max(1, H/300), one s-wide column between glyphs.
 * Only what changed is redrawn, and only when the whole percentage changes.
 */
#include "sos_plugin.h"
#include "progress_font.h"

#define SCRATCH_KIB 64          /* one band: the builder keeps bands at most this large */

static const struct sos_plugin_services *svc;
static struct sos_fb_info fb;
static unsigned bytes_pp;
static uint32_t bg, fg;
static int W, H, s;
static int bar_x, bar_y, bar_w, bar_h, in_x, in_y, in_w, in_h, text_y, box_x, box_w;
static int shown = -1;          /* the percentage on screen */
static unsigned text[4], text_len;      /* its glyphs */
static int text_x;

/* Offset that centres `w` in `total`; negative when it does not fit (then it is clipped). */
static int centre(int total, int w)
{
    return total >= w ? (total - w) / 2 : -((w - total) / 2);
}

static void fill(int x, int y, int w, int h, uint32_t px)
{
    sos_fb_fill(&fb, x, y, w, h, px);
}

static void copy_row(int x, int y, const uint8_t *src, int w)
{
    if (y < 0 || y >= H)
        return;
    if (x < 0) {
        src += (uint64_t)(-x) * bytes_pp;
        w += x;
        x = 0;
    }
    if (x + w > W)
        w = W - x;
    if (w <= 0)
        return;
    uint8_t *dst = fb.addr + (uint64_t)y * fb.pitch + (uint64_t)x * bytes_pp;
    sos_copy(dst, src, (uint64_t)w * bytes_pp);
}

/* The splash, band by band; bands wholly off screen are not even decompressed. */
static int draw_splash(const struct sos_theme *t)
{
    if (!t->width || !t->height)
        return 0;
    const uint8_t *base = (const uint8_t *)t;
    const struct sos_theme_band *band = (const void *)(base + t->size);
    uint64_t row_bytes = (uint64_t)t->width * bytes_pp;
    int x0 = centre(W, (int)t->width), y0 = centre(H, (int)t->height);
    for (uint32_t b = 0; b < t->band_count; b++) {
        int first = (int)(b * t->band_rows);
        int rows = (int)t->height - first < (int)t->band_rows ? (int)t->height - first
                                                              : (int)t->band_rows;
        if (y0 + first + rows <= 0 || y0 + first >= H)
            continue;
        if ((uint64_t)band[b].offset + band[b].size > svc->assets_size) {
            svc->log("theme band outside the asset");
            return -1;
        }
        int n = svc->lz4_decompress(base + band[b].offset, (int)band[b].size, svc->scratch,
                                    (int)svc->scratch_size);
        if (n < 0 || (uint64_t)n != (uint64_t)rows * row_bytes) {
            svc->log("theme band does not decompress");
            return -1;
        }
        for (int r = 0; r < rows; r++)
            copy_row(x0, y0 + first + r, svc->scratch + (uint64_t)r * row_bytes, (int)t->width);
    }
    return 0;
}

/* A glyph, one fill per horizontal run of set pixels. */
static void draw_glyph(int x, int y, unsigned index)
{
    for (int r = 0; r < FONT_H; r++) {
        unsigned bits = progress_font[index][r];
        for (int c = 0; c < FONT_W;) {
            if (!(bits & (1u << (FONT_W - 1 - c)))) {
                c++;
                continue;
            }
            int run = 0;
            while (c + run < FONT_W && (bits & (1u << (FONT_W - 1 - c - run))))
                run++;
            fill(x + c * s, y + r * s, run * s, s, fg);
            c += run;
        }
    }
}

/* The percentage, centred; when its length is unchanged only the glyphs that changed are
 * cleared and redrawn. */
static void draw_percent(int pct)
{
    unsigned glyphs[4], n = 0;
    if (pct >= 100)
        glyphs[n++] = 1;
    if (pct >= 10)
        glyphs[n++] = (unsigned)(pct / 10 % 10);
    glyphs[n++] = (unsigned)(pct % 10);
    glyphs[n++] = FONT_PERCENT;
    int cell = (FONT_W + 1) * s;
    int x = centre(W, (int)n * cell - s);
    int whole = n != text_len || x != text_x;
    if (whole)
        fill(box_x, text_y, box_w, FONT_H * s, bg);
    for (unsigned i = 0; i < n; i++) {
        if (!whole && glyphs[i] == text[i])
            continue;
        if (!whole)
            fill(x + (int)i * cell, text_y, FONT_W * s, FONT_H * s, bg);
        draw_glyph(x + (int)i * cell, text_y, glyphs[i]);
        text[i] = glyphs[i];
    }
    text_len = n;
    text_x = x;
}

static void show(int pct)
{
    if (pct > 100)
        pct = 100;
    if (pct <= shown)
        return;
    int from = in_w * (shown < 0 ? 0 : shown) / 100, to = in_w * pct / 100;
    fill(in_x + from, in_y, to - from, in_h, fg);
    draw_percent(pct);
    shown = pct;
}

static int theme_ok(const struct sos_theme *t)
{
    if (svc->assets_size < sizeof *t || t->magic != SOS_THEME_MAGIC ||
        t->revision != SOS_THEME_REVISION || t->size != sizeof *t)
        return 0;
    if ((uint64_t)t->size + (uint64_t)t->band_count * sizeof(struct sos_theme_band) >
        svc->assets_size)
        return 0;
    if (t->width && t->height &&
        (t->format != fb.format || !t->band_rows ||
         (uint64_t)t->band_rows * t->width * bytes_pp > svc->scratch_size ||
         (uint64_t)t->band_count * t->band_rows < t->height))
        return 0;
    return 1;
}

static int progress_init(const struct sos_fb_info *f, const struct sos_plugin_services *sv)
{
    svc = sv;
    fb = *f;
    bytes_pp = sos_fb_bytes_per_pixel(&fb);
    if (!bytes_pp) {
        svc->log("no framebuffer it can draw on (32, 24 or 16 bpp linear)");
        return 1;
    }
    const struct sos_theme *t = (const void *)svc->assets;
    if (!t || !theme_ok(t)) {
        svc->log("theme missing or not for this framebuffer");
        return 2;
    }
    W = (int)fb.width;
    H = (int)fb.height;
    s = H / 300 > 1 ? H / 300 : 1;
    bg = sos_fb_color(&fb, t->background);
    fg = sos_fb_color(&fb, t->bar_color);
    bar_w = W / 2;
    bar_h = H / 30 > 10 ? H / 30 : 10;
    bar_x = centre(W, bar_w);
    bar_y = H * 4 / 5;
    in_x = bar_x + 4;
    in_y = bar_y + 4;
    in_w = bar_w - 8;
    in_h = bar_h - 8;
    text_y = bar_y + bar_h + 4 * s;
    box_w = 4 * (FONT_W + 1) * s - s;
    box_x = centre(W, box_w);

    fill(0, 0, W, H, bg);
    if (draw_splash(t))
        return 3;
    fill(bar_x, bar_y, bar_w, bar_h, fg);
    fill(bar_x + 2, bar_y + 2, bar_w - 4, bar_h - 4, bg);
    shown = -1;
    text_len = 0;
    show(0);
    return 0;
}

static void progress_progress(uint64_t done, uint64_t total, uint32_t phase)
{
    if (phase != SOS_PHASE_WRITING || !total)
        return;
    show(done >= total ? 100 : (int)(done * 100 / total));
}

static void progress_finish(uint32_t status)
{
    if (status == SOS_STATUS_WRITTEN)
        show(100);
}

SOS_PLUGIN("progress", SCRATCH_KIB, progress_init, progress_progress, progress_finish);
