/*
 * GDT, TSS and IDT for the host (Intel SDM vol. 3, sections 3.4.5, 7.7 and 6.14). They
 * live in .host_tables, a page host.ld keeps apart from the writable data: the tables are
 * written once at start, before the checksums, and that page is then checked like the
 * host's code, so a payload that scribbles on them is caught. Code and data descriptors
 * are created with the accessed bit set so the CPU never writes to the GDT afterwards; the
 * TSS busy bit is set by ltr here, also before the checksums.
 */
#include "cpu_tables.h"
#include "string.h"

#define IST_STACK_SIZE 16384
#define GATE_INTERRUPT 0x8E         /* present, DPL 0, 64-bit interrupt gate */
#define TSS_AVAILABLE  0x89         /* present, 64-bit TSS (available) */

struct tss64 {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base;
} __attribute__((packed));

struct idt_gate {
    uint16_t offset_low, selector;
    uint8_t ist, type_attr;
    uint16_t offset_mid;
    uint32_t offset_high, reserved;
} __attribute__((packed));

struct table_register {
    uint16_t limit;
    uint64_t base;
} __attribute__((packed));

static void cpu_tables_load(int with_tr);

#define TABLES __attribute__((section(".host_tables"), aligned(16)))
static uint64_t gdt[5] TABLES;
static struct tss64 tss TABLES;
static struct idt_gate idt[256] TABLES;

static uint8_t ist_stack[IST_STACK_SIZE] __attribute__((aligned(16)));
extern const char isr_stubs[];      /* isr.S: 256 stubs, ISR_STUB_SIZE bytes apart */
#define ISR_STUB_SIZE 16

void cpu_tables_init(void)
{
    uint64_t t = (uintptr_t)&tss;
    gdt[0] = 0;
    gdt[1] = 0x00af9b000000ffffull;         /* 64-bit code, DPL 0, accessed */
    gdt[2] = 0x00cf93000000ffffull;         /* data, writable, accessed */
    gdt[3] = (sizeof tss - 1) | (t & 0xffffff) << 16 | (uint64_t)TSS_AVAILABLE << 40 |
             ((t >> 24) & 0xff) << 56;
    gdt[4] = t >> 32;

    memset(&tss, 0, sizeof tss);
    tss.ist[0] = (uintptr_t)(ist_stack + IST_STACK_SIZE);
    tss.iomap_base = sizeof tss;            /* no I/O permission bitmap */

    for (int v = 0; v < 256; v++) {
        uint64_t h = (uintptr_t)(isr_stubs + v * ISR_STUB_SIZE);
        idt[v] = (struct idt_gate){ (uint16_t)h, SEL_CODE, 1 /* IST1 */, GATE_INTERRUPT,
                                    (uint16_t)(h >> 16), (uint32_t)(h >> 32), 0 };
    }

    cpu_tables_load(1);
}

/* The boot CPU also loads TR; an AP shares the GDT and IDT but not the TSS (a busy TSS
 * cannot be loaded twice, SDM vol. 3 7.2.2), so an exception on an AP in the host's code
 * has no IST stack and shuts the machine down: the APs' park loop takes none. */
static void cpu_tables_load(int with_tr)
{
    struct table_register g = { sizeof gdt - 1, (uintptr_t)gdt };
    struct table_register i = { sizeof idt - 1, (uintptr_t)idt };
    __asm__ volatile(
        "lgdt %0\n\t"
        "pushq %2\n\t"
        "leaq 1f(%%rip), %%rax\n\t"
        "pushq %%rax\n\t"
        "lretq\n"
        "1:\n\t"
        "movw %w3, %%ax\n\t"
        "movw %%ax, %%ds\n\t"
        "movw %%ax, %%es\n\t"
        "movw %%ax, %%ss\n\t"
        "lidt %1"
        :: "m"(g), "m"(i), "i"(SEL_CODE), "i"(SEL_DATA) : "rax", "memory");
    if (with_tr)
        __asm__ volatile("ltr %w0" :: "r"((uint16_t)SEL_TSS) : "memory");
}

void cpu_tables_load_ap(void)
{
    cpu_tables_load(0);
}
