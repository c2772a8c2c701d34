/*
 * Every exception ends the run in order: record what happened in the handoff block, give
 * the disk back, and unwind to the trampoline, which restores the host. No image header has
 * been written at that point (the writer writes it last), so a fault never leaves an image.
 */
#include "payload.h"
#include "plugin_host.h"
#include "printf.h"
#include "smp.h"
#include "vector.h"

struct fault_frame {            /* as isr.S and the CPU left it (SDM vol. 3, 6.14.1) */
    uint64_t vector, error_code, rip, cs, rflags, rsp, ss;
};

static const char *const vector_names[32] = {
    "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
    "#BR bound range", "#UD invalid opcode", "#NM device not available", "#DF double fault",
    "coprocessor overrun", "#TS invalid TSS", "#NP segment not present", "#SS stack fault",
    "#GP general protection", "#PF page fault", "reserved 15", "#MF x87 error",
    "#AC alignment check", "#MC machine check", "#XM SIMD exception", "#VE virtualization",
    "#CP control protection", "reserved 22", "reserved 23", "reserved 24", "reserved 25",
    "reserved 26", "reserved 27", "#HV hypervisor injection", "#VC VMM communication",
    "#SX security", "reserved 31",
};

static int in_fault;

/* A fault on an AP: recorded like one on the boot CPU, naming the CPU, unless the run has
 * already failed; the boot CPU notices (smp_status) and ends the run; this AP goes home.
 * Nothing is printed here: the boot CPU may be printing, and it prints this failure. */
static __attribute__((noreturn)) void ap_fault(struct sos_ap_context *ap, struct fault_frame *f)
{
    struct sos_handoff *h = sos_run.handoff;
    uint64_t cr2;
    __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
    uint32_t apic = h->cpus[ap->index].apic_id;
    fail_lock();
    if (h->status == SOS_STATUS_NOT_RUN) {
        h->status = SOS_STATUS_CPU_FAULT;
        h->fault_cpu = apic;
        h->fault_vector = (uint32_t)f->vector;
        h->fault_error_code = f->error_code;
        h->fault_rip = f->rip;
        h->fault_address = f->vector == 14 ? cr2 : 0;
        if (f->vector == 14)
            ksnprintf((char *)h->message, sizeof h->message, "cpu apic %u: #PF at %lx rip %lx",
                      apic, cr2, f->rip);
        else
            ksnprintf((char *)h->message, sizeof h->message, "cpu apic %u: %s at rip %lx",
                      apic, f->vector < 32 ? vector_names[f->vector] : "unexpected vector",
                      f->rip);
    }
    fail_unlock();
    smp_ap_fault_exit(ap);
}

__attribute__((noreturn)) void fault_handler(struct fault_frame *f)
{
    struct sos_ap_context *ap = smp_this_ap();
    if (ap)
        ap_fault(ap, f);
    /* First: inside a plugin hook the core's memory is read-only; back to the core's view. */
    const char *plugin = plugin_host_fault_enter();
    struct sos_handoff *h = sos_run.handoff;
    uint64_t cr2;
    __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
    if (in_fault++)             /* a fault while handling one: just get out */
        unwind_to_host();
    const char *name = f->vector < 32 ? vector_names[f->vector] : "unexpected vector";
    uint32_t status = plugin ? SOS_STATUS_PLUGIN_FAULT : SOS_STATUS_CPU_FAULT;
    h->fault_cpu = smp_apic_id();
    h->fault_vector = (uint32_t)f->vector;
    h->fault_error_code = f->error_code;
    h->fault_rip = f->rip;
    h->fault_address = f->vector == 14 ? cr2 : 0;
    /* Page-fault error code bits (SDM vol. 3, 4.7): P=0 not present, W/R=1 write,
     * I/D=4 instruction fetch. The message must fit handoff.message (64 bytes). */
    const char *access = f->error_code & 16 ? "fetch from" : f->error_code & 2 ? "write to"
                                                                             : "read of";
    if (plugin && f->vector == 14)      /* the name first: it must survive truncation */
        fail(status, "plugin %s: #PF %s %lx at rip %lx", plugin, access, cr2, f->rip);
    else if (plugin)
        fail(status, "plugin %s: %s at rip %lx", plugin, name, f->rip);
    else if (f->vector == 14)
        fail(status, "#PF %s %lx%s at rip %lx", access, cr2,
             f->error_code & 1 ? "" : " (not present)", f->rip);
    else
        fail(status, "%s at rip %lx", name, f->rip);
    release_devices();
    smp_stop();                 /* no AP may still run payload code when the host is back */
    h->tsc_end = rdtsc();
    unwind_to_host();
}

__attribute__((noreturn)) void unwind_to_host(void)
{
    /* The trampoline's exit path restores every register from the saved context, so the
     * stack pointer and registers it is entered with do not matter. */
    vector_leave(0);            /* the host's vector state back (nothing if not entered) */
    uint64_t exit = sos_run.info->trampoline_exit;
    __asm__ volatile("jmp *%0" :: "r"(exit));
    __builtin_unreachable();
}
