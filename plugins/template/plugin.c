/*
 * @NAME@: a suspendos plugin (made by `suspendos plugin new @NAME@`).
 *
 * Build:  suspendos plugin build @NAME@        -> @NAME@/build/@NAME@.o
 * Pack:   suspendos plugin pack @NAME@ --key KEY -o @NAME@.sop
 * Use:    suspendos qemu suspend ... --plugin @NAME@.sop --trust DIR-WITH-KEY.pub
 *
 * This example draws a thin line along the top of the screen as the image is written.
 * sdk/ is refreshed by every `plugin build`; docs/PLUGINS.md describes the ABI.
 */
#include "sos_plugin.h"

static const struct sos_plugin_services *svc;
static struct sos_fb_info fb;
static uint32_t color;
static int drawn;               /* pixels of the line drawn so far */

static int plugin_init(const struct sos_fb_info *f, const struct sos_plugin_services *s)
{
    svc = s;
    fb = *f;
    if (!sos_fb_bytes_per_pixel(&fb)) {
        svc->log("no framebuffer: nothing to draw");
        return 1;                /* declined: the run goes on without this plugin */
    }
    color = sos_fb_color(&fb, 0x30c0ff);
    svc->log("ready");
    return 0;
}

static void plugin_progress(uint64_t done, uint64_t total, uint32_t phase)
{
    if (phase != SOS_PHASE_WRITING || !total)
        return;
    int to = (int)(fb.width * done / total);
    sos_fb_fill(&fb, drawn, 0, to - drawn, 4, color);   /* only what is new */
    if (to > drawn)
        drawn = to;
}

static void plugin_finish(uint32_t status)
{
    if (status != SOS_STATUS_WRITTEN)
        sos_fb_fill(&fb, 0, 0, (int)fb.width, 4, sos_fb_color(&fb, 0xff0000));
}

/* name, scratch (KiB), hooks */
SOS_PLUGIN("@NAME@", 0, plugin_init, plugin_progress, plugin_finish);
