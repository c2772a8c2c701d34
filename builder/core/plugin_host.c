/*
 * Calling plugins (formats/plugin.py has the ABI and the rules).
 *
 * The builder links every plugin on pages of its own and generates, per plugin, a page-table
 * view in which the core's memory is read-only and only the plugin's data, stack and scratch
 * and the framebuffer are writable (suspendos/plugins/link.py). It describes each plugin in
 * sos_plugin_table (patched into .data like sos_payload_info). A hook runs through
 * plugin_call: the core's callee-saved registers and stack pointer are kept in the core's
 * memory, out of the plugin's reach; CR3 switches to the plugin's view and RSP to the plugin's
 * own stack; afterwards both come back from the core's memory, whatever the plugin did to its
 * registers. A fault inside a hook reaches fault_handler on the plugin's stack (mapped
 * writable in both views), which calls plugin_host_fault_enter first.
 */
#include "payload.h"
#include "plugin_host.h"
#include "lz4.h"
#include "printf.h"
#include "string.h"

/* Filled in by the builder after linking; all zero (no plugins) here, so it lands in .data. */
__attribute__((section(".data.plugin_table"), used))
const volatile struct sos_plugin_table sos_plugin_table = { .magic = 0 };

static struct sos_fb_info fb_info;
static struct sos_plugin_services services[SOS_MAX_PLUGINS];
static const struct sos_plugin *active[SOS_MAX_PLUGINS];   /* NULL: absent or declined */
static uint32_t plugin_count, last_percent, last_phase;
static int finished;

/* Written only from the core's view; read under a plugin's view too (read-only there). */
volatile uint32_t plugin_running;       /* index + 1 of the plugin inside a hook; 0: none */
uint64_t plugin_core_cr3;               /* the core's page tables (payload_info.pml4) */
uint64_t plugin_core_rsp;               /* the core's stack pointer during a hook */

/* fn(a0, a1, a2) on `stack_top` under page tables `cr3`; returns fn's RAX. */
uint64_t plugin_call(uint64_t fn, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t cr3,
                     uint64_t stack_top);
__asm__(
    "   .pushsection .text.plugin_call, \"ax\"\n"
    "   .globl plugin_call\n"
    "plugin_call:\n"
    "   push %rbp\n"
    "   push %rbx\n"
    "   push %r12\n"
    "   push %r13\n"
    "   push %r14\n"
    "   push %r15\n"
    "   mov %rsp, plugin_core_rsp(%rip)\n"
    "   mov %rdi, %rax\n"
    "   mov %rsi, %rdi\n"
    "   mov %rdx, %rsi\n"
    "   mov %rcx, %rdx\n"
    "   mov %r9, %rsp\n"                    /* the plugin's stack (16-byte aligned) */
    "   mov %r8, %cr3\n"                    /* its view; this page is core text in both */
    "   call *%rax\n"
    "   mov plugin_core_cr3(%rip), %rcx\n"  /* core memory is readable in every view */
    "   mov %rcx, %cr3\n"
    "   mov plugin_core_rsp(%rip), %rsp\n"
    "   cld\n"                              /* SysV: DF clear, whatever the plugin left */
    "   pop %r15\n"
    "   pop %r14\n"
    "   pop %r13\n"
    "   pop %r12\n"
    "   pop %rbx\n"
    "   pop %rbp\n"
    "   ret\n"
    "   .popsection\n");

static const char *slot_name(uint32_t i)
{
    return (const char *)(uintptr_t)sos_plugin_table.slots[i].name;
}

static uint64_t call_hook(uint32_t i, uint64_t fn, uint64_t a0, uint64_t a1, uint64_t a2)
{
    const volatile struct sos_plugin_slot *s = &sos_plugin_table.slots[i];
    struct sos_handoff *h = sos_run.handoff;
    uint64_t t0 = rdtsc();
    plugin_running = i + 1;
    uint64_t rc = plugin_call(fn, a0, a1, a2, s->cr3, s->stack_top);
    plugin_running = 0;
    h->draw_tsc += rdtsc() - t0;
    return rc;
}

/* Services: they run under the calling plugin's view, on its stack. */
static void plugin_log(const char *msg)
{
    char line[128];
    unsigned n = 0;
    uint32_t i = plugin_running;
    if (!i || i > plugin_count)
        return;
    /* Printable ASCII only: a plugin cannot forge protocol lines or control the terminal. */
    for (; msg && *msg && n < sizeof line - 1; msg++)
        line[n++] = (*msg >= 0x20 && *msg < 0x7f) ? *msg : '?';
    line[n] = 0;
    kprintf("[plugin %s] %s\n", slot_name(i - 1), line);
}

static uint64_t plugin_timestamp(void)
{
    return rdtsc();
}

static int hook_ok(const volatile struct sos_plugin_slot *s, const void *fn)
{
    uint64_t a = (uint64_t)(uintptr_t)fn;
    return !fn || (a >= s->text_start && a < s->text_end);
}

void plugin_host_init(void)
{
    const volatile struct sos_plugin_table *t = &sos_plugin_table;
    const struct sos_payload_info *info = sos_run.info;
    if (t->magic != SOS_PLUGIN_TABLE_MAGIC || !t->count)
        return;
    plugin_count = t->count < SOS_MAX_PLUGINS ? t->count : SOS_MAX_PLUGINS;
    plugin_core_cr3 = info->pml4;
    last_percent = last_phase = ~0u;
    fb_info = (struct sos_fb_info){
        .addr = (uint8_t *)(uintptr_t)info->fb_addr, .width = info->fb_width,
        .height = info->fb_height, .pitch = info->fb_pitch, .bpp = info->fb_bpp,
        .format = info->fb_format,
    };
    for (uint32_t i = 0; i < plugin_count; i++) {
        const volatile struct sos_plugin_slot *s = &t->slots[i];
        const struct sos_plugin *d = (const void *)(uintptr_t)s->descriptor;
        if (!d || d->magic != SOS_PLUGIN_MAGIC || d->abi_revision != SOS_PLUGIN_ABI_REVISION ||
            d->size != sizeof *d || !hook_ok(s, (const void *)d->init) ||
            !hook_ok(s, (const void *)d->progress) || !hook_ok(s, (const void *)d->finish)) {
            kprintf("@@PLUGIN %s refused: bad descriptor\n", slot_name(i));
            continue;
        }
        services[i] = (struct sos_plugin_services){
            .size = sizeof services[i], .revision = SOS_PLUGIN_ABI_REVISION,
            .tsc_hz = sos_run.handoff->tsc_hz_used,
            .assets = (const uint8_t *)(uintptr_t)s->assets, .assets_size = s->assets_size,
            .scratch = (uint8_t *)(uintptr_t)s->scratch, .scratch_size = s->scratch_size,
            .log = plugin_log, .memcpy = memcpy, .memset = memset,
            .lz4_decompress = lz4_decompress_safe, .timestamp = plugin_timestamp,
        };
        active[i] = d;
        if (d->init) {
            int rc = (int)call_hook(i, (uint64_t)(uintptr_t)d->init,
                                    (uint64_t)(uintptr_t)&fb_info,
                                    (uint64_t)(uintptr_t)&services[i], 0);
            if (rc) {
                active[i] = 0;
                kprintf("@@PLUGIN %s declined (init returned %d)\n", slot_name(i), rc);
                continue;
            }
        }
        kprintf("@@PLUGIN %s ready\n", slot_name(i));
    }
}

void plugin_host_progress(uint64_t done, uint64_t total, uint32_t phase)
{
    if (!plugin_count || finished)
        return;
    uint32_t pct = total && done < total ? (uint32_t)(done * 100 / total) : 100;
    if (pct == last_percent && phase == last_phase)
        return;
    last_percent = pct;
    last_phase = phase;
    for (uint32_t i = 0; i < plugin_count; i++)
        if (active[i] && active[i]->progress)
            call_hook(i, (uint64_t)(uintptr_t)active[i]->progress, done, total, phase);
}

void plugin_host_finish(uint32_t status)
{
    if (!plugin_count || finished)
        return;
    finished = 1;
    for (uint32_t i = 0; i < plugin_count; i++)
        if (active[i] && active[i]->finish)
            call_hook(i, (uint64_t)(uintptr_t)active[i]->finish, status, 0, 0);
}

const char *plugin_host_fault_enter(void)
{
    uint32_t i = plugin_running;
    if (!i)
        return 0;
    __asm__ volatile("mov %0, %%cr3" :: "r"(plugin_core_cr3) : "memory");
    plugin_running = 0;
    return slot_name(i - 1);
}
