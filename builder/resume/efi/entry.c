/*
 * The resume loader's two EFI entries (the convention: efi_entry.h). The stage
 * (builder/efi/stage.c) calls resume_efi_check while boot services are up, so a machine
 * with nothing to resume, or an image this loader refuses, goes back to the firmware and
 * boots on; only a resumable image gets ExitBootServices and resume_efi_main.
 */
#include "efi_entry.h"
#include "resume.h"
#include "cpus.h"
#include "runtime.h"
#include "printf.h"
#include "string.h"
#include "timer.h"

/* The EFI tables the loader was started with: runtime.c calls SetVirtualAddressMap
 * (UEFI 2.10, 8.4) through them after the restore. */
struct sos_efi_entry resume_efi;

static void *check_jump[5];         /* __builtin_setjmp's buffer: 5 words */
static enum resume_reason check_reason;
static const char *check_name;

/* refuse() calls this, with boot services still up, after its @@RESUME line and with the
 * disk given back as found: unwind to resume_efi_check instead of halting the machine. */
static __attribute__((noreturn)) void back_to_check(enum resume_reason why, const char *name)
{
    check_reason = why;
    check_name = name;
    __builtin_longjmp(check_jump, 1);
}

static void take(const struct sos_efi_entry *e)
{
    memcpy(&resume_efi, e, sizeof resume_efi);
    memcpy(resume_boot(), &e->boot, sizeof e->boot);
    resume_boot()->cmdline = "";        /* no options on this path: no pauses, no faults */
    cpus_rsdp = e->rsdp;
}

/* In .text.efi_entry, which the linker keeps (resume.ld): nothing in the loader calls it. */
__attribute__((section(".text.efi_entry")))
int resume_efi_check(struct sos_efi_entry *e)
{
    /* The firmware's IDT stays: its timer keeps running while we poll. */
    resume_start(0);
    if (e->magic != SOS_EFI_ENTRY_MAGIC || e->size != sizeof *e) {
        kprintf("@@RESUME refused boot-info the EFI stage's entry block is not this "
                "loader's (magic 0x%lx size %lu)\n", e->magic, e->size);
        e->refused = REFUSE_BOOT_INFO;
        e->refused_name = "boot-info";
        return REFUSE_BOOT_INFO;
    }
    if (__builtin_setjmp(check_jump)) {
        resume_refuse_hook = 0;
        e->refused = check_reason;
        e->refused_name = check_name;
        return (int)check_reason;
    }
    resume_refuse_hook = back_to_check;
    take(e);
    resume_begin();
    efi_runtime_check(e);           /* before the disk: the firmware's map alone decides */
    timer_init(0);
    image_check(resume_open_disk());
    release_devices();
    resume_refuse_hook = 0;
    kprintf("@@RESUME checked: the image header and tables pass\n");
    e->refused = 0;
    e->refused_name = "";
    return 0;
}

/* resume_before_return: SetVirtualAddressMap (runtime.c) with interrupts off. entry64.S
 * left them so and nothing since turns them on; said again here, where the firmware's code
 * runs under our IDT, and kept out of runtime.c so a host build can test that. */
static void set_virtual(struct sos_handoff *h)
{
    __asm__ volatile("cli");
    efi_runtime_set_virtual(h);
}

__attribute__((noreturn)) void resume_efi_main(const struct sos_efi_entry *e)
{
    take(e);                /* first: *e is in firmware memory the restore may overwrite */
    resume_start(1);
    kprintf("@@RESUME efi: boot services exited, %u RAM map entries, rsdp 0x%lx\n",
            resume_boot()->mmap_count, cpus_rsdp);
    resume_begin();
    /* Again on the map ExitBootServices took (a driver may have allocated runtime memory
     * since check): still before any saved page is written, but now a refusal halts. */
    efi_runtime_check(e);
    resume_before_return = set_virtual;
    resume_run();
}
