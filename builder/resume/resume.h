/*
 * The resume loader: a multiboot kernel that lives only in the target's reserved region,
 * reads the image the payload wrote, refuses a damaged or foreign one before touching RAM,
 * restores every saved page and returns into the host's handoff call with
 * SOS_STATUS_RESUMED. The restore order and its reasons: docs/RESUME.md.
 *
 * Layout of the reserved region (builder/resume/resume.ld, suspendos/build/resume.py):
 *
 *   load_base            multiboot header and 32-bit boot stub (qemu-boot/boot.S)
 *   load_base + 0x1000   handoff page: the struct sos_handoff the host reads after the return
 *   load_base + 0x2000   .text .rodata .data (payload info, IDT) .lists .bss (boot page
 *                        tables, boot stack)
 *   sos_resume_end       scratch up to the end of the region: AHCI DMA area, header block,
 *                        tables, chunk header block, LZ4 output, read buffer
 *                        (the driver's area first: drivers/disk.h)
 */
#ifndef SOS_RESUME_H
#define SOS_RESUME_H
#include <stdint.h>
#include "suspendos_abi.h"


/*
 * Why an image is refused. Serial: "@@RESUME refused <name> <message>"; isa-debug-exit
 * (payload_info.debug_exit_port, when not 0): RESUME_EXIT_REFUSED + reason. Every refusal
 * happens before the first byte of saved RAM is written. suspendos/qemu/resume.py and
 * docs/RESUME.md read the names; keep the three in step.
 */
#define RESUME_REASONS(X)                                                                    \
    X(1,  BAD_CONFIG,       "bad-config")       /* the loader's own payload_info is damaged */ \
    X(2,  BOOT_INFO,        "boot-info")        /* no usable multiboot information */        \
    X(3,  MEMORY_MAP,       "memory-map")       /* this machine's RAM lacks a saved range */ \
    X(4,  DISK,             "disk")             /* disk take-over or IDENTIFY failed */      \
    X(5,  TRUNCATED,        "truncated")        /* the disk ends inside the image extents */ \
    X(6,  NO_IMAGE,         "no-image")         /* no image magic at the first extent */     \
    X(7,  VERSION,          "version")          /* an image version this loader cannot read */ \
    X(8,  HEADER_DAMAGED,   "header-damaged")   /* header checksum or fields */              \
    X(9,  ALREADY_RESUMED,  "already-resumed")  /* state = SOS_IMAGE_RESUMED */              \
    X(10, OTHER_MACHINE,    "other-machine")    /* memmap_hash: another machine or RAM size */ \
    X(11, TABLES_DAMAGED,   "tables-damaged")   /* extent/range tables checksum */           \
    X(12, EXTENTS_DIFFER,   "extents-differ")   /* extent table != our sector list */        \
    X(13, RANGES_DIFFER,    "ranges-differ")    /* range table != our memory list */         \
    X(14, WRONG_KEY,        "wrong-key")        /* key_check does not open with our key */   \
    X(15, UNSUPPORTED,      "unsupported")      /* encoding, cipher or chunk size */         \
    X(16, CHUNK_DAMAGED,    "chunk-damaged")    /* verify pass: a chunk failed a check */    \
    X(17, READ_ERROR,       "read-error")       /* the disk failed a read */             \
    X(18, IOMMU_TRANSLATING, "iommu-translating") /* the disk's IOMMU unit translates DMA */ \
    X(19, EFI_RUNTIME_MAP,  "efi-runtime-map")  /* EFI: firmware runtime regions differ */

enum resume_reason {
#define RESUME_ENUM(n, id, name) REFUSE_##id = n,
    RESUME_REASONS(RESUME_ENUM)
#undef RESUME_ENUM
};

/* isa-debug-exit values (QEMU exits with (V << 1) | 1). The test host uses 0x10-0x18. */
#define RESUME_EXIT_REFUSED         0x20   /* + enum resume_reason: RAM untouched */
#define RESUME_EXIT_RESTORE_FAILED  0x3e   /* a check failed after RAM was written: halted */
#define RESUME_EXIT_FAULT           0x3f   /* a CPU exception in the loader */

/* Refuse the image: give the disk back, say why, end (never returns). RAM untouched. */
__attribute__((noreturn, format(printf, 2, 3)))
void refuse(enum resume_reason why, const char *fmt, ...);

/* A check failed after RAM was written: say so, give the disk back, end. The image is left
 * valid on disk (it was not marked resumed), so a later boot may try again. */
__attribute__((noreturn, format(printf, 1, 2)))
void restore_failed(const char *fmt, ...);

/* A fault on an AP (cpus.c saw it): report it like one on the boot CPU and end. */
__attribute__((noreturn))
void resume_ap_fault(uint32_t apic, uint64_t vector, uint64_t error, uint64_t rip, uint64_t cr2);

/* main.c, the steps both entries (multiboot: resume_main; EFI: efi/entry.c) share.
 * resume_start: our serial (and our IDT when own_idt), "@@RESUME start". resume_boot: the
 * memory map the entry fills before resume_begin, which checks our configuration and that
 * every saved range is RAM in it. resume_open_disk: the IOMMU check, the disk taken over
 * and identified (its sector count). resume_run: the rest, from the disk to the return. */
struct boot_info;
/* mmio_map.c: map the 512 GiB slot holding device registers at `base` (identity, uncached)
 * when the boot map does not reach them; -1 when they cannot be mapped. */
int resume_map_mmio(uint64_t base);
void resume_start(int own_idt);
struct boot_info *resume_boot(void);
void resume_begin(void);
uint64_t resume_open_disk(void);
__attribute__((noreturn)) void resume_run(void);

/* Called by refuse() after its @@RESUME line, when set, instead of ending: the EFI entry's
 * check (boot services still up) goes back to the firmware from there. Never returns. */
extern void (*resume_refuse_hook)(enum resume_reason why, const char *name);

/* Called by resume_run, when set, once every page is restored, the image marked resumed and
 * the disk given back, just before the return into the host (interrupts off, our page
 * tables and stack): the EFI entry's SetVirtualAddressMap (efi/runtime.c). Returns. */
extern void (*resume_before_return)(struct sos_handoff *h);

/* Give the disk back (as found before the restore, reset after it). */
void release_devices(void);

/* Set once the restore pass has written the first page of saved RAM. */
extern int resume_ram_touched;

/* image.c: the two passes over the chunks. They call refuse() / restore_failed().
 * image_check reads the header block and the tables and checks them (every check that
 * needs no chunk); image_open does that, then lays out scratch and starts the APs (cpus.c). */
void image_check(uint64_t disk_sectors);
void image_open(uint64_t disk_sectors, const struct boot_info *boot);
void image_verify(void);
void image_restore(void);
void image_mark_resumed(void);
const struct sos_cpu_context *image_context(void);

/* cpu.c: load the context saved at the handoff and return SOS_STATUS_RESUMED into the
 * host's handoff call. Never returns. */
__attribute__((noreturn)) void cpu_resume(const struct sos_cpu_context *saved);

/* pause.c: "@@PAUSE <where>" and a wait for one serial byte, when the command line holds
 * the word "pause" (the tool's RAM dumps); nothing otherwise. */
void resume_pause_init(const char *cmdline);
void resume_pause(const char *where);

/* Progress on serial, as the payload prints it: "@@PROGRESS done total". */
void resume_progress(uint64_t done, uint64_t total);

#endif
