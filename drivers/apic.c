/*
 * INIT-SIPI-SIPI through the local APIC (apic.h has the contract). The sequence is the
 * SDM's (vol. 3, 8.4.4.1): INIT, 10 ms, STARTUP, 200 us, STARTUP, 200 us; then the AP has
 * until the caller's deadline to read its parameters out of the start page. An AP that
 * misses it gets INIT again, so it can never wake later and run on a page or stack that
 * has been handed to someone else.
 */
#include "apic.h"
#include "string.h"
#include "timer.h"

#define MSR_APIC_BASE       0x1B            /* IA32_APIC_BASE, SDM vol. 3 10.4.4 */
#define APIC_BASE_EXTD      (1ull << 10)    /* x2APIC mode (SDM vol. 3 10.12.1) */
#define MSR_X2APIC_ID       0x802
#define MSR_X2APIC_ICR      0x830           /* 64-bit ICR, destination in bits 63:32 */
#define XAPIC_ID            0x020
#define XAPIC_ICR_LOW       0x300
#define XAPIC_ICR_HIGH      0x310
#define ICR_INIT            0x00004500u     /* delivery mode INIT, level assert */
#define ICR_STARTUP         0x00004600u     /* delivery mode Start Up, vector in bits 7:0 */
#define ICR_PENDING         (1u << 12)      /* xAPIC delivery status: send pending */

/* What the AP loads (ap_start.S): the same paging mode as ours, nothing optional. */
#define CR0_AP  ((1u << 31) | (1u << 16) | (1u << 5) | (1u << 4) | (1u << 1) | 1u)
                                            /* PG WP NE ET MP PE; CD NW EM clear */
#define CR4_AP  ((1u << 5) | (1u << 9) | (1u << 10))    /* PAE OSFXSR OSXMMEXCPT */
#define EFER_LME (1u << 8)
#define EFER_NXE (1u << 11)

extern const char ap_start[], ap_start_end[], ap_start_params[], ap_start_pm32[],
    ap_start_lm64[], ap_start_gdt[], ap_start_gdt_end[];

static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return (uint64_t)hi << 32 | lo;
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" :: "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32))
                     : "memory");
}

static int x2apic(void)
{
    return (rdmsr(MSR_APIC_BASE) & APIC_BASE_EXTD) != 0;
}

static volatile uint32_t *xapic(void)
{
    return (volatile uint32_t *)(uintptr_t)(rdmsr(MSR_APIC_BASE) & 0xFFFFFF000ull);
}

uint32_t apic_self_id(void)
{
    return x2apic() ? (uint32_t)rdmsr(MSR_X2APIC_ID) : xapic()[XAPIC_ID / 4] >> 24;
}

static enum apic_start_result send_ipi(uint32_t apic_id, uint32_t icr)
{
    if (x2apic()) {                 /* no delivery status in x2APIC mode (10.12.9) */
        wrmsr(MSR_X2APIC_ICR, (uint64_t)apic_id << 32 | icr);
        return APIC_AP_STARTED;
    }
    volatile uint32_t *lapic = xapic();
    lapic[XAPIC_ICR_HIGH / 4] = apic_id << 24;
    lapic[XAPIC_ICR_LOW / 4] = icr;
    uint64_t deadline = timer_deadline_us(APIC_ICR_DEADLINE_US);
    while (lapic[XAPIC_ICR_LOW / 4] & ICR_PENDING)
        if (timer_expired(deadline))
            return APIC_ICR_STUCK;
    return APIC_AP_STARTED;
}

enum apic_start_result apic_send_init(uint32_t apic_id)
{
    return send_ipi(apic_id, ICR_INIT);
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

enum apic_start_result apic_start_ap(const struct ap_start_request *r)
{
    uint8_t *page = (uint8_t *)(uintptr_t)r->page;
    uint8_t *p = page + (ap_start_params - ap_start);
    memcpy(page, ap_start, (size_t)(ap_start_end - ap_start));
    put32(p + AP_PARAM_PM32, r->page + (uint32_t)(ap_start_pm32 - ap_start));
    put16(p + AP_PARAM_PM32 + 4, 0x08);
    put32(p + AP_PARAM_LM64, r->page + (uint32_t)(ap_start_lm64 - ap_start));
    put16(p + AP_PARAM_LM64 + 4, 0x18);
    put16(p + AP_PARAM_GDTR, (uint16_t)(ap_start_gdt_end - ap_start_gdt - 1));
    put32(p + AP_PARAM_GDTR + 2, r->page + (uint32_t)(ap_start_gdt - ap_start));
    put32(p + AP_PARAM_CR3, r->cr3);
    put32(p + AP_PARAM_CR4, CR4_AP);
    /* NXE as on this CPU: the shared page tables may use the NX bit only if it is set. */
    put32(p + AP_PARAM_EFER, EFER_LME | ((uint32_t)rdmsr(0xC0000080) & EFER_NXE));
    put32(p + AP_PARAM_CR0, CR0_AP);
    put64(p + AP_PARAM_STACK, r->stack_top);
    put64(p + AP_PARAM_ENTRY, (uint64_t)(uintptr_t)r->entry);
    put64(p + AP_PARAM_ARG, (uint64_t)(uintptr_t)r->arg);
    volatile uint32_t *started = (volatile uint32_t *)(p + AP_PARAM_STARTED);
    __atomic_store_n(started, 0, __ATOMIC_RELEASE);

    enum apic_start_result rc = send_ipi(r->apic_id, ICR_INIT);
    if (rc)
        return rc;
    timer_udelay(APIC_INIT_DELAY_US);
    for (int k = 0; k < 2; k++) {
        if ((rc = send_ipi(r->apic_id, ICR_STARTUP | (r->page >> 12))))
            return rc;
        timer_udelay(APIC_SIPI_DELAY_US);
        if (__atomic_load_n(started, __ATOMIC_ACQUIRE))
            return APIC_AP_STARTED;     /* no second STARTUP into a running AP */
    }
    uint64_t deadline = timer_deadline_us(r->deadline_us);
    while (!__atomic_load_n(started, __ATOMIC_ACQUIRE))
        if (timer_expired(deadline)) {
            /* Even one that read its parameters just now is stopped: it is left out. */
            rc = send_ipi(r->apic_id, ICR_INIT);
            return rc ? rc : APIC_AP_NO_ANSWER;
        }
    return APIC_AP_STARTED;
}
