/*
 * Polled AHCI driver: one port, a few non-queued command slots, no interrupts.
 *
 * References: Serial ATA AHCI 1.3.1 ("AHCI", sections cited as numbers), ATA8-ACS for the
 * commands and IDENTIFY data, Serial ATA 3.x for the Register FIS layouts.
 *
 * Flow: ahci_open checks the PCI function and ABAR it was given (AHCI 2.1), enables memory
 * decoding and bus mastering, sets GHC.AE, checks the port, saves the registers it will
 * change, stops the port (AHCI 10.1.2), points PxCLB/PxFB at the caller's DMA area, masks
 * the port's interrupts and starts it (10.3.2, 10.3.1). Each command fills the next slot
 * of the command list (its own command table) and sets its PxCI bit; writes may leave up to
 * a->slots commands set in PxCI at once. Non-queued commands are legal several at a time
 * (5.3.2: the HBA fetches the next issued slot when the previous command ends), so the
 * device goes from one write to the next without waiting for the CPU to notice. The
 * oldest command is polled (PxCI bit, PxIS) until completion, error or deadline. An error
 * runs the non-queued recovery of AHCI 6.2.2.1, which drops the rest, so the port stays
 * usable and restorable. ahci_close stops the port and puts every saved register back.
 *
 * Memory ordering: all MMIO goes through hba_read/hba_write (volatile 32-bit accesses
 * bracketed by compiler barriers). On x86 stores become visible in program order and an
 * uncached MMIO store is not reordered with earlier stores, so the command header, FIS
 * and PRDT written to ordinary memory are visible to the HBA before the PxCI store that
 * issues them; loads are not reordered with older loads, so data read after PxCI is seen
 * clear is the DMA'd data. The compiler barriers keep gcc from moving the plain memory
 * accesses across the MMIO ones. The ABAR page must be mapped uncached (PCD) by whoever
 * builds the page tables.
 */
#include "ahci.h"
#include "ahci_regs.h"
#include "pci.h"
#include "timer.h"
#include "string.h"

#define barrier() __asm__ volatile("" ::: "memory")
#define MS(ms)    ((uint64_t)(ms) * 1000u)

/* ---- the one MMIO accessor pair ------------------------------------------------------ */

static inline uint32_t hba_read(const struct ahci *a, uint32_t reg)
{
    uint32_t v;
    barrier();
    v = *(volatile uint32_t *)(a->abar + reg);
    barrier();
    return v;
}

static inline void hba_write(struct ahci *a, uint32_t reg, uint32_t v)
{
    barrier();
    *(volatile uint32_t *)(a->abar + reg) = v;
    barrier();
}

static inline uint32_t px_reg(const struct ahci *a, uint32_t reg)
{
    return AHCI_PORT_BASE + (uint32_t)a->port * AHCI_PORT_STRIDE + reg;
}

static inline uint32_t px_read(const struct ahci *a, uint32_t reg)
{
    return hba_read(a, px_reg(a, reg));
}

static inline void px_write(struct ahci *a, uint32_t reg, uint32_t v)
{
    hba_write(a, px_reg(a, reg), v);
}

/* PxCMD writes never carry ICC or CLO back (see AHCI_PxCMD_WRITE_MASK). */
static inline void px_cmd_write(struct ahci *a, uint32_t v)
{
    px_write(a, AHCI_PxCMD, v & AHCI_PxCMD_WRITE_MASK);
}

/* Clear the RWC bits currently set in PxIS or PxSERR (AHCI 3.3.5, 3.3.12). */
static inline uint32_t px_clear_rwc(struct ahci *a, uint32_t reg)
{
    uint32_t v = px_read(a, reg);
    if (v)
        px_write(a, reg, v);
    return v;
}

/* ---- errors ------------------------------------------------------------------------ */

/* Record an error without touching the HBA (its registers may not be reachable). */
static int fail_early(struct ahci *a, int status, const char *what)
{
    a->err.what = what;
    a->err.lba = 0;
    a->err.dev_lba = 0;
    a->err.tfd = a->err.is = a->err.serr = 0;
    return status;
}

/* Record an error with the port's status registers as they are now. */
static int fail_port(struct ahci *a, int status, const char *what, uint64_t lba, uint32_t is)
{
    a->err.what = what;
    a->err.lba = lba;
    a->err.dev_lba = 0;
    a->err.tfd = px_read(a, AHCI_PxTFD);
    a->err.is = is | px_read(a, AHCI_PxIS);
    a->err.serr = px_read(a, AHCI_PxSERR);
    return status;
}

/* ---- polled waits ------------------------------------------------------------------ */

/* Wait until (port register & mask) == want. 0, or -1 once timeout_ms has passed. The
 * register is read once more after the deadline so a preempted poller never reports a
 * condition that is in fact met. */
static int px_wait(struct ahci *a, uint32_t reg, uint32_t mask, uint32_t want, uint32_t timeout_ms)
{
    uint64_t deadline = timer_deadline_us(MS(timeout_ms));
    for (;;) {
        if ((px_read(a, reg) & mask) == want)
            return 0;
        if (timer_expired(deadline))
            return (px_read(a, reg) & mask) == want ? 0 : -1;
        __asm__ volatile("pause");
    }
}

/* ---- port state changes -------------------------------------------------------------- */

/* Stop the command list: PxCMD.ST = 0, wait for PxCMD.CR = 0 (AHCI 10.1.2 item 3, 3.3.7). */
static int port_stop_cmd_list(struct ahci *a)
{
    uint32_t cmd = px_read(a, AHCI_PxCMD);
    a->running = 0;
    if (!(cmd & (AHCI_PxCMD_ST | AHCI_PxCMD_CR)))
        return 0;
    if (cmd & AHCI_PxCMD_ST)
        px_cmd_write(a, cmd & ~AHCI_PxCMD_ST);
    if (px_wait(a, AHCI_PxCMD, AHCI_PxCMD_CR, 0, AHCI_TIMEOUT_CR_CLEAR_MS))
        return fail_port(a, SOS_STATUS_AHCI_TIMEOUT,
                         "PxCMD.CR still set 500 ms after PxCMD.ST=0 (AHCI 10.1.2)", 0, 0);
    return 0;
}

/* Put the port in the idle state of AHCI 10.1.2 item 3: ST, CR, FRE and FR all clear.
 * FRE is cleared only once CR is clear (3.3.7, FRE). */
static int port_stop(struct ahci *a)
{
    int rc = port_stop_cmd_list(a);
    uint32_t cmd;
    if (rc)
        return rc;
    cmd = px_read(a, AHCI_PxCMD);
    if (!(cmd & (AHCI_PxCMD_FRE | AHCI_PxCMD_FR)))
        return 0;
    if (cmd & AHCI_PxCMD_FRE)
        px_cmd_write(a, cmd & ~AHCI_PxCMD_FRE);
    if (px_wait(a, AHCI_PxCMD, AHCI_PxCMD_FR, 0, AHCI_TIMEOUT_FR_CLEAR_MS))
        return fail_port(a, SOS_STATUS_AHCI_TIMEOUT,
                         "PxCMD.FR still set 500 ms after PxCMD.FRE=0 (AHCI 10.1.2)", 0, 0);
    return 0;
}

/* COMRESET (AHCI 10.4.2): only with PxCMD.ST = 0 (3.3.11: DET may be written only then).
 * DET = 1 for at least 1 ms, then DET = 0; wait for the link (PxSSTS.DET = 3); clear the
 * PxSERR bits the reset set. PxSCTL is put back as it was (apart from DET, which was 0). */
static int port_comreset(struct ahci *a)
{
    uint32_t sctl = px_read(a, AHCI_PxSCTL);
    a->sctl_changed = 1;
    px_write(a, AHCI_PxSCTL, (sctl & ~AHCI_PxSCTL_DET_MASK) | AHCI_PxSCTL_DET_COMRESET);
    timer_udelay(AHCI_COMRESET_ASSERT_US);
    px_write(a, AHCI_PxSCTL, sctl & ~AHCI_PxSCTL_DET_MASK);
    if (px_wait(a, AHCI_PxSSTS, AHCI_PxSSTS_DET_MASK, AHCI_PxSSTS_DET_PRESENT,
                AHCI_TIMEOUT_LINK_UP_MS))
        return fail_port(a, SOS_STATUS_AHCI_TIMEOUT,
                         "PxSSTS.DET not 3 within 1 s of COMRESET (AHCI 10.4.2)", 0, 0);
    px_clear_rwc(a, AHCI_PxSERR);
    return 0;
}

/* Start the port: FIS receive first (10.3.2), then, with PxCMD.CR clear, FRE set and the
 * device neither BSY nor DRQ, the command list (10.3.1). A device stuck BSY/DRQ gets one
 * COMRESET (10.4.2), as 6.2.2.1 prescribes. */
static int port_start(struct ahci *a)
{
    uint32_t cmd = px_read(a, AHCI_PxCMD);
    const uint32_t busy = AHCI_PxTFD_STS_BSY | AHCI_PxTFD_STS_DRQ;

    if (!(cmd & AHCI_PxCMD_FRE)) {
        px_cmd_write(a, cmd | AHCI_PxCMD_FRE);
        if (px_wait(a, AHCI_PxCMD, AHCI_PxCMD_FR, AHCI_PxCMD_FR, AHCI_TIMEOUT_FR_SET_MS))
            return fail_port(a, SOS_STATUS_AHCI_TIMEOUT,
                             "PxCMD.FR not set 500 ms after PxCMD.FRE=1 (AHCI 10.3.2)", 0, 0);
    }
    if (px_wait(a, AHCI_PxTFD, busy, 0, AHCI_TIMEOUT_DEVICE_READY_MS)) {
        int rc = port_comreset(a);
        if (rc)
            return rc;
        if (px_wait(a, AHCI_PxTFD, busy, 0, AHCI_TIMEOUT_DEVICE_READY_MS))
            return fail_port(a, SOS_STATUS_AHCI_TIMEOUT,
                             "PxTFD.STS BSY/DRQ still set 10 s after COMRESET (AHCI 10.3.1)",
                             0, 0);
    }
    cmd = px_read(a, AHCI_PxCMD);
    px_cmd_write(a, cmd | AHCI_PxCMD_ST);
    a->running = 1;
    return 0;
}

/* Microseconds between two polls of PxCI/PxIS. A command moves megabytes (milliseconds),
 * so the gap costs nothing on hardware; under QEMU's multi-threaded TCG every register
 * read takes the global lock that the emulated HBA needs to finish the command, and a
 * CPU reading back to back held the disk up by a factor of three on two cores. */
#define AHCI_POLL_GAP_US 5

/* After a task-file error, before the command list is stopped: an HBA that runs on
 * through the commands still set in PxCI (QEMU's does, where a conforming one halts,
 * 6.2.2.1) must not have the list taken from under a running command: QEMU finishes it
 * into the unmapped list and crashes. So wait until PxCI is empty, or has not changed for
 * AHCI_TIMEOUT_ERROR_SETTLE_MS (the HBA has halted). A timed-out command is not waited
 * for again: it is the one stuck. */
static void port_settle(struct ahci *a)
{
    uint32_t last = px_read(a, AHCI_PxCI);
    uint64_t quiet = timer_deadline_us(MS(AHCI_TIMEOUT_ERROR_SETTLE_MS));
    while (last && !timer_expired(quiet)) {
        uint32_t ci;
        timer_udelay(AHCI_POLL_GAP_US);
        if ((ci = px_read(a, AHCI_PxCI)) != last) {
            last = ci;
            quiet = timer_deadline_us(MS(AHCI_TIMEOUT_ERROR_SETTLE_MS));
        }
    }
}

/* Non-queued error recovery, AHCI 6.2.2.1:
 *   clear PxCMD.ST and wait for PxCMD.CR to clear (this also resets PxCI, 3.3.14);
 *   clear PxSERR and PxIS;
 *   if PxTFD.STS.BSY or DRQ is set, COMRESET the device;
 *   set PxCMD.ST again.
 * Every command in flight is dropped. After a task-file error (after_error), the HBA was
 * first let settle (port_settle); one that keeps PxCI across ST = 0 (QEMU's does) would
 * run what is left once ST is set again, into slots about to be rebuilt, so PxCI must be
 * empty after the restart, else the port stays stopped. a->err keeps the error that
 * caused the recovery; if the recovery itself fails, the port is left stopped
 * (a->running = 0): later commands fail at once, ahci_close still restores. */
static void port_recover(struct ahci *a, int after_error)
{
    struct ahci_error cause = a->err;
    int rc;
    if (after_error)
        port_settle(a);
    rc = port_stop_cmd_list(a);
    a->inflight = 0;
    if (!rc) {
        px_clear_rwc(a, AHCI_PxSERR);
        px_clear_rwc(a, AHCI_PxIS);
        if (px_read(a, AHCI_PxTFD) & (AHCI_PxTFD_STS_BSY | AHCI_PxTFD_STS_DRQ))
            rc = port_comreset(a);
        if (!rc)
            rc = port_start(a);
        if (!rc && after_error &&
            px_wait(a, AHCI_PxCI, ~0u, 0, AHCI_TIMEOUT_ERROR_SETTLE_MS))
            port_stop_cmd_list(a);
    }
    a->err = cause;
}

/* ---- command execution ------------------------------------------------------------ */

struct ahci_cmd_names {
    const char *error;      /* the device (or HBA) reported an error */
    const char *timeout;    /* PxCI did not clear in time */
};

static const struct ahci_cmd_names names_identify = {
    "IDENTIFY DEVICE failed: task-file error (PxIS.TFES / PxTFD.STS.ERR)",
    "IDENTIFY DEVICE: PxCI bit not clear within 5 s",
};
static const struct ahci_cmd_names names_read = {
    "READ DMA EXT failed: task-file error (PxIS.TFES / PxTFD.STS.ERR)",
    "READ DMA EXT: PxCI bit not clear within 10 s",
};
static const struct ahci_cmd_names names_write = {
    "WRITE DMA EXT failed: task-file error (PxIS.TFES / PxTFD.STS.ERR)",
    "WRITE DMA EXT: PxCI bit not clear within 10 s",
};
static const struct ahci_cmd_names names_flush = {
    "FLUSH CACHE EXT failed: task-file error (PxIS.TFES / PxTFD.STS.ERR)",
    "FLUSH CACHE EXT: PxCI bit not clear within 30 s",
};

/* Name the HBA-detected conditions of PxIS (3.3.5) that are not device errors. */
static const char *hba_error_name(uint32_t is, const char *taskfile)
{
    if (is & AHCI_PxIS_HBFS)
        return "host bus fatal error (PxIS.HBFS): a PRD or command address the HBA cannot reach";
    if (is & AHCI_PxIS_HBDS)
        return "host bus data error (PxIS.HBDS)";
    if (is & AHCI_PxIS_IFS)
        return "interface fatal error (PxIS.IFS), see PxSERR";
    if (is & AHCI_PxIS_OFS)
        return "overflow (PxIS.OFS): the device moved more data than the PRDT describes";
    return taskfile;
}

/* Fill the Register H2D FIS of the next slot (Serial ATA 3.x 10.3.4). All 20 bytes are
 * written each time; bytes 20..63 of the CFIS stay zero from ahci_open. */
static void fill_fis(struct ahci *a, uint8_t command, uint64_t lba, uint32_t count, uint8_t device)
{
    struct sata_fis_h2d *f = (struct sata_fis_h2d *)a->ct[a->next]->cfis;
    f->fis_type = SATA_FIS_TYPE_REG_H2D;
    f->pm_flags = SATA_FIS_H2D_C;
    f->command = command;
    f->features = 0;
    f->lba0 = (uint8_t)lba;
    f->lba1 = (uint8_t)(lba >> 8);
    f->lba2 = (uint8_t)(lba >> 16);
    f->device = device;
    f->lba3 = (uint8_t)(lba >> 24);
    f->lba4 = (uint8_t)(lba >> 32);
    f->lba5 = (uint8_t)(lba >> 40);
    f->features_exp = 0;
    f->count0 = (uint8_t)count;
    f->count1 = (uint8_t)(count >> 8);
    f->icc = 0;
    f->control = 0;
    f->auxiliary[0] = f->auxiliary[1] = f->auxiliary[2] = f->auxiliary[3] = 0;
}

/* Issue the next slot (its header and table are built: set its PxCI bit, 3.3.14) and
 * return; port_complete_oldest polls it. PxIS is cleared only while nothing else is in
 * flight: TFES latched by an earlier command must stay for its poller to see. The D2H
 * area is cleared likewise, so an error's D2H FIS is known to be a command's of this run. */
static int port_issue(struct ahci *a, uint32_t dw0, uint64_t lba, uint32_t timeout_ms,
                      const struct ahci_cmd_names *names, uint64_t call)
{
    unsigned s = a->next;
    struct ahci_cmd_header *h = &a->clb[s];

    if (!a->running)
        return fail_early(a, SOS_STATUS_AHCI_TIMEOUT,
                          "port not running: an earlier recovery or open failed");
    h->dw0 = dw0;
    h->prdbc = 0;
    if (!a->inflight) {
        a->rfis[AHCI_RFIS_RFIS] = 0;
        px_clear_rwc(a, AHCI_PxIS);
    }
    px_write(a, AHCI_PxCI, 1u << s);     /* barriers in hba_write order the table first */
    a->slot[s] = (struct ahci_slot){ .lba = lba, .call = call, .timeout_ms = timeout_ms,
                                     .names = names };
    a->next = (s + 1) % a->slots;
    a->inflight++;
    return 0;
}

/* Poll the oldest command in flight to its end. Its deadline runs from now: the commands
 * before it ran first, so its own time starts when it reaches the head of the queue.
 * Every iteration also reads PxIS: TFES is the HBA's latch of "a FIS arrived with STS.ERR
 * set" (3.3.5), so it catches the error even when the command never completes. PxTFD
 * itself is a shadow of the last FIS received: its ERR may still be an earlier (failed)
 * command's until the device sends status for this one, so it is judged only once the
 * PxCI bit has cleared, when the ending status FIS has updated it. With several commands
 * in flight an error is put on the oldest, which may be the command before the one that
 * failed; either way recovery drops them all and the caller treats every one as unwritten. */
static int port_complete_oldest(struct ahci *a)
{
    unsigned s = (a->next + a->slots - a->inflight) % a->slots;
    const uint32_t bit = 1u << s;
    const struct ahci_slot c = a->slot[s];
    uint64_t deadline = timer_deadline_us(MS(c.timeout_ms));
    uint32_t is, tfd;

    for (;;) {
        is = px_read(a, AHCI_PxIS);
        if (is & AHCI_PxIS_ERRORS)
            goto error;
        if (!(px_read(a, AHCI_PxCI) & bit))
            break;
        if (timer_expired(deadline)) {
            if (!(px_read(a, AHCI_PxCI) & bit))
                break;
            fail_port(a, SOS_STATUS_AHCI_TIMEOUT, c.names->timeout, c.lba, is);
            port_recover(a, 0);
            return SOS_STATUS_AHCI_TIMEOUT;
        }
        timer_udelay(AHCI_POLL_GAP_US);
    }
    a->inflight--;
    /* Completed. The status FIS that ended the command may have raised TFES in the same
     * step that cleared PxCI, so read both once more. */
    is = px_read(a, AHCI_PxIS);
    tfd = px_read(a, AHCI_PxTFD);
    if (!(is & AHCI_PxIS_ERRORS) && !(tfd & (AHCI_PxTFD_STS_ERR | AHCI_PxTFD_STS_DF)))
        return 0;
error:
    fail_port(a, SOS_STATUS_AHCI_TASKFILE_ERROR, hba_error_name(is, c.names->error), c.lba, is);
    {
        /* LBA of the D2H Register FIS (bytes 4..6, 8..10), when one arrived. */
        const volatile uint8_t *d2h = a->rfis + AHCI_RFIS_RFIS;
        if (d2h[0] == SATA_FIS_TYPE_REG_D2H)
            a->err.dev_lba = (uint64_t)d2h[4] | (uint64_t)d2h[5] << 8 |
                             (uint64_t)d2h[6] << 16 | (uint64_t)d2h[8] << 24 |
                             (uint64_t)d2h[9] << 32 | (uint64_t)d2h[10] << 40;
    }
    port_recover(a, 1);
    return SOS_STATUS_AHCI_TASKFILE_ERROR;
}

/* Finish every command in flight. */
static int port_complete(struct ahci *a)
{
    while (a->inflight) {
        int rc = port_complete_oldest(a);
        if (rc)
            return rc;
    }
    return 0;
}

static int port_exec(struct ahci *a, uint32_t dw0, uint64_t lba, uint32_t timeout_ms,
                     const struct ahci_cmd_names *names)
{
    int rc = port_issue(a, dw0, lba, timeout_ms, names, 0);
    return rc ? rc : port_complete(a);
}

int ahci_wait_calls(struct ahci *a, unsigned left)
{
    while (a->inflight) {
        unsigned oldest = (a->next + a->slots - a->inflight) % a->slots;
        if (a->slot[oldest].call + left > a->calls)
            return 0;                   /* only the newest `left` calls are still running */
        int rc = port_complete_oldest(a);
        if (rc)
            return rc;
    }
    return 0;
}

int ahci_wait(struct ahci *a)
{
    return port_complete(a);
}

unsigned ahci_depth(const struct ahci *a)
{
    return a->slots;
}

/* Check a whole scatter list before anything is issued: even addresses and lengths
 * (AHCI 4.2.3.3: DBA bit 0 reserved, DBC bit 0 always 1), reachable addresses (no
 * CAP.S64A: below 4 GiB), a non-zero multiple of 512 bytes in total, inside 48-bit LBA. */
static int check_sg(struct ahci *a, uint64_t lba, const struct disk_sg *sg, unsigned n)
{
    const int s64a = (a->cap & AHCI_CAP_S64A) != 0;
    uint64_t sum = 0;
    for (unsigned i = 0; i < n; i++) {
        if ((sg[i].addr | sg[i].bytes) & 1u)
            return fail_early(a, SOS_STATUS_AHCI_BAD_REQUEST,
                              "scatter piece with odd address or length (AHCI 4.2.3.3)");
        if (!s64a && sg[i].addr + sg[i].bytes > (1ull << 32))
            return fail_early(a, SOS_STATUS_AHCI_BAD_REQUEST,
                              "buffer above 4 GiB and the HBA lacks CAP.S64A");
        sum += sg[i].bytes;
    }
    if (!sum || sum % ATA_SECTOR_SIZE)
        return fail_early(a, SOS_STATUS_AHCI_BAD_REQUEST,
                          "transfer is empty or not a multiple of 512 bytes");
    if (lba >= ATA_LBA48_LIMIT || sum / ATA_SECTOR_SIZE > ATA_LBA48_LIMIT - lba)
        return fail_early(a, SOS_STATUS_AHCI_BAD_REQUEST, "LBA beyond 48 bits");
    return 0;
}

/* Position in a scatter list: piece i, byte off within it. */
struct sg_cursor {
    unsigned i;
    uint32_t off;
};

static void cursor_back(struct sg_cursor *c, const struct disk_sg *sg, uint32_t bytes)
{
    while (bytes) {
        uint32_t step;
        while (!c->off) {
            c->i--;
            c->off = sg[c->i].bytes;
        }
        step = c->off < bytes ? c->off : bytes;
        c->off -= step;
        bytes -= step;
    }
}

/* Build the PRDT of one command (AHCI 4.2.3.3) from the cursor on. Pieces that continue
 * the previous one in memory extend its PRD; no PRD exceeds 4 MiB (DBC is 22 bits,
 * 0's based). A command ends at a->prd_max PRDs or 65536 sectors; if the PRD limit cuts it
 * off mid-sector, the tail past the last sector boundary is left for the next command.
 * Returns the PRD count (0 when nothing is left) and the command's bytes; -1 with a->err
 * set if the pieces are too small to fill one sector within the PRD limit. */
static int build_prdt(struct ahci *a, const struct disk_sg *sg, unsigned n,
                      struct sg_cursor *c, uint32_t *bytes)
{
    const uint32_t cmd_max = ATA_LBA48_MAX_SECTORS * ATA_SECTOR_SIZE;
    struct ahci_prd *prd = a->ct[a->next]->prdt;
    uint64_t next = 0;              /* address just past the last PRD */
    uint32_t total = 0, last = 0;   /* bytes in the command, in the last PRD */
    unsigned k = 0;

    while (c->i < n && total < cmd_max) {
        uint64_t addr = sg[c->i].addr + c->off;
        uint32_t left = sg[c->i].bytes - c->off, chunk;
        if (!left) {
            c->i++;
            c->off = 0;
            continue;
        }
        if (left > cmd_max - total)
            left = cmd_max - total;
        if (k && addr == next && last < AHCI_PRD_DBC_MAX) {
            chunk = left < AHCI_PRD_DBC_MAX - last ? left : AHCI_PRD_DBC_MAX - last;
            last += chunk;
            prd[k - 1].dw3 = last - 1;
        } else {
            if (k == a->prd_max)
                break;
            chunk = left < AHCI_PRD_DBC_MAX ? left : AHCI_PRD_DBC_MAX;
            prd[k].dba = (uint32_t)addr;
            prd[k].dbau = (uint32_t)(addr >> 32);
            prd[k].dw3 = chunk - 1;         /* I = 0: polled */
            last = chunk;
            k++;
        }
        next = addr + chunk;
        total += chunk;
        c->off += chunk;
        if (c->off == sg[c->i].bytes) {
            c->i++;
            c->off = 0;
        }
    }
    if (total % ATA_SECTOR_SIZE) {
        uint32_t r = total % ATA_SECTOR_SIZE;
        cursor_back(c, sg, r);
        total -= r;
        while (r) {
            uint32_t len = (prd[k - 1].dw3 & AHCI_PRD_DBC_MASK) + 1;
            if (len > r) {
                prd[k - 1].dw3 = len - r - 1;
                r = 0;
            } else {
                k--;
                r -= len;
            }
        }
        if (!total)
            return fail_early(a, SOS_STATUS_AHCI_BAD_REQUEST,
                              "pieces too small to fill a sector within the PRD limit"), -1;
    }
    *bytes = total;
    return (int)k;
}

/* READ DMA EXT / WRITE DMA EXT (ATA8-ACS): 48-bit LBA, Count 0000h meaning 65536,
 * Device bit 6 (LBA) set. A list that needs more than one command (over 65536 sectors or
 * a->prd_max PRDs) is issued as consecutive commands. Synchronous calls run one command
 * at a time, so an error stops at the failing one and names its first LBA; asynchronous
 * writes fill every free slot and wait for the oldest command only when none is free. */
static int ahci_rw(struct ahci *a, uint64_t lba, const struct disk_sg *sg, unsigned n, int write,
                   int async)
{
    struct sg_cursor c = {0, 0};
    int rc = check_sg(a, lba, sg, n);
    uint64_t call = async ? ++a->calls : 0;
    if (rc)
        return rc;
    for (;;) {
        uint32_t bytes = 0, count;
        int prdtl;
        /* The next slot's table is rebuilt: the command that used it must have finished. */
        while (async ? a->inflight == a->slots : a->inflight > 0)
            if ((rc = port_complete_oldest(a)))
                return rc;
        prdtl = build_prdt(a, sg, n, &c, &bytes);
        if (prdtl < 0)
            return SOS_STATUS_AHCI_BAD_REQUEST;
        if (!prdtl)
            return 0;
        count = bytes / ATA_SECTOR_SIZE;
        fill_fis(a, write ? ATA_CMD_WRITE_DMA_EXT : ATA_CMD_READ_DMA_EXT, lba,
                 count & 0xffffu, ATA_DEV_LBA);
        rc = port_issue(a, ((uint32_t)prdtl << AHCI_CMDH_PRDTL_SHIFT) |
                           (write ? AHCI_CMDH_W : 0) | SATA_FIS_H2D_DWORDS,
                        lba, AHCI_TIMEOUT_DATA_CMD_MS, write ? &names_write : &names_read,
                        call);
        if (rc)
            return rc;
        lba += count;
        if (async && c.i >= n)
            return 0;               /* the commands run on; ahci_wait_calls finishes them */
    }
}

int ahci_write(struct ahci *a, uint64_t lba, const struct disk_sg *sg, unsigned n)
{
    int rc = ahci_rw(a, lba, sg, n, 1, 0);
    return rc ? rc : port_complete(a);
}

int ahci_write_async(struct ahci *a, uint64_t lba, const struct disk_sg *sg, unsigned n)
{
    return ahci_rw(a, lba, sg, n, 1, 1);
}

int ahci_read(struct ahci *a, uint64_t lba, const struct disk_sg *sg, unsigned n)
{
    int rc = ahci_rw(a, lba, sg, n, 0, 0);
    return rc ? rc : port_complete(a);
}

/* FLUSH CACHE EXT (ATA8-ACS): non-data, PRDTL = 0, no LBA or Count. */
int ahci_flush(struct ahci *a)
{
    int rc = port_complete(a);
    if (rc)
        return rc;
    fill_fis(a, ATA_CMD_FLUSH_CACHE_EXT, 0, 0, 0);
    return port_exec(a, SATA_FIS_H2D_DWORDS, 0, AHCI_TIMEOUT_FLUSH_MS, &names_flush);
}

/* IDENTIFY DEVICE (ATA8-ACS): PIO data-in of one 512-byte block into the DMA area.
 * Sectors: words 100..103 when the 48-bit Address feature set is supported (word 83
 * bit 10), else words 60..61. Model: words 27..46, two ASCII characters per word with
 * the first in the high byte. */
int ahci_identify(struct ahci *a, uint64_t *sectors, char model[41])
{
    int rc = port_complete(a);
    const unsigned slot = a->next;
    struct ahci_prd *prd = a->ct[slot]->prdt;
    const uint16_t *id = a->ident;
    uint64_t n;

    if (rc)
        return rc;
    prd[0].dba = (uint32_t)(uintptr_t)a->ident;
    prd[0].dbau = (uint32_t)((uint64_t)(uintptr_t)a->ident >> 32);
    prd[0].dw3 = ATA_SECTOR_SIZE - 1;
    fill_fis(a, ATA_CMD_IDENTIFY_DEVICE, 0, 0, 0);
    rc = port_exec(a, (1u << AHCI_CMDH_PRDTL_SHIFT) | SATA_FIS_H2D_DWORDS, 0,
                   AHCI_TIMEOUT_IDENTIFY_MS, &names_identify);
    if (rc)
        return rc;
    if (a->clb[slot].prdbc != ATA_SECTOR_SIZE)
        return fail_port(a, SOS_STATUS_AHCI_TASKFILE_ERROR,
                         "IDENTIFY DEVICE moved other than 512 bytes (PRDBC)", 0, 0);

    if (id[ATA_ID_CMDSET_83] & ATA_ID_48BIT)
        n = (uint64_t)id[ATA_ID_LBA48_SECTORS] | (uint64_t)id[ATA_ID_LBA48_SECTORS + 1] << 16 |
            (uint64_t)id[ATA_ID_LBA48_SECTORS + 2] << 32 |
            (uint64_t)id[ATA_ID_LBA48_SECTORS + 3] << 48;
    else
        n = (uint64_t)id[ATA_ID_LBA28_SECTORS] | (uint64_t)id[ATA_ID_LBA28_SECTORS + 1] << 16;
    /* Word 106 valid (bits 15:14 = 01b) with bit 12 set: logical sector size in 117..118. */
    if ((id[ATA_ID_SECTOR_SIZE] & 0xc000) == 0x4000 && (id[ATA_ID_SECTOR_SIZE] & (1u << 12))) {
        uint32_t words = id[ATA_ID_LOGICAL_SIZE] | (uint32_t)id[ATA_ID_LOGICAL_SIZE + 1] << 16;
        if (words != ATA_SECTOR_SIZE / 2)
            return fail_early(a, SOS_STATUS_AHCI_BAD_REQUEST,
                              "device logical sectors are not 512 bytes (IDENTIFY word 106)");
    }
    a->sectors = n;
    if (sectors)
        *sectors = n;
    if (model) {
        int end = 0;
        for (int i = 0; i < ATA_ID_MODEL_WORDS; i++) {
            uint16_t w = id[ATA_ID_MODEL + i];
            model[2 * i] = (char)(w >> 8);
            model[2 * i + 1] = (char)(w & 0xff);
        }
        for (int i = 0; i < 2 * ATA_ID_MODEL_WORDS; i++)
            if (model[i] != ' ' && model[i] != 0)
                end = i + 1;
        model[end] = 0;
    }
    return 0;
}

/* ---- taking the port and giving it back --------------------------------------------- */

/* Undo whatever ahci_open changed, in reverse order. Used by ahci_close and by a failed
 * ahci_open. The port is stopped first (10.1.2) so its address registers may be written,
 * then FRE and ST are set again in the order of 10.3.2 / 10.3.1 if the host had them. */
static void restore_all(struct ahci *a)
{
    if (a->taken) {
        struct ahci_error keep = a->err;
        uint32_t base = a->saved_cmd & ~(AHCI_PxCMD_ST | AHCI_PxCMD_FRE);
        int rc = port_stop(a);
        px_clear_rwc(a, AHCI_PxIS);
        px_clear_rwc(a, AHCI_PxSERR);
        px_write(a, AHCI_PxCLB, a->saved_clb);
        px_write(a, AHCI_PxCLBU, a->saved_clbu);
        px_write(a, AHCI_PxFB, a->saved_fb);
        px_write(a, AHCI_PxFBU, a->saved_fbu);
        if (a->sctl_changed && px_read(a, AHCI_PxSCTL) != a->saved_sctl)
            px_write(a, AHCI_PxSCTL, a->saved_sctl);
        px_cmd_write(a, base);
        if (a->saved_cmd & AHCI_PxCMD_FRE) {
            px_cmd_write(a, base | AHCI_PxCMD_FRE);
            if (px_wait(a, AHCI_PxCMD, AHCI_PxCMD_FR, AHCI_PxCMD_FR, AHCI_TIMEOUT_FR_SET_MS)
                && !rc)
                rc = fail_port(a, SOS_STATUS_AHCI_TIMEOUT,
                               "close: PxCMD.FR not set 500 ms after FRE=1 (AHCI 10.3.2)", 0, 0);
        }
        if (a->saved_cmd & AHCI_PxCMD_ST)
            px_cmd_write(a, base | (a->saved_cmd & AHCI_PxCMD_FRE) | AHCI_PxCMD_ST);
        /* PxIE last: PxIS is clear, so restoring it raises nothing. */
        px_write(a, AHCI_PxIE, a->saved_ie);
        if (!rc)
            a->err = keep;
        a->taken = 0;
        a->running = 0;
        a->sctl_changed = 0;
    }
    if (a->ghc_changed) {
        hba_write(a, AHCI_GHC, a->saved_ghc & ~AHCI_GHC_HR);
        a->ghc_changed = 0;
    }
    if (a->pci_changed) {
        pci_write16(a->bus, a->dev, a->fn, PCI_COMMAND, a->saved_pci_command);
        a->pci_changed = 0;
    }
}

static int open_fail(struct ahci *a, int rc)
{
    restore_all(a);
    return rc;
}

int ahci_open(struct ahci *a, const struct ahci_config *cfg, void *dma, uint64_t dma_size)
{
    uint8_t *area = dma;
    uint64_t area_addr = (uint64_t)(uintptr_t)dma;
    uint32_t bar5, ghc, pi;
    uint16_t command;
    int rc;

    memset(a, 0, sizeof(*a));
    a->bus = cfg->bus;
    a->dev = cfg->dev;
    a->fn = cfg->fn;
    a->port = cfg->port;
    if (!dma || (area_addr & 0xfff) || dma_size < AHCI_DMA_MIN_SIZE)
        return fail_early(a, SOS_STATUS_AHCI_BAD_REQUEST,
                          "DMA area missing, not 4 KiB aligned, or under 4 KiB");

    /* The PCI function must be an AHCI HBA whose ABAR is the one we were given: class
     * code 01h/06h/01h (AHCI 2.1.5), BAR5 = ABAR, a memory BAR (2.1.11). */
    if (pci_read16(a->bus, a->dev, a->fn, PCI_VENDOR_ID) == 0xffff)
        return fail_early(a, SOS_STATUS_PCI_MISMATCH, "no PCI function at the configured address");
    if (pci_read8(a->bus, a->dev, a->fn, PCI_CLASS) != AHCI_PCI_CLASS ||
        pci_read8(a->bus, a->dev, a->fn, PCI_SUBCLASS) != AHCI_PCI_SUBCLASS ||
        pci_read8(a->bus, a->dev, a->fn, PCI_PROG_IF) != AHCI_PCI_PROG_IF)
        return fail_early(a, SOS_STATUS_PCI_MISMATCH,
                          "PCI function is not an AHCI HBA (class 01h/06h/01h)");
    bar5 = pci_read32(a->bus, a->dev, a->fn, PCI_BAR5);
    if ((bar5 & PCI_BAR_IO) || !cfg->abar || (uint64_t)(bar5 & PCI_BAR_MEM_MASK) != cfg->abar)
        return fail_early(a, SOS_STATUS_PCI_MISMATCH, "BAR5 (ABAR) differs from the configured abar");
    a->abar = (volatile uint8_t *)(uintptr_t)cfg->abar;

    /* Memory space for ABAR, bus mastering for the HBA's DMA (PCI command, AHCI 2.1.2). */
    a->saved_pci_command = command = pci_read16(a->bus, a->dev, a->fn, PCI_COMMAND);
    if ((command & (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)) !=
        (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)) {
        pci_write16(a->bus, a->dev, a->fn, PCI_COMMAND,
                    command | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
        a->pci_changed = 1;
    }

    /* AHCI mode (GHC.AE, 3.1.2; 10.1.2 item 1). HR is never written. */
    a->saved_ghc = ghc = hba_read(a, AHCI_GHC);
    if (!(ghc & AHCI_GHC_AE)) {
        hba_write(a, AHCI_GHC, (ghc & ~AHCI_GHC_HR) | AHCI_GHC_AE);
        a->ghc_changed = 1;
    }
    a->cap = hba_read(a, AHCI_CAP);
    pi = hba_read(a, AHCI_PI);
    if (cfg->port >= AHCI_MAX_PORTS || !(pi & (1u << cfg->port)))
        return open_fail(a, fail_early(a, SOS_STATUS_AHCI_BAD_PORT,
                                       "port not implemented by the HBA (PI)"));
    if ((px_read(a, AHCI_PxSSTS) & AHCI_PxSSTS_DET_MASK) != AHCI_PxSSTS_DET_PRESENT)
        return open_fail(a, fail_port(a, SOS_STATUS_AHCI_NO_DEVICE,
                                      "no device on the port (PxSSTS.DET != 3)", 0, 0));
    if (!(a->cap & AHCI_CAP_S64A) && area_addr + dma_size > (1ull << 32))
        return open_fail(a, fail_early(a, SOS_STATUS_AHCI_BAD_REQUEST,
                                       "DMA area above 4 GiB and the HBA lacks CAP.S64A"));

    /* Everything the driver changes on the port, as the host left it. */
    a->saved_clb = px_read(a, AHCI_PxCLB);
    a->saved_clbu = px_read(a, AHCI_PxCLBU);
    a->saved_fb = px_read(a, AHCI_PxFB);
    a->saved_fbu = px_read(a, AHCI_PxFBU);
    a->saved_cmd = px_read(a, AHCI_PxCMD);
    a->saved_ie = px_read(a, AHCI_PxIE);
    a->saved_sctl = px_read(a, AHCI_PxSCTL);
    a->saved_is = px_read(a, AHCI_PxIS);
    a->saved_serr = px_read(a, AHCI_PxSERR);

    /* A quiesced host has nothing in flight; if it has, let it finish rather than cut it. */
    if ((a->saved_cmd & AHCI_PxCMD_ST) &&
        (px_wait(a, AHCI_PxCI, ~0u, 0, AHCI_TIMEOUT_HOST_DRAIN_MS) ||
         px_wait(a, AHCI_PxSACT, ~0u, 0, AHCI_TIMEOUT_HOST_DRAIN_MS)))
        return open_fail(a, fail_port(a, SOS_STATUS_AHCI_TIMEOUT,
                                      "host commands still outstanding (PxCI/PxSACT) after 10 s",
                                      0, 0));

    /* Idle the port (10.1.2 item 3) before moving its structures. */
    a->taken = 1;
    rc = port_stop(a);
    if (rc)
        return open_fail(a, rc);

    /* Carve the DMA area: one command table per slot, as many slots as the HBA has
     * (CAP.NCS, 0's based, 3.1.1) and the area holds, up to AHCI_MAX_SLOTS; an area under
     * one full table gets one slot with fewer PRDs. Zeroed once here; per command only the
     * fields that change are written (header DW0/DW1, the 20-byte CFIS, the PRDs in use). */
    a->prd_max = AHCI_DMA_PRD_CAPACITY(dma_size);
    if (a->prd_max > AHCI_PRDS_PER_COMMAND)
        a->prd_max = AHCI_PRDS_PER_COMMAND;
    {
        uint64_t table = AHCI_DMA_TABLE_BYTES(a->prd_max);
        uint64_t fit = (dma_size - AHCI_DMA_CTBA_OFF) / table;
        unsigned ncs = ((a->cap >> AHCI_CAP_NCS_SHIFT) & AHCI_CAP_NCS_MASK) + 1;
        a->slots = fit < AHCI_MAX_SLOTS ? (unsigned)fit : AHCI_MAX_SLOTS;
        if (a->slots > ncs)
            a->slots = ncs;
        if (!a->slots)
            a->slots = 1;               /* the PRD capacity already fits one table */
        memset(area, 0, AHCI_DMA_CTBA_OFF + (a->slots - 1) * table + AHCI_CMD_TABLE_HDR +
                            (uint64_t)a->prd_max * 16);
        a->clb = (struct ahci_cmd_header *)(area + AHCI_DMA_CLB_OFF);
        a->rfis = area + AHCI_DMA_FB_OFF;
        a->ident = (uint16_t *)(area + AHCI_DMA_IDENT_OFF);
        for (unsigned k = 0; k < a->slots; k++) {
            uint64_t at = AHCI_DMA_CTBA_OFF + k * table;
            a->ct[k] = (struct ahci_cmd_table *)(area + at);
            a->clb[k].ctba = (uint32_t)(area_addr + at);
            a->clb[k].ctbau = (uint32_t)((area_addr + at) >> 32);
        }
    }

    px_write(a, AHCI_PxCLB, (uint32_t)(area_addr + AHCI_DMA_CLB_OFF));
    px_write(a, AHCI_PxCLBU, (uint32_t)((area_addr + AHCI_DMA_CLB_OFF) >> 32));
    px_write(a, AHCI_PxFB, (uint32_t)(area_addr + AHCI_DMA_FB_OFF));
    px_write(a, AHCI_PxFBU, (uint32_t)((area_addr + AHCI_DMA_FB_OFF) >> 32));

    /* Clear old errors (10.1.2 item 6) and status; polled, so no interrupt sources. */
    px_clear_rwc(a, AHCI_PxSERR);
    px_clear_rwc(a, AHCI_PxIS);
    px_write(a, AHCI_PxIE, 0);

    rc = port_start(a);
    if (rc)
        return open_fail(a, rc);
    return 0;
}

void ahci_close(struct ahci *a)
{
    port_complete(a);                   /* bounded by the command's own deadline */
    restore_all(a);
}

/* After a restore the RAM is the restored kernel's: nothing may DMA into it. Stop the port
 * (10.1.2: ST then FRE off, so no received FIS lands anywhere), mask its interrupts and the
 * HBA's (GHC.IE), point PxCLB/PxFB back where the host had them, turn bus mastering off.
 * The kernel's resume path restores PCI state and re-initialises the HBA itself. */
void ahci_close_reset(struct ahci *a)
{
    port_complete(a);
    if (a->taken) {
        port_stop(a);
        px_write(a, AHCI_PxIE, 0);
        px_clear_rwc(a, AHCI_PxIS);
        px_clear_rwc(a, AHCI_PxSERR);
        px_write(a, AHCI_PxCLB, a->saved_clb);
        px_write(a, AHCI_PxCLBU, a->saved_clbu);
        px_write(a, AHCI_PxFB, a->saved_fb);
        px_write(a, AHCI_PxFBU, a->saved_fbu);
        a->taken = 0;
        a->running = 0;
    }
    if (a->abar)
        hba_write(a, AHCI_GHC, hba_read(a, AHCI_GHC) & ~(AHCI_GHC_HR | AHCI_GHC_IE));
    if (a->abar || a->pci_changed) {
        uint16_t cmd = pci_read16(a->bus, a->dev, a->fn, PCI_COMMAND);
        pci_write16(a->bus, a->dev, a->fn, PCI_COMMAND, cmd & ~PCI_COMMAND_MASTER);
        a->pci_changed = 0;
    }
    a->ghc_changed = 0;
}

const struct ahci_error *ahci_last_error(const struct ahci *a)
{
    return &a->err;
}

unsigned ahci_max_sectors(const struct ahci *a)
{
    (void)a;
    return ATA_LBA48_MAX_SECTORS;
}

unsigned ahci_max_prds(const struct ahci *a)
{
    return a->prd_max;
}
