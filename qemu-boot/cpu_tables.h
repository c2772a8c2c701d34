/*
 * The host's own GDT, TSS and IDT. boot.S leaves a GDT without a TSS and no IDT at all, so
 * any exception would triple-fault. Here every one of the 256 vectors gets a gate that
 * runs on its own IST stack (a payload that returns with a broken RSP, or faults with
 * one, still gets reported) and ends in host_exception(): "@@EXCEPTION ..." and exit
 * EXIT_HOST_EXCEPTION. Selectors match boot.S: 0x08 code, 0x10 data, plus 0x18 the TSS.
 */
#ifndef HOST_CPU_TABLES_H
#define HOST_CPU_TABLES_H
#include <stdint.h>

#define SEL_CODE 0x08
#define SEL_DATA 0x10
#define SEL_TSS  0x18

void cpu_tables_init(void);
/* An AP: the same GDT and IDT, no TSS (cpu_tables.c). */
void cpu_tables_load_ap(void);

/* Tells the exception report which range is the payload's (reserved region). */
void exception_set_payload(uint64_t base, uint64_t size);

/* What isr.S pushes, lowest address first. */
struct exception_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error_code;
    uint64_t rip, cs, rflags, rsp, ss;      /* pushed by the CPU */
};

void host_exception(struct exception_frame *f) __attribute__((noreturn));

#endif
