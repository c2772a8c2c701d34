/*
 * Waking the CPUs a host took offline (ap_wake.h) through the shared AP start
 * (drivers/apic.h): the start page is the target's (mapped 1:1, writable and executable:
 * the start code runs there under our CR3), the xAPIC page is mapped uncached when the
 * local APIC is in xAPIC mode (x2APIC needs no mapping).
 */
#include "ap_wake.h"
#include "apic.h"
#include "payload.h"
#include "smp.h"

#define MSR_APIC_BASE     0x1B          /* IA32_APIC_BASE, SDM vol. 3 10.4.4 */
#define APIC_BASE_EXTD    (1ull << 10)  /* x2APIC mode (SDM vol. 3 10.12.1) */
#define APIC_BASE_EN      (1ull << 11)
#define BELOW_4G          (1ull << 32)
/* CR4 bits an AP does not take from the boot CPU: PGE (the trampoline clears it), PCIDE
 * (needs CR3[11:0] = 0), CET and PKS (they need MSR state the AP does not have). */
#define CR4_NOT_COPIED    ((1ull << 7) | (1ull << 17) | (1ull << 23) | (1ull << 24))
#define CR4_OSXSAVE       (1ull << 18)

void ap_wake_main(struct sos_ap_context *ctx);

/* The boot CPU's state under the payload, which each woken AP loads (SGDT/SIDT images). */
static struct {
    uint8_t gdtr[10], idtr[10];
    uint16_t cs, ds;
    uint64_t cr0, cr4, xcr0;
} boot;

static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return (uint64_t)hi << 32 | lo;
}

const char *ap_wake_prepare(void)
{
    const struct sos_payload_info *info = sos_run.info;
    if (!info->ap_start_page)
        return "the target has no AP start page (reserved.ap_start)";
    uint64_t base = rdmsr(MSR_APIC_BASE);
    if (!(base & APIC_BASE_EN))
        return "the local APIC is disabled";
    if (!(base & APIC_BASE_EXTD) &&
        (!info->lapic_base || (base & 0xFFFFFFFFFF000ull) != info->lapic_base))
        return "the local APIC is not at the page the payload maps";
    if (info->pml4 >= BELOW_4G)         /* loaded in 32-bit mode (drivers/apic.h) */
        return "the payload's page tables lie above 4 GiB";
    __asm__ volatile("sgdt %0" : "=m"(boot.gdtr));
    __asm__ volatile("sidt %0" : "=m"(boot.idtr));
    __asm__ volatile("mov %%cs, %0" : "=r"(boot.cs));
    __asm__ volatile("mov %%ds, %0" : "=r"(boot.ds));
    __asm__ volatile("mov %%cr0, %0" : "=r"(boot.cr0));
    __asm__ volatile("mov %%cr4, %0" : "=r"(boot.cr4));
    boot.cr0 &= ~(1ull << 3);           /* TS */
    boot.cr4 &= ~CR4_NOT_COPIED;
    if (boot.cr4 & CR4_OSXSAVE) {
        uint32_t lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        boot.xcr0 = (uint64_t)hi << 32 | lo;
    }
    return 0;
}

/* Entered from the start page in long mode on the page's GDT, no IDT (drivers/apic.h):
 * the payload's tables and control registers first, before the page is reused. */
static void ap_wake_entry(void *arg)
{
    __asm__ volatile("lgdt %0" :: "m"(boot.gdtr));
    __asm__ volatile("lidt %0" :: "m"(boot.idtr));
    __asm__ volatile("movzwq %0, %%rax; pushq %%rax; leaq 1f(%%rip), %%rax; pushq %%rax; "
                     "lretq; 1:" :: "m"(boot.cs) : "rax", "memory");
    __asm__ volatile("mov %0, %%ds; mov %0, %%es; mov %0, %%ss" :: "r"(boot.ds));
    __asm__ volatile("mov %0, %%fs; mov %0, %%gs" :: "r"((uint16_t)0));
    __asm__ volatile("mov %0, %%cr4" :: "r"(boot.cr4) : "memory");
    __asm__ volatile("mov %0, %%cr0" :: "r"(boot.cr0) : "memory");
    if (boot.xcr0)
        __asm__ volatile("xsetbv" :: "c"(0), "a"((uint32_t)boot.xcr0),
                         "d"((uint32_t)(boot.xcr0 >> 32)));
    ap_wake_main(arg);
}

int ap_wake_start(uint32_t apic_id, struct sos_ap_context *ctx, uint64_t deadline_us)
{
    const struct sos_payload_info *info = sos_run.info;
    struct ap_start_request r = {
        .apic_id = apic_id, .page = (uint32_t)info->ap_start_page,
        .cr3 = (uint32_t)info->pml4, .stack_top = ctx->stack_top,
        .entry = ap_wake_entry, .arg = ctx, .deadline_us = deadline_us,
    };
    return apic_start_ap(&r) == APIC_AP_STARTED ? 0 : -1;
}

void ap_wake_stop(uint32_t apic_id)
{
    apic_send_init(apic_id);
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
