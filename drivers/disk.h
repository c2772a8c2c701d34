/*
 * The disk interface the image writer (builder/core) and the resume loader (builder/resume)
 * use. Exactly one driver implements it in a given build: drivers/ahci_disk.c,
 * drivers/nvme.c or drivers/virtio_blk.c, chosen by the target's [disk] kind
 * (suspendos/build/toolchain.py links only that one). The driver keeps its state in its own
 * statics: there is one disk per run.
 *
 * Units: LBAs and counts are the disk's own logical blocks (512 or 4096 bytes), the size
 * disk_block_size() reports after disk_identify(). Memory: physical == virtual for the DMA
 * area and every buffer. Every function returns 0 or an SOS_STATUS_* code, and
 * disk_last_error() says what failed (the step or wait, the command, its first LBA).
 * Every wait has a deadline from timer.h: call timer_init() before disk_open().
 */
#ifndef SOS_DISK_H
#define SOS_DISK_H
#include <stdint.h>
#include "suspendos_abi.h"

/* One piece of a gather list. Drivers accept any even address and length; a driver whose
 * hardware needs more (NVMe PRPs: page-aligned interior pieces) splits the list into
 * several commands where it must, never the caller. */
struct disk_sg {
    uint64_t addr;
    uint32_t bytes;
};

/* What the payload info says about the disk (formats/payload_info.py). */
struct disk_config {
    uint32_t kind;                  /* SOS_DISK_KIND_*: must match the linked driver */
    uint64_t bar;                   /* the BAR the target names: AHCI ABAR (BAR5), NVMe BAR0,
                                       virtio the BAR holding the common configuration */
    uint8_t bus, dev, fn, port;     /* PCI function; AHCI port */
    uint32_t nsid;                  /* NVMe namespace (1 when 0) */
    uint32_t block_size;            /* logical block size the target expects (0: 512) */
};

struct disk_error {
    const char *what;               /* the failed step or wait, a string literal */
    const char *command;            /* the command that failed ("WRITE", "READ", ...), or 0 */
    uint64_t lba;                   /* its first LBA (0 if none) */
    uint32_t detail;                /* driver's status word: AHCI PxTFD, NVMe CQE status
                                       (DW3 bits 31:17), virtio-blk status byte */
};

/* How to give the disk back (item 7 of issue 12, docs/ARCHITECTURE.md "Drivers"):
 *  AS_FOUND  after a suspend: the host's driver resumes from what it left. AHCI: every
 *            saved register restored. NVMe and virtio-blk: the host's driver shut down /
 *            reset the device before the handoff, so the device is left shut down / reset.
 *  RESET     after a restore: RAM belongs to the restored kernel. The controller is left
 *            stopped with its interrupts off and no DMA engine running (AHCI: port stopped,
 *            FRE/ST clear, PxIE 0; NVMe: CC.EN 0; virtio: status 0), and bus mastering off;
 *            the kernel's own resume path re-initialises it. */
enum disk_give_back { DISK_GIVE_BACK_AS_FOUND = 0, DISK_GIVE_BACK_RESET = 1 };

int  disk_open(const struct disk_config *cfg, void *dma, uint64_t dma_size);
/* Size in logical blocks, the block size, and a model / serial string for the log. A block
 * size other than cfg->block_size fails with SOS_STATUS_DISK_BLOCK_SIZE. */
int  disk_identify(uint64_t *blocks, char model[41]);
uint32_t disk_block_size(void);
/* Write / read the byte stream the pieces describe to / from blocks lba, lba+1, ... The
 * total is a non-zero multiple of the block size; any number of pieces. */
int  disk_write(uint64_t lba, const struct disk_sg *sg, unsigned n);
int  disk_read(uint64_t lba, const struct disk_sg *sg, unsigned n);
/* Issue a write and return while the device works. Up to disk_write_depth() calls may be
 * in flight at once (AHCI 3, a command slot each; NVMe 3 and virtio-blk 1, each call split
 * into commands, all in flight as far as the queue's slots go); issuing beyond that first
 * finishes the oldest. A call's
 * buffers stay untouched until it has finished; the list itself may be reused at once.
 * disk_wait_calls(left) returns once every call but the newest `left` has finished (oldest
 * first); disk_wait() is disk_wait_calls(0). A failure among the calls in flight is
 * reported by whichever of these meets it, and then every call not yet reported finished
 * must be taken as unwritten. Every other function finishes what is in flight first. */
int  disk_write_async(uint64_t lba, const struct disk_sg *sg, unsigned n);
int  disk_wait_calls(unsigned left);
int  disk_wait(void);
unsigned disk_write_depth(void);
int  disk_flush(void);
void disk_close(enum disk_give_back how);
const struct disk_error *disk_last_error(void);
/* 1 if rc means the device itself failed the command (a media error worth cornering to one
 * block by rewriting halves), as opposed to a timeout or a request the driver refused. */
int  disk_media_error(int rc);
/* Names for messages: "AHCI", "NVMe", "virtio-blk"; and the detail word ("TFD", "status"). */
extern const char disk_driver_name[], disk_detail_name[];

#endif
