/*
 * Polled AHCI driver for one port: no interrupts, up to AHCI_MAX_SLOTS non-queued command
 * slots in flight (writes), 48-bit DMA.
 *
 * The driver takes the port over from a host that quiesced it, and gives it back exactly
 * as found: ahci_open saves every register it will change and ahci_close restores them
 * (port stopped, old command list and FIS area, old PxIE/PxSCTL, PxCMD.FRE/ST as they were,
 * GHC.AE and the PCI command register as they were). The two RWC status registers PxIS
 * and PxSERR cannot be set by software: ahci_open records their values (saved_is,
 * saved_serr) and clears them, and ahci_close leaves them clear.
 *
 * Memory: physical address == virtual address for the DMA area and every buffer.
 * All functions return 0 or an SOS_STATUS_* code; ahci_last_error() says what failed.
 * Every wait has a deadline from timer.h: call timer_init() before ahci_open().
 * A failed ahci_open has already restored whatever it changed; ahci_close on it is a no-op.
 */
#ifndef SOS_AHCI_H
#define SOS_AHCI_H
#include <stdint.h>
#include "suspendos_abi.h"
#include "disk.h"            /* struct disk_sg: even address and length; pieces > 4 MiB
                                   are split into several PRDs */

struct ahci_cmd_header;
struct ahci_cmd_table;

/* A request the driver cannot express (odd address or length, not a sector multiple,
 * more than 65536 sectors or PRD entries than the table holds, an address the HBA cannot
 * reach, LBA beyond 48 bits, non-512-byte logical sectors). Not yet in the ABI: the lead
 * should add it to suspendos/formats/status.py; until then this local value is used. */
#ifndef SOS_STATUS_AHCI_BAD_REQUEST
#define SOS_STATUS_AHCI_BAD_REQUEST 0x116u
#endif

/* DMA area layout (offsets into the caller's 4 KiB-aligned area). */
#define AHCI_DMA_CLB_OFF        0x000   /* command list, 1 KiB (AHCI 4.2.2) */
#define AHCI_DMA_FB_OFF         0x400   /* received FIS area, 256 B (AHCI 4.2.1) */
#define AHCI_DMA_IDENT_OFF      0x500   /* IDENTIFY DEVICE data, 512 B */
#define AHCI_DMA_CTBA_OFF       0x700   /* command tables, one per slot: 80h header + PRDT
                                           (AHCI 4.2.3), each 128-byte aligned */
#define AHCI_DMA_MIN_SIZE       0x1000  /* 4 KiB -> one slot of 136 PRD entries */
/* Commands the driver keeps in flight at most (the HBA's CAP.NCS and the area may allow
 * fewer). Each slot's table holds up to AHCI_PRDS_PER_COMMAND (1024) PRDs: 0x4080 bytes. */
#define AHCI_MAX_SLOTS          3
#define AHCI_DMA_TABLE_BYTES(prds) \
    ((0x80u + (uint64_t)(prds) * 16 + 127) & ~(uint64_t)127)
/* The whole area the driver touches with every slot at 1024 PRDs (0xc880 bytes); a
 * smaller area means fewer slots, and below one full table, fewer PRDs in the one slot. */
#define AHCI_DMA_RECOMMENDED    (AHCI_DMA_CTBA_OFF + AHCI_MAX_SLOTS * AHCI_DMA_TABLE_BYTES(1024))
#define AHCI_DMA_PRD_CAPACITY(size) \
    (((size) - AHCI_DMA_CTBA_OFF - 0x80) / 16 > 65535 ? 65535u : \
     (unsigned)(((size) - AHCI_DMA_CTBA_OFF - 0x80) / 16))

struct ahci_config {
    uint64_t abar;                  /* BAR5 as the host found it (AHCI 2.1.11) */
    uint8_t bus, dev, fn, port;
};

struct ahci_error {
    const char *what;               /* the failed step or wait, a string literal */
    uint64_t lba;                   /* first LBA of the failed command (0 if none) */
    uint64_t dev_lba;               /* LBA the device put in its D2H Register FIS on error
                                       (ATA8-ACS error outputs: the failing sector for
                                       READ/WRITE DMA EXT on most devices) */
    uint32_t tfd, is, serr;         /* PxTFD, PxIS, PxSERR when the error was seen */
};

struct ahci {
    /* identity */
    volatile uint8_t *abar;
    uint8_t bus, dev, fn, port;
    uint32_t cap;
    /* DMA area */
    struct ahci_cmd_header *clb;
    volatile uint8_t *rfis;
    uint16_t *ident;
    struct ahci_cmd_table *ct[AHCI_MAX_SLOTS];
    unsigned prd_max;
    unsigned slots;                 /* command slots in use: 1..AHCI_MAX_SLOTS */
    /* state */
    int taken;                      /* registers changed: close has work to do */
    int running;                    /* our PxCMD.ST is set and the port is usable */
    /* Commands in flight, issued in slot order 0, 1, ..., slots - 1, 0, ...: `next` is the
     * slot the next command takes, the oldest is `inflight` slots before it. Each remembers
     * its first LBA, how to name its failure, and the ahci_write_async call it belongs to
     * (calls are numbered from 1; `calls` is the latest). */
    unsigned next, inflight;
    uint64_t calls;
    struct ahci_slot {
        uint64_t lba, call;
        uint32_t timeout_ms;
        const struct ahci_cmd_names *names;
    } slot[AHCI_MAX_SLOTS];
    int ghc_changed, pci_changed, sctl_changed;
    uint64_t sectors;               /* from IDENTIFY, 0 before */
    /* what the host left (restored by ahci_close) */
    uint16_t saved_pci_command;
    uint32_t saved_ghc;
    uint32_t saved_clb, saved_clbu, saved_fb, saved_fbu;
    uint32_t saved_cmd, saved_ie, saved_sctl;
    uint32_t saved_is, saved_serr;  /* RWC: recorded, cleared, not restorable */
    struct ahci_error err;
};

int  ahci_open(struct ahci *a, const struct ahci_config *cfg, void *dma, uint64_t dma_size);
int  ahci_identify(struct ahci *a, uint64_t *sectors, char model[41]);
/* Write / read the byte stream the n pieces describe to / from sectors lba, lba+1, ...
 * Pieces: even address and length, any number, any size (zero-length ones are skipped);
 * the total must be a non-zero multiple of 512. One command per 65536 sectors or
 * ahci_max_prds() PRDs (adjacent pieces share a PRD); a longer list becomes several
 * commands, issued back to back. On error, ahci_last_error()->lba names the first LBA of
 * the command that failed; the commands before it completed. */
int  ahci_write(struct ahci *a, uint64_t lba, const struct disk_sg *sg, unsigned n); /* WRITE DMA EXT */
int  ahci_read(struct ahci *a, uint64_t lba, const struct disk_sg *sg, unsigned n);  /* READ DMA EXT */
int  ahci_flush(struct ahci *a);                                                     /* FLUSH CACHE EXT */
/* Overlap: issue a write and return while the HBA works. Several calls may be in flight
 * at once, up to ahci_depth() commands in all (each non-queued, AHCI 5.3.2: the HBA runs
 * them one after another); a call that needs a slot first finishes the oldest command.
 * A call's buffers must stay untouched until ahci_wait_calls says it has finished; the
 * scatter list itself may be reused at once. ahci_wait_calls(a, left) returns once every
 * call but the newest `left` has finished, oldest first; ahci_wait is ahci_wait_calls(a, 0).
 * An error among the commands in flight is reported by whichever of these meets it; the
 * port is then recovered and every other command in flight is dropped unfinished (the
 * caller must treat every call not yet reported finished as unwritten). Every other
 * function finishes what is in flight first. */
int  ahci_write_async(struct ahci *a, uint64_t lba, const struct disk_sg *sg, unsigned n);
int  ahci_wait_calls(struct ahci *a, unsigned left);
int  ahci_wait(struct ahci *a);
unsigned ahci_depth(const struct ahci *a);
void ahci_close(struct ahci *a);
/* After a restore (disk.h DISK_GIVE_BACK_RESET): the port stopped (FRE, ST clear), PxIE
 * and GHC.IE clear, the host's PxCLB/PxFB put back, bus mastering off. */
void ahci_close_reset(struct ahci *a);
const struct ahci_error *ahci_last_error(const struct ahci *a);
unsigned ahci_max_sectors(const struct ahci *a);  /* one command: 65536 (ATA 48-bit Count) */
unsigned ahci_max_prds(const struct ahci *a);     /* one command: PRDs (<= 1024) */

#endif
