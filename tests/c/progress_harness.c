/*
 * The built-in progress plugin (plugins/progress/progress.c) on the host: a framebuffer in
 * ordinary memory with a padded pitch and guard bytes around it, the core's services played
 * by libc and builder/core/lz4.c. tests/test_plugin_render.py compares what it draws with
 * suspendos/plugins/render.py and checks that nothing outside the visible rows changed.
 *
 *   progress_harness ASSET W H PITCH BPP FORMAT PERCENT STATUS OUT
 * draws init, then progress in steps of 1/7 % up to PERCENT, then finish(STATUS) when
 * STATUS != 0; writes PITCH * H bytes of framebuffer plus 4096 guard bytes on each side.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sos_plugin.h"
#include "lz4.h"

extern const struct sos_plugin sos_plugin;

#define GUARD 4096

static void h_log(const char *msg) { fprintf(stderr, "[plugin] %s\n", msg); }
static void *h_memcpy(void *d, const void *s, uint64_t n) { return memcpy(d, s, n); }
static void *h_memset(void *d, int c, uint64_t n) { return memset(d, c, n); }
static uint64_t h_timestamp(void) { return 0; }

int main(int argc, char **argv)
{
    if (argc != 10)
        return 2;
    FILE *f = fopen(argv[1], "rb");
    if (!f)
        return 2;
    static uint8_t asset[16 << 20];
    size_t asset_size = fread(asset, 1, sizeof asset, f);
    fclose(f);
    uint32_t w = atoi(argv[2]), h = atoi(argv[3]), pitch = atoi(argv[4]);
    uint32_t bpp = atoi(argv[5]), format = atoi(argv[6]), percent = atoi(argv[7]);
    uint32_t status = strtoul(argv[8], 0, 0);
    size_t size = (size_t)pitch * h + 2 * GUARD;
    uint8_t *mem = malloc(size);
    memset(mem, 0xa5, size);
    uint64_t scratch_size = (uint64_t)sos_plugin.scratch_kib * 1024;
    struct sos_fb_info fb = { .addr = mem + GUARD, .width = w, .height = h, .pitch = pitch,
                              .bpp = (uint8_t)bpp, .format = (uint8_t)format };
    struct sos_plugin_services svc = {
        .size = sizeof svc, .revision = SOS_PLUGIN_ABI_REVISION, .tsc_hz = 1000000000,
        .assets = asset, .assets_size = asset_size, .scratch = malloc(scratch_size),
        .scratch_size = scratch_size, .log = h_log, .memcpy = h_memcpy, .memset = h_memset,
        .lz4_decompress = lz4_decompress_safe, .timestamp = h_timestamp,
    };
    int rc = sos_plugin.init(&fb, &svc);
    if (rc) {
        fprintf(stderr, "init declined: %d\n", rc);
        return 3;
    }
    uint64_t total = 700;
    for (uint64_t done = 0; done * 100 <= total * percent; done++)
        sos_plugin.progress(done, total, SOS_PHASE_WRITING);
    if (status)
        sos_plugin.finish(status);
    f = fopen(argv[9], "wb");
    fwrite(mem, 1, size, f);
    fclose(f);
    return 0;
}
