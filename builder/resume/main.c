/*
 * resume_main: what qemu-boot/boot.S calls (built with BOOT_MAIN=resume_main) once it has
 * entered long mode on the loader's own identity map (all RAM writable, 1 GiB pages) and
 * stack. Order: copy the multiboot memory map out of firmware memory, check our own
 * configuration and the machine's RAM, take the disk over, check the image, verify every
 * chunk, restore, mark the image resumed, give the disk back, return into the host.
 * Why this order, and why a torn restore is never taken for success: docs/RESUME.md.
 */
#include <stdarg.h>
#include "resume.h"
#include "cpus.h"
#include "payload.h"
#include "disk.h"
#include "apic.h"
#include "failure.h"
#include "iommu.h"
#include "multiboot.h"
#include "port_io.h"
#include "printf.h"
#include "serial.h"
#include "string.h"
#include "vector.h"
#include "timer.h"

#ifndef RESUME_SERIAL_PORT
#define RESUME_SERIAL_PORT SERIAL_COM1
#endif
#define IDT_BYTES (256 * 16)

/* Filled in by the builder after linking (suspendos/build/resume.py), as for the payload. */
__attribute__((section(".data.payload_info"), used))
const volatile struct sos_payload_info sos_payload_info = { .magic = 0 };

/* 64-bit interrupt gates to builder/core/isr.S's stubs, written by the builder
 * (suspendos/build/idt.py) once the stub addresses are known. */
__attribute__((section(".data.idt"), aligned(16), used))
uint8_t sos_resume_idt[IDT_BYTES] = { 0 };

/* The handoff page: the host reads this block at blob.handoff = load_base + 0x1000 when
 * the handoff call "returns". resume.ld places it there. */
__attribute__((section(".handoff"), aligned(4096), used))
struct sos_handoff resume_handoff;

struct run sos_run;
int resume_ram_touched;
static struct boot_info boot;

static const char *const reason_names[] = {
#define RESUME_NAME(n, id, name) [n] = name,
    RESUME_REASONS(RESUME_NAME)
#undef RESUME_NAME
};

static __attribute__((noreturn)) void end(unsigned code)
{
    uint16_t port = sos_payload_info.debug_exit_port;
    cpus_stop();                        /* the APs wait for a STARTUP IPI, as after a reset */
    if (port)
        outl(port, code);
    for (;;)
        __asm__ volatile("cli; hlt");
}

/* stream.c reports disk errors through this, as in the payload: the status and message
 * land in the handoff block, and the caller decides what they mean. */
uint32_t fail(uint32_t status, const char *fmt, ...)
{
    struct sos_handoff *h = sos_run.handoff;
    char msg[sizeof h->message];
    va_list ap;
    va_start(ap, fmt);
    record_failure(h, status, 0, msg, fmt, ap);
    va_end(ap);
    return status;
}

void release_devices(void)
{
    /* Once saved RAM is written it is the restored kernel's: nothing may DMA into it any
     * more, so the controller is left stopped / reset (disk.h, DISK_GIVE_BACK_RESET). */
    if (sos_run.disk_open) {
        sos_run.disk_open = 0;
        disk_close(resume_ram_touched ? DISK_GIVE_BACK_RESET : DISK_GIVE_BACK_AS_FOUND);
    }
}

void refuse(enum resume_reason why, const char *fmt, ...)
{
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    kvsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (resume_ram_touched)             /* too late to refuse: RAM is no longer as found */
        restore_failed("%s: %s", reason_names[why], msg);
    release_devices();
    kprintf("@@RESUME refused %s %s\n", reason_names[why], msg);
    if (resume_refuse_hook)
        resume_refuse_hook(why, reason_names[why]);
    resume_pause("end");
    end(RESUME_EXIT_REFUSED + why);
}

void restore_failed(const char *fmt, ...)
{
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    kvsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    release_devices();
    kprintf("@@RESUME failed %s (RAM partly restored: the machine must be reset; the image "
            "stays valid)\n", msg);
    resume_pause("end");
    end(RESUME_EXIT_RESTORE_FAILED);
}

/* multiboot.c (shared with the test host) ends this way when the information is unusable. */
void host_fail(unsigned code, const char *fmt, ...)
{
    char msg[160];
    va_list ap;
    (void)code;
    va_start(ap, fmt);
    kvsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    refuse(REFUSE_BOOT_INFO, "%s", msg);
}

struct fault_frame {            /* as builder/core/isr.S and the CPU left it */
    uint64_t vector, error_code, rip, cs, rflags, rsp, ss;
};

static __attribute__((noreturn)) void fault_end(uint32_t apic, uint64_t vector,
                                                 uint64_t error, uint64_t rip, uint64_t cr2)
{
    static int in_fault;
    if (!in_fault++) {
        kprintf("@@RESUME fault vector=%lu error=0x%lx rip=0x%lx cr2=0x%lx cpu=apic%u ram=%s\n",
                vector, error, rip, cr2, apic,
                resume_ram_touched ? "partly-restored" : "untouched");
        release_devices();
    }
    end(RESUME_EXIT_FAULT);
}

__attribute__((noreturn)) void fault_handler(struct fault_frame *f)
{
    uint64_t cr2;
    __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
    cpus_fault_on_ap(f->vector, f->error_code, f->rip, cr2);  /* returns on the boot CPU */
    fault_end(apic_self_id(), f->vector, f->error_code, f->rip, cr2);
}

void resume_ap_fault(uint32_t apic, uint64_t vector, uint64_t error, uint64_t rip, uint64_t cr2)
{
    fault_end(apic, vector, error, rip, cr2);
}

void resume_progress(uint64_t done, uint64_t total)
{
    static uint64_t next;
    if (done == 0)
        next = 0;
    if (done >= next || done == total) {
        kprintf("@@PROGRESS %lu %lu\n", done, total);
        next = done + total / 50 + 1;
    }
}

static void load_idt(void)
{
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } idtr = {
        IDT_BYTES - 1, (uint64_t)(uintptr_t)sos_resume_idt };
    uint64_t first;
    memcpy(&first, sos_resume_idt, sizeof first);
    if (first)                          /* an unpatched IDT would only triple-fault */
        __asm__ volatile("lidt %0" :: "m"(idtr));
}

static void check_config(const struct sos_payload_info *info)
{
    extern char sos_resume_start[], sos_resume_end[];
    uint64_t base = (uintptr_t)sos_resume_start, end_ = info->load_base + info->reserved_size;
    if (info->magic != SOS_PAYLOAD_INFO_MAGIC || info->revision != SOS_PAYLOAD_INFO_REVISION ||
        info->size != sizeof *info)
        refuse(REFUSE_BAD_CONFIG, "payload info: magic 0x%x revision %u size %u", info->magic,
               info->revision, info->size);
    if (info->load_base != base || info->scratch_base < (uintptr_t)sos_resume_end ||
        info->scratch_base + info->scratch_size != end_ ||
        info->scratch_size < PAYLOAD_DISK_DMA_SIZE + 4 * SOS_PAGE_SIZE ||
        (info->block_size != 512 && info->block_size != 4096))
        refuse(REFUSE_BAD_CONFIG, "reserved region 0x%lx+0x%lx, scratch 0x%lx+0x%lx",
               info->load_base, info->reserved_size, info->scratch_base, info->scratch_size);
    if (!info->memory_count || !info->sector_count || !info->max_command_sectors)
        refuse(REFUSE_BAD_CONFIG, "empty memory or sector list");
    const struct sos_extent *ext = (const void *)(uintptr_t)info->sector_list;
    if (ext[0].count < SOS_IMAGE_HEADER_BLOCK / SOS_SECTOR_SIZE)
        refuse(REFUSE_BAD_CONFIG, "the first extent cannot hold the header block");
}

/* Every saved range must be RAM on this machine, as the firmware reports it now: a loader
 * booted on a machine with less (or differently placed) memory stops here. */
static void check_memory_map(const struct sos_payload_info *info)
{
    const struct sos_mem_range *r = (const void *)(uintptr_t)info->memory_list;
    for (uint32_t i = 0; i < info->memory_count; i++) {
        uint64_t a = r[i].start;
        while (a < r[i].end) {
            uint64_t reach = a;
            for (unsigned k = 0; k < boot.mmap_count; k++)
                if (boot.mmap[k].type == 1 && boot.mmap[k].start <= a && boot.mmap[k].end > a &&
                    boot.mmap[k].end > reach)
                    reach = boot.mmap[k].end;
            if (reach == a)
                refuse(REFUSE_MEMORY_MAP, "saved RAM 0x%lx-0x%lx: 0x%lx is not RAM on this "
                       "machine (another memory size?)", r[i].start, r[i].end, a);
            a = reach;
        }
    }
}

static uint64_t open_disk(const struct sos_payload_info *info)
{
    struct disk_config cfg = {
        .kind = info->disk_kind, .bar = info->ahci_abar, .bus = info->ahci_pci_bus,
        .dev = info->ahci_pci_dev, .fn = info->ahci_pci_fn, .port = info->ahci_port,
        .nsid = info->disk_nsid, .block_size = info->block_size,
    };
    uint32_t reg;      /* pre-boot DMA protection, or a firmware that left it on */
    if (resume_map_mmio(cfg.bar) || resume_map_mmio(info->iommu_base))
        refuse(REFUSE_DISK, "registers at 0x%lx or 0x%lx beyond the loader's map", cfg.bar,
               info->iommu_base);
    if (iommu_translating(info->iommu_kind, info->iommu_base, &reg))
        refuse(REFUSE_IOMMU_TRANSLATING, IOMMU_TRANSLATING_FMT,
               iommu_unit_name(info->iommu_kind), info->iommu_base,
               iommu_register_name(info->iommu_kind), reg);
    int rc = disk_open(&cfg, (void *)(uintptr_t)info->scratch_base, PAYLOAD_DISK_DMA_SIZE);
    const char *what = disk_last_error()->what;
    if (rc && cfg.kind == SOS_DISK_KIND_AHCI)
        refuse(REFUSE_DISK, "AHCI %02x:%02x.%x port %u: %s", cfg.bus, cfg.dev, cfg.fn, cfg.port,
               what ? what : "open failed");
    if (rc)
        refuse(REFUSE_DISK, "%s %02x:%02x.%x: %s", disk_driver_name, cfg.bus, cfg.dev, cfg.fn,
               what ? what : "open failed");
    sos_run.disk_open = 1;
    uint64_t sectors = 0;
    char model[41];
    rc = disk_identify(&sectors, model);
    if (rc)
        refuse(REFUSE_DISK, "IDENTIFY failed: %s", disk_last_error()->what);
    kprintf("@@DISK %lu sectors model \"%s\"\n", sectors, model);
    return sectors;
}

/* A refusal goes here instead of ending when the EFI entry's check set it (efi/entry.c):
 * boot services are still up then, and the firmware gets the machine back. */
void (*resume_refuse_hook)(enum resume_reason why, const char *name);
void (*resume_before_return)(struct sos_handoff *h);

struct boot_info *resume_boot(void)
{
    return &boot;
}

/* Both entries start so: our serial, our IDT when it has been written, the first line. */
void resume_start(int own_idt)
{
    serial_init(RESUME_SERIAL_PORT);
    if (own_idt)
        load_idt();
    kprintf("\n@@RESUME start\n");
}

/* Once `boot` holds this machine's memory map: our configuration and the machine's RAM,
 * before scratch or any saved page is written. */
void resume_begin(void)
{
    const struct sos_payload_info *info = (const struct sos_payload_info *)&sos_payload_info;
    struct sos_handoff *h = &resume_handoff;
    resume_pause_init(boot.cmdline);
    cpus_options(boot.cmdline);

    memset(h, 0, sizeof *h);
    h->magic = SOS_HANDOFF_MAGIC;
    h->revision = SOS_HANDOFF_REVISION;
    h->size = sizeof *h;
    h->serial_port = RESUME_SERIAL_PORT;
    sos_run.handoff = h;
    sos_run.info = info;
    check_config(info);
    check_memory_map(info);
}

uint64_t resume_open_disk(void)
{
    return open_disk(sos_run.info);
}

/* From the checks on: the disk, the image, the two passes, the return into the host. */
__attribute__((noreturn)) void resume_run(void)
{
    struct sos_handoff *h = sos_run.handoff;
    timer_init(0);
    vector_enter(0);        /* ChaCha20's SSE2/AVX2 path where the CPU allows it */
    cpus_discover();
    h->tsc_hz_used = timer_hz();
    h->tsc_source = timer_calibrated() ? SOS_TSC_PIT : SOS_TSC_FALLBACK;
    resume_pause("start");
    uint64_t sectors = resume_open_disk();
    h->tsc_start = rdtsc();                 /* from the first image read to the return */
    image_open(sectors, &boot);
    image_verify();
    resume_pause("verified");
    image_restore();
    cpus_stop();                            /* every AP waits for a STARTUP IPI again */
    image_mark_resumed();
    release_devices();
    if (resume_before_return)
        resume_before_return(h);
    resume_pause("after-release");
    h->tsc_end = rdtsc();
    resume_pause("restored");
    h->status = SOS_STATUS_RESUMED;
    memcpy(&h->context, image_context(), sizeof h->context);
    kprintf("@@RESUME returning rip=0x%lx rsp=0x%lx\n", h->context.rip, h->context.rsp);
    vector_leave(0);        /* our own XCR0/CR4 first; the context then loads the host's */
    cpu_resume(image_context());
}

void resume_main(uint32_t magic, uint32_t mbi)
{
    resume_start(1);
    /* First, before scratch or any saved page is written: the firmware's memory map
     * lives in low RAM (and the multiboot structures right after our image). */
    multiboot_read(magic, mbi, &boot);
    resume_begin();
    resume_run();
}
