/*
 * Waking the CPUs a host took offline (ap_wake.h): the local APIC's ICR, xAPIC through the
 * page PayloadInfo.lapic_base maps or x2APIC through its MSR, and the start page.
 */
#include "ap_wake.h"
#include "payload.h"
#include "smp.h"
#include "string.h"
#include "timer.h"

#define MSR_APIC_BASE     0x1B          /* IA32_APIC_BASE, SDM vol. 3 10.4.4 */
#define APIC_BASE_EXTD    (1ull << 10)  /* x2APIC mode (SDM vol. 3 10.12.1) */
#define APIC_BASE_EN      (1ull << 11)
#define MSR_X2APIC_ICR    0x830         /* SDM vol. 3 10.12.9: one 64-bit write */
#define XAPIC_ICR_LOW     0x300
#define XAPIC_ICR_HIGH    0x310
#define ICR_INIT          0x00000500u   /* delivery mode INIT (SDM vol. 3 10.6.1) */
#define ICR_STARTUP       0x00000600u   /* delivery mode Start Up, vector = page number */
#define ICR_ASSERT        (1u << 14)
#define ICR_LEVEL         (1u << 15)
#define ICR_PENDING       (1u << 12)    /* xAPIC delivery status: send pending */
/* SDM vol. 3 8.4.4.1: 10 ms after INIT, 200 us after each STARTUP. */
#define INIT_DELAY_US     10000
#define SIPI_DELAY_US     200
/* The ICR takes an IPI within microseconds; Linux polls its delivery status for up to
 * about 100 ms (native_safe_apic_wait_icr_idle, arch/x86/kernel/apic/apic.c). */
#define ICR_DEADLINE_US   100000
#define PAGE_LIMIT_32     (1ull << 32)

extern const char ap_wake16[], ap_wake16_end[], ap_wake32[], ap_wake64[];
void ap_wake_main(struct sos_ap_context *ctx);

static volatile uint32_t *xapic;        /* 0 in x2APIC mode */
static uint8_t *page;

static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return (uint64_t)hi << 32 | lo;
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" :: "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}

static void put32(unsigned off, uint32_t v) { memcpy(page + off, &v, 4); }
static void put64(unsigned off, uint64_t v) { memcpy(page + off, &v, 8); }

static void far_pointer(unsigned off, uint64_t target, uint16_t selector)
{
    put32(off, (uint32_t)target);
    memcpy(page + off + 4, &selector, 2);
}

const char *ap_wake_prepare(void)
{
    const struct sos_payload_info *info = sos_run.info;
    if (!info->ap_start_page)
        return "the target has no AP start page (reserved.ap_start)";
    uint64_t base = rdmsr(MSR_APIC_BASE);
    if (!(base & APIC_BASE_EN))
        return "the local APIC is disabled";
    if (base & APIC_BASE_EXTD)
        xapic = 0;
    else if ((base & 0xFFFFFFFFFF000ull) == info->lapic_base && info->lapic_base)
        xapic = (volatile uint32_t *)(uintptr_t)info->lapic_base;
    else
        return "the local APIC is not at the page the payload maps";
    if ((uintptr_t)ap_wake64 >= PAGE_LIMIT_32 || info->pml4 >= PAGE_LIMIT_32)
        return "the payload lies above 4 GiB";
    page = (uint8_t *)(uintptr_t)info->ap_start_page;
    memset(page, 0, 4096);
    memcpy(page, ap_wake16, (size_t)(ap_wake16_end - ap_wake16));
    static const uint64_t gdt[4] = {
        0, 0x00CF9A000000FFFFull,       /* 32-bit code, flat */
        0x00CF92000000FFFFull,          /* data, flat */
        0x00AF9A000000FFFFull,          /* 64-bit code */
    };
    memcpy(page + AP_WAKE_GDT, gdt, sizeof gdt);
    uint16_t limit = sizeof gdt - 1;
    memcpy(page + AP_WAKE_GDTR, &limit, 2);
    put32(AP_WAKE_GDTR + 2, (uint32_t)(info->ap_start_page + AP_WAKE_GDT));
    far_pointer(AP_WAKE_PM32, (uintptr_t)ap_wake32, AP_WAKE_SEL_CODE32);
    far_pointer(AP_WAKE_LM64, (uintptr_t)ap_wake64, AP_WAKE_SEL_CODE64);
    put32(AP_WAKE_CR3, (uint32_t)info->pml4);
    /* The boot CPU's control registers as the payload runs: an AP runs the same code. Not
     * CR4.PCIDE (needs CR3[11:0] = 0 and long mode first), PGE (the trampoline clears it),
     * CET or PKS (they need MSR state the AP does not have). */
    uint64_t cr0, cr4, xcr0 = 0;
    __asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    cr4 &= ~((1ull << 7) | (1ull << 17) | (1ull << 23) | (1ull << 24));
    if (cr4 & (1ull << 18)) {           /* OSXSAVE */
        uint32_t lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = (uint64_t)hi << 32 | lo;
    }
    put64(AP_WAKE_CR0, cr0 & ~(1ull << 3));     /* TS clear */
    put64(AP_WAKE_CR4, cr4);
    put64(AP_WAKE_XCR0, xcr0);
    __asm__ volatile("sgdt %0" : "=m"(*(uint8_t(*)[10])(page + AP_WAKE_GDTR64)));
    __asm__ volatile("sidt %0" : "=m"(*(uint8_t(*)[10])(page + AP_WAKE_IDTR64)));
    return 0;
}

static int send_ipi(uint32_t apic_id, uint32_t icr)
{
    /* The start page's stores must be visible before the IPI; a WRMSR to the x2APIC ICR is
     * not serializing (SDM vol. 3 10.12.3), hence the fence. */
    __asm__ volatile("mfence" ::: "memory");
    if (!xapic) {
        wrmsr(MSR_X2APIC_ICR, (uint64_t)apic_id << 32 | icr);
        return 0;
    }
    xapic[XAPIC_ICR_HIGH / 4] = apic_id << 24;
    xapic[XAPIC_ICR_LOW / 4] = icr;
    uint64_t deadline = timer_deadline_us(ICR_DEADLINE_US);
    while (xapic[XAPIC_ICR_LOW / 4] & ICR_PENDING)
        if (timer_expired(deadline))
            return -1;
    return 0;
}

void ap_wake_stop(uint32_t apic_id)
{
    send_ipi(apic_id, ICR_INIT | ICR_LEVEL | ICR_ASSERT);
    /* The level de-assert only older xAPICs need; x2APIC has none (SDM vol. 3 10.12.9). */
    if (xapic)
        send_ipi(apic_id, ICR_INIT | ICR_LEVEL);
}

int ap_wake_start(uint32_t apic_id, struct sos_ap_context *ctx)
{
    put64(AP_WAKE_CTX, (uint64_t)(uintptr_t)ctx);
    put64(AP_WAKE_STACK, ctx->stack_top);
    if (send_ipi(apic_id, ICR_INIT | ICR_LEVEL | ICR_ASSERT) ||
        (xapic && send_ipi(apic_id, ICR_INIT | ICR_LEVEL)))
        return -1;
    timer_udelay(INIT_DELAY_US);
    uint32_t vector = (uint32_t)(sos_run.info->ap_start_page >> 12);
    for (int k = 0; k < 2; k++) {       /* a started CPU ignores the second one */
        if (send_ipi(apic_id, ICR_STARTUP | vector))
            return -1;
        timer_udelay(SIPI_DELAY_US);
    }
    return 0;
}

void ap_wake_main(struct sos_ap_context *ctx)
{
    struct sos_cpu_slot *s = (struct sos_cpu_slot *)(uintptr_t)ctx->slot;
    __atomic_store_n(&s->state, SOS_CPU_CALLED, __ATOMIC_RELEASE);
    payload_ap_main(ctx);
    ap_wake_halt(ctx);
}

__attribute__((noreturn)) void ap_wake_halt(struct sos_ap_context *ctx)
{
    struct sos_cpu_slot *s = (struct sos_cpu_slot *)(uintptr_t)ctx->slot;
    __atomic_store_n(&s->state, SOS_CPU_LEFT, __ATOMIC_RELEASE);
    for (;;)
        __asm__ volatile("cli; hlt" ::: "memory");
}
