/*
 * payload_main: what the trampoline calls once the payload's GDT, IDT, stack and page
 * tables are loaded. Checks the handoff block and its own configuration, borrows the disk,
 * writes the image, gives the disk back and returns a status (formats/status.py).
 */
#include "payload.h"
#include "disk.h"
#include "failure.h"
#include "iommu.h"
#include "image_writer.h"
#include "plugin_host.h"
#include "printf.h"
#include "raw_ceiling.h"
#include "serial.h"
#include "smp.h"
#include "string.h"
#include "vector.h"
#include "timer.h"

/* Filled in by the builder after linking; all zero here so it lands in .data. */
__attribute__((section(".data.payload_info"), used))
const volatile struct sos_payload_info sos_payload_info = { .magic = 0 };

struct run sos_run;

#define PAUSE_DEADLINE_US (600ull * 1000 * 1000)   /* the tool dumps RAM in seconds */

static uint32_t fail_spin;

/* The first failure wins, whichever CPU records it (fault.c records an AP's). */
void fail_lock(void)
{
    while (__atomic_exchange_n(&fail_spin, 1, __ATOMIC_ACQUIRE))
        cpu_relax();
}

void fail_unlock(void)
{
    __atomic_store_n(&fail_spin, 0, __ATOMIC_RELEASE);
}

uint32_t fail(uint32_t status, const char *fmt, ...)
{
    struct sos_handoff *h = sos_run.handoff;
    char msg[sizeof h->message];
    va_list ap;
    va_start(ap, fmt);
    fail_lock();                /* the first failure wins, whichever CPU records it */
    record_failure(h, status, 1, msg, fmt, ap);
    fail_unlock();
    va_end(ap);
    if (!smp_this_ap())         /* the serial line is the boot CPU's */
        kprintf("@@FAIL %x %s\n", status, msg);
    return status;
}

void release_devices(void)
{
    /* After a suspend the host's driver takes the disk back as it left it (disk.h). */
    if (sos_run.disk_open) {
        sos_run.disk_open = 0;
        disk_close(DISK_GIVE_BACK_AS_FOUND);
    }
}

void pause_point(const char *where)
{
    /* Drain stale input first, then wait for one byte: the tool's "dump taken". */
    while (serial_try_getc() >= 0)
        ;
    kprintf("@@PAUSE %s\n", where);
    uint64_t deadline = timer_deadline_us(PAUSE_DEADLINE_US);
    while (serial_try_getc() < 0) {
        if (timer_expired(deadline)) {
            kprintf("@@PAUSE-TIMEOUT %s\n", where);
            return;
        }
    }
}

/* How timer_init got its rate: the host's (when plausible), the PIT's, or the fallback that
 * the statistics must not hide (SOS_TSC_*, suspendos/formats/handoff.py). */
static uint32_t tsc_source(uint64_t host_hz)
{
    if (!timer_calibrated())
        return SOS_TSC_FALLBACK;
    return host_hz ? SOS_TSC_HOST : SOS_TSC_PIT;
}

static uint32_t check_config(const struct sos_handoff *h, const struct sos_payload_info *info)
{
    if (h->magic != SOS_HANDOFF_MAGIC || h->revision != SOS_HANDOFF_REVISION ||
        h->size != sizeof *h)
        return SOS_STATUS_BAD_HANDOFF;
    if (info->magic != SOS_PAYLOAD_INFO_MAGIC || info->revision != SOS_PAYLOAD_INFO_REVISION ||
        info->size != sizeof *info ||
        (info->block_size != 512 && info->block_size != 4096))
        return SOS_STATUS_BAD_PAYLOAD_INFO;
    return 0;
}

/* Every range of the memory list must be RAM the host says it has (handoff.memmap): a
 * target that claims more RAM than the machine has is refused before anything is read. */
static uint32_t check_memory(const struct sos_handoff *h, const struct sos_payload_info *info)
{
    const struct sos_mem_range *want = (const void *)(uintptr_t)info->memory_list;
    const struct sos_mem_range *have = (const void *)(uintptr_t)h->memmap;
    if (!h->memmap || !h->memmap_count)
        return 0;                               /* the host did not say */
    for (uint32_t i = 0; i < info->memory_count; i++) {
        int inside = 0;
        for (uint32_t k = 0; k < h->memmap_count && !inside; k++)
            inside = have[k].start <= want[i].start && want[i].end <= have[k].end;
        if (!inside)
            return fail(SOS_STATUS_MEMORY_MISMATCH, "memory %lx-%lx is not RAM on this machine",
                        want[i].start, want[i].end);
    }
    return 0;
}

static uint32_t open_disk(const struct sos_payload_info *info)
{
    struct disk_config cfg = {
        .kind = info->disk_kind, .bar = info->ahci_abar, .bus = info->ahci_pci_bus,
        .dev = info->ahci_pci_dev, .fn = info->ahci_pci_fn, .port = info->ahci_port,
        .nsid = info->disk_nsid, .block_size = info->block_size,
    };
    uint32_t reg;
    if (iommu_translating(info->iommu_kind, info->iommu_base, &reg))
        return fail(SOS_STATUS_IOMMU_TRANSLATING, IOMMU_TRANSLATING_FMT,
                    iommu_unit_name(info->iommu_kind), info->iommu_base,
                    iommu_register_name(info->iommu_kind), reg);
    /* The driver's queues / command tables live at the start of scratch. */
    int rc = disk_open(&cfg, (void *)(uintptr_t)info->scratch_base, PAYLOAD_DISK_DMA_SIZE);
    if (rc) {
        const struct disk_error *e = disk_last_error();
        if (cfg.kind == SOS_DISK_KIND_AHCI)
            return fail(rc, "AHCI %02x:%02x.%x port %u: %s", cfg.bus, cfg.dev, cfg.fn,
                        cfg.port, e->what ? e->what : "open failed");
        return fail(rc, "%s %02x:%02x.%x: %s", disk_driver_name, cfg.bus, cfg.dev, cfg.fn,
                    e->what ? e->what : "open failed");
    }
    sos_run.disk_open = 1;
    uint64_t sectors = 0;
    char model[41];
    rc = disk_identify(&sectors, model);
    if (rc)
        return fail(rc, "IDENTIFY failed: %s", disk_last_error()->what);
    const struct sos_extent *ext = (const void *)(uintptr_t)info->sector_list;
    for (uint32_t i = 0; i < info->sector_count; i++)
        if (ext[i].lba + ext[i].count > sectors)
            return fail(SOS_STATUS_DISK_TOO_SMALL,
                        "extent %u ends at sector %lu, the disk has %lu", i,
                        ext[i].lba + ext[i].count, sectors);
    kprintf("@@DISK %lu sectors model \"%s\"\n", sectors, model);
    return 0;
}

/*
 * Deliberate faults (PayloadInfo.selftest), so tests can prove that the page tables stop
 * what they must and that every exception ends in an orderly abort. Never returns when the
 * fault happens, which is the point.
 */
uint32_t payload_main(struct sos_handoff *h);

/* The first AP writes saved RAM, which is writable in the host's page tables but not in
 * the payload's: the #PF proves the AP runs under the payload's. */
static void ap_write_saved_ram(unsigned cpu, unsigned cpus, void *arg)
{
    const struct sos_payload_info *info = arg;
    const struct sos_mem_range *r = (const void *)(uintptr_t)info->memory_list;
    (void)cpus;
    if (cpu == 1)
        *(volatile uint64_t *)(uintptr_t)(r[info->memory_count - 1].start + 0x1000) = 1;
}

static void selftest(const struct sos_payload_info *info)
{
    const struct sos_mem_range *ranges = (const void *)(uintptr_t)info->memory_list;
    extern char sos_stack_guard[];
    volatile uint64_t *p;
    switch (info->selftest) {
    case SOS_SELFTEST_WRITE_SAVED_RAM:       /* saved RAM is read-only */
        p = (volatile uint64_t *)(uintptr_t)(ranges[info->memory_count - 1].start + 0x1000);
        *p = 0x5afe5afe5afe5afeull;
        break;
    case SOS_SELFTEST_EXECUTE_DATA: {        /* data is never executable */
        static uint8_t ret_insn[16] = { 0xc3 };
        ((void (*)(void))(uintptr_t)ret_insn)();
        break;
    }
    case SOS_SELFTEST_DIVIDE_ERROR: {
        volatile uint32_t zero = 0, one = 1;
        one /= zero;
        break;
    }
    case SOS_SELFTEST_READ_UNMAPPED:         /* the stack guard page is not present */
        p = (volatile uint64_t *)(uintptr_t)sos_stack_guard;
        (void)*p;
        break;
    case SOS_SELFTEST_WRITE_TEXT:            /* code is read-only */
        p = (volatile uint64_t *)(uintptr_t)&payload_main;
        *p = 0;
        break;
    case SOS_SELFTEST_AP_WRITE_SAVED_RAM:    /* ...for the APs too; ends the run in order */
        smp_run(ap_write_saved_ram, (void *)(uintptr_t)info);
        break;
    }
}

uint32_t payload_main(struct sos_handoff *h)
{
    const struct sos_payload_info *info = (const struct sos_payload_info *)&sos_payload_info;
    sos_run.handoff = h;
    sos_run.info = info;
    uint32_t rc = check_config(h, info);
    if (rc) {
        if (rc != SOS_STATUS_BAD_HANDOFF)
            h->status = rc;
        return rc;
    }
    h->status = SOS_STATUS_NOT_RUN;
    serial_init((h->flags & SOS_HANDOFF_QUIET) ? 0 : h->serial_port);
    timer_init(h->tsc_hz);
    h->tsc_hz_used = timer_hz();
    h->tsc_source = tsc_source(h->tsc_hz);
    kprintf("@@PAYLOAD start tsc_hz=%lu tsc_source=%u\n", h->tsc_hz_used, h->tsc_source);
    vector_enter(0);            /* the host's vector state saved, the path chosen */
    /* The APs first: taking GO, a host AP's call pushes onto its own stack, which is saved
     * RAM. From here on no CPU writes saved RAM, so the pause below sees what is saved. */
    smp_start();
    if (h->flags & SOS_HANDOFF_PAUSE_BEFORE_READ)
        pause_point("before-read");
    h->tsc_start = rdtsc();
    if (info->selftest)
        selftest(info);
    rc = smp_status();
    if (!rc)
        rc = check_memory(h, info);
    if (rc) {
        smp_stop();
        vector_leave(0);
        h->tsc_end = rdtsc();
        return h->status;
    }

    plugin_host_init();         /* first frame; plugins never see the disk */
    rc = open_disk(info);
    if (!rc)
        rc = (h->flags & SOS_HANDOFF_RAW_CEILING) ? raw_ceiling() : write_image();
    plugin_host_finish(rc ? h->status : SOS_STATUS_WRITTEN);   /* once; the writer's call wins */
    release_devices();
    smp_stop();
    if (h->flags & SOS_HANDOFF_PAUSE_BEFORE_RETURN)
        pause_point("before-return");
    h->tsc_end = rdtsc();
    if (!rc)
        h->status = SOS_STATUS_WRITTEN;
    kprintf("@@PAYLOAD done status=%x\n", h->status);
    vector_leave(0);
    return h->status;
}
