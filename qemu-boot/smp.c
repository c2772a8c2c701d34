/*
 * The test host's APs. How many: QEMU's fw_cfg FW_CFG_NB_CPUS (docs/specs/fw_cfg.rst in
 * QEMU), the -smp count; a host for real machines reads the ACPI MADT's processor local
 * APIC entries instead (ACPI 6.5, 5.2.12.2), and Linux has its own CPU masks. With a plain
 * -smp N, QEMU gives the CPUs APIC ids 0 .. N-1, the boot CPU 0.
 * Start: INIT-SIPI-SIPI by drivers/apic.c (Intel SDM vol. 3, 8.4.4.1), one AP at a time;
 * each enters drivers/ap_start.S at AP_START_PAGE and then ap_main() here, on a stack of
 * its own.
 * Park: poll the handoff slot for GO; take it with a lock cmpxchg (the payload may withdraw
 * it by the same swap), call slot->entry(slot), then check the AP's own CPU state came back.
 */
#include "apic.h"
#include "cpu_tables.h"
#include "exit_codes.h"
#include "port_io.h"
#include "printf.h"
#include "smp.h"
#include "string.h"
#include "timer.h"

#define FW_CFG_PORT_SEL   0x510
#define FW_CFG_PORT_DATA  0x511
#define FW_CFG_SIGNATURE  0x00
#define FW_CFG_NB_CPUS    0x05

/* After the handoff an AP is back in its park loop a few instructions after LEFT. */
#define AP_PARK_DEADLINE_US   (5ull * 1000 * 1000)

#define AP_STACK_SIZE 16384
#define RFLAGS_ARITH  0x8d5ull          /* CF PF AF ZF SF OF: not state a call keeps */

struct ap_state {
    uint64_t cr0, cr3, cr4, efer, fs_base, gs_base, rflags;
    uint8_t gdtr[10], idtr[10];
    uint16_t cs, ss, ds;
    uint8_t xmm[16][16];            /* the payload saves and restores them on APs too */
};

struct ap {
    struct ap_state before, after;
    uint32_t calls, bad, bad_at;
    int deaf;
};

static volatile uint32_t ap_checked_in;
static struct sos_handoff *ap_handoff;
static struct ap aps[SOS_MAX_CPUS];
static uint8_t ap_stacks[SOS_MAX_CPUS][AP_STACK_SIZE] __attribute__((aligned(16)));

static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return (uint64_t)hi << 32 | lo;
}

extern uint8_t boot_pml4[];

static uint32_t lapic_id(void)
{
    uint32_t a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
    return b >> 24;
}

unsigned smp_cpu_count(void)
{
    char sig[4];
    outw(FW_CFG_PORT_SEL, FW_CFG_SIGNATURE);
    for (int i = 0; i < 4; i++)
        sig[i] = (char)inb(FW_CFG_PORT_DATA);
    if (memcmp(sig, "QEMU", 4))
        return 1;
    outw(FW_CFG_PORT_SEL, FW_CFG_NB_CPUS);
    unsigned n = inb(FW_CFG_PORT_DATA);
    n |= (unsigned)inb(FW_CFG_PORT_DATA) << 8;
    return n ? n : 1;
}

#define XMM_EACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) \
    X(13) X(14) X(15)

/* Canaries in xmm0-15 (nothing in this -mgeneral-regs-only host touches them after). */
static void fill_xmm(uint32_t slot)
{
    static uint64_t pat[16][2] __attribute__((aligned(16)));
    for (int n = 0; n < 16; n++) {
        pat[n][0] = 0x41505F584D4D0000ull + (slot << 8) + n;
        pat[n][1] = ~pat[n][0];
    }
#define LOAD(n) __asm__ volatile("movdqa %0, %%xmm" #n :: "m"(pat[n]));
    XMM_EACH(LOAD)
#undef LOAD
}

static void snapshot(struct ap_state *s)
{
#define STORE(n) __asm__ volatile("movdqu %%xmm" #n ", %0" : "=m"(s->xmm[n]));
    XMM_EACH(STORE)
#undef STORE
    __asm__ volatile("mov %%cr0, %0" : "=r"(s->cr0));
    __asm__ volatile("mov %%cr3, %0" : "=r"(s->cr3));
    __asm__ volatile("mov %%cr4, %0" : "=r"(s->cr4));
    __asm__ volatile("sgdt %0" : "=m"(s->gdtr));
    __asm__ volatile("sidt %0" : "=m"(s->idtr));
    __asm__ volatile("mov %%cs, %0" : "=r"(s->cs));
    __asm__ volatile("mov %%ss, %0" : "=r"(s->ss));
    __asm__ volatile("mov %%ds, %0" : "=r"(s->ds));
    __asm__ volatile("pushfq; popq %0" : "=r"(s->rflags));
    s->rflags &= ~RFLAGS_ARITH;
    s->efer = rdmsr(0xC0000080);
    s->fs_base = rdmsr(0xC0000100);
    s->gs_base = rdmsr(0xC0000101);
}

static void park(struct sos_cpu_slot *slot, struct ap *ap)
{
    /* PAUSE only now and then: under multi-threaded TCG each one takes QEMU's global lock
     * (see builder/core/smp.h, cpu_relax_step). */
    for (unsigned spins = 0;; spins++) {
        uint32_t go = SOS_CPU_CMD_GO;
        if (ap->deaf || __atomic_load_n(&slot->command, __ATOMIC_ACQUIRE) != go ||
            !__atomic_compare_exchange_n(&slot->command, &go, SOS_CPU_CMD_ACK, 0,
                                         __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            if ((spins & 255) == 255)
                __asm__ volatile("pause" ::: "memory");
            else
                __asm__ volatile("" ::: "memory");
            continue;
        }
        __atomic_store_n(&slot->state, SOS_CPU_CALLED, __ATOMIC_RELEASE);
        ((void (*)(struct sos_cpu_slot *))(uintptr_t)slot->entry)(slot);
        snapshot(&ap->after);
        if (memcmp(&ap->before, &ap->after, sizeof ap->before)) {
            ap->bad++;
            const uint8_t *b = (const void *)&ap->before, *a = (const void *)&ap->after;
            for (unsigned k = 0; k < sizeof ap->before; k++)
                if (a[k] != b[k]) { ap->bad_at = k; break; }
        }
        ap->calls++;
        __atomic_store_n(&slot->state, SOS_CPU_PARKED, __ATOMIC_RELEASE);
    }
}

/* Entered from drivers/ap_start.S in long mode, interrupts off, on its own stack. */
static void ap_main(void *arg)
{
    uint32_t i = (uint32_t)(uintptr_t)arg;
    cpu_tables_load_ap();
    struct sos_cpu_slot *slot = &ap_handoff->cpus[i];
    struct ap *ap = &aps[i];
    fill_xmm(i);
    snapshot(&ap->before);
    slot->apic_id = lapic_id();
    __atomic_store_n(&slot->state, SOS_CPU_PARKED, __ATOMIC_RELEASE);
    __atomic_store_n(&ap_checked_in, i + 1, __ATOMIC_RELEASE);
    park(slot, ap);
}

void smp_start_aps(struct sos_handoff *h, int deaf)
{
    unsigned cpus = smp_cpu_count();
    unsigned n = cpus - 1 < SOS_MAX_CPUS ? cpus - 1 : SOS_MAX_CPUS;
    h->cpu_count = 0;
    memset(h->cpus, 0, sizeof h->cpus);
    memset(aps, 0, sizeof aps);
    if (!n) {
        kprintf("@@APS count=0\n");
        return;
    }
    if (!timer_calibrated())
        timer_init(0);
    if (apic_self_id() != 0)
        host_fail(EXIT_AP_STATE, "the boot CPU's APIC id is %u, not 0", apic_self_id());
    ap_handoff = h;
    for (unsigned i = 0; i < n; i++) {
        uint32_t id = i + 1;
        aps[i].deaf = (int)id == deaf;
        __atomic_store_n(&ap_checked_in, 0, __ATOMIC_RELEASE);
        struct ap_start_request req = {
            .apic_id = id, .page = AP_START_PAGE, .cr3 = (uint32_t)(uintptr_t)boot_pml4,
            .stack_top = (uint64_t)(uintptr_t)(ap_stacks[i] + AP_STACK_SIZE),
            .entry = ap_main, .arg = (void *)(uintptr_t)i, .deadline_us = APIC_AP_DEADLINE_US,
        };
        enum apic_start_result rc = apic_start_ap(&req);
        if (rc)
            host_fail(EXIT_AP_STATE, "AP with APIC id %u %s", id, rc == APIC_ICR_STUCK ?
                      "could not be sent an IPI (ICR stuck)" : "did not start within 10 s");
        /* It has its parameters; wait until it is on our tables and parked, so the next
         * AP may reuse the start page and the boot variables. */
        uint64_t deadline = timer_deadline_us(APIC_AP_DEADLINE_US);
        while (__atomic_load_n(&ap_checked_in, __ATOMIC_ACQUIRE) != i + 1)
            if (timer_expired(deadline))
                host_fail(EXIT_AP_STATE, "AP with APIC id %u did not check in within 10 s",
                          id);
        h->cpu_count = i + 1;
    }
    kprintf("@@APS count=%u", n);
    for (unsigned i = 0; i < n; i++)
        kprintf(" %u%s", h->cpus[i].apic_id, aps[i].deaf ? "(deaf)" : "");
    kprintf("\n");
}

int smp_check_aps(struct sos_handoff *h, int resumed)
{
    int ok = 1;
    uint64_t deadline = timer_deadline_us(AP_PARK_DEADLINE_US);
    for (uint32_t i = 0; i < h->cpu_count && i < SOS_MAX_CPUS; i++) {
        struct sos_cpu_slot *s = &h->cpus[i];
        while (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != SOS_CPU_PARKED &&
               !timer_expired(deadline))
            __asm__ volatile("pause" ::: "memory");
        /* Parked, no GO left pending, state intact; the deaf one never called; after a
         * resume the APs were started afresh and not called at all. */
        int good = s->state == SOS_CPU_PARKED && s->command != SOS_CPU_CMD_GO &&
                   !aps[i].bad && aps[i].calls <= 1 &&
                   !((aps[i].deaf || resumed) && aps[i].calls);
        kprintf("@@AP apic=%u slot=%u calls=%u state=%u cpu=%s", s->apic_id, i, aps[i].calls,
                s->state, good ? "ok" : "bad");
        if (aps[i].bad)             /* the first byte of struct ap_state that differed */
            kprintf(" changed_at=%u", aps[i].bad_at);
        kprintf("\n");
        ok &= good;
    }
    return ok;
}

void smp_hand_in_offline(struct sos_handoff *h, int deaf)
{
    unsigned cpus = smp_cpu_count();
    unsigned n = cpus - 1 < SOS_MAX_CPUS ? cpus - 1 : SOS_MAX_CPUS;
    memset(h->cpus, 0, sizeof h->cpus);
    memset(aps, 0, sizeof aps);
    for (unsigned i = 0; i < n; i++)
        h->cpus[i] = (struct sos_cpu_slot){ .apic_id = i + 1, .state = SOS_CPU_OFFLINE };
    if (deaf >= 0 && n < SOS_MAX_CPUS) {
        if ((unsigned)deaf <= n)
            host_fail(EXIT_BAD_BOOT_INFO, "ap_deaf=%d with ap_offline must name an APIC id "
                      "no CPU has (above %u)", deaf, n);
        h->cpus[n++] = (struct sos_cpu_slot){ .apic_id = (uint32_t)deaf,
                                              .state = SOS_CPU_OFFLINE };
    }
    h->cpu_count = n;
    kprintf("@@APS offline=%u", n);
    for (unsigned i = 0; i < n; i++)
        kprintf(" %u", h->cpus[i].apic_id);
    kprintf("\n");
}

int smp_check_offline(struct sos_handoff *h)
{
    int ok = 1;
    for (uint32_t i = 0; i < h->cpu_count && i < SOS_MAX_CPUS; i++) {
        int good = h->cpus[i].state == SOS_CPU_STOPPED;
        kprintf("@@AP apic=%u slot=%u offline state=%u cpu=%s\n", h->cpus[i].apic_id, i,
                h->cpus[i].state, good ? "ok" : "bad");
        ok &= good;
    }
    return ok;
}
