/* What the host prints when its IDT takes an exception, then exit EXIT_HOST_EXCEPTION. */
#include "cpu_tables.h"
#include "exit_codes.h"
#include "port_io.h"
#include "printf.h"

extern char host_image_start[], host_image_end[];
static uint64_t payload_base, payload_end;
static int in_handler;

void exception_set_payload(uint64_t base, uint64_t size)
{
    payload_base = base;
    payload_end = base + size;
}

static const char *where(uint64_t rip)
{
    if (rip >= (uintptr_t)host_image_start && rip < (uintptr_t)host_image_end)
        return "host";
    if (rip >= payload_base && rip < payload_end)
        return "payload";
    return "elsewhere";
}

void host_exception(struct exception_frame *f)
{
    if (in_handler++) {             /* faulted while reporting: just stop */
        outl(DEBUG_EXIT_PORT, EXIT_HOST_EXCEPTION);
        for (;;)
            __asm__ volatile("cli; hlt");
    }
    uint64_t cr2;
    __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
    kprintf("\n@@EXCEPTION vector=%lu error=0x%lx rip=0x%lx cs=0x%lx rflags=0x%lx rsp=0x%lx "
            "cr2=0x%lx where=%s\n", f->vector, f->error_code, f->rip, f->cs, f->rflags,
            f->rsp, cr2, where(f->rip));
    kprintf("@@EXCEPTION regs rax=0x%lx rbx=0x%lx rcx=0x%lx rdx=0x%lx rsi=0x%lx rdi=0x%lx "
            "rbp=0x%lx\n", f->rax, f->rbx, f->rcx, f->rdx, f->rsi, f->rdi, f->rbp);
    host_exit(EXIT_HOST_EXCEPTION);
}
