/*
 * Polled NVMe driver (drivers/disk.h): one namespace, the payload's own admin queue and one
 * I/O queue pair, no interrupts. Reference: NVM Express Base Specification 1.4 (sections
 * cited as numbers).
 *
 * Flow: disk_open checks the PCI function (class 01h/08h/02h) and that BAR0 is the BAR the
 * target names, turns on memory decoding and bus mastering (INTx off), disables the
 * controller (CC.EN = 0, wait CSTS.RDY = 0 within CAP.TO: 7.6.1) whether the host left it
 * enabled or not, points AQA/ASQ/ACQ at queues in the DMA area, enables it (CC.EN = 1, wait
 * CSTS.RDY = 1), identifies controller and namespace (MDTS, the LBA format in use), makes
 * sure the Host Memory Buffer is off (hmb_off) and creates one I/O completion queue (no
 * interrupts) and one I/O submission queue (7.6.1 steps 5-9). Reads and writes are split
 * into commands of at most MDTS bytes whose data a PRP list of one page describes (4.3); up
 * to NVME_SLOTS commands are in flight at once, each with its own PRP list page.
 * Completions are found by the phase tag (4.6.2). disk_close sends the shutdown
 * notification (CC.SHN = 01b, wait CSTS.SHST = 10b: 7.6.2), clears CC.EN and puts
 * AQA/ASQ/ACQ and the PCI command register back.
 *
 * Give-back (disk.h): Linux's nvme driver shuts the controller down when it freezes for
 * hibernation and resets it from scratch on thaw and restore, so after a suspend the
 * controller is left shut down and disabled, its admin queue registers as the host had
 * them (AS_FOUND); after a restore likewise, with bus mastering also off (RESET).
 *
 * Memory ordering: MMIO through rd32/wr32 (volatile, bracketed by compiler barriers); on
 * x86 the queue entry stores are visible before the doorbell store, and a completion entry
 * seen with the current phase has its data in memory before it (4.6.2 ordering).
 */
#include "disk.h"
#include "disk_queue.h"
#include "nvme_regs.h"
#include "pci.h"
#include "printf.h"
#include "string.h"
#include "timer.h"

const char disk_driver_name[] = "NVMe";
const char disk_detail_name[] = "status";

#define barrier() __asm__ volatile("" ::: "memory")
#define PAGE 4096u

/* Deadlines. CAP.TO bounds CSTS.RDY transitions (3.1.1, 7.6.1). Commands have none in the
 * spec; like the AHCI driver's: 5 s for admin commands, 10 s for a read or write, 30 s for
 * a flush (a large write cache), 10 s for the shutdown to complete (7.6.2: the host waits
 * for SHST; RTD3E is often 0 or absurd, so a fixed bound). */
#define NVME_TIMEOUT_ADMIN_MS       5000
#define NVME_TIMEOUT_IO_MS          10000
#define NVME_TIMEOUT_FLUSH_MS       30000
#define NVME_TIMEOUT_SHUTDOWN_MS    10000

/* DMA area (64 KiB, page-aligned): admin SQ/CQ, I/O SQ/CQ, identify buffer, PRP lists. */
#define NVME_ADMIN_ENTRIES  8
#define NVME_IO_ENTRIES     16
#define NVME_SLOTS          11          /* commands in flight: one PRP list page each */
#define DMA_ASQ             0x0000
#define DMA_ACQ             0x1000
#define DMA_IOSQ            0x2000
#define DMA_IOCQ            0x3000
#define DMA_IDENT           0x4000
#define DMA_PRP             0x5000
#define DMA_SIZE            (DMA_PRP + NVME_SLOTS * PAGE)
/* One PRP list page per command, no chaining: 256 pages (1 MiB) per command at most. */
#define NVME_MAX_CMD_BYTES  (256u * PAGE)

struct slot {
    int busy;
    const char *op;
    uint64_t lba, deadline;
    uint64_t call;                      /* disk_queue.c's call number; 0: synchronous */
};

static struct {
    volatile uint8_t *bar;
    uint8_t bus, dev, fn;
    uint32_t nsid, dstrd, to_ms;
    uint64_t cap;
    uint8_t *dma;
    struct nvme_sqe *asq, *iosq;
    volatile struct nvme_cqe *acq, *iocq;
    uint16_t asq_tail, acq_head, iosq_tail, iocq_head;
    uint16_t acq_phase, iocq_phase;
    uint16_t saved_pci_command;
    uint32_t saved_cc, saved_aqa;
    uint64_t saved_asq, saved_acq;
    int pci_touched, regs_saved, enabled, io_ready, broken, timed_out;
    uint32_t block, hmpre, dw0;         /* dw0: the last admin completion's Dword 0 */
    uint64_t blocks, max_bytes;
    char model[41];
    struct slot slot[NVME_SLOTS];
    unsigned inflight;
    int pending_rc;                     /* first failure among the commands in flight */
    struct disk_error err;
    char msg[112];
} nv;

/* ---- MMIO ------------------------------------------------------------------------------ */

static uint32_t rd32(uint32_t reg)
{
    barrier();
    uint32_t v = *(volatile uint32_t *)(nv.bar + reg);
    barrier();
    return v;
}

static void wr32(uint32_t reg, uint32_t v)
{
    barrier();
    *(volatile uint32_t *)(nv.bar + reg) = v;
    barrier();
}

/* 64-bit registers as two 32-bit accesses, low first (3.1: allowed for CAP, ASQ, ACQ). */
static uint64_t rd64(uint32_t reg)
{
    return rd32(reg) | (uint64_t)rd32(reg + 4) << 32;
}

static void wr64(uint32_t reg, uint64_t v)
{
    wr32(reg, (uint32_t)v);
    wr32(reg + 4, (uint32_t)(v >> 32));
}

static void doorbell(uint32_t index, uint32_t v)    /* 2y: SQ y tail, 2y+1: CQ y head */
{
    wr32(NVME_REG_DOORBELL + index * (4u << nv.dstrd), v);
}

static uint64_t phys(const void *p)
{
    return (uint64_t)(uintptr_t)p;
}

/* ---- errors ---------------------------------------------------------------------------- */

__attribute__((format(printf, 5, 6)))
static int fail(int status, const char *op, uint64_t lba, uint32_t detail, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kvsnprintf(nv.msg, sizeof nv.msg, fmt, ap);
    va_end(ap);
    nv.err = (struct disk_error){ .what = nv.msg, .command = op, .lba = lba, .detail = detail };
    return status;
}

/* CSTS.CFS (3.1.6): the controller hit a fatal error; only a reset recovers it. */
static int fatal_check(const char *op, uint64_t lba)
{
    uint32_t csts = rd32(NVME_REG_CSTS);
    if (csts == 0xffffffffu)
        return fail(SOS_STATUS_DISK_FATAL, op, lba, csts,
                    "%s at LBA %lu: the controller reads all ones (gone from the bus)", op, lba);
    if (csts & NVME_CSTS_CFS) {
        nv.broken = 1;
        return fail(SOS_STATUS_DISK_FATAL, op, lba, csts,
                    "%s at LBA %lu: controller fatal (CSTS.CFS)", op, lba);
    }
    return 0;
}

/* Wait for (CSTS & mask) == want; the register is read once more after the deadline. */
static int csts_wait(uint32_t mask, uint32_t want, uint32_t ms)
{
    uint64_t deadline = timer_deadline_us((uint64_t)ms * 1000);
    for (;;) {
        if ((rd32(NVME_REG_CSTS) & mask) == want)
            return 0;
        if (timer_expired(deadline))
            return (rd32(NVME_REG_CSTS) & mask) == want ? 0 : -1;
        __asm__ volatile("pause");
    }
}

/* ---- admin queue ----------------------------------------------------------------------- */

static int admin(uint8_t opcode, const char *name, uint32_t nsid, uint64_t prp1, uint32_t cdw10,
                 uint32_t cdw11)
{
    struct nvme_sqe *e = &nv.asq[nv.asq_tail];
    memset(e, 0, sizeof *e);
    e->cdw0 = opcode | (uint32_t)nv.asq_tail << 16;
    e->nsid = nsid;
    e->prp1 = prp1;
    e->cdw10 = cdw10;
    e->cdw11 = cdw11;
    nv.asq_tail = (uint16_t)((nv.asq_tail + 1) % NVME_ADMIN_ENTRIES);
    doorbell(0, nv.asq_tail);
    uint64_t deadline = timer_deadline_us((uint64_t)NVME_TIMEOUT_ADMIN_MS * 1000);
    for (;;) {
        volatile struct nvme_cqe *c = &nv.acq[nv.acq_head];
        uint16_t st = c->status;
        if ((st & 1) == nv.acq_phase) {
            nv.acq_head = (uint16_t)((nv.acq_head + 1) % NVME_ADMIN_ENTRIES);
            if (!nv.acq_head)
                nv.acq_phase ^= 1;
            doorbell(1, nv.acq_head);
            nv.dw0 = c->dw0;
            if (st >> 1)
                return fail(SOS_STATUS_DISK_UNSUPPORTED, name, 0, st >> 1,
                            "%s failed: status 0x%x (SCT %u SC 0x%x)", name, st >> 1,
                            (st >> 9) & 7, (st >> 1) & 0xff);
            return 0;
        }
        int rc = fatal_check(name, 0);
        if (rc)
            return rc;
        if (timer_expired(deadline)) {
            nv.broken = 1;
            return fail(SOS_STATUS_DISK_TIMEOUT, name, 0, 0,
                        "%s: no completion within %u ms", name, NVME_TIMEOUT_ADMIN_MS);
        }
        __asm__ volatile("pause");
    }
}

/* ---- I/O queue ------------------------------------------------------------------------- */

/* Take one completion off the I/O CQ if there is one: 1 if one was taken. */
static int reap_one(void)
{
    volatile struct nvme_cqe *c = &nv.iocq[nv.iocq_head];
    uint16_t st = c->status;
    if ((st & 1) != nv.iocq_phase)
        return 0;
    barrier();
    uint16_t cid = c->cid;
    nv.iocq_head = (uint16_t)((nv.iocq_head + 1) % NVME_IO_ENTRIES);
    if (!nv.iocq_head)
        nv.iocq_phase ^= 1;
    doorbell(3, nv.iocq_head);
    if (cid >= NVME_SLOTS || !nv.slot[cid].busy) {
        nv.broken = 1;
        if (!nv.pending_rc)
            nv.pending_rc = fail(SOS_STATUS_DISK_FATAL, "completion", 0, cid,
                                 "completion for command %u, which is not in flight", cid);
        return 1;
    }
    struct slot *s = &nv.slot[cid];
    s->busy = 0;
    nv.inflight--;
    if ((st >> 1) && !nv.pending_rc)
        nv.pending_rc = fail(SOS_STATUS_DISK_IO_ERROR, s->op, s->lba, st >> 1,
                             "%s at LBA %lu failed: status 0x%x (SCT %u SC 0x%x)", s->op,
                             s->lba, st >> 1, (st >> 9) & 7, (st >> 1) & 0xff);
    return 1;
}

/* Wait until at most `left` commands are in flight; every command has its own deadline. */
static int drain_to(unsigned left)
{
    while (nv.inflight > left) {
        if (reap_one())
            continue;
        for (unsigned i = 0; i < NVME_SLOTS; i++) {
            struct slot *s = &nv.slot[i];
            if (s->busy && timer_expired(s->deadline) && !reap_one()) {
                nv.broken = nv.timed_out = 1;
                return fail(SOS_STATUS_DISK_TIMEOUT, s->op, s->lba, 0,
                            "%s at LBA %lu: no completion within %u ms", s->op, s->lba,
                            s->op[0] == 'F' ? NVME_TIMEOUT_FLUSH_MS : NVME_TIMEOUT_IO_MS);
            }
        }
        for (unsigned i = 0; i < NVME_SLOTS; i++) {
            if (nv.slot[i].busy) {
                int rc = fatal_check(nv.slot[i].op, nv.slot[i].lba);
                if (rc)
                    return rc;
                break;
            }
        }
        __asm__ volatile("pause");
    }
    return 0;
}

static int free_slot(void)
{
    for (int i = 0; i < NVME_SLOTS; i++)
        if (!nv.slot[i].busy)
            return i;
    return -1;
}

static void submit(int slot, uint8_t opcode, const char *op, uint64_t lba, uint32_t nblocks,
                   uint64_t prp1, uint64_t prp2, uint32_t ms)
{
    struct nvme_sqe *e = &nv.iosq[nv.iosq_tail];
    memset(e, 0, sizeof *e);
    e->cdw0 = opcode | (uint32_t)slot << 16;
    e->nsid = nv.nsid;
    e->prp1 = prp1;
    e->prp2 = prp2;
    e->cdw10 = (uint32_t)lba;
    e->cdw11 = (uint32_t)(lba >> 32);
    e->cdw12 = nblocks ? nblocks - 1 : 0;        /* NLB, 0's based (6.9, 6.15) */
    nv.slot[slot] = (struct slot){ 1, op, lba, timer_deadline_us((uint64_t)ms * 1000) };
    nv.inflight++;
    nv.iosq_tail = (uint16_t)((nv.iosq_tail + 1) % NVME_IO_ENTRIES);
    doorbell(2, nv.iosq_tail);
}

/* Walks a gather list. */
struct cursor {
    const struct disk_sg *sg;
    unsigned n, i;
    uint64_t skip;
};

/*
 * The PRPs of one command (4.3): PRP1 is the first byte (dword aligned, any offset), every
 * further entry a whole page that starts page-aligned, and every page but the last is used
 * to its end. Takes as much of the list as those rules and `max` allow; a piece boundary
 * that breaks them ends the command there. Returns the bytes taken.
 */
static uint64_t build_prps(struct cursor *c, uint64_t max, uint64_t *list, uint64_t *prp1,
                           uint64_t *prp2)
{
    uint64_t total = 0, end = 0;
    unsigned entries = 0;
    while (c->i < c->n && total < max) {
        uint64_t left = c->sg[c->i].bytes - c->skip;
        uint64_t addr = c->sg[c->i].addr + c->skip, take;
        if (!left) {
            c->i++;
            c->skip = 0;
            continue;
        }
        if (!total) {
            *prp1 = addr;
            take = PAGE - (addr & (PAGE - 1));
        } else {
            if ((addr & (PAGE - 1)) || (end & (PAGE - 1)) || entries == PAGE / 8)
                break;
            list[entries++] = addr;
            take = PAGE;
        }
        if (take > left)
            take = left;
        if (take > max - total)
            take = max - total;
        total += take;
        end = addr + take;
        c->skip += take;
        if (c->skip == c->sg[c->i].bytes) {
            c->i++;
            c->skip = 0;
        }
    }
    *prp2 = entries == 0 ? 0 : entries == 1 ? list[0] : phys(list);
    return total;
}

/* disk_queue.h: issue the commands of one transfer without waiting for them. */
int queue_issue(uint64_t lba, const struct disk_sg *sg, unsigned n, int write, uint64_t call)
{
    const char *op = write ? "WRITE" : "READ";
    int rc = call ? 0 : drain_to(0);            /* a synchronous call starts alone */
    if (rc || (rc = nv.pending_rc))
        return rc;
    if (!nv.io_ready || nv.broken)
        return fail(SOS_STATUS_DISK_BAD_REQUEST, op, lba, 0, "%s at LBA %lu: the controller "
                    "is not usable", op, lba);
    for (unsigned i = 0; i < n; i++)
        if ((sg[i].addr | sg[i].bytes) & 3)
            return fail(SOS_STATUS_DISK_BAD_REQUEST, op, lba, 0, "%s at LBA %lu: piece %u "
                        "is not dword aligned (NVMe 1.4 4.3)", op, lba, i);
    struct cursor c = { sg, n, 0, 0 };
    uint64_t issued = 0;
    while (c.i < c.n) {
        if (nv.inflight == NVME_SLOTS && (rc = drain_to(NVME_SLOTS - 1)))
            return rc;
        if (nv.pending_rc)
            break;
        int slot = free_slot();
        uint64_t *list = (uint64_t *)(nv.dma + DMA_PRP + (uint64_t)slot * PAGE);
        uint64_t prp1 = 0, prp2 = 0;
        uint64_t bytes = build_prps(&c, nv.max_bytes, list, &prp1, &prp2);
        if (!bytes)
            break;                                  /* only empty pieces were left */
        if (bytes % nv.block)
            return fail(SOS_STATUS_DISK_BAD_REQUEST, op, lba, 0, "%s at LBA %lu: a piece "
                        "boundary falls inside a block where PRPs cannot continue", op, lba);
        if (lba + bytes / nv.block > nv.blocks)
            return fail(SOS_STATUS_DISK_BAD_REQUEST, op, lba, 0, "%s at LBA %lu: beyond the "
                        "namespace's %lu blocks", op, lba, nv.blocks);
        submit(slot, write ? NVME_CMD_WRITE : NVME_CMD_READ, op, lba,
               (uint32_t)(bytes / nv.block), prp1, prp2, NVME_TIMEOUT_IO_MS);
        nv.slot[slot].call = call;
        lba += bytes / nv.block;
        issued += bytes;
    }
    if (!issued && !nv.pending_rc)
        return fail(SOS_STATUS_DISK_BAD_REQUEST, op, lba, 0, "%s at LBA %lu: empty transfer",
                    op, lba);
    return 0;
}

int queue_failed(void)
{
    return nv.pending_rc != 0;
}

/* Three write calls in flight: with one, the queue ran dry at every call's end; the image
 * of 1 GiB without zero pages went out in 0.84-0.91 of the time (bench/write_depth.py). */
const unsigned queue_write_calls = 3;

/* disk_queue.h: wait until no command of a call numbered `upto` or less is in flight. */
int queue_wait_calls(uint64_t upto)
{
    for (;;) {
        int older = 0;
        for (unsigned i = 0; i < NVME_SLOTS; i++)
            older |= nv.slot[i].busy && nv.slot[i].call <= upto;
        if (!older)
            return 0;
        int rc = drain_to(nv.inflight - 1);      /* one more completion, or a deadline */
        if (rc)
            return rc;
    }
}


int queue_drain(void)
{
    int rc = drain_to(0);
    if (!rc) {
        rc = nv.pending_rc;
        nv.pending_rc = 0;
    }
    return rc;
}

/* FLUSH (6.8): the volatile write cache, if any, to the medium. */
int disk_flush(void)
{
    int rc = disk_wait();
    if (rc)
        return rc;
    if (!nv.io_ready || nv.broken)
        return fail(SOS_STATUS_DISK_BAD_REQUEST, "FLUSH", 0, 0, "FLUSH: the controller is "
                    "not usable");
    submit(0, NVME_CMD_FLUSH, "FLUSH", 0, 0, 0, 0, NVME_TIMEOUT_FLUSH_MS);
    return disk_wait();
}

/* ---- taking the controller and giving it back ------------------------------------------- */

static int disable(void)
{
    wr32(NVME_REG_CC, rd32(NVME_REG_CC) & ~NVME_CC_EN);
    if (csts_wait(NVME_CSTS_RDY, 0, nv.to_ms))
        return fail(SOS_STATUS_DISK_TIMEOUT, "disable", 0, rd32(NVME_REG_CSTS),
                    "disable: CSTS.RDY still 1 %u ms (CAP.TO) after CC.EN=0 (NVMe 1.4 7.6.1)",
                    nv.to_ms);
    nv.enabled = 0;
    return 0;
}

static int identify(void)
{
    const uint8_t *id = nv.dma + DMA_IDENT;
    int rc = admin(NVME_ADMIN_IDENTIFY, "IDENTIFY controller", 0, phys(id), NVME_CNS_CONTROLLER,
                   0);
    if (rc)
        return rc;
    uint8_t mdts = id[NVME_IDC_MDTS];
    memcpy(&nv.hmpre, id + NVME_IDC_HMPRE, 4);
    nv.max_bytes = NVME_MAX_CMD_BYTES;
    if (mdts && mdts < 31 && ((uint64_t)PAGE << mdts) < nv.max_bytes)   /* CAP.MPSMIN = 4K */
        nv.max_bytes = (uint64_t)PAGE << mdts;
    int end = 0;
    for (int i = 0; i < 40; i++) {
        nv.model[i] = (char)id[NVME_IDC_MN + i];
        if (nv.model[i] != ' ' && nv.model[i])
            end = i + 1;
    }
    nv.model[end] = 0;

    rc = admin(NVME_ADMIN_IDENTIFY, "IDENTIFY namespace", nv.nsid, phys(id), NVME_CNS_NAMESPACE,
               0);
    if (rc)
        return rc;
    memcpy(&nv.blocks, id + NVME_IDN_NSZE, 8);
    if (!nv.blocks)
        return fail(SOS_STATUS_DISK_UNSUPPORTED, "IDENTIFY namespace", 0, nv.nsid,
                    "namespace %u is not active (NSZE 0)", nv.nsid);
    unsigned fmt = id[NVME_IDN_FLBAS] & 0xf;
    if (id[NVME_IDN_NLBAF] >= 16)
        fmt |= (unsigned)((id[NVME_IDN_FLBAS] >> 5) & 3) << 4;
    const uint8_t *lbaf = id + NVME_IDN_LBAF + 4 * fmt;
    uint8_t lbads = lbaf[2];
    if (lbaf[0] | lbaf[1])
        return fail(SOS_STATUS_DISK_UNSUPPORTED, "IDENTIFY namespace", 0, lbaf[0] | lbaf[1] << 8,
                    "namespace %u has metadata with each block (LBA format %u)", nv.nsid, fmt);
    if (lbads != 9 && lbads != 12)
        return fail(SOS_STATUS_DISK_BLOCK_SIZE, "IDENTIFY namespace", 0, lbads,
                    "namespace %u: %u-byte blocks (512 or 4096 supported)", nv.nsid,
                    lbads < 32 ? 1u << lbads : 0);
    nv.block = 1u << lbads;
    return 0;
}

/* Get Features, Host Memory Buffer: EHM lands in nv.dw0. The attributes structure it also
 * returns goes to the identify page, whose contents are no longer needed (5.21.1.13). */
static int hmb_get(void)
{
    return admin(NVME_ADMIN_GET_FEATURES, "GET FEATURES HMB", 0, phys(nv.dma + DMA_IDENT),
                 NVME_FID_HMB, 0);
}

/*
 * The controller may read and write its Host Memory Buffer, which is host RAM, whenever
 * EHM is 1 (5.21.1.13). A Controller Level Reset leaves it off until the host enables it
 * again, so after disable() it should be; a controller that kept it could write RAM while
 * the payload saves it, so we ask (docs/DRIVERS.md). HMPRE 0: the controller wants no
 * buffer and there is nothing to ask. EHM 1: Set Features EHM = 0, MR = 0 (CDW11 0), and
 * ask again. A command that fails, or EHM still 1, ends the open before any write.
 */
static int hmb_off(void)
{
    const char *state = "not-requested";
    int rc = 0;
    if (nv.hmpre) {
        state = "off";
        rc = hmb_get();
        if (!rc && (nv.dw0 & NVME_HMB_EHM)) {
            state = "turned-off";
            rc = admin(NVME_ADMIN_SET_FEATURES, "SET FEATURES HMB", 0, 0, NVME_FID_HMB, 0);
            if (!rc)
                rc = hmb_get();
            if (!rc && (nv.dw0 & NVME_HMB_EHM))
                rc = fail(SOS_STATUS_DISK_UNSUPPORTED, "SET FEATURES HMB", 0, nv.dw0,
                          "Host Memory Buffer still on (EHM 1) after Set Features EHM=0: "
                          "the controller may write host RAM");
        }
    }
    if (!rc)
        kprintf("@@NVME hmb %s\n", state);
    return rc;
}

static int create_io_queues(void)
{
    uint32_t qsize_qid = (uint32_t)(NVME_IO_ENTRIES - 1) << 16 | 1;
    int rc = admin(NVME_ADMIN_CREATE_CQ, "CREATE I/O CQ", 0, phys((const void *)nv.iocq),
                   qsize_qid, NVME_QUEUE_PC);          /* IEN = 0: polled (5.3) */
    if (!rc)
        rc = admin(NVME_ADMIN_CREATE_SQ, "CREATE I/O SQ", 0, phys(nv.iosq), qsize_qid,
                   1u << 16 | NVME_QUEUE_PC);         /* CQID 1 (5.4) */
    if (!rc)
        nv.io_ready = 1;
    return rc;
}

/* After a command timed out the controller is left as it is: enabled, the command still
 * outstanding. Disabling it would abort the command on real hardware, but a controller
 * whose backend never answers may not finish the reset either (QEMU blocks CC.EN=0 until
 * the stuck request ends), and the host's driver resets the controller from scratch on
 * thaw / restore anyway (Linux: nvme_reset_ctrl -> nvme_dev_disable first). */
static void give_back(enum disk_give_back how)
{
    if (nv.timed_out)
        nv.regs_saved = 0;
    if (nv.regs_saved) {
        if (nv.enabled && !nv.broken) {
            /* Normal shutdown (7.6.2): the controller commits its cache and metadata. */
            wr32(NVME_REG_CC, (rd32(NVME_REG_CC) & ~NVME_CC_SHN_MASK) | NVME_CC_SHN_NORMAL);
            csts_wait(NVME_CSTS_SHST_MASK, NVME_CSTS_SHST_DONE, NVME_TIMEOUT_SHUTDOWN_MS);
        }
        disable();
        /* The host's admin queue registers (its driver programs them anew on reset). */
        wr32(NVME_REG_AQA, nv.saved_aqa);
        wr64(NVME_REG_ASQ, nv.saved_asq);
        wr64(NVME_REG_ACQ, nv.saved_acq);
        wr32(NVME_REG_CC, nv.saved_cc & ~(NVME_CC_EN | NVME_CC_SHN_MASK));
        nv.regs_saved = 0;
    }
    if (nv.pci_touched) {
        uint16_t cmd = nv.saved_pci_command;
        if (how == DISK_GIVE_BACK_RESET)
            cmd &= (uint16_t)~PCI_COMMAND_MASTER;
        pci_write16(nv.bus, nv.dev, nv.fn, PCI_COMMAND, cmd);
        nv.pci_touched = 0;
    }
    nv.io_ready = 0;
    nv.inflight = 0;
    memset(nv.slot, 0, sizeof nv.slot);
}

static int open_fail(int rc)
{
    struct disk_error keep = nv.err;
    give_back(DISK_GIVE_BACK_AS_FOUND);
    nv.err = keep;
    return rc;
}

int disk_open(const struct disk_config *cfg, void *dma, uint64_t dma_size)
{
    memset(&nv, 0, sizeof nv);
    nv.bus = cfg->bus;
    nv.dev = cfg->dev;
    nv.fn = cfg->fn;
    nv.nsid = cfg->nsid ? cfg->nsid : 1;
    if (cfg->kind != SOS_DISK_KIND_NVME)
        return fail(SOS_STATUS_BAD_PAYLOAD_INFO, 0, 0, 0, "the payload info names another "
                    "disk kind than NVMe");
    if (!dma || (phys(dma) & (PAGE - 1)) || dma_size < DMA_SIZE)
        return fail(SOS_STATUS_DISK_BAD_REQUEST, 0, 0, 0, "DMA area missing, not 4 KiB "
                    "aligned, or under %u bytes", DMA_SIZE);

    /* The function must be an NVMe controller whose BAR0 is the target's (2.1.5, 2.1.10). */
    if (pci_read16(nv.bus, nv.dev, nv.fn, PCI_VENDOR_ID) == 0xffff)
        return fail(SOS_STATUS_PCI_MISMATCH, 0, 0, 0, "no PCI function at the configured "
                    "address");
    if (pci_read8(nv.bus, nv.dev, nv.fn, PCI_CLASS) != NVME_PCI_CLASS ||
        pci_read8(nv.bus, nv.dev, nv.fn, PCI_SUBCLASS) != NVME_PCI_SUBCLASS ||
        pci_read8(nv.bus, nv.dev, nv.fn, PCI_PROG_IF) != NVME_PCI_PROG_IF)
        return fail(SOS_STATUS_PCI_MISMATCH, 0, 0, 0, "not an NVMe controller (class "
                    "01h/08h/02h)");
    uint32_t bar0 = pci_read32(nv.bus, nv.dev, nv.fn, PCI_BAR0);
    uint64_t base = bar0 & PCI_BAR_MEM_MASK;
    if ((bar0 & 6) == 4)                                /* 64-bit memory BAR */
        base |= (uint64_t)pci_read32(nv.bus, nv.dev, nv.fn, PCI_BAR0 + 4) << 32;
    if ((bar0 & PCI_BAR_IO) || !cfg->bar || base != cfg->bar)
        return fail(SOS_STATUS_PCI_MISMATCH, 0, 0, 0, "BAR0 0x%lx is not the configured "
                    "bar", base);
    nv.bar = (volatile uint8_t *)(uintptr_t)base;

    /* Memory space and bus mastering on, INTx off: the driver polls (PCI 3.0 6.2.2). */
    nv.saved_pci_command = pci_read16(nv.bus, nv.dev, nv.fn, PCI_COMMAND);
    pci_write16(nv.bus, nv.dev, nv.fn, PCI_COMMAND, nv.saved_pci_command | PCI_COMMAND_MEMORY |
                PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE);
    nv.pci_touched = 1;

    nv.cap = rd64(NVME_REG_CAP);
    if (nv.cap == ~0ull)
        return open_fail(fail(SOS_STATUS_PCI_MISMATCH, 0, 0, 0, "CAP reads all ones: no "
                              "controller answers at BAR0"));
    nv.dstrd = NVME_CAP_DSTRD(nv.cap);
    nv.to_ms = (NVME_CAP_TO(nv.cap) ? NVME_CAP_TO(nv.cap) : 1) * 500;
    if (!(nv.cap & NVME_CAP_CSS_NVM) || NVME_CAP_MPSMIN(nv.cap) != 0 ||
        NVME_CAP_MQES(nv.cap) + 1 < NVME_IO_ENTRIES || nv.dstrd > 6)
        return open_fail(fail(SOS_STATUS_DISK_UNSUPPORTED, 0, 0, 0, "CAP 0x%lx: needs the NVM "
                              "command set, 4 KiB pages, %u-entry queues, DSTRD <= 6", nv.cap,
                              NVME_IO_ENTRIES));

    nv.saved_cc = rd32(NVME_REG_CC);
    nv.saved_aqa = rd32(NVME_REG_AQA);
    nv.saved_asq = rd64(NVME_REG_ASQ);
    nv.saved_acq = rd64(NVME_REG_ACQ);
    nv.regs_saved = 1;
    nv.enabled = 1;                 /* as far as we know until disable() says otherwise */
    int rc = disable();
    if (rc)
        return open_fail(rc);

    /* Queues in the DMA area (7.6.1 steps 2-4). */
    nv.dma = dma;
    memset(nv.dma, 0, DMA_SIZE);
    nv.asq = (struct nvme_sqe *)(nv.dma + DMA_ASQ);
    nv.acq = (volatile struct nvme_cqe *)(nv.dma + DMA_ACQ);
    nv.iosq = (struct nvme_sqe *)(nv.dma + DMA_IOSQ);
    nv.iocq = (volatile struct nvme_cqe *)(nv.dma + DMA_IOCQ);
    nv.acq_phase = nv.iocq_phase = 1;
    wr32(NVME_REG_AQA, (NVME_ADMIN_ENTRIES - 1) << 16 | (NVME_ADMIN_ENTRIES - 1));
    wr64(NVME_REG_ASQ, phys(nv.asq));
    wr64(NVME_REG_ACQ, phys((const void *)nv.acq));
    wr32(NVME_REG_CC, NVME_CC_CSS_NVM | NVME_CC_MPS_4K | NVME_CC_AMS_RR | NVME_CC_IOSQES_64 |
                      NVME_CC_IOCQES_16);
    wr32(NVME_REG_CC, NVME_CC_CSS_NVM | NVME_CC_MPS_4K | NVME_CC_AMS_RR | NVME_CC_IOSQES_64 |
                      NVME_CC_IOCQES_16 | NVME_CC_EN);
    nv.enabled = 1;
    if (csts_wait(NVME_CSTS_RDY | NVME_CSTS_CFS, NVME_CSTS_RDY, nv.to_ms))
        return open_fail(fail(SOS_STATUS_DISK_TIMEOUT, "enable", 0, rd32(NVME_REG_CSTS),
                              "enable: CSTS.RDY not 1 within %u ms (CAP.TO) after CC.EN=1, "
                              "CSTS 0x%x (NVMe 1.4 7.6.1)", nv.to_ms, rd32(NVME_REG_CSTS)));
    rc = identify();
    if (!rc)
        rc = hmb_off();
    if (!rc)
        rc = create_io_queues();
    if (rc)
        return open_fail(rc);
    if (cfg->block_size && cfg->block_size != nv.block)
        return open_fail(fail(SOS_STATUS_DISK_BLOCK_SIZE, 0, 0, nv.block, "namespace %u has "
                              "%u-byte blocks, the target says %u", nv.nsid, nv.block,
                              cfg->block_size));
    return 0;
}

int disk_identify(uint64_t *blocks, char model[41])
{
    if (!nv.io_ready)
        return fail(SOS_STATUS_DISK_BAD_REQUEST, "IDENTIFY", 0, 0, "the controller is not open");
    if (blocks)
        *blocks = nv.blocks;
    if (model)
        memcpy(model, nv.model, sizeof nv.model);
    return 0;
}

uint32_t disk_block_size(void)
{
    return nv.block;
}

void disk_close(enum disk_give_back how)
{
    if (nv.io_ready && !nv.broken)
        drain_to(0);                /* bounded by each command's deadline */
    give_back(how);
}

const struct disk_error *disk_last_error(void)
{
    return &nv.err;
}

int disk_media_error(int rc)
{
    return rc == SOS_STATUS_DISK_IO_ERROR;
}
