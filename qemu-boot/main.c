/*
 * The QEMU test host: QEMU boots it with -kernel, the suspend module blob arrives as
 * multiboot module 0 (-initrd). It fills RAM with a reproducible mix, loads the blob,
 * checksums every page, hands off, and afterwards proves that nothing outside the reserved
 * region changed and the CPU state came back. Serial lines starting with "@@" are the
 * protocol the Python side reads (README.md); the exit code table is in exit_codes.h.
 */
#include "blob.h"
#include "cmdline.h"
#include "cpu_tables.h"
#include "exit_codes.h"
#include "fill.h"
#include "handoff_call.h"
#include "layout.h"
#include "multiboot.h"
#include "pagesum.h"
#include "pause.h"
#include "printf.h"
#include "serial.h"
#include "smp.h"
#include "vbe.h"

static struct boot_info boot;
static struct host_options opt;
static struct blob blob;
static struct layout lay;
static struct cpu_snapshot before, after;

static const char *const class_names[] = { "fill", "keep", "skip" };
static const char *const kind_names[] = { "zero", "random", "text", "pattern" };

static void fill_ram(void)
{
    uint64_t done = 0, counts[KIND_COUNT] = { 0 };
    unsigned shown = 0;
    kprintf("@@FILL 0\n");
    for (unsigned r = 0; r < lay.region_count; r++) {
        const struct region *g = &lay.regions[r];
        if (g->cls != RC_FILL)
            continue;
        for (uint64_t a = g->start; a < g->end; a += PAGE_SIZE) {
            counts[fill_page(a)]++;
            unsigned pct = (unsigned)(++done * 10 / lay.fill_pages) * 10;
            if (pct > shown)
                kprintf("@@FILL %u\n", shown = pct);
        }
    }
    kprintf("@@FILLSTATS");
    for (int k = 0; k < KIND_COUNT; k++)
        kprintf(" %s=%lu", kind_names[k], counts[k]);
    kprintf("\n");
}

/* Tell the payload what RAM this machine has (whole pages of the firmware's usable
 * ranges), so it can refuse a target whose memory list claims RAM that is not there. */
static struct sos_mem_range host_ram[MB_MAX_MMAP];

static void describe_ram(struct sos_handoff *h)
{
    unsigned n = 0;
    for (unsigned i = 0; i < boot.mmap_count; i++) {
        uint64_t s = (boot.mmap[i].start + 4095) & ~4095ull, e = boot.mmap[i].end & ~4095ull;
        if (boot.mmap[i].type == 1 && s < e) {
            host_ram[n].start = s;
            host_ram[n].end = e;
            n++;
        }
    }
    h->memmap = (uint64_t)(uintptr_t)host_ram;
    h->memmap_count = n;
}

/* The whole handoff block as one line of hex, for suspendos.formats.handoff.Handoff. */
static void print_handoff(const struct sos_handoff *h)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *p = (const uint8_t *)h;
    char buf[128];
    unsigned n = 0;
    kprintf("@@HANDOFF ");
    for (unsigned i = 0; i < sizeof *h; i++) {
        buf[n++] = hex[p[i] >> 4];
        buf[n++] = hex[p[i] & 15];
        if (n == sizeof buf) {
            serial_write(buf, n);
            n = 0;
        }
    }
    serial_write(buf, n);
    kprintf("\n");
}

/* The framebuffer the suspend module's plugins draw on (target [framebuffer]). */
static void set_display(const struct host_options *o)
{
    struct vbe_mode m;
    if (!o->vbe_bpp)
        kprintf("@@VBE off\n");
    else if (vbe_set_mode(o->vbe_width, o->vbe_height, o->vbe_bpp, &m))
        kprintf("@@VBE none (no Bochs VBE adapter, or it refused %ux%ux%u)\n", o->vbe_width,
                o->vbe_height, o->vbe_bpp);
    else
        kprintf("@@VBE %ux%ux%u pitch=%u\n", m.width, m.height, m.bpp, m.pitch);
}

static int success(uint32_t status)
{
    return status == SOS_STATUS_WRITTEN || status == SOS_STATUS_RESUMED;
}

void host_main(uint32_t magic, uint32_t mbi)
{
    serial_init(SERIAL_COM1);
    cpu_tables_init();
    kprintf("\n@@HOST start\n");

    multiboot_read(magic, mbi, &boot);
    for (unsigned i = 0; i < boot.mmap_count; i++)
        kprintf("@@MMAP 0x%lx 0x%lx %u\n", boot.mmap[i].start, boot.mmap[i].end,
                boot.mmap[i].type);
    cmdline_parse(boot.cmdline, &opt);
    kprintf("@@OPTIONS seed=0x%lx mix=%u,%u,%u,%u flags=0x%x\n", opt.seed, opt.mix[0],
            opt.mix[1], opt.mix[2], opt.mix[3], opt.handoff_flags);
    set_display(&opt);

    if (!boot.module_count)
        host_fail(EXIT_NO_MODULE, "no multiboot module: pass the blob with -initrd");
    const struct mb_module *mod = &boot.modules[0];
    kprintf("@@MODULE 0x%lx 0x%lx\n", mod->start, mod->end);
    blob_verify((const void *)(uintptr_t)mod->start, mod->end - mod->start, &blob);
    const struct sos_blob_header *h = blob.header;
    kprintf("@@BLOB size=%lu load_base=0x%lx reserved_size=0x%lx entry=0x%lx handoff=0x%lx "
            "segments=%u\n", h->blob_size, h->load_base, h->reserved_size, h->entry,
            h->handoff, h->segment_count);
    exception_set_payload(h->load_base, h->reserved_size);

    if (opt.ap_offline)
        layout_give_ap_page();
    layout_build(&boot, h->load_base, h->reserved_size, &lay);
    for (unsigned r = 0; r < lay.region_count; r++)
        kprintf("@@REGION 0x%lx 0x%lx %s\n", lay.regions[r].start, lay.regions[r].end,
                class_names[lay.regions[r].cls]);
    kprintf("@@TABLE 0x%lx 0x%lx\n", lay.table_addr, lay.table_addr + lay.table_size);

    fill_init(&opt);
    fill_ram();

    struct sos_handoff *ho = blob_load(&blob);
    ho->flags = opt.handoff_flags;
    ho->serial_port = SERIAL_COM1;
    ho->tsc_hz = opt.tsc_hz;
    describe_ram(ho);
    if (opt.ap_offline)
        smp_hand_in_offline(ho, opt.ap_deaf);
    else
        smp_start_aps(ho, opt.ap_deaf);

    kprintf("@@AVX %s\n", cpu_enable_avx() ? "on" : "off");
    kprintf("@@RAMHASH 0x%016lx\n", pagesum_record(&lay));
    kprintf("@@HOST ready pages=%lu fill=%lu keep=%lu\n", lay.total_pages, lay.fill_pages,
            lay.keep_pages);

    uint32_t status = (uint32_t)handoff_call(h->entry, ho, &before, &after);

    /* From here on also the path of a resume: the machine was rebooted and RAM restored
     * underneath, so the UART is set up again before anything is printed. */
    serial_init(SERIAL_COM1);
    kprintf("\n@@HOST back\n");
    /* Back through a resume: everything below checks the RAM the loader restored against
     * the checksums recorded above (the table, in RAM, came back with it) and the CPU
     * state against `before` (restored too), exactly as after a normal return. */
    if (status == SOS_STATUS_RESUMED)
        kprintf("@@HOST resumed pages=%lu\n", ho->pages_saved);
    /* The tool dumped RAM before the suspend (pause=before): let it dump again now, before
     * the checks below write anything but our stack (suspendos.qemu.resume host_ram_dump). */
    if (status == SOS_STATUS_RESUMED && (opt.handoff_flags & SOS_HANDOFF_PAUSE_BEFORE_READ))
        host_pause("after-resume");
    if (ho->status != status)
        kprintf("@@STATUS returned=0x%x handoff=0x%x\n", status, ho->status);
    print_handoff(ho);
    /* After a resume the machine was reset: the APs wait for a STARTUP IPI, as after a
     * boot. Start them again, as a kernel brings its CPUs back online. */
    /* Handed in offline: each woken one was sent INIT again; start them as Linux's add_cpu
     * would (the payload's AP start page is ours again). */
    int offline_ok = opt.ap_offline && status != SOS_STATUS_RESUMED ?
        smp_check_offline(ho) : 1;
    if (status == SOS_STATUS_RESUMED || opt.ap_offline)
        smp_start_aps(ho, opt.ap_offline ? -1 : opt.ap_deaf);
    int aps_ok = smp_check_aps(ho, status == SOS_STATUS_RESUMED || opt.ap_offline) &&
                 offline_ok;
    uint64_t changed = pagesum_compare(&lay);
    int cpu_ok = cpu_compare(&before, &after, status == SOS_STATUS_RESUMED);
    kprintf("@@RESULT status=0x%x changed_pages=%lu cpu=%s aps=%s\n", status, changed,
            cpu_ok ? "ok" : "bad", aps_ok ? "ok" : "bad");
    if (changed)
        host_exit(EXIT_MEMORY_CHANGED);
    if (!cpu_ok)
        host_exit(EXIT_CPU_STATE);
    if (!aps_ok)
        host_exit(EXIT_AP_STATE);
    host_exit(success(status) ? EXIT_OK : EXIT_PAYLOAD_FAILED);
}
