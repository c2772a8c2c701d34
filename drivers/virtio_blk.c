/*
 * Polled virtio-blk driver (drivers/disk.h), virtio 1.x modern PCI transport, one split
 * virtqueue. Reference: VIRTIO 1.1 (sections cited as numbers).
 *
 * Flow: disk_open checks the PCI function (vendor 1AF4h, block device), walks its
 * capability list for the common, notify and device structures (4.1.4) and checks they sit
 * in the BAR the target names; turns on memory decoding and bus mastering (INTx off); resets
 * the device (status 0, wait until it reads 0: 4.1.4.3.2), then the initialisation of 3.1.1:
 * ACKNOWLEDGE, DRIVER, features (VERSION_1 required; FLUSH, BLK_SIZE, SEG_MAX taken when
 * offered), FEATURES_OK (and checked), virtqueue 0 in the DMA area with no MSI-X vector and
 * used-buffer interrupts suppressed (2.6.7), DRIVER_OK. Requests are header + data + status
 * descriptors (5.2.6), NVIO_SLOTS of them in flight, each owning a fixed run of
 * descriptors; completions are polled from the used ring.
 *
 * Give-back: Linux's virtio_blk resets the device when it freezes for hibernation and
 * rebuilds its virtqueues on thaw / restore, so the device is reset again (status 0) on
 * every close; after a restore bus mastering is also turned off (disk.h).
 */
#include "disk.h"
#include "disk_queue.h"
#include "virtio_regs.h"
#include "pci.h"
#include "printf.h"
#include "string.h"
#include "timer.h"

const char disk_driver_name[] = "virtio-blk";
const char disk_detail_name[] = "status";

#define barrier() __asm__ volatile("" ::: "memory")

/* Deadlines: the spec sets none; a reset is immediate on every known device (1 s), a
 * request gets what the AHCI and NVMe drivers give one (10 s), a flush 30 s. */
#define VIRTIO_TIMEOUT_RESET_MS     1000
#define VIRTIO_TIMEOUT_IO_MS        10000
#define VIRTIO_TIMEOUT_FLUSH_MS     30000

#define MMIO_SPAN       0x4000          /* what the page tables map of the BAR (build) */
#define QMAX            256             /* queue entries at most */
#define NVIO_SLOTS      8               /* requests in flight */
#define DMA_DESC        0x0000          /* 16 * QMAX */
#define DMA_AVAIL       0x1000
#define DMA_USED        0x2000
#define DMA_HDR         0x3000          /* NVIO_SLOTS request headers, then status bytes */
#define DMA_STATUS      0x3100
#define DMA_SIZE        0x4000
#define MAX_REQ_BYTES   (4u << 20)

struct slot {
    int busy;
    const char *op;
    uint64_t lba, deadline;
    uint64_t call;                      /* disk_queue.c's call number; 0: synchronous */
};

static struct {
    uint8_t bus, dev, fn;
    volatile uint8_t *common, *notify, *devcfg;
    uint16_t qsize, per_slot, notify_off;
    uint32_t notify_mult;
    uint64_t features;
    uint8_t *dma;
    struct virtq_desc *desc;
    volatile uint16_t *avail;
    volatile uint8_t *used;
    struct virtio_blk_req_hdr *hdr;
    volatile uint8_t *status;
    uint16_t avail_idx, used_idx;
    uint16_t saved_pci_command;
    int pci_touched, reset_needed, ready, broken, timed_out;
    uint32_t block, max_segs;
    uint64_t blocks;
    struct slot slot[NVIO_SLOTS];
    unsigned inflight;
    int pending_rc;
    struct disk_error err;
    char msg[112];
} vb;

/* ---- MMIO ------------------------------------------------------------------------------ */

static uint8_t rd8(volatile uint8_t *b, uint32_t off)
{
    barrier();
    uint8_t v = *(volatile uint8_t *)(b + off);
    barrier();
    return v;
}

static uint16_t rd16(volatile uint8_t *b, uint32_t off)
{
    barrier();
    uint16_t v = *(volatile uint16_t *)(b + off);
    barrier();
    return v;
}

static uint32_t rd32(volatile uint8_t *b, uint32_t off)
{
    barrier();
    uint32_t v = *(volatile uint32_t *)(b + off);
    barrier();
    return v;
}

static void wr8(volatile uint8_t *b, uint32_t off, uint8_t v)
{
    barrier();
    *(volatile uint8_t *)(b + off) = v;
    barrier();
}

static void wr16(volatile uint8_t *b, uint32_t off, uint16_t v)
{
    barrier();
    *(volatile uint16_t *)(b + off) = v;
    barrier();
}

static void wr32(volatile uint8_t *b, uint32_t off, uint32_t v)
{
    barrier();
    *(volatile uint32_t *)(b + off) = v;
    barrier();
}

static void wr64(volatile uint8_t *b, uint32_t off, uint64_t v)   /* 4.1.3.1: as two 32s */
{
    wr32(b, off, (uint32_t)v);
    wr32(b, off + 4, (uint32_t)(v >> 32));
}

static uint64_t phys(const volatile void *p)
{
    return (uint64_t)(uintptr_t)p;
}

__attribute__((format(printf, 5, 6)))
static int fail(int status, const char *op, uint64_t lba, uint32_t detail, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kvsnprintf(vb.msg, sizeof vb.msg, fmt, ap);
    va_end(ap);
    vb.err = (struct disk_error){ .what = vb.msg, .command = op, .lba = lba, .detail = detail };
    return status;
}

/* ---- device status ---------------------------------------------------------------------- */

static int reset(void)
{
    wr8(vb.common, VIRTIO_COMMON_STATUS, 0);
    uint64_t deadline = timer_deadline_us(VIRTIO_TIMEOUT_RESET_MS * 1000ull);
    while (rd8(vb.common, VIRTIO_COMMON_STATUS)) {
        if (timer_expired(deadline) && rd8(vb.common, VIRTIO_COMMON_STATUS))
            return fail(SOS_STATUS_DISK_TIMEOUT, "reset", 0, 0, "reset: device status not 0 "
                        "within %u ms (virtio 1.1 4.1.4.3.2)", VIRTIO_TIMEOUT_RESET_MS);
        __asm__ volatile("pause");
    }
    return 0;
}

static void set_status(uint8_t bits)
{
    wr8(vb.common, VIRTIO_COMMON_STATUS, rd8(vb.common, VIRTIO_COMMON_STATUS) | bits);
}

/* ---- requests --------------------------------------------------------------------------- */

static int reap_one(void)
{
    uint16_t idx = rd16(vb.used, 2);
    if (idx == vb.used_idx)
        return 0;
    barrier();
    const volatile struct virtq_used_elem *e =
        (const volatile struct virtq_used_elem *)(vb.used + 4) + vb.used_idx % vb.qsize;
    uint32_t id = e->id;
    vb.used_idx++;
    unsigned k = id / vb.per_slot;
    if (k >= NVIO_SLOTS || id % vb.per_slot || !vb.slot[k].busy) {
        vb.broken = 1;
        if (!vb.pending_rc)
            vb.pending_rc = fail(SOS_STATUS_DISK_FATAL, "completion", 0, id, "used ring "
                                 "returns descriptor %u, which is not in flight", id);
        return 1;
    }
    struct slot *s = &vb.slot[k];
    uint8_t st = vb.status[k];
    s->busy = 0;
    vb.inflight--;
    if (st != VIRTIO_BLK_S_OK && !vb.pending_rc)
        vb.pending_rc = fail(SOS_STATUS_DISK_IO_ERROR, s->op, s->lba, st, "%s at LBA %lu "
                             "failed: status %u (%s)", s->op, s->lba, st,
                             st == VIRTIO_BLK_S_IOERR ? "IOERR" : st == VIRTIO_BLK_S_UNSUPP ?
                             "UNSUPP" : "unknown");
    return 1;
}

static int drain_to(unsigned left)
{
    while (vb.inflight > left) {
        if (reap_one())
            continue;
        for (unsigned i = 0; i < NVIO_SLOTS; i++) {
            struct slot *s = &vb.slot[i];
            if (s->busy && timer_expired(s->deadline) && !reap_one()) {
                vb.broken = vb.timed_out = 1;
                return fail(SOS_STATUS_DISK_TIMEOUT, s->op, s->lba, 0, "%s at LBA %lu: no "
                            "completion within %u ms", s->op, s->lba, s->op[0] == 'F' ?
                            VIRTIO_TIMEOUT_FLUSH_MS : VIRTIO_TIMEOUT_IO_MS);
            }
        }
        if (rd8(vb.common, VIRTIO_COMMON_STATUS) & VIRTIO_STATUS_NEEDS_RESET) {
            vb.broken = 1;
            return fail(SOS_STATUS_DISK_FATAL, "I/O", 0, 0, "the device set DEVICE_NEEDS_RESET "
                        "(virtio 1.1 2.1.1)");
        }
        __asm__ volatile("pause");
    }
    return 0;
}

static int free_slot(void)
{
    for (int i = 0; i < NVIO_SLOTS; i++)
        if (!vb.slot[i].busy)
            return i;
    return -1;
}

/* Chain header, `n` data pieces and the status byte in slot k's descriptors; publish it. */
static void submit(int k, uint32_t type, const char *op, uint64_t lba, const struct disk_sg *d,
                   unsigned n, uint32_t ms)
{
    uint16_t first = (uint16_t)(k * vb.per_slot), at = first;
    vb.hdr[k] = (struct virtio_blk_req_hdr){ type, 0, lba * (vb.block / 512) };
    vb.status[k] = 0xff;
    vb.desc[at] = (struct virtq_desc){ phys(&vb.hdr[k]), sizeof vb.hdr[k], VIRTQ_DESC_F_NEXT,
                                       (uint16_t)(at + 1) };
    for (unsigned i = 0; i < n; i++) {
        at++;
        vb.desc[at] = (struct virtq_desc){ d[i].addr, d[i].bytes, (uint16_t)(VIRTQ_DESC_F_NEXT |
                                           (type == VIRTIO_BLK_T_IN ? VIRTQ_DESC_F_WRITE : 0)),
                                           (uint16_t)(at + 1) };
    }
    at++;
    vb.desc[at] = (struct virtq_desc){ phys(&vb.status[k]), 1, VIRTQ_DESC_F_WRITE, 0 };
    vb.slot[k] = (struct slot){ 1, op, lba, timer_deadline_us((uint64_t)ms * 1000) };
    vb.inflight++;
    vb.avail[2 + vb.avail_idx % vb.qsize] = first;
    barrier();                                  /* ring entry before idx (2.6.13) */
    vb.avail_idx++;
    vb.avail[1] = vb.avail_idx;
    barrier();
    wr16(vb.notify, (uint32_t)vb.notify_off * vb.notify_mult, 0);   /* queue 0 (4.1.5.2) */
}

/* disk_queue.h: issue the commands of one transfer without waiting for them. */
int queue_issue(uint64_t lba, const struct disk_sg *sg, unsigned n, int write, uint64_t call)
{
    static struct disk_sg piece[QMAX];
    const char *op = write ? "WRITE" : "READ";
    int rc = call ? 0 : drain_to(0);            /* a synchronous call starts alone */
    if (rc || (rc = vb.pending_rc))
        return rc;
    if (!vb.ready || vb.broken)
        return fail(SOS_STATUS_DISK_BAD_REQUEST, op, lba, 0, "%s at LBA %lu: the device is "
                    "not usable", op, lba);
    unsigned i = 0;
    uint64_t skip = 0, issued = 0;
    while (i < n && !vb.pending_rc) {
        unsigned k = 0;
        uint64_t bytes = 0;
        while (i < n && k < vb.max_segs && bytes < MAX_REQ_BYTES) {
            uint64_t left = sg[i].bytes - skip, take = MAX_REQ_BYTES - bytes;
            if (take > left)
                take = left;
            if (take) {
                piece[k].addr = sg[i].addr + skip;
                piece[k].bytes = (uint32_t)take;
                k++;
                bytes += take;
                skip += take;
            }
            if (skip == sg[i].bytes) {
                i++;
                skip = 0;
            }
        }
        if (!bytes)
            break;
        if (bytes % vb.block) {
            /* Requests end on a block: hand the partial block to the next one. */
            uint64_t back = bytes % vb.block;
            while (back) {
                uint64_t b = piece[k - 1].bytes < back ? piece[k - 1].bytes : back;
                piece[k - 1].bytes -= (uint32_t)b;
                bytes -= b;
                back -= b;
                if (skip >= b) {
                    skip -= b;
                } else {
                    i--;
                    skip = sg[i].bytes - (b - skip);
                }
                if (!piece[k - 1].bytes)
                    k--;
            }
            if (!bytes)
                return fail(SOS_STATUS_DISK_BAD_REQUEST, op, lba, 0, "%s at LBA %lu: one "
                            "block is spread over more than %u pieces", op, lba, vb.max_segs);
        }
        if (lba + bytes / vb.block > vb.blocks)
            return fail(SOS_STATUS_DISK_BAD_REQUEST, op, lba, 0, "%s at LBA %lu: beyond the "
                        "disk's %lu blocks", op, lba, vb.blocks);
        if (vb.inflight == NVIO_SLOTS && (rc = drain_to(NVIO_SLOTS - 1)))
            return rc;
        int slot = free_slot();
        submit(slot, write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, op, lba, piece, k,
               VIRTIO_TIMEOUT_IO_MS);
        vb.slot[slot].call = call;
        lba += bytes / vb.block;
        issued += bytes;
    }
    if (!issued && !vb.pending_rc)
        return fail(SOS_STATUS_DISK_BAD_REQUEST, op, lba, 0, "%s at LBA %lu: empty transfer",
                    op, lba);
    return 0;
}

int queue_failed(void)
{
    return vb.pending_rc != 0;
}

/* One write call in flight (each already up to 4 MiB a request, 8 requests): with three,
 * QEMU's virtio-blk took 1.44 times as long for the image of 1 GiB without zero pages
 * (bench/write_depth.py, BENCHMARKS.md), though its raw ceiling rose. */
const unsigned queue_write_calls = 1;

/* disk_queue.h: wait until no command of a call numbered `upto` or less is in flight. */
int queue_wait_calls(uint64_t upto)
{
    for (;;) {
        int older = 0;
        for (unsigned i = 0; i < NVIO_SLOTS; i++)
            older |= vb.slot[i].busy && vb.slot[i].call <= upto;
        if (!older)
            return 0;
        int rc = drain_to(vb.inflight - 1);      /* one more completion, or a deadline */
        if (rc)
            return rc;
    }
}


int queue_drain(void)
{
    int rc = drain_to(0);
    if (!rc) {
        rc = vb.pending_rc;
        vb.pending_rc = 0;
    }
    return rc;
}

/* VIRTIO_BLK_T_FLUSH (5.2.6.1) when the device offers VIRTIO_BLK_F_FLUSH; without it the
 * device has no volatile cache to flush (5.2.5: writes are durable on completion). */
int disk_flush(void)
{
    int rc = disk_wait();
    if (rc || !(vb.features & (1ull << VIRTIO_BLK_F_FLUSH)))
        return rc;
    submit(0, VIRTIO_BLK_T_FLUSH, "FLUSH", 0, 0, 0, VIRTIO_TIMEOUT_FLUSH_MS);
    return disk_wait();
}

/* ---- taking the device and giving it back ------------------------------------------------ */

static uint64_t bar_address(unsigned bar)
{
    uint8_t reg = (uint8_t)(PCI_BAR0 + 4 * bar);
    uint32_t lo = pci_read32(vb.bus, vb.dev, vb.fn, reg);
    if (lo & PCI_BAR_IO)
        return 0;
    uint64_t a = lo & PCI_BAR_MEM_MASK;
    if ((lo & 6) == 4 && bar < 5)
        a |= (uint64_t)pci_read32(vb.bus, vb.dev, vb.fn, (uint8_t)(reg + 4)) << 32;
    return a;
}

/* The common, notify and device structures (4.1.4), each inside the target's BAR and the
 * part of it the page tables map. */
static int find_structures(uint64_t want_bar)
{
    if (!(pci_read16(vb.bus, vb.dev, vb.fn, PCI_STATUS) & PCI_STATUS_CAP_LIST))
        return fail(SOS_STATUS_DISK_UNSUPPORTED, 0, 0, 0, "no PCI capability list: a legacy "
                    "virtio device (virtio 1.x needed)");
    uint8_t at = pci_read8(vb.bus, vb.dev, vb.fn, PCI_CAP_PTR) & 0xfc;
    for (int guard = 0; at && guard < 48; guard++) {
        if (pci_read8(vb.bus, vb.dev, vb.fn, at) == PCI_CAP_ID_VNDR) {
            uint8_t type = pci_read8(vb.bus, vb.dev, vb.fn, (uint8_t)(at + VIRTIO_CAP_CFG_TYPE));
            uint8_t bar = pci_read8(vb.bus, vb.dev, vb.fn, (uint8_t)(at + VIRTIO_CAP_BAR));
            uint32_t off = pci_read32(vb.bus, vb.dev, vb.fn, (uint8_t)(at + VIRTIO_CAP_OFFSET));
            uint32_t len = pci_read32(vb.bus, vb.dev, vb.fn, (uint8_t)(at + VIRTIO_CAP_LENGTH));
            volatile uint8_t **slot = type == VIRTIO_PCI_CAP_COMMON ? &vb.common :
                                      type == VIRTIO_PCI_CAP_NOTIFY ? &vb.notify :
                                      type == VIRTIO_PCI_CAP_DEVICE ? &vb.devcfg : 0;
            if (slot && !*slot && bar < 6) {
                uint64_t base = bar_address(bar);
                if (!base || base != want_bar)
                    return fail(SOS_STATUS_PCI_MISMATCH, 0, 0, want_bar,
                                "BAR%u 0x%lx is not the configured bar", bar, base);
                if ((uint64_t)off + len > MMIO_SPAN)
                    return fail(SOS_STATUS_DISK_UNSUPPORTED, 0, 0, 0, "virtio structure %u "
                                "lies past the first 0x%x bytes of its BAR", type, MMIO_SPAN);
                *slot = (volatile uint8_t *)(uintptr_t)(base + off);
                if (type == VIRTIO_PCI_CAP_NOTIFY)
                    vb.notify_mult = pci_read32(vb.bus, vb.dev, vb.fn,
                                                (uint8_t)(at + VIRTIO_CAP_NOTIFY_MULT));
            }
        }
        at = pci_read8(vb.bus, vb.dev, vb.fn, (uint8_t)(at + 1)) & 0xfc;
    }
    if (!vb.common || !vb.notify || !vb.devcfg)
        return fail(SOS_STATUS_DISK_UNSUPPORTED, 0, 0, 0, "virtio common, notify or device "
                    "capability missing (virtio 1.1 4.1.4)");
    return 0;
}

static int negotiate(void)
{
    wr32(vb.common, VIRTIO_COMMON_DFSELECT, 0);
    uint64_t offered = rd32(vb.common, VIRTIO_COMMON_DF);
    wr32(vb.common, VIRTIO_COMMON_DFSELECT, 1);
    offered |= (uint64_t)rd32(vb.common, VIRTIO_COMMON_DF) << 32;
    if (!(offered & (1ull << VIRTIO_F_VERSION_1)))
        return fail(SOS_STATUS_DISK_UNSUPPORTED, 0, 0, 0, "the device does not offer "
                    "VIRTIO_F_VERSION_1");
    uint64_t want = (1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_ACCESS_PLATFORM) |
                    (1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |
                    (1ull << VIRTIO_BLK_F_SEG_MAX);
    vb.features = offered & want;
    wr32(vb.common, VIRTIO_COMMON_GFSELECT, 0);
    wr32(vb.common, VIRTIO_COMMON_GF, (uint32_t)vb.features);
    wr32(vb.common, VIRTIO_COMMON_GFSELECT, 1);
    wr32(vb.common, VIRTIO_COMMON_GF, (uint32_t)(vb.features >> 32));
    set_status(VIRTIO_STATUS_FEATURES_OK);
    if (!(rd8(vb.common, VIRTIO_COMMON_STATUS) & VIRTIO_STATUS_FEATURES_OK))
        return fail(SOS_STATUS_DISK_UNSUPPORTED, 0, 0, 0, "the device refused features 0x%lx "
                    "(FEATURES_OK not kept, virtio 1.1 3.1.1)", vb.features);
    return 0;
}

static int setup_queue(void)
{
    wr16(vb.common, VIRTIO_COMMON_Q_SELECT, 0);
    uint16_t max = rd16(vb.common, VIRTIO_COMMON_Q_SIZE);
    if (max < 4 * NVIO_SLOTS)
        return fail(SOS_STATUS_DISK_UNSUPPORTED, 0, 0, 0, "virtqueue 0 has %u entries (at "
                    "least %u needed)", max, 4 * NVIO_SLOTS);
    vb.qsize = QMAX;
    while (vb.qsize > max)
        vb.qsize /= 2;                          /* a power of 2 (2.6) no larger than max */
    vb.per_slot = vb.qsize / NVIO_SLOTS;
    vb.max_segs = vb.per_slot - 2;
    if (vb.features & (1ull << VIRTIO_BLK_F_SEG_MAX)) {
        uint32_t seg_max = rd32(vb.devcfg, VIRTIO_BLK_CFG_SEG_MAX);
        if (seg_max && seg_max < vb.max_segs)
            vb.max_segs = seg_max;
    }
    memset(vb.dma, 0, DMA_SIZE);
    vb.desc = (struct virtq_desc *)(vb.dma + DMA_DESC);
    vb.avail = (volatile uint16_t *)(vb.dma + DMA_AVAIL);
    vb.used = vb.dma + DMA_USED;
    vb.hdr = (struct virtio_blk_req_hdr *)(vb.dma + DMA_HDR);
    vb.status = vb.dma + DMA_STATUS;
    vb.avail[0] = VIRTQ_AVAIL_F_NO_INTERRUPT;
    wr16(vb.common, VIRTIO_COMMON_Q_SIZE, vb.qsize);
    wr16(vb.common, VIRTIO_COMMON_MSIX, VIRTIO_MSI_NO_VECTOR);
    wr16(vb.common, VIRTIO_COMMON_Q_MSIX, VIRTIO_MSI_NO_VECTOR);
    wr64(vb.common, VIRTIO_COMMON_Q_DESC, phys(vb.desc));
    wr64(vb.common, VIRTIO_COMMON_Q_AVAIL, phys(vb.avail));
    wr64(vb.common, VIRTIO_COMMON_Q_USED, phys(vb.used));
    vb.notify_off = rd16(vb.common, VIRTIO_COMMON_Q_NOFF);
    if ((uint64_t)vb.notify_off * vb.notify_mult + 2 > MMIO_SPAN)
        return fail(SOS_STATUS_DISK_UNSUPPORTED, 0, 0, 0, "queue notify address past the "
                    "mapped part of the BAR");
    wr16(vb.common, VIRTIO_COMMON_Q_ENABLE, 1);
    return 0;
}

/* After a request timed out the device is left as it is (the request outstanding): a
 * device whose backend never answers may not finish a reset (QEMU's virtio-blk drains its
 * requests on reset), and the host's driver resets it on thaw / restore anyway. */
static void give_back(enum disk_give_back how)
{
    if (vb.timed_out)
        vb.reset_needed = 0;
    if (vb.reset_needed) {
        reset();                                /* queues forgotten, no DMA, no interrupt */
        vb.reset_needed = 0;
    }
    if (vb.pci_touched) {
        uint16_t cmd = vb.saved_pci_command;
        if (how == DISK_GIVE_BACK_RESET)
            cmd &= (uint16_t)~PCI_COMMAND_MASTER;
        pci_write16(vb.bus, vb.dev, vb.fn, PCI_COMMAND, cmd);
        vb.pci_touched = 0;
    }
    vb.ready = 0;
    vb.inflight = 0;
    memset(vb.slot, 0, sizeof vb.slot);
}

static int open_fail(int rc)
{
    struct disk_error keep = vb.err;
    give_back(DISK_GIVE_BACK_AS_FOUND);
    vb.err = keep;
    return rc;
}

int disk_open(const struct disk_config *cfg, void *dma, uint64_t dma_size)
{
    memset(&vb, 0, sizeof vb);
    vb.bus = cfg->bus;
    vb.dev = cfg->dev;
    vb.fn = cfg->fn;
    if (cfg->kind != SOS_DISK_KIND_VIRTIO_BLK)
        return fail(SOS_STATUS_BAD_PAYLOAD_INFO, 0, 0, 0, "the payload info names another "
                    "disk kind than virtio-blk");
    if (!dma || (phys(dma) & 0xfff) || dma_size < DMA_SIZE)
        return fail(SOS_STATUS_DISK_BAD_REQUEST, 0, 0, 0, "DMA area missing, not 4 KiB "
                    "aligned, or under %u bytes", DMA_SIZE);
    vb.dma = dma;
    uint16_t vendor = pci_read16(vb.bus, vb.dev, vb.fn, PCI_VENDOR_ID);
    uint16_t device = pci_read16(vb.bus, vb.dev, vb.fn, PCI_DEVICE_ID);
    if (vendor == 0xffff)
        return fail(SOS_STATUS_PCI_MISMATCH, 0, 0, 0, "no PCI function at the configured "
                    "address");
    if (vendor != VIRTIO_PCI_VENDOR ||
        (device != VIRTIO_PCI_BLK_TRANSITIONAL && device != VIRTIO_PCI_BLK_MODERN))
        return fail(SOS_STATUS_PCI_MISMATCH, 0, 0, 0, "%04x:%04x is not a virtio block device",
                    vendor, device);
    int rc = find_structures(cfg->bar);
    if (rc)
        return rc;

    vb.saved_pci_command = pci_read16(vb.bus, vb.dev, vb.fn, PCI_COMMAND);
    pci_write16(vb.bus, vb.dev, vb.fn, PCI_COMMAND, vb.saved_pci_command | PCI_COMMAND_MEMORY |
                PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE);
    vb.pci_touched = 1;

    /* Initialisation (3.1.1). */
    vb.reset_needed = 1;
    if ((rc = reset()))
        return open_fail(rc);
    set_status(VIRTIO_STATUS_ACKNOWLEDGE);
    set_status(VIRTIO_STATUS_DRIVER);
    if ((rc = negotiate()) || (rc = setup_queue())) {
        set_status(VIRTIO_STATUS_FAILED);
        return open_fail(rc);
    }
    set_status(VIRTIO_STATUS_DRIVER_OK);

    vb.block = 512;
    if (vb.features & (1ull << VIRTIO_BLK_F_BLK_SIZE))
        vb.block = rd32(vb.devcfg, VIRTIO_BLK_CFG_BLK_SIZE);
    if (vb.block != 512 && vb.block != 4096)
        return open_fail(fail(SOS_STATUS_DISK_BLOCK_SIZE, 0, 0, vb.block, "%u-byte blocks "
                              "(512 or 4096 supported)", vb.block));
    if (cfg->block_size && cfg->block_size != vb.block)
        return open_fail(fail(SOS_STATUS_DISK_BLOCK_SIZE, 0, 0, vb.block, "the disk has "
                              "%u-byte blocks, the target says %u", vb.block, cfg->block_size));
    uint64_t sectors = rd32(vb.devcfg, VIRTIO_BLK_CFG_CAPACITY) |
                       (uint64_t)rd32(vb.devcfg, VIRTIO_BLK_CFG_CAPACITY + 4) << 32;
    vb.blocks = sectors / (vb.block / 512);
    vb.ready = 1;
    return 0;
}

int disk_identify(uint64_t *blocks, char model[41])
{
    if (!vb.ready)
        return fail(SOS_STATUS_DISK_BAD_REQUEST, "IDENTIFY", 0, 0, "the device is not open");
    if (blocks)
        *blocks = vb.blocks;
    if (model)
        ksnprintf(model, 41, "virtio-blk %u-byte blocks", vb.block);
    return 0;
}

uint32_t disk_block_size(void)
{
    return vb.block;
}

void disk_close(enum disk_give_back how)
{
    if (vb.ready && !vb.broken)
        drain_to(0);
    give_back(how);
}

const struct disk_error *disk_last_error(void)
{
    return &vb.err;
}

int disk_media_error(int rc)
{
    return rc == SOS_STATUS_DISK_IO_ERROR;
}
