/*
 * QEMU test host for the polled AHCI driver (drivers/ahci.c).
 *
 * Linked with qemu-boot/boot.S (multiboot entry, long mode, identity map of all memory),
 * it runs one operation chosen on the multiboot command line, reports on COM1 and ends
 * through isa-debug-exit (port 0xf4; QEMU exits with status (V << 1) | 1).
 *
 * Command line (key=value, any order):
 *   op=rw|stopped|errors|inject|pastend|queue|queue_inject|bench|timer
 *   port=N          AHCI port of the disk (default 0)
 *   lba=N           op=inject: the LBA blkdebug fails (decimal or 0x hex)
 *   mb=N            op=bench: MiB written per variant (default 64)
 * The harness finds the HBA itself: the first PCI function of class 01h/06h/01h, its
 * bus/dev/fn and BAR5 (QEMU q35: 8086:2922 at 00:1f.2).
 *
 * Operations:
 *   rw       (disk >= 128 MiB) open, IDENTIFY, scattered writes: pieces > 4 MiB and
 *            odd-sized even pieces (A), 1024 separate pages + a header (B, two commands),
 *            1024 separate pages (B2, one command), 1024 adjacent pages (B3, merged PRDs),
 *            the last 16 sectors (C), a 65536-sector command (D, Count 0000h), 65544
 *            sectors in one call (E, two commands), 1102 uneven pieces whose first
 *            command is cut mid-sector by the PRD limit (F); read each back through a different
 *            scatter list and compare; FLUSH; close; compare the port/HBA/PCI registers
 *            with their values before open.
 *   stopped  like rw but small, with the port stopped (ST=FRE=0) and PCI bus mastering
 *            turned off by the harness first: close must leave both so.
 *   errors   wrong ABAR and wrong function -> PCI_MISMATCH; port 3 (no disk) ->
 *            AHCI_NO_DEVICE; port 7 (not implemented) -> AHCI_BAD_PORT; an odd-sized
 *            piece -> AHCI_BAD_REQUEST; registers untouched after each failed open.
 *   inject   (QEMU runs with blkdebug failing a write at lba=): a write starting at that LBA
 *            -> AHCI_TASKFILE_ERROR naming it; the same write again succeeds on the same
 *            port (recovery), reads back correctly; close restores the registers.
 *   queue    (QEMU throttles the disk's writes) 12 asynchronous calls of 1 MiB from separate
 *            buffers, several in flight at once; after every third, ahci_wait_calls(1)
 *            must leave only the newest call's commands in PxCI; all read back correctly;
 *            reports the most PxCI bits seen set at once and the driver's depth.
 *   queue_inject (blkdebug failing a write at lba=) three 1 MiB calls in flight, the
 *            middle one starting at lba=: the failure is reported (TASKFILE_ERROR,
 *            naming one of the three), PxCI is empty afterwards, and the port takes the
 *            three writes again; close restores the registers.
 *   pastend  a write crossing the end of the disk -> AHCI_TASKFILE_ERROR; then a write of
 *            the last sectors succeeds; close restores the registers.
 *   bench    write throughput over the first mb= MiB of the disk, each variant after a
 *            warm-up pass: 4 MiB commands (one piece), calls of a 512-byte header + 1024
 *            separate pages (the payload's shape; two commands per call since at most
 *            1024 PRDs go in one), 64 KiB commands, 4 MiB again. Lines "BENCH ...".
 *   timer    prints TIMER_START, waits us= (default 2 s) with timer_udelay, prints
 *            TIMER_END: the test compares with wall-clock time.
 *
 * Written data follows one pattern, so the Python test can check the disk file itself:
 * sector s written with tag t holds s (8 bytes LE), t (8 bytes LE), then byte i (16..511)
 * = (s * 13 + i * 7 + t) & 0xff.
 *
 * Exit codes (isa-debug-exit value V -> QEMU status):
 *   0x10 -> 33  PASS: every check of the operation held
 *   0x11 -> 35  FAIL: a check failed (the serial log says which, lines "FAIL ...")
 *   0x12 -> 37  SETUP: bad command line, or no AHCI HBA found
 * Anything else (e.g. a timeout of the test) means the harness hung or crashed.
 */
#include <stdint.h>
#include "ahci.h"
#include "ahci_regs.h"
#include "pci.h"
#include "timer.h"
#include "serial.h"
#include "printf.h"
#include "port_io.h"
#include "string.h"

#define EXIT_PASS   0x10
#define EXIT_FAIL   0x11
#define EXIT_SETUP  0x12
#define DEBUG_EXIT_PORT 0xf4

#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002
#define MB_INFO_CMDLINE (1u << 2)

#define SECTOR 512u
#define MiB (1024u * 1024u)

/* Physical memory the harness uses for data (identity-mapped, QEMU -m 256M). */
#define BUF_A1      0x02000006ull   /* even, not 4-aligned */
#define BUF_A2      0x02100000ull
#define BUF_A3      0x02600002ull
#define BUF_B_HDR   0x02800000ull
#define BUF_B_PAGES 0x03000000ull   /* 1024 pages, every other page, reverse order */
#define BUF_C1      0x03900000ull
#define BUF_C2      0x03a00000ull
#define BUF_D       0x04000000ull   /* 32 MiB */
#define BUF_READ    0x06000000ull   /* up to 32 MiB + 4 KiB */
#define BUF_READ2   0x08100000ull

static uint8_t dma_area[AHCI_DMA_RECOMMENDED] __attribute__((aligned(4096)));
static struct ahci hba;
static int failures;

static char cmdline[512];
static struct ahci_config cfg;

/* ---- small helpers ------------------------------------------------------------------ */

static void __attribute__((noreturn)) qemu_exit(uint8_t v)
{
    kprintf("EXIT 0x%x\n", v);
    outb(DEBUG_EXIT_PORT, v);
    for (;;)
        __asm__ volatile("cli; hlt");
}

#define CHECK(cond, ...)                                            \
    do {                                                            \
        if (!(cond)) {                                              \
            kprintf("FAIL %s:%d: ", __func__, __LINE__);            \
            kprintf(__VA_ARGS__);                                   \
            kprintf("\n");                                          \
            failures++;                                             \
        }                                                           \
    } while (0)

static int str_eq_n(const char *a, const char *b, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

/* The value of key=value on the command line, or 0. */
static const char *arg(const char *key)
{
    unsigned klen = strlen(key);
    const char *p = cmdline;
    while (*p) {
        while (*p == ' ')
            p++;
        if (str_eq_n(p, key, klen) && p[klen] == '=')
            return p + klen + 1;
        while (*p && *p != ' ')
            p++;
    }
    return 0;
}

static int arg_is(const char *key, const char *word)
{
    const char *v = arg(key);
    unsigned n = strlen(word);
    return v && str_eq_n(v, word, n) && (v[n] == 0 || v[n] == ' ');
}

static uint64_t arg_u64(const char *key, uint64_t dflt)
{
    const char *v = arg(key);
    uint64_t x = 0;
    unsigned base = 10;
    if (!v || !*v || *v == ' ')
        return dflt;
    if (v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
        base = 16;
        v += 2;
    }
    for (; *v && *v != ' '; v++) {
        unsigned d;
        if (*v >= '0' && *v <= '9')
            d = *v - '0';
        else if (base == 16 && *v >= 'a' && *v <= 'f')
            d = *v - 'a' + 10;
        else if (base == 16 && *v >= 'A' && *v <= 'F')
            d = *v - 'A' + 10;
        else
            break;
        x = x * base + d;
    }
    return x;
}

/* ---- the data pattern -------------------------------------------------------------- */

static void pattern_sector(uint8_t *dst, uint64_t s, uint64_t tag)
{
    uint8_t k = (uint8_t)(s * 13 + tag);
    for (int i = 0; i < 8; i++) {
        dst[i] = (uint8_t)(s >> (8 * i));
        dst[8 + i] = (uint8_t)(tag >> (8 * i));
    }
    for (unsigned i = 16; i < SECTOR; i++)
        dst[i] = (uint8_t)(k + i * 7);
}

/* Fill (check == 0) or compare (check == 1) the byte stream that sg describes with the
 * pattern of the sectors from lba on. Returns the stream offset of the first difference,
 * or -1. */
static int64_t pattern_sg(uint64_t lba, const struct disk_sg *sg, unsigned n, uint64_t tag, int check)
{
    uint8_t sec[SECTOR];
    uint64_t off = 0, cur = ~0ull;
    for (unsigned i = 0; i < n; i++) {
        uint8_t *p = (uint8_t *)(uintptr_t)sg[i].addr;
        uint32_t left = sg[i].bytes;
        while (left) {
            uint64_t s = lba + off / SECTOR;
            uint32_t in = off % SECTOR, k = SECTOR - in;
            if (k > left)
                k = left;
            if (s != cur) {
                pattern_sector(sec, s, tag);
                cur = s;
            }
            if (check) {
                if (memcmp(p, sec + in, k)) {
                    for (uint32_t j = 0; j < k; j++)
                        if (p[j] != sec[in + j])
                            return (int64_t)(off + j);
                }
            } else {
                memcpy(p, sec + in, k);
            }
            p += k;
            off += k;
            left -= k;
        }
    }
    return -1;
}

static uint64_t sg_bytes(const struct disk_sg *sg, unsigned n)
{
    uint64_t t = 0;
    for (unsigned i = 0; i < n; i++)
        t += sg[i].bytes;
    return t;
}

/* ---- register snapshots (read by the harness directly, not through the driver) ---- */

struct regs {
    uint16_t pci_command;
    uint32_t ghc, clb, clbu, fb, fbu, cmd, ie, sctl, is, serr, ci;
};

static uint32_t mmio32(uint64_t addr)
{
    return *(volatile uint32_t *)(uintptr_t)addr;
}

static void mmio32_write(uint64_t addr, uint32_t v)
{
    *(volatile uint32_t *)(uintptr_t)addr = v;
}

static uint64_t px(unsigned port, uint32_t reg)
{
    return cfg.abar + AHCI_PORT_BASE + port * AHCI_PORT_STRIDE + reg;
}

static void snapshot(struct regs *r, unsigned port)
{
    r->pci_command = pci_read16(cfg.bus, cfg.dev, cfg.fn, PCI_COMMAND);
    r->ghc = mmio32(cfg.abar + AHCI_GHC);
    r->clb = mmio32(px(port, AHCI_PxCLB));
    r->clbu = mmio32(px(port, AHCI_PxCLBU));
    r->fb = mmio32(px(port, AHCI_PxFB));
    r->fbu = mmio32(px(port, AHCI_PxFBU));
    r->cmd = mmio32(px(port, AHCI_PxCMD));
    r->ie = mmio32(px(port, AHCI_PxIE));
    r->sctl = mmio32(px(port, AHCI_PxSCTL));
    r->is = mmio32(px(port, AHCI_PxIS));
    r->serr = mmio32(px(port, AHCI_PxSERR));
    r->ci = mmio32(px(port, AHCI_PxCI));
}

static void print_regs(const char *label, const struct regs *r)
{
    kprintf("REGS %s pci_command=0x%x ghc=0x%x clb=0x%x clbu=0x%x fb=0x%x fbu=0x%x cmd=0x%x "
            "ie=0x%x sctl=0x%x is=0x%x serr=0x%x ci=0x%x\n", label, r->pci_command, r->ghc,
            r->clb, r->clbu, r->fb, r->fbu, r->cmd, r->ie, r->sctl, r->is, r->serr, r->ci);
}

/* Everything ahci_close promises to restore. PxIS/PxSERR are RWC and not restorable. */
static void compare_regs(const char *what, const struct regs *before, const struct regs *after)
{
    int same = before->pci_command == after->pci_command && before->ghc == after->ghc &&
               before->clb == after->clb && before->clbu == after->clbu &&
               before->fb == after->fb && before->fbu == after->fbu &&
               before->cmd == after->cmd && before->ie == after->ie &&
               before->sctl == after->sctl;
    print_regs("before", before);
    print_regs("after", after);
    CHECK(same, "%s: registers differ from the originals", what);
    kprintf("RESULT %s_restored=%d\n", what, same);
}

/* ---- steps ------------------------------------------------------------------------- */

static void report_error(const char *label, int rc)
{
    const struct ahci_error *e = ahci_last_error(&hba);
    kprintf("ERROR %s status=0x%x what=\"%s\" lba=%llu dev_lba=%llu tfd=0x%x is=0x%x serr=0x%x\n",
            label, rc, e->what ? e->what : "", (unsigned long long)e->lba,
            (unsigned long long)e->dev_lba, e->tfd, e->is, e->serr);
}

static int open_port(unsigned port)
{
    struct ahci_config c = cfg;
    int rc;
    c.port = (uint8_t)port;
    rc = ahci_open(&hba, &c, dma_area, sizeof(dma_area));
    if (rc)
        report_error("open", rc);
    kprintf("RESULT open=0x%x prds=%u max_sectors=%u\n", rc, ahci_max_prds(&hba),
            ahci_max_sectors(&hba));
    return rc;
}

static uint64_t identify(void)
{
    uint64_t sectors = 0;
    char model[41];
    int rc = ahci_identify(&hba, &sectors, model);
    CHECK(rc == 0, "identify: status 0x%x", rc);
    if (rc) {
        report_error("identify", rc);
        return 0;
    }
    kprintf("IDENTIFY sectors=%llu model=\"%s\"\n", (unsigned long long)sectors, model);
    return sectors;
}

/* Write sg with the pattern for (lba, tag), read it back through rsg, compare. */
static void write_check(const char *name, uint64_t lba, const struct disk_sg *sg, unsigned n,
                        const struct disk_sg *rsg, unsigned rn, uint64_t tag)
{
    uint64_t bytes = sg_bytes(sg, n), t0, t1;
    int rc;
    int64_t bad;

    pattern_sg(lba, sg, n, tag, 0);
    for (unsigned i = 0; i < rn; i++)
        memset((void *)(uintptr_t)rsg[i].addr, 0xee, rsg[i].bytes);
    t0 = timer_tsc();
    rc = ahci_write(&hba, lba, sg, n);
    t1 = timer_tsc();
    CHECK(rc == 0, "%s: write status 0x%x", name, rc);
    if (rc) {
        report_error(name, rc);
        return;
    }
    rc = ahci_read(&hba, lba, rsg, rn);
    CHECK(rc == 0, "%s: read status 0x%x", name, rc);
    if (rc) {
        report_error(name, rc);
        return;
    }
    bad = pattern_sg(lba, rsg, rn, tag, 1);
    CHECK(bad < 0, "%s: read-back differs at stream offset %lld", name, (long long)bad);
    kprintf("RESULT write name=%s lba=%llu sectors=%llu tag=0x%llx pieces=%u ok=%d us=%llu\n",
            name, (unsigned long long)lba, (unsigned long long)(bytes / SECTOR),
            (unsigned long long)tag, n, bad < 0,
            (unsigned long long)timer_tsc_to_us(t1 - t0));
}

static void flush(void)
{
    int rc = ahci_flush(&hba);
    CHECK(rc == 0, "flush: status 0x%x", rc);
    if (rc)
        report_error("flush", rc);
    kprintf("RESULT flush=0x%x\n", rc);
}

/* Stop the port the way a host might leave it: ST, then FRE (AHCI 10.1.2). */
static void harness_stop_port(unsigned port)
{
    uint32_t c = mmio32(px(port, AHCI_PxCMD));
    mmio32_write(px(port, AHCI_PxCMD), c & ~(AHCI_PxCMD_ST | AHCI_PxCMD_ICC_MASK));
    for (int i = 0; i < 1000000 && (mmio32(px(port, AHCI_PxCMD)) & AHCI_PxCMD_CR); i++)
        ;
    c = mmio32(px(port, AHCI_PxCMD));
    mmio32_write(px(port, AHCI_PxCMD), c & ~(AHCI_PxCMD_FRE | AHCI_PxCMD_ICC_MASK));
    for (int i = 0; i < 1000000 && (mmio32(px(port, AHCI_PxCMD)) & AHCI_PxCMD_FR); i++)
        ;
}

/* ---- operations -------------------------------------------------------------------- */

static void op_rw(unsigned port)
{
    struct regs before, after;
    uint64_t sectors;
    static struct disk_sg sgb[1102];

    /* Give PxIE a non-zero value so its restoration is visible (GHC.IE is off and the CPU
     * runs with interrupts disabled, so nothing is delivered). */
    mmio32_write(px(port, AHCI_PxIE), AHCI_PxIS_TFES | AHCI_PxIS_DHRS);
    snapshot(&before, port);
    if (open_port(port)) {
        failures++;
        return;
    }
    sectors = identify();
    CHECK(sectors >= 262144, "disk too small for the test: %llu", (unsigned long long)sectors);
    if (sectors < 262144)
        goto out;

    /* A: three odd-sized even pieces, one over 4 MiB (two PRDs); 8201 sectors. */
    {
        const struct disk_sg sg[3] = {
            {BUF_A1, 1000}, {BUF_A2, 4 * MiB + 3000}, {BUF_A3, 608},
        };
        const struct disk_sg rsg[2] = {
            {BUF_READ, 4 * MiB}, {BUF_READ2, 1000 + 3000 + 608},
        };
        write_check("A", 100, sg, 3, rsg, 2, 0xA1);
    }
    /* B: a 512-byte header and 1024 separate pages: the payload's shape. 1025 PRDs are
     * more than one command takes (AHCI_PRDS_PER_COMMAND), so this is two commands. */
    {
        const struct disk_sg rsg[1] = {{BUF_READ, 4 * MiB + 512}};
        sgb[0].addr = BUF_B_HDR;
        sgb[0].bytes = 512;
        for (unsigned i = 0; i < 1024; i++) {
            sgb[1 + i].addr = BUF_B_PAGES + (uint64_t)(1023 - i) * 8192;
            sgb[1 + i].bytes = 4096;
        }
        write_check("B", 20000, sgb, 1025, rsg, 1, 0xB2);
    }
    /* B2: exactly 1024 separate pages, one command of 1024 PRDs. */
    {
        const struct disk_sg rsg[1] = {{BUF_READ, 4 * MiB}};
        write_check("B2", 30000, sgb + 1, 1024, rsg, 1, 0xB3);
    }
    /* B3: 1024 adjacent pages as separate pieces: they merge into one PRD per 4 MiB. */
    {
        const struct disk_sg rsg[1] = {{BUF_READ, 4 * MiB}};
        for (unsigned i = 0; i < 1024; i++) {
            sgb[i].addr = BUF_B_PAGES + (uint64_t)i * 4096;
            sgb[i].bytes = 4096;
        }
        write_check("B3", 50000, sgb, 1024, rsg, 1, 0xB4);
    }
    /* C: the last 16 sectors of the disk. */
    {
        const struct disk_sg sg[2] = {{BUF_C1, 2048}, {BUF_C2, 6144}};
        const struct disk_sg rsg[3] = {{BUF_READ, 512}, {BUF_READ + 8192, 7168}, {BUF_READ2, 512}};
        write_check("C", sectors - 16, sg, 2, rsg, 3, 0xC3);
    }
    /* D: the largest command, 65536 sectors (Count field 0000h), one 32 MiB piece. */
    {
        const struct disk_sg sg[1] = {{BUF_D, 32 * MiB}};
        const struct disk_sg rsg[2] = {{BUF_READ, 16 * MiB}, {BUF_READ + 16 * MiB + 4096, 16 * MiB}};
        write_check("D", 60000, sg, 1, rsg, 2, 0xD4);
    }
    /* E: 65544 sectors in one call: more than one command's 65536, so two commands. */
    {
        const struct disk_sg sg[2] = {{BUF_D, 32 * MiB}, {BUF_C1, 4096}};
        const struct disk_sg rsg[1] = {{BUF_READ, 32 * MiB + 4096}};
        write_check("E", 140000, sg, 2, rsg, 1, 0xE5);
    }
    /* F: 1102 uneven, non-adjacent pieces: the 1024-PRD limit ends the first command 22
     * bytes into a sector, so the driver must trim that PRD and carry the rest over. */
    {
        const struct disk_sg rsg[1] = {{BUF_READ, 2150 * SECTOR}};
        sgb[0].addr = BUF_A1;
        sgb[0].bytes = 510;
        for (unsigned i = 0; i < 1100; i++) {
            sgb[1 + i].addr = BUF_B_PAGES + (uint64_t)i * 1024;
            sgb[1 + i].bytes = 1000;
        }
        sgb[1101].addr = BUF_A3;
        sgb[1101].bytes = 290;
        write_check("F", 210000, sgb, 1102, rsg, 1, 0xF6);
    }
    flush();
out:
    ahci_close(&hba);
    snapshot(&after, port);
    compare_regs("close", &before, &after);
}

static void op_stopped(unsigned port)
{
    struct regs before, after;
    uint16_t command = pci_read16(cfg.bus, cfg.dev, cfg.fn, PCI_COMMAND);
    harness_stop_port(port);
    /* A host that also turned bus mastering off: the driver must turn it on and back off. */
    pci_write16(cfg.bus, cfg.dev, cfg.fn, PCI_COMMAND, command & ~PCI_COMMAND_MASTER);
    snapshot(&before, port);
    CHECK(!(before.cmd & (AHCI_PxCMD_ST | AHCI_PxCMD_FRE | AHCI_PxCMD_CR | AHCI_PxCMD_FR)),
          "harness could not stop the port: PxCMD=0x%x", before.cmd);
    if (open_port(port)) {
        failures++;
        return;
    }
    if (identify()) {
        const struct disk_sg sg[2] = {{BUF_A1, 1536}, {BUF_A2, 2560}};
        const struct disk_sg rsg[1] = {{BUF_READ, 4096}};
        write_check("S", 3000, sg, 2, rsg, 1, 0x5A);
        flush();
    }
    ahci_close(&hba);
    snapshot(&after, port);
    compare_regs("close", &before, &after);
    CHECK(!(after.cmd & (AHCI_PxCMD_ST | AHCI_PxCMD_FRE)), "port not left stopped: 0x%x", after.cmd);
    CHECK(!(after.pci_command & PCI_COMMAND_MASTER), "bus mastering left on: 0x%x",
          after.pci_command);
}

/* The Python side timestamps these two lines to check the calibration against wall time. */
static void op_timer(void)
{
    uint64_t us = arg_u64("us", 2000000), deadline, t0, t1;
    kprintf("TIMER_START us=%llu\n", (unsigned long long)us);
    t0 = timer_tsc();
    deadline = timer_deadline_us(us);
    CHECK(!timer_expired(deadline), "deadline expired at once");
    timer_udelay(us);
    t1 = timer_tsc();
    CHECK(timer_expired(deadline), "deadline not expired after udelay");
    kprintf("TIMER_END measured_us=%llu\n", (unsigned long long)timer_tsc_to_us(t1 - t0));
}

static void expect_open_fails(const char *name, const struct ahci_config *c, int want)
{
    struct regs before, after;
    int rc;
    snapshot(&before, 0);
    rc = ahci_open(&hba, c, dma_area, sizeof(dma_area));
    if (rc)
        report_error(name, rc);
    else
        ahci_close(&hba);
    snapshot(&after, 0);
    CHECK(rc == want, "%s: open returned 0x%x, expected 0x%x", name, rc, want);
    kprintf("RESULT case=%s status=0x%x expected=0x%x\n", name, rc, want);
    compare_regs(name, &before, &after);
}

static void op_errors(void)
{
    struct ahci_config c;
    int rc;

    c = cfg;
    c.abar = cfg.abar + 0x1000;
    expect_open_fails("wrong_abar", &c, SOS_STATUS_PCI_MISMATCH);

    c = cfg;
    c.fn = (uint8_t)((cfg.fn + 1) & 7);
    expect_open_fails("wrong_function", &c, SOS_STATUS_PCI_MISMATCH);

    c = cfg;
    c.port = 3;
    expect_open_fails("port3_no_device", &c, SOS_STATUS_AHCI_NO_DEVICE);

    c = cfg;
    c.port = 7;
    expect_open_fails("port7_not_implemented", &c, SOS_STATUS_AHCI_BAD_PORT);

    /* A request the driver must refuse without issuing anything; the port stays usable. */
    if (open_port(cfg.port) == 0) {
        const struct disk_sg odd[1] = {{BUF_A2, 511}};
        const struct disk_sg partial[1] = {{BUF_A2, 1000}};
        rc = ahci_write(&hba, 10, odd, 1);
        CHECK(rc == SOS_STATUS_AHCI_BAD_REQUEST, "odd piece: 0x%x", rc);
        kprintf("RESULT case=odd_piece status=0x%x expected=0x%x\n", rc, SOS_STATUS_AHCI_BAD_REQUEST);
        rc = ahci_write(&hba, 10, partial, 1);
        CHECK(rc == SOS_STATUS_AHCI_BAD_REQUEST, "partial sector: 0x%x", rc);
        kprintf("RESULT case=partial_sector status=0x%x expected=0x%x\n", rc,
                SOS_STATUS_AHCI_BAD_REQUEST);
        CHECK(identify() != 0, "port unusable after refused requests");
        ahci_close(&hba);
    } else {
        failures++;
    }
}

/* A command that fails, then the same command again on the same port. */
static void error_then_recover(const char *name, uint64_t lba, uint32_t bad_sectors,
                               uint32_t good_sectors, uint64_t tag)
{
    struct regs before, after;
    const struct ahci_error *e;
    int rc;

    mmio32_write(px(cfg.port, AHCI_PxIE), AHCI_PxIS_TFES | AHCI_PxIS_DHRS);
    snapshot(&before, cfg.port);
    if (open_port(cfg.port)) {
        failures++;
        return;
    }
    identify();
    {
        const struct disk_sg sg[1] = {{BUF_A2, bad_sectors * SECTOR}};
        pattern_sg(lba, sg, 1, tag, 0);
        rc = ahci_write(&hba, lba, sg, 1);
        e = ahci_last_error(&hba);
        report_error(name, rc);
        CHECK(rc == SOS_STATUS_AHCI_TASKFILE_ERROR, "%s: status 0x%x, expected task-file error",
              name, rc);
        CHECK(e->lba == lba, "%s: error names LBA %llu, expected %llu", name,
              (unsigned long long)e->lba, (unsigned long long)lba);
        CHECK(e->tfd & AHCI_PxTFD_STS_ERR, "%s: PxTFD.STS.ERR not set in 0x%x", name, e->tfd);
        kprintf("RESULT case=%s status=0x%x lba=%llu dev_lba=%llu tfd=0x%x\n", name, rc,
                (unsigned long long)e->lba, (unsigned long long)e->dev_lba, e->tfd);
    }
    {
        const struct disk_sg sg[2] = {{BUF_A1, 1024}, {BUF_A3, good_sectors * SECTOR - 1024}};
        const struct disk_sg rsg[1] = {{BUF_READ, good_sectors * SECTOR}};
        write_check("recovered", lba, sg, 2, rsg, 1, tag);
    }
    flush();
    ahci_close(&hba);
    snapshot(&after, cfg.port);
    compare_regs("close", &before, &after);
}

static void op_inject(void)
{
    uint64_t lba = arg_u64("lba", 0);
    if (!lba) {
        kprintf("SETUP op=inject needs lba=\n");
        qemu_exit(EXIT_SETUP);
    }
    error_then_recover("inject", lba, 64, 64, 0x1E);
}

static unsigned bits_set(uint32_t v)
{
    unsigned n = 0;
    for (; v; v &= v - 1)
        n++;
    return n;
}

/* Call k of the queue ops: 1 MiB at lba0 + k * 2048 from its own buffer, the odd ones in
 * two pieces (the second at an even, not 4-aligned address). */
#define QUEUE_CALL_SECTORS 2048u
static unsigned queue_call(uint64_t k, struct disk_sg sg[2])
{
    uint64_t buf = BUF_D + k * (2 * MiB);
    if (k & 1) {
        sg[0] = (struct disk_sg){ buf, 3 * SECTOR };
        sg[1] = (struct disk_sg){ buf + MiB / 2 + 2, QUEUE_CALL_SECTORS * SECTOR - 3 * SECTOR };
        return 2;
    }
    sg[0] = (struct disk_sg){ buf, QUEUE_CALL_SECTORS * SECTOR };
    return 1;
}

/* Read calls [0, count) back through BUF_READ and compare with their pattern. */
static int queue_read_back(uint64_t lba0, unsigned count, uint64_t tag)
{
    int ok = 1;
    for (unsigned k = 0; k < count; k++) {
        uint64_t lba = lba0 + (uint64_t)k * QUEUE_CALL_SECTORS;
        const struct disk_sg rsg[1] = {{BUF_READ, QUEUE_CALL_SECTORS * SECTOR}};
        memset((void *)(uintptr_t)BUF_READ, 0xee, QUEUE_CALL_SECTORS * SECTOR);
        int rc = ahci_read(&hba, lba, rsg, 1);
        int64_t bad = rc ? 0 : pattern_sg(lba, rsg, 1, tag, 1);
        CHECK(rc == 0 && bad < 0, "queue call %u: read status 0x%x, differs at %lld", k, rc,
              (long long)bad);
        ok &= rc == 0 && bad < 0;
    }
    return ok;
}

static void op_queue(unsigned port)
{
    const uint64_t lba0 = 1000, tag = 0x51;
    const unsigned count = 12;
    struct regs before, after;
    unsigned most = 0;
    snapshot(&before, port);
    if (open_port(port)) {
        failures++;
        return;
    }
    identify();
    unsigned depth = ahci_depth(&hba);
    CHECK(depth >= 2, "queue: driver depth %u", depth);
    for (unsigned k = 0; k < count; k++) {
        struct disk_sg sg[2];
        unsigned n = queue_call(k, sg);
        uint64_t lba = lba0 + (uint64_t)k * QUEUE_CALL_SECTORS;
        pattern_sg(lba, sg, n, tag, 0);
        int rc = ahci_write_async(&hba, lba, sg, n);
        CHECK(rc == 0, "queue call %u: status 0x%x", k, rc);
        uint32_t ci = mmio32(px(port, AHCI_PxCI));
        most = bits_set(ci) > most ? bits_set(ci) : most;
        if (k % 3 == 2) {
            rc = ahci_wait_calls(&hba, 1);
            CHECK(rc == 0, "queue: wait_calls(1) status 0x%x", rc);
            ci = mmio32(px(port, AHCI_PxCI));
            for (unsigned s = 0; s < 32; s++)
                if (ci & (1u << s))
                    CHECK(s < hba.slots && hba.slot[s].call == hba.calls,
                          "queue: after wait_calls(1), slot %u (call %llu) still in PxCI", s,
                          (unsigned long long)(s < hba.slots ? hba.slot[s].call : 0));
        }
    }
    int rc = ahci_wait(&hba);
    CHECK(rc == 0, "queue: wait status 0x%x", rc);
    CHECK(mmio32(px(port, AHCI_PxCI)) == 0, "queue: PxCI 0x%llx after wait",
          (unsigned long long)mmio32(px(port, AHCI_PxCI)));
    int ok = queue_read_back(lba0, count, tag);
    kprintf("RESULT queue depth=%u calls=%u most_in_flight=%u ok=%d\n", depth, count, most, ok);
    flush();
    ahci_close(&hba);
    snapshot(&after, port);
    compare_regs("close", &before, &after);
}

static void op_queue_inject(unsigned port)
{
    const uint64_t bad = arg_u64("lba", 0), tag = 0x52;
    struct regs before, after;
    if (bad < QUEUE_CALL_SECTORS) {
        kprintf("SETUP op=queue_inject needs lba= of at least %u\n", QUEUE_CALL_SECTORS);
        qemu_exit(EXIT_SETUP);
    }
    const uint64_t lba0 = bad - QUEUE_CALL_SECTORS;
    snapshot(&before, port);
    if (open_port(port)) {
        failures++;
        return;
    }
    identify();
    int rc = 0;
    for (unsigned k = 0; k < 3 && !rc; k++) {
        struct disk_sg sg[2];
        unsigned n = queue_call(k, sg);
        uint64_t lba = lba0 + (uint64_t)k * QUEUE_CALL_SECTORS;
        pattern_sg(lba, sg, n, tag, 0);
        rc = ahci_write_async(&hba, lba, sg, n);
    }
    if (!rc)
        rc = ahci_wait(&hba);
    const struct ahci_error *e = ahci_last_error(&hba);
    report_error("queue_inject", rc);
    CHECK(rc == SOS_STATUS_AHCI_TASKFILE_ERROR, "queue_inject: status 0x%x", rc);
    CHECK(e->lba == lba0 || e->lba == bad || e->lba == bad + QUEUE_CALL_SECTORS,
          "queue_inject: error names LBA %llu, none of the calls in flight",
          (unsigned long long)e->lba);
    CHECK(mmio32(px(port, AHCI_PxCI)) == 0, "queue_inject: PxCI 0x%llx after the error",
          (unsigned long long)mmio32(px(port, AHCI_PxCI)));
    kprintf("RESULT case=queue_inject status=0x%x lba=%llu\n", rc, (unsigned long long)e->lba);
    /* The port takes the same three writes again, synchronously and then in flight. */
    for (unsigned k = 0; k < 3; k++) {
        struct disk_sg sg[2];
        unsigned n = queue_call(k, sg);
        rc = ahci_write(&hba, lba0 + (uint64_t)k * QUEUE_CALL_SECTORS, sg, n);
        CHECK(rc == 0, "queue_inject: rewrite %u status 0x%x", k, rc);
    }
    int ok = queue_read_back(lba0, 3, tag);
    kprintf("RESULT name=queue_recovered ok=%d\n", ok);
    flush();
    ahci_close(&hba);
    snapshot(&after, port);
    compare_regs("close", &before, &after);
}

static void op_pastend(void)
{
    uint64_t sectors;
    /* Learn the size first with a throwaway open. */
    if (open_port(cfg.port)) {
        failures++;
        return;
    }
    sectors = identify();
    ahci_close(&hba);
    if (!sectors)
        return;
    error_then_recover("pastend", sectors - 4, 8, 4, 0xE0);
}

static void bench_run(const char *name, const struct disk_sg *sg, unsigned n, uint64_t total,
                      uint64_t first_lba)
{
    uint64_t per = sg_bytes(sg, n) / SECTOR, lba = first_lba, done = 0, t0, t1, tf;
    unsigned cmds = 0;
    int rc = 0;
    t0 = timer_tsc();
    while (done < total) {
        rc = ahci_write(&hba, lba, sg, n);
        if (rc)
            break;
        lba += per;
        done += per * SECTOR;
        cmds++;
    }
    t1 = timer_tsc();
    if (!rc)
        rc = ahci_flush(&hba);
    tf = timer_tsc();
    CHECK(rc == 0, "bench %s: status 0x%x", name, rc);
    if (rc)
        report_error(name, rc);
    {
        uint64_t us = timer_tsc_to_us(t1 - t0);
        uint64_t kib_s = us ? done * 1000000ull / 1024 / us : 0;
        kprintf("BENCH name=%s call_bytes=%llu pieces=%u calls=%u bytes=%llu us=%llu "
                "flush_us=%llu mib_s=%llu.%03llu\n", name,
                (unsigned long long)(per * SECTOR), n, cmds, (unsigned long long)done,
                (unsigned long long)us, (unsigned long long)timer_tsc_to_us(tf - t1),
                (unsigned long long)(kib_s / 1024), (unsigned long long)(kib_s % 1024 * 1000 / 1024));
    }
}

static void op_bench(void)
{
    uint64_t total = arg_u64("mb", 64) * MiB, sectors;
    static struct disk_sg pages[1025];
    if (open_port(cfg.port)) {
        failures++;
        return;
    }
    sectors = identify();
    CHECK(sectors * SECTOR >= total + 16 * MiB, "bench disk too small");
    if (sectors * SECTOR < total + 16 * MiB)
        goto out;
    memset((void *)(uintptr_t)BUF_D, 0x5a, 32 * MiB);
    {
        const struct disk_sg big[1] = {{BUF_D, 4 * MiB}};
        const struct disk_sg small[1] = {{BUF_D, 64 * 1024}};
        pages[0].addr = BUF_B_HDR;
        pages[0].bytes = 512;
        for (unsigned i = 0; i < 1024; i++) {
            pages[1 + i].addr = BUF_D + (uint64_t)(1023 - i) * 8192;
            pages[1 + i].bytes = 4096;
        }
        /* Every variant overwrites the same region, after one unreported pass over it, so
         * none pays for the host allocating file blocks or filling its page cache. */
        bench_run("warmup", big, 1, total, 0);
        bench_run("4MiB_contiguous", big, 1, total, 0);
        bench_run("4MiB_header_1024_pages", pages, 1025, total, 0);
        bench_run("64KiB_contiguous", small, 1, total, 0);
        bench_run("4MiB_contiguous_again", big, 1, total, 0);
    }
out:
    ahci_close(&hba);
}

/* ---- entry ------------------------------------------------------------------------- */

static int find_hba(void)
{
    for (unsigned bus = 0; bus < 256; bus++)
        for (unsigned dev = 0; dev < 32; dev++)
            for (unsigned fn = 0; fn < 8; fn++) {
                uint16_t vendor = pci_read16(bus, dev, fn, PCI_VENDOR_ID);
                if (vendor == 0xffff) {
                    if (fn == 0)
                        break;
                    continue;
                }
                if (pci_read8(bus, dev, fn, PCI_CLASS) == AHCI_PCI_CLASS &&
                    pci_read8(bus, dev, fn, PCI_SUBCLASS) == AHCI_PCI_SUBCLASS &&
                    pci_read8(bus, dev, fn, PCI_PROG_IF) == AHCI_PCI_PROG_IF) {
                    cfg.bus = bus;
                    cfg.dev = dev;
                    cfg.fn = fn;
                    cfg.abar = pci_read32(bus, dev, fn, PCI_BAR5) & PCI_BAR_MEM_MASK;
                    kprintf("HBA %x:%x.%x id=%x:%x abar=0x%llx\n", bus, dev, fn, vendor,
                            pci_read16(bus, dev, fn, PCI_DEVICE_ID),
                            (unsigned long long)cfg.abar);
                    return 1;
                }
                if (fn == 0 && !(pci_read8(bus, dev, fn, PCI_HEADER_TYPE) & 0x80))
                    break;
            }
    return 0;
}

void host_main(uint32_t magic, uint32_t mbi)
{
    const uint32_t *info = (const uint32_t *)(uintptr_t)mbi;

    serial_init(SERIAL_COM1);
    if (magic == MULTIBOOT_BOOTLOADER_MAGIC && (info[0] & MB_INFO_CMDLINE)) {
        const char *s = (const char *)(uintptr_t)info[4];
        unsigned i = 0;
        for (; s[i] && i < sizeof(cmdline) - 1; i++)
            cmdline[i] = s[i];
        cmdline[i] = 0;
    }
    kprintf("AHCI harness: cmdline \"%s\"\n", cmdline);
    timer_init(0);
    kprintf("TIMER hz=%llu calibrated=%d\n", (unsigned long long)timer_hz(), timer_calibrated());
    if (!find_hba()) {
        kprintf("SETUP no AHCI HBA found\n");
        qemu_exit(EXIT_SETUP);
    }
    cfg.port = (uint8_t)arg_u64("port", 0);

    if (arg_is("op", "rw"))
        op_rw(cfg.port);
    else if (arg_is("op", "stopped"))
        op_stopped(cfg.port);
    else if (arg_is("op", "errors"))
        op_errors();
    else if (arg_is("op", "inject"))
        op_inject();
    else if (arg_is("op", "pastend"))
        op_pastend();
    else if (arg_is("op", "queue"))
        op_queue(cfg.port);
    else if (arg_is("op", "queue_inject"))
        op_queue_inject(cfg.port);
    else if (arg_is("op", "bench"))
        op_bench();
    else if (arg_is("op", "timer"))
        op_timer();
    else {
        kprintf("SETUP unknown op\n");
        qemu_exit(EXIT_SETUP);
    }
    kprintf("RESULT failures=%d\n", failures);
    qemu_exit(failures ? EXIT_FAIL : EXIT_PASS);
}
