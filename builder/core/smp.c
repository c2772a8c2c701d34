/*
 * The APs in the payload (protocol: formats/smp.py). Each AP the host handed in is called
 * into the blob's AP trampoline, which loads the payload's page tables, GDT and IDT and
 * this AP's own stack, then runs payload_ap_main: it reports in, then runs its share of each
 * job smp_run posts until smp_stop tells it to leave. Everything the CPUs share is in this
 * file and uses the GCC __atomic builtins (acquire/release pairs named below).
 */
#include "ap_wake.h"
#include "payload.h"
#include "printf.h"
#include "smp.h"
#include "string.h"
#include "timer.h"
#include "vector.h"

/* Each AP's stack: its share of a job needs little (the deepest is the AEAD seal with the
 * AVX2 keystream, ~1.6 KiB). */
#define AP_STACK_SIZE (8 * 1024)

struct ap {
    struct sos_ap_context ctx;      /* first: the trampoline gets &ctx */
    uint32_t answered;              /* set by the AP when it enters payload_ap_main */
    uint32_t cpu;                   /* 1.. in the run, 0 when left out */
    uint32_t in_fault;
    uint32_t woken;                 /* offline in the host: started by us (ap_wake.c) */
};

static struct ap aps[SOS_MAX_CPUS];
static uint8_t ap_stacks[SOS_MAX_CPUS][AP_STACK_SIZE] __attribute__((aligned(16)));

static struct {
    unsigned cpus;                  /* in the run, boot CPU included */
    uint32_t generation;            /* bumped (release) to post a job */
    uint32_t done;                  /* APs finished with the current job */
    uint32_t leave;                 /* set (release) by smp_stop */
    uint32_t abort;                 /* an AP faulted: the run is over */
    uint32_t woken;                 /* slots the boot CPU sent GO to, as a bit mask */
    uint32_t started;               /* of those, the ones it started itself (OFFLINE) */
    uint32_t posted;                /* a job is out: smp_wait owes a wait */
    smp_job_fn fn;
    void *arg;
} smp = { .cpus = 1 };

uint32_t smp_apic_id(void)
{
    uint32_t a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
    return b >> 24;
}

unsigned smp_cpus(void)
{
    return smp.cpus;
}

struct sos_ap_context *smp_this_ap(void)
{
    struct sos_handoff *h = sos_run.handoff;
    if (!smp.woken)
        return 0;
    uint32_t id = smp_apic_id();
    for (uint32_t i = 0; i < h->cpu_count && i < SOS_MAX_CPUS; i++)
        if ((smp.woken >> i & 1) && h->cpus[i].apic_id == id)
            return &aps[i].ctx;
    return 0;
}

void payload_ap_main(struct sos_ap_context *ctx)
{
    struct ap *ap = (struct ap *)ctx;
    vector_enter(ctx->index + 1);   /* the host's vector state saved, as on the boot CPU */
    __atomic_store_n(&ap->answered, 1, __ATOMIC_RELEASE);
    /* The boot CPU numbers us (ap->cpu) before the first job: wait for a job or leave. */
    uint32_t seen = 0;
    unsigned spins = 0;
    for (;;) {
        uint32_t g;
        while ((g = __atomic_load_n(&smp.generation, __ATOMIC_ACQUIRE)) == seen &&
               !__atomic_load_n(&smp.leave, __ATOMIC_ACQUIRE))
            cpu_relax_step(&spins);
        if (g == seen) {
            vector_leave(ctx->index + 1);
            return;                 /* leave: back through the trampoline to the host */
        }
        seen = g;
        if (ap->cpu)
            smp.fn(ap->cpu, smp.cpus, smp.arg);
        __atomic_add_fetch(&smp.done, 1, __ATOMIC_RELEASE);
    }
}

/* Take back a GO the AP has not acknowledged; 1 if it was taken back. */
static int withdraw(struct sos_cpu_slot *s)
{
    uint32_t go = SOS_CPU_CMD_GO;
    return __atomic_compare_exchange_n(&s->command, &go, SOS_CPU_CMD_NONE, 0,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* The CPUs the host took offline (state OFFLINE): started one at a time from the AP start
 * page (they share it), each given the same deadline as a parked one; one that does not
 * answer gets INIT at once, so it cannot start late, and is left out. Returns cpus. */
static unsigned wake_offline(struct sos_handoff *h, uint32_t n, unsigned cpus)
{
    const char *why = 0;
    int prepared = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct sos_cpu_slot *s = &h->cpus[i];
        if (s->state != SOS_CPU_OFFLINE)
            continue;
        if (!prepared++)
            why = ap_wake_prepare();
        if (why) {
            kprintf("@@CPU apic %u offline, not woken: %s\n", s->apic_id, why);
            continue;
        }
        struct ap *ap = &aps[i];
        memset(ap, 0, sizeof *ap);
        ap->ctx.slot = (uint64_t)(uintptr_t)s;
        ap->ctx.index = i;
        ap->ctx.stack_top = (uint64_t)(uintptr_t)(ap_stacks[i] + AP_STACK_SIZE);
        ap->woken = 1;
        smp.woken |= 1u << i;
        smp.started |= 1u << i;
        int sent = ap_wake_start(s->apic_id, &ap->ctx, SMP_ANSWER_DEADLINE_US) == 0;
        uint64_t deadline = timer_deadline_us(SMP_ANSWER_DEADLINE_US);
        while (sent && !__atomic_load_n(&ap->answered, __ATOMIC_ACQUIRE) &&
               !timer_expired(deadline))
            cpu_relax();
        if (!__atomic_load_n(&ap->answered, __ATOMIC_ACQUIRE)) {
            ap_wake_stop(s->apic_id);
            smp.woken &= ~(1u << i);
            smp.started &= ~(1u << i);
            s->state = SOS_CPU_STOPPED;
            if (sent)
                kprintf("@@CPU apic %u woken, did not answer within %lu ms: left out\n",
                        s->apic_id, SMP_ANSWER_DEADLINE_US / 1000);
            else
                kprintf("@@CPU apic %u woken, did not start within %lu ms: left out\n",
                        s->apic_id, SMP_ANSWER_DEADLINE_US / 1000);
            h->cpus_missing++;
            continue;
        }
        ap->cpu = cpus++;
    }
    return cpus;
}

unsigned smp_start(void)
{
    struct sos_handoff *h = sos_run.handoff;
    const struct sos_payload_info *info = sos_run.info;
    uint32_t n = h->cpu_count < SOS_MAX_CPUS ? h->cpu_count : SOS_MAX_CPUS;
    h->cpus_used = 1;
    h->cpus_missing = 0;
    if (h->cpu_count > SOS_MAX_CPUS)
        kprintf("@@CPU %u APs handed in, %u slots: the rest are left out\n", h->cpu_count,
                SOS_MAX_CPUS);
    for (uint32_t i = 0; i < n; i++) {
        struct sos_cpu_slot *s = &h->cpus[i];
        if (s->state == SOS_CPU_OFFLINE)
            continue;                       /* woken below */
        if (s->state != SOS_CPU_PARKED) {
            kprintf("@@CPU apic %u slot %u not parked (state %u): left out\n", s->apic_id, i,
                    s->state);
            h->cpus_missing++;
            continue;
        }
        struct ap *ap = &aps[i];
        memset(ap, 0, sizeof *ap);
        ap->ctx.slot = (uint64_t)(uintptr_t)s;
        ap->ctx.index = i;
        ap->ctx.stack_top = (uint64_t)(uintptr_t)(ap_stacks[i] + AP_STACK_SIZE);
        s->entry = info->ap_entry;
        s->arg = (uint64_t)(uintptr_t)&ap->ctx;
        smp.woken |= 1u << i;
        __atomic_store_n(&s->command, SOS_CPU_CMD_GO, __ATOMIC_RELEASE);
    }
    uint64_t deadline = timer_deadline_us(SMP_ANSWER_DEADLINE_US);
    unsigned cpus = 1;
    for (uint32_t i = 0; i < n; i++) {
        if (!(smp.woken >> i & 1))
            continue;
        struct ap *ap = &aps[i];
        struct sos_cpu_slot *s = &h->cpus[i];
        int late = 0;
        while (!__atomic_load_n(&ap->answered, __ATOMIC_ACQUIRE)) {
            if (!timer_expired(deadline)) {
                cpu_relax();
                continue;
            }
            if (withdraw(s)) {              /* it never took the GO: it stays parked */
                smp.woken &= ~(1u << i);
                late = 1;
                break;
            }
            if (late++)                     /* it took the GO: give it one more period */
                break;
            deadline = timer_deadline_us(SMP_ANSWER_DEADLINE_US);
        }
        if (!__atomic_load_n(&ap->answered, __ATOMIC_ACQUIRE)) {
            kprintf("@@CPU apic %u did not answer within %lu ms: left out\n", s->apic_id,
                    SMP_ANSWER_DEADLINE_US / 1000);
            h->cpus_missing++;
            continue;
        }
        ap->cpu = cpus++;
    }
    cpus = wake_offline(h, n, cpus);
    smp.cpus = cpus;
    h->cpus_used = cpus;
    kprintf("@@CPUS used=%u missing=%u\n", cpus, h->cpus_missing);
    return cpus;
}

void smp_post(smp_job_fn fn, void *arg)
{
    if (!smp.woken || __atomic_load_n(&smp.abort, __ATOMIC_ACQUIRE))
        return;
    smp.fn = fn;
    smp.arg = arg;
    __atomic_store_n(&smp.done, 0, __ATOMIC_RELAXED);
    __atomic_add_fetch(&smp.generation, 1, __ATOMIC_RELEASE);
    smp.posted = 1;
}

uint32_t smp_wait(void)
{
    struct sos_handoff *h = sos_run.handoff;
    if (!smp.posted)
        return smp_status();
    smp.posted = 0;
    uint32_t woken = 0;
    for (uint32_t m = smp.woken; m; m &= m - 1)
        woken++;
    /* No deadline of its own: every AP's share is bounded like ours, and a fault on one
     * sets abort. */
    unsigned spins = 0;
    while (__atomic_load_n(&smp.done, __ATOMIC_ACQUIRE) < woken) {
        if (__atomic_load_n(&smp.abort, __ATOMIC_ACQUIRE))
            break;
        cpu_relax_step(&spins);
    }
    if (__atomic_load_n(&smp.abort, __ATOMIC_ACQUIRE)) {
        kprintf("@@FAIL %x %s\n", h->status, (const char *)h->message);
        return h->status;
    }
    return 0;
}

uint32_t smp_run(smp_job_fn fn, void *arg)
{
    if (smp_status())
        return smp_status();
    smp_post(fn, arg);
    fn(0, smp.cpus, arg);
    return smp_wait();
}

uint32_t smp_status(void)
{
    return __atomic_load_n(&smp.abort, __ATOMIC_ACQUIRE) ? sos_run.handoff->status : 0;
}

void smp_stop(void)
{
    struct sos_handoff *h = sos_run.handoff;
    if (!smp.woken)
        return;
    __atomic_store_n(&smp.leave, 1, __ATOMIC_RELEASE);
    uint64_t deadline = timer_deadline_us(SMP_LEAVE_DEADLINE_US);
    for (uint32_t i = 0; i < SOS_MAX_CPUS; i++) {
        if (!(smp.woken >> i & 1))
            continue;
        /* CALLED until the AP trampoline's last store (LEFT), which the host's park loop
         * may already have turned into PARKED. */
        while (__atomic_load_n(&h->cpus[i].state, __ATOMIC_ACQUIRE) == SOS_CPU_CALLED &&
               !timer_expired(deadline))
            cpu_relax();
        if (h->cpus[i].state == SOS_CPU_CALLED)
            kprintf("@@CPU apic %u did not leave within %lu ms\n", h->cpus[i].apic_id,
                    SMP_LEAVE_DEADLINE_US / 1000);
        if (smp.started >> i & 1) {     /* back to waiting for a STARTUP IPI, left or not */
            ap_wake_stop(h->cpus[i].apic_id);
            h->cpus[i].state = SOS_CPU_STOPPED;
        }
    }
    smp.woken = 0;
    smp.started = 0;
}

__attribute__((noreturn)) void smp_ap_fault_exit(struct sos_ap_context *ap)
{
    vector_leave(ap->index + 1);
    __atomic_store_n(&smp.abort, 1, __ATOMIC_RELEASE);
    if (((struct ap *)ap)->woken)       /* no host to go back to: halt until the INIT */
        ap_wake_halt(ap);
    uint64_t exit = sos_run.info->ap_exit;
    __asm__ volatile("jmp *%0" :: "r"(exit), "D"(ap));
    __builtin_unreachable();
}
