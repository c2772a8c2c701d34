/*
 * Host test of drivers/nvme.c's Host Memory Buffer check (hmb_off), for
 * tests/test_nvme_hmb.py. QEMU's NVMe controller asks for no HMB (HMPRE 0), so the other
 * paths need a controller that does: this file plays one.
 *
 * The driver objects (nvme.c, disk_queue.c, printf.c) are built with the payload's
 * freestanding flags and linked into this hosted program, which stands in for what they
 * call below them:
 *  - PCI configuration space (drivers/pci.h): a 256-byte array describing one NVMe
 *    function (class 01h/08h/02h) whose 64-bit BAR0 is the fake register page;
 *  - the timer (drivers/timer.h): CLOCK_MONOTONIC, optionally sped up so that a deadline
 *    scenario ends quickly;
 *  - the serial port (drivers/serial.h): stdout, so the driver's "@@NVME hmb ..." line is
 *    what the test reads.
 * "Physical" addresses are this process's pointers, as the driver's phys() assumes.
 *
 * The controller runs in a second thread and polls its registers the way a device would
 * see the driver's MMIO writes (NVMe 1.4 section numbers):
 *  - CC.EN 0 -> 1: takes AQA/ASQ/ACQ and sets CSTS.RDY; 1 -> 0 (a Controller Level Reset,
 *    7.3.2) clears CSTS.RDY and, unless the scenario says the controller keeps it, EHM;
 *    CC.SHN set: CSTS.SHST = 10b (7.6.2);
 *  - the admin SQ tail doorbell (3.1.24): runs each new entry and posts its completion
 *    with the current phase tag, flipped at every wrap (4.6);
 *  - Identify controller (HMPRE as the scenario chooses) and namespace (one LBA format,
 *    512-byte blocks, no metadata), Create I/O CQ / SQ, Get / Set Features 0Dh (5.13,
 *    5.21.1.13) as the scenario chooses; anything else is Invalid Command Opcode and
 *    counted as unexpected.
 *
 * Usage: nvme_hmb_harness SCENARIO. Output: the driver's serial lines, then
 *   OPEN status=0x.. [what="..."]        disk_open's result and disk_last_error()->what
 *   FAKE getf=N setf=N setf_cdw11=0x.. getf_prp=ok|bad iocq=N iosq=N ehm=N unexpected=N
 *   CLOSE cc=0x.. csts=0x.. aqa=0x.. asq=0x.. acq=0x.. pci_command=0x..
 * Exit 0 when the scenario ran (the test judges the lines), 2 on a harness error.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "disk.h"
#include "nvme_regs.h"
#include "pci.h"
#include "serial.h"
#include "timer.h"

#define PAGE 4096u
#define DMA_BYTES 0x10000u          /* PAYLOAD_DISK_DMA_SIZE (builder/core/payload.h) */
#define PCI_BUS 0
#define PCI_DEV 4
#define PCI_FN 0

/* Status field of a completion (4.6.1): SC bits 8:1, SCT 11:9, DNR 15 (bit 0: phase). */
#define ST_INVALID_OPCODE   (0x01u << 1)
#define ST_INVALID_FIELD    (0x02u << 1)
#define ST_DNR              (1u << 15)

struct scenario {
    const char *name;
    uint32_t hmpre;                 /* Identify Controller bytes 275:272 */
    int ehm_at_start;               /* as the host's driver left the feature */
    int keeps_across_reset;         /* not allowed by the spec: the case we must catch */
    int set_ignored;                /* Set Features EHM=0 completes but EHM stays 1 */
    uint16_t get_status, set_status;    /* non-zero: the command fails with it */
    int get_silent;                 /* Get Features never completes */
    unsigned time_scale;            /* deadlines pass this many times faster */
};

static const struct scenario scenarios[] = {
    { "not-requested", 0, 0, 0, 0, 0, 0, 0, 1 },
    { "off", 8192, 1, 0, 0, 0, 0, 0, 1 },           /* the reset cleared EHM, as it must */
    { "turned-off", 8192, 1, 1, 0, 0, 0, 0, 1 },
    { "stays-on", 8192, 1, 1, 1, 0, 0, 0, 1 },
    { "get-rejected", 8192, 1, 0, 0, ST_INVALID_FIELD | ST_DNR, 0, 0, 1 },
    { "set-rejected", 8192, 1, 1, 0, 0, ST_INVALID_FIELD | ST_DNR, 0, 1 },
    { "get-silent", 8192, 0, 0, 0, 0, 0, 1, 20 },
};

static const struct scenario *sc;

/* ---- stand-ins for drivers/pci.c, timer.c, serial.c ----------------------------------- */

static uint8_t config[256];

static int ours(uint8_t bus, uint8_t dev, uint8_t fn)
{
    return bus == PCI_BUS && dev == PCI_DEV && fn == PCI_FN;
}

uint32_t pci_read32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t reg)
{
    uint32_t v = 0xffffffffu;
    if (ours(bus, dev, fn))
        memcpy(&v, config + (reg & 0xfc), 4);
    return v;
}

uint16_t pci_read16(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t reg)
{
    return (uint16_t)(pci_read32(bus, dev, fn, reg) >> (8 * (reg & 2)));
}

uint8_t pci_read8(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t reg)
{
    return (uint8_t)(pci_read32(bus, dev, fn, reg) >> (8 * (reg & 3)));
}

void pci_write32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t reg, uint32_t v)
{
    if (ours(bus, dev, fn))
        memcpy(config + (reg & 0xfc), &v, 4);
}

void pci_write16(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t reg, uint16_t v)
{
    if (ours(bus, dev, fn))
        memcpy(config + (reg & 0xfe), &v, 2);
}

void pci_write8(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t reg, uint8_t v)
{
    if (ours(bus, dev, fn))
        config[reg] = v;
}

static uint64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

uint64_t timer_deadline_us(uint64_t us)
{
    return now_us() + us / sc->time_scale;
}

int timer_expired(uint64_t deadline)
{
    return (int64_t)(now_us() - deadline) >= 0;
}

void serial_write(const char *s, unsigned long n)
{
    fwrite(s, 1, n, stdout);
}

/* ---- the fake controller --------------------------------------------------------------- */

static uint8_t *bar;                /* 0x1000 registers + the doorbells (DSTRD 0) */

static struct {
    int ehm, mr, stop;
    uint64_t asq, acq;
    unsigned sq_entries, cq_entries, sq_head, cq_tail, phase;
    unsigned getf, setf, getf_bad_prp, iocq, iosq, unexpected;
    uint32_t setf_cdw11;
} fk;

static uint32_t reg(uint32_t off)
{
    return __atomic_load_n((uint32_t *)(bar + off), __ATOMIC_ACQUIRE);
}

static void set_reg(uint32_t off, uint32_t v)
{
    __atomic_store_n((uint32_t *)(bar + off), v, __ATOMIC_RELEASE);
}

static uint64_t reg64(uint32_t off)
{
    return reg(off) | (uint64_t)reg(off + 4) << 32;
}

/* Completion entry (4.6): everything but the status first, then the status with the phase
 * tag, so the driver never sees a half-written entry with the current phase. */
static void post(uint16_t cid, uint32_t dw0, uint16_t status)
{
    struct nvme_cqe *c = (struct nvme_cqe *)(uintptr_t)fk.acq + fk.cq_tail;
    c->dw0 = dw0;
    c->dw1 = 0;
    c->sqhd = (uint16_t)fk.sq_head;
    c->sqid = 0;
    c->cid = cid;
    __atomic_store_n(&c->status, (uint16_t)(status | fk.phase), __ATOMIC_RELEASE);
    if (++fk.cq_tail == fk.cq_entries) {
        fk.cq_tail = 0;
        fk.phase ^= 1;
    }
}

static void identify(const struct nvme_sqe *e)
{
    uint8_t *d = (uint8_t *)(uintptr_t)e->prp1;
    memset(d, 0, PAGE);
    if ((e->cdw10 & 0xff) == NVME_CNS_CONTROLLER) {
        memcpy(d + NVME_IDC_MN, "suspendos fake HMB controller", 29);
        d[NVME_IDC_MDTS] = 5;
        memcpy(d + NVME_IDC_HMPRE, &sc->hmpre, 4);
        d[NVME_IDC_NN] = 1;
    } else {
        uint64_t blocks = 1u << 20;
        memcpy(d + NVME_IDN_NSZE, &blocks, 8);
        d[NVME_IDN_LBAF + 2] = 9;       /* format 0: LBADS 9, MS 0 */
    }
}

static void run(const struct nvme_sqe *e)
{
    uint8_t opcode = (uint8_t)e->cdw0, fid = (uint8_t)e->cdw10;
    uint8_t *data = (uint8_t *)(uintptr_t)e->prp1;
    uint32_t dw0 = 0;
    uint16_t status = 0;
    if (opcode == NVME_ADMIN_IDENTIFY) {
        identify(e);
    } else if (opcode == NVME_ADMIN_CREATE_CQ) {
        fk.iocq++;
    } else if (opcode == NVME_ADMIN_CREATE_SQ) {
        fk.iosq++;
    } else if (opcode == NVME_ADMIN_GET_FEATURES && fid == NVME_FID_HMB) {
        fk.getf++;
        /* The attributes structure goes to the data buffer: the driver must give a page. */
        if (!data || (e->prp1 & (PAGE - 1))) {
            fk.getf_bad_prp++;
            status = ST_INVALID_FIELD | ST_DNR;
        } else if (sc->get_silent) {
            return;
        } else if (sc->get_status) {
            status = sc->get_status;
        } else {
            memset(data, 0, PAGE);
            if (fk.ehm)
                memcpy(data, &sc->hmpre, 4);                /* HSIZE */
            dw0 = (uint32_t)fk.ehm * NVME_HMB_EHM | (uint32_t)fk.mr * NVME_HMB_MR;
        }
    } else if (opcode == NVME_ADMIN_SET_FEATURES && fid == NVME_FID_HMB) {
        fk.setf++;
        fk.setf_cdw11 = e->cdw11;
        if (sc->set_status) {
            status = sc->set_status;
        } else if (!sc->set_ignored) {
            fk.ehm = !!(e->cdw11 & NVME_HMB_EHM);
            fk.mr = !!(e->cdw11 & NVME_HMB_MR);
        }
    } else {
        fk.unexpected++;
        status = ST_INVALID_OPCODE | ST_DNR;
    }
    post((uint16_t)(e->cdw0 >> 16), dw0, status);
}

static void *controller(void *unused)
{
    (void)unused;
    while (!__atomic_load_n(&fk.stop, __ATOMIC_ACQUIRE)) {
        uint32_t cc = reg(NVME_REG_CC), csts = reg(NVME_REG_CSTS);
        if ((cc & NVME_CC_EN) && !(csts & NVME_CSTS_RDY)) {
            uint32_t aqa = reg(NVME_REG_AQA);
            fk.sq_entries = (aqa & 0xfff) + 1;
            fk.cq_entries = (aqa >> 16 & 0xfff) + 1;
            fk.asq = reg64(NVME_REG_ASQ);
            fk.acq = reg64(NVME_REG_ACQ);
            fk.sq_head = fk.cq_tail = 0;
            fk.phase = 1;
            set_reg(NVME_REG_CSTS, NVME_CSTS_RDY);
        } else if (!(cc & NVME_CC_EN) && (csts & NVME_CSTS_RDY)) {
            if (!sc->keeps_across_reset)
                fk.ehm = fk.mr = 0;
            set_reg(NVME_REG_CSTS, 0);
        } else if ((csts & NVME_CSTS_RDY) && (cc & NVME_CC_SHN_MASK) &&
                   !(csts & NVME_CSTS_SHST_MASK)) {
            set_reg(NVME_REG_CSTS, csts | NVME_CSTS_SHST_DONE);
        } else if ((csts & NVME_CSTS_RDY) && fk.asq) {
            unsigned tail = reg(NVME_REG_DOORBELL);
            while (fk.sq_head != tail % fk.sq_entries) {
                struct nvme_sqe e = ((const struct nvme_sqe *)(uintptr_t)fk.asq)[fk.sq_head];
                fk.sq_head = (fk.sq_head + 1) % fk.sq_entries;
                run(&e);
            }
        }
        usleep(20);
    }
    return 0;
}

/* ---- the scenario ---------------------------------------------------------------------- */

/* What the host's driver left in the admin queue registers (give_back restores them). */
#define HOST_AQA 0x001f001fu
#define HOST_ASQ 0x12340000ull
#define HOST_ACQ 0x12350000ull
#define HOST_PCI_COMMAND 0x0002u    /* memory space on, bus mastering off (Linux's freeze) */

int main(int argc, char **argv)
{
    for (unsigned i = 0; argc == 2 && i < sizeof scenarios / sizeof *scenarios; i++)
        if (!strcmp(argv[1], scenarios[i].name))
            sc = &scenarios[i];
    if (!sc) {
        fprintf(stderr, "usage: nvme_hmb_harness SCENARIO\n");
        return 2;
    }
    alarm(60);                      /* a hang is a failure, not a stuck test run */
    setvbuf(stdout, 0, _IOLBF, 0);

    bar = aligned_alloc(PAGE, 2 * PAGE);
    void *dma = aligned_alloc(PAGE, DMA_BYTES);
    if (!bar || !dma)
        return 2;
    memset(bar, 0, 2 * PAGE);
    /* CAP (3.1.1): MQES 63, CQR, TO 40 (20 s), DSTRD 0, the NVM command set, MPSMIN 0. */
    uint64_t cap = 63 | NVME_CAP_CQR | 40u << 24 | NVME_CAP_CSS_NVM;
    memcpy(bar + NVME_REG_CAP, &cap, 8);
    uint64_t asq = HOST_ASQ, acq = HOST_ACQ;
    memcpy(bar + NVME_REG_ASQ, &asq, 8);
    memcpy(bar + NVME_REG_ACQ, &acq, 8);
    set_reg(NVME_REG_AQA, HOST_AQA);
    set_reg(NVME_REG_CC, NVME_CC_EN | NVME_CC_IOSQES_64 | NVME_CC_IOCQES_16);
    set_reg(NVME_REG_CSTS, NVME_CSTS_RDY);
    fk.ehm = sc->ehm_at_start;
    fk.mr = sc->ehm_at_start;

    uint64_t base = (uint64_t)(uintptr_t)bar;
    uint16_t vendor = 0x1b36, command = HOST_PCI_COMMAND;
    memcpy(config + PCI_VENDOR_ID, &vendor, 2);
    memcpy(config + PCI_COMMAND, &command, 2);
    config[PCI_CLASS] = NVME_PCI_CLASS;
    config[PCI_SUBCLASS] = NVME_PCI_SUBCLASS;
    config[PCI_PROG_IF] = NVME_PCI_PROG_IF;
    uint32_t bar0 = (uint32_t)base | 4, bar1 = (uint32_t)(base >> 32);   /* 64-bit memory */
    memcpy(config + PCI_BAR0, &bar0, 4);
    memcpy(config + PCI_BAR0 + 4, &bar1, 4);

    pthread_t thread;
    if (pthread_create(&thread, 0, controller, 0))
        return 2;

    struct disk_config cfg = { .kind = SOS_DISK_KIND_NVME, .bar = base, .bus = PCI_BUS,
                               .dev = PCI_DEV, .fn = PCI_FN, .nsid = 1, .block_size = 512 };
    int rc = disk_open(&cfg, dma, DMA_BYTES);
    if (rc)
        printf("OPEN status=0x%x what=\"%s\"\n", rc, disk_last_error()->what);
    else
        printf("OPEN status=0x0\n");
    if (!rc)
        disk_close(DISK_GIVE_BACK_AS_FOUND);      /* a failed open has given it back */

    __atomic_store_n(&fk.stop, 1, __ATOMIC_RELEASE);
    pthread_join(thread, 0);
    printf("FAKE getf=%u setf=%u setf_cdw11=0x%x getf_prp=%s iocq=%u iosq=%u ehm=%d "
           "unexpected=%u\n", fk.getf, fk.setf, fk.setf_cdw11, fk.getf_bad_prp ? "bad" : "ok",
           fk.iocq, fk.iosq, fk.ehm, fk.unexpected);
    memcpy(&command, config + PCI_COMMAND, 2);
    printf("CLOSE cc=0x%x csts=0x%x aqa=0x%x asq=0x%llx acq=0x%llx pci_command=0x%x\n",
           reg(NVME_REG_CC), reg(NVME_REG_CSTS), reg(NVME_REG_AQA),
           (unsigned long long)reg64(NVME_REG_ASQ), (unsigned long long)reg64(NVME_REG_ACQ),
           command);
    return 0;
}
