/*
 * Starting, using and stopping the loader's APs (cpus.h). Shared state is this file's
 * `run` block, read and written with the GCC __atomic builtins (release on post, acquire
 * on the APs' side; `done` the other way).
 *
 * The start page: the lowest 4 KiB page at or above 0x8000 (else 0x1000) below 0xA0000
 * that the firmware's memory map calls RAM; it may be saved RAM of the image, so its bytes
 * are copied aside first and put back once every AP has left it (each loads the loader's
 * own GDT and IDT before it answers). The restore passes that follow write it as saved.
 */
#include "apic.h"
#include "cpus.h"
#include "multiboot.h"
#include "payload.h"
#include "printf.h"
#include "resume.h"
#include "string.h"
#include "timer.h"

#define PAGE                4096u
#define START_PREFERRED     0x8000u
#define START_LOWEST        0x1000u
#define START_LIMIT         0xA0000u        /* the SIPI vector cannot address the VGA hole */
/* A share of one batch is a few MiB of decoding: milliseconds, seconds under emulation. */
#define CPUS_JOB_DEADLINE_US (60ul * 1000 * 1000)

extern uint8_t boot_pml4[], boot_gdt[], boot_gdt_end[];

static struct {
    unsigned cpus;                  /* in the run, boot CPU included */
    uint32_t ids[SOS_MAX_CPUS];     /* APIC ids: [0] the boot CPU, then CPUs 1.. */
    uint32_t found[SOS_MAX_CPUS];
    unsigned found_count;
    uint32_t generation, done, answered;
    uint32_t abort;                 /* an AP faulted: `fault` holds what happened */
    cpus_job fn;
    void *arg;
    uint64_t posted_at;
    struct { uint64_t vector, error, rip, cr2; uint32_t apic; } fault;
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } idtr;
} run = { .cpus = 1 };

static uint8_t page_copy[PAGE];
static uint32_t deaf = ~0u;         /* tests: the APIC id of an AP that never answers */
static uint32_t faulty = ~0u;       /* tests: the APIC id of an AP that faults in its job */

/* The number after `word` ("ap-deaf=") as a whole word of the command line, or ~0u. */
static uint32_t option(const char *cmdline, const char *word, size_t len)
{
    uint32_t found = ~0u;
    for (const char *p = cmdline; *p; p++) {
        if ((p != cmdline && p[-1] != ' ') || memcmp(p, word, len))
            continue;
        uint32_t id = 0;
        const char *d = p + len;
        for (; *d >= '0' && *d <= '9' && id < 1u << 24; d++)
            id = id * 10 + (uint32_t)(*d - '0');
        if (d != p + len && (!*d || *d == ' '))
            found = id;
    }
    return found;
}

void cpus_options(const char *cmdline)
{
    deaf = option(cmdline, "ap-deaf=", 8);
    faulty = option(cmdline, "ap-fault=", 9);
}

static void relax(unsigned *spins)
{
    /* PAUSE only now and then: see builder/core/smp.h, cpu_relax_step. */
    if ((++*spins & 255) == 0)
        __asm__ volatile("pause" ::: "memory");
    else
        __asm__ volatile("" ::: "memory");
}

/* On the AP, from drivers/ap_start.S: our GDT (boot.S's: 0x08 code, 0x10 data) and IDT,
 * then jobs until INIT. */
static void ap_main(void *arg)
{
    unsigned cpu = (unsigned)(uintptr_t)arg;
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } gdtr = {
        (uint16_t)(boot_gdt_end - boot_gdt - 1), (uint64_t)(uintptr_t)boot_gdt };
    __asm__ volatile(
        "lgdt %0\n\t"
        "pushq $0x08\n\t"
        "leaq 1f(%%rip), %%rax\n\t"
        "pushq %%rax\n\t"
        "lretq\n"
        "1:\tmovw $0x10, %%ax\n\t"
        "movw %%ax, %%ds\n\t"
        "movw %%ax, %%es\n\t"
        "movw %%ax, %%ss\n\t"
        "lidt %1"
        :: "m"(gdtr), "m"(run.idtr) : "rax", "memory");
    if (apic_self_id() == deaf)         /* started, but never answers: the boot CPU's */
        for (;;)                        /* deadline and INIT are what is tested */
            __asm__ volatile("pause");
    __atomic_store_n(&run.answered, cpu, __ATOMIC_RELEASE);
    uint32_t seen = 0;
    unsigned spins = 0;
    for (;;) {
        uint32_t g;
        while ((g = __atomic_load_n(&run.generation, __ATOMIC_ACQUIRE)) == seen)
            relax(&spins);
        seen = g;
        if (apic_self_id() == faulty)   /* a non-canonical address: #GP on this AP */
            *(volatile uint64_t *)0x8000000000000000ull = 0;
        run.fn(cpu, run.arg);
        __atomic_add_fetch(&run.done, 1, __ATOMIC_RELEASE);
    }
}

unsigned cpus_discover(void)
{
    const char *source;
    run.ids[0] = apic_self_id();
    run.found_count = cpus_find(run.ids[0], run.found, SOS_MAX_CPUS, &source);
    kprintf("@@CPUS found=%u source=%s\n", run.found_count + 1, source);
    return run.found_count;
}

unsigned cpus_found(void)
{
    return run.found_count;
}

static uint32_t start_page(const struct boot_info *boot)
{
    uint64_t self = sos_run.info->load_base, self_end = self + sos_run.info->reserved_size;
    for (uint64_t from = START_PREFERRED;; from = START_LOWEST) {
        for (uint64_t p = from; p + PAGE <= START_LIMIT; p += PAGE) {
            int ram = 0, used = p + PAGE > self && p < self_end;
            for (unsigned k = 0; k < boot->mmap_count; k++)
                ram |= boot->mmap[k].type == 1 && boot->mmap[k].start <= p &&
                       boot->mmap[k].end >= p + PAGE;
            for (unsigned k = 0; k < boot->info_range_count; k++)
                used |= boot->info_ranges[k].start < p + PAGE && boot->info_ranges[k].end > p;
            if (ram && !used)
                return (uint32_t)p;
        }
        if (from == START_LOWEST)
            return 0;
    }
}

unsigned cpus_start(const struct boot_info *boot, unsigned n, uint8_t *stacks, uint64_t stride)
{
    struct sos_handoff *h = sos_run.handoff;
    if (n > run.found_count)
        n = run.found_count;
    h->cpus_used = 1;
    h->cpus_missing = 0;
    if (!n)
        return 1;
    uint32_t page = start_page(boot);
    if (!page) {
        kprintf("@@CPU no RAM page below 0xA0000 to start APs from: one CPU\n");
        return 1;
    }
    __asm__ volatile("sidt %0" : "=m"(run.idtr));
    memcpy(page_copy, (void *)(uintptr_t)page, PAGE);
    for (unsigned i = 0; i < n; i++) {
        uint32_t id = run.found[i];
        unsigned cpu = run.cpus;
        struct ap_start_request req = {
            .apic_id = id, .page = page, .cr3 = (uint32_t)(uintptr_t)boot_pml4,
            .stack_top = (uint64_t)(uintptr_t)(stacks + (uint64_t)cpu * stride),
            .entry = ap_main, .arg = (void *)(uintptr_t)cpu,
            .deadline_us = CPUS_ANSWER_DEADLINE_US,
        };
        enum apic_start_result rc = apic_start_ap(&req);
        uint64_t deadline = timer_deadline_us(CPUS_ANSWER_DEADLINE_US);
        while (!rc && __atomic_load_n(&run.answered, __ATOMIC_ACQUIRE) != cpu)
            if (timer_expired(deadline)) {
                apic_send_init(id);         /* between the page and us: stop it there */
                rc = APIC_AP_NO_ANSWER;
            }
        if (rc) {
            kprintf("@@CPU apic %u %s (%lu ms): left out\n", id, rc == APIC_ICR_STUCK ?
                    "could not be sent an IPI" : "did not answer in time", CPUS_ANSWER_DEADLINE_US / 1000);
            h->cpus_missing++;
            continue;
        }
        run.ids[run.cpus++] = id;
    }
    memcpy((void *)(uintptr_t)page, page_copy, PAGE);  /* every AP has left it */
    h->cpus_used = run.cpus;
    kprintf("@@CPUS used=%u missing=%u start_page=0x%x\n", run.cpus, h->cpus_missing, page);
    return run.cpus;
}

unsigned cpus_in_run(void)
{
    return run.cpus;
}

void cpus_post(cpus_job fn, void *arg)
{
    if (run.cpus < 2)
        return;
    run.fn = fn;
    run.arg = arg;
    __atomic_store_n(&run.done, 0, __ATOMIC_RELAXED);
    run.posted_at = timer_tsc();
    __atomic_add_fetch(&run.generation, 1, __ATOMIC_RELEASE);
}

void cpus_wait(void)
{
    if (run.cpus < 2)
        return;
    uint64_t deadline = timer_deadline_us(CPUS_JOB_DEADLINE_US);
    unsigned spins = 0;
    while (__atomic_load_n(&run.done, __ATOMIC_ACQUIRE) < run.cpus - 1) {
        if (__atomic_load_n(&run.abort, __ATOMIC_ACQUIRE))
            resume_ap_fault(run.fault.apic, run.fault.vector, run.fault.error, run.fault.rip,
                            run.fault.cr2);
        if (timer_expired(deadline))
            refuse(REFUSE_BAD_CONFIG, "%u of %u APs did not finish their share within %lu s",
                           run.cpus - 1 - run.done, run.cpus - 1,
                           CPUS_JOB_DEADLINE_US / 1000000);
        relax(&spins);
    }
}

void cpus_stop(void)
{
    for (unsigned i = 1; i < run.cpus; i++)
        apic_send_init(run.ids[i]);
    run.cpus = 1;
}

int cpus_fault_on_ap(uint64_t vector, uint64_t error, uint64_t rip, uint64_t cr2)
{
    if (run.cpus < 2 || apic_self_id() == run.ids[0])
        return 0;
    run.fault.vector = vector;
    run.fault.error = error;
    run.fault.rip = rip;
    run.fault.cr2 = cr2;
    run.fault.apic = apic_self_id();
    __atomic_store_n(&run.abort, 1, __ATOMIC_RELEASE);
    for (;;)
        __asm__ volatile("cli; hlt");
}
