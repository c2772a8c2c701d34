/*
 * suspendos plugin SDK.
 *
 * A plugin is freestanding C (no libc, no SSE, no floating point), compiled by
 * `suspendos plugin build DIR` into one relocatable object. It defines its descriptor with
 * SOS_PLUGIN(...) and gets everything else from the core through the services table its init
 * hook receives. The structs and constants come from suspendos_abi.h, which is generated
 * from the Python declarations (suspendos/formats/plugin.py; reference: docs/FORMATS.md).
 *
 * Rules (docs/PLUGINS.md has the details):
 *  - Hooks run with interrupts off under page tables in which only the plugin's own data and
 *    bss, its scratch (svc->scratch, scratch_kib KiB), its stack and the framebuffer are
 *    writable. Writing anywhere else ends the run: SOS_STATUS_PLUGIN_FAULT, no image.
 *  - The plugin cannot call the core except through `svc`; the link fails on any other
 *    undefined symbol. memcpy/memset/memmove/memcmp that the compiler may emit are provided.
 *  - Every hook is short: the time spent in hooks is measured (handoff.draw_tsc) and should
 *    stay well under 2% of the write time.
 */
#ifndef SOS_PLUGIN_H
#define SOS_PLUGIN_H
#include <stddef.h>
#include <stdint.h>
#include "suspendos_abi.h"

/* Wide stores that may alias pixels of any width (x86 takes them unaligned). */
typedef uint64_t __attribute__((may_alias)) sos_u64_alias;
typedef uint32_t __attribute__((may_alias, aligned(1))) sos_u32_unaligned;

/* The descriptor: NAME a string literal ([a-z0-9_-], at most 31 characters), SCRATCH_KIB
 * the scratch the plugin wants, then the three hooks (any may be NULL). */
#define SOS_PLUGIN(NAME, SCRATCH_KIB, INIT, PROGRESS, FINISH)                               \
    __attribute__((section(".rodata.sos_plugin"), used, aligned(8)))                       \
    const struct sos_plugin sos_plugin = {                                                 \
        .magic = SOS_PLUGIN_MAGIC, .abi_revision = SOS_PLUGIN_ABI_REVISION,                \
        .size = sizeof(struct sos_plugin), .name = NAME, .scratch_kib = (SCRATCH_KIB),     \
        .init = (INIT), .progress = (PROGRESS), .finish = (FINISH),                        \
    }

/* The pixel value of colour 0xRRGGBB in the framebuffer's format (0 if it has none). */
static inline uint32_t sos_fb_color(const struct sos_fb_info *fb, uint32_t rgb)
{
    switch (fb->format) {
    case SOS_FB_XRGB8888:
    case SOS_FB_RGB888:
        return rgb & 0xffffff;
    case SOS_FB_RGB565:
        return ((rgb >> 19 & 0x1f) << 11) | ((rgb >> 10 & 0x3f) << 5) | (rgb >> 3 & 0x1f);
    }
    return 0;
}

/* Bytes per pixel if the framebuffer is one the SDK helpers can draw on, else 0. */
static inline unsigned sos_fb_bytes_per_pixel(const struct sos_fb_info *fb)
{
    if (!fb->addr)
        return 0;
    if (fb->format == SOS_FB_XRGB8888 && fb->bpp == 32)
        return 4;
    if (fb->format == SOS_FB_RGB888 && fb->bpp == 24)
        return 3;
    if (fb->format == SOS_FB_RGB565 && fb->bpp == 16)
        return 2;
    return 0;
}

typedef uint64_t __attribute__((may_alias, aligned(1))) sos_u64_unaligned;

/* Copy bytes (rows of pixels) eight at a time. Unlike `rep movsb`, which is fast on real
 * CPUs, this is also fast under QEMU's TCG, which runs a `rep` string instruction one
 * element per translated-block pass. */
static inline void sos_copy(void *dst, const void *src, uint64_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    for (; n >= 8; n -= 8, d += 8, s += 8)
        *(sos_u64_unaligned *)d = *(const sos_u64_unaligned *)s;
    for (; n; n--)
        *d++ = *s++;
}

/* Fill a rectangle with a pixel value from sos_fb_color, clipped to the screen. */
static inline void sos_fb_fill(const struct sos_fb_info *fb, int x, int y, int w, int h,
                               uint32_t px)
{
    int W = (int)fb->width, H = (int)fb->height;
    if (x < 0) { w += x; x = 0; }
    if (y < 0) { h += y; y = 0; }
    if (x + w > W) w = W - x;
    if (y + h > H) h = H - y;
    if (w <= 0 || h <= 0)
        return;
    for (int r = 0; r < h; r++) {
        uint8_t *p = fb->addr + (uint64_t)(y + r) * fb->pitch;
        switch (fb->bpp) {
        case 32: {
            uint32_t *q = (uint32_t *)p + x;
            int i = 0;
            if (((uintptr_t)q & 7) && w) { q[0] = px; i = 1; }
            uint64_t two = (uint64_t)px << 32 | px;
            for (; i + 1 < w; i += 2)       /* two pixels a store */
                *(sos_u64_alias *)(q + i) = two;
            if (i < w)
                q[i] = px;
            break;
        }
        case 24: {
            /* Four pixels are three words: B G R B | G R B G | R B G R. */
            uint32_t w0 = (px & 0xffffff) | px << 24, w1 = (px >> 8 & 0xffff) | px << 16,
                     w2 = (px >> 16 & 0xff) | px << 8;
            int i = 0;
            p += (uint64_t)x * 3;
            for (; i + 4 <= w; i += 4, p += 12) {
                ((sos_u32_unaligned *)p)[0] = w0;
                ((sos_u32_unaligned *)p)[1] = w1;
                ((sos_u32_unaligned *)p)[2] = w2;
            }
            for (; i < w; i++, p += 3) {
                p[0] = (uint8_t)px;
                p[1] = (uint8_t)(px >> 8);
                p[2] = (uint8_t)(px >> 16);
            }
            break;
        }
        case 16: {
            uint16_t *q = (uint16_t *)p + x;
            uint64_t four = (uint64_t)(px & 0xffff) * 0x0001000100010001ull;
            int i = 0;
            for (; i < w && ((uintptr_t)(q + i) & 7); i++)
                q[i] = (uint16_t)px;
            for (; i + 4 <= w; i += 4)      /* four pixels a store */
                *(sos_u64_alias *)(q + i) = four;
            for (; i < w; i++)
                q[i] = (uint16_t)px;
            break;
        }
        }
    }
}

#endif
