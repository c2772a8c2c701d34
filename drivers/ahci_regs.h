/*
 * AHCI register map, in-memory structures and timeouts.
 *
 * Names follow the Serial ATA AHCI 1.3.1 specification ("AHCI") and, for the FIS and the
 * commands, Serial ATA 3.x and ATA8-ACS. Sections are cited where each item is defined.
 */
#ifndef SOS_AHCI_REGS_H
#define SOS_AHCI_REGS_H
#include <stdint.h>

/* ---- PCI identification (AHCI 2.1) ---------------------------------------------------- */
#define AHCI_PCI_CLASS          0x01    /* CC.BCC: mass storage (AHCI 2.1.5) */
#define AHCI_PCI_SUBCLASS       0x06    /* CC.SCC: Serial ATA */
#define AHCI_PCI_PROG_IF        0x01    /* CC.PI: AHCI 1.0 interface */

/* ---- Generic Host Control (AHCI 3.1), offsets from ABAR ------------------------------- */
#define AHCI_CAP                0x00    /* HBA Capabilities (3.1.1) */
#define AHCI_GHC                0x04    /* Global HBA Control (3.1.2) */
#define AHCI_IS                 0x08    /* Interrupt Status (3.1.3) */
#define AHCI_PI                 0x0C    /* Ports Implemented (3.1.4) */
#define AHCI_VS                 0x10    /* Version (3.1.5) */
#define AHCI_CAP2               0x24    /* HBA Capabilities Extended (3.1.10) */

#define AHCI_CAP_S64A           (1u << 31)  /* Supports 64-bit Addressing */
#define AHCI_CAP_SSS            (1u << 27)  /* Supports Staggered Spin-up */
#define AHCI_CAP_NCS_SHIFT      8           /* Number of Command Slots, 0's based */
#define AHCI_CAP_NCS_MASK       0x1fu
#define AHCI_CAP_NP_MASK        0x1fu       /* Number of Ports, 0's based */

#define AHCI_GHC_AE             (1u << 31)  /* AHCI Enable */
#define AHCI_GHC_IE             (1u << 1)   /* Interrupt Enable */
#define AHCI_GHC_HR             (1u << 0)   /* HBA Reset: never written by this driver */

/* ---- Port registers (AHCI 3.3): port p at ABAR + 100h + p * 80h --------------------- */
#define AHCI_PORT_BASE          0x100
#define AHCI_PORT_STRIDE        0x80
#define AHCI_MAX_PORTS          32

#define AHCI_PxCLB              0x00    /* Command List Base Address (3.3.1), 1 KiB aligned */
#define AHCI_PxCLBU             0x04    /* ... upper 32 bits (3.3.2) */
#define AHCI_PxFB               0x08    /* FIS Base Address (3.3.3), 256 B aligned */
#define AHCI_PxFBU              0x0C    /* ... upper 32 bits (3.3.4) */
#define AHCI_PxIS               0x10    /* Interrupt Status (3.3.5), RWC */
#define AHCI_PxIE               0x14    /* Interrupt Enable (3.3.6) */
#define AHCI_PxCMD              0x18    /* Command and Status (3.3.7) */
#define AHCI_PxTFD              0x20    /* Task File Data (3.3.8) */
#define AHCI_PxSIG              0x24    /* Signature (3.3.9) */
#define AHCI_PxSSTS             0x28    /* SATA Status, SCR0 SStatus (3.3.10) */
#define AHCI_PxSCTL             0x2C    /* SATA Control, SCR2 SControl (3.3.11) */
#define AHCI_PxSERR             0x30    /* SATA Error, SCR1 SError (3.3.12), RWC */
#define AHCI_PxSACT             0x34    /* SATA Active, SCR3 SActive (3.3.13) */
#define AHCI_PxCI               0x38    /* Command Issue (3.3.14) */

/* PxIS (3.3.5) */
#define AHCI_PxIS_CPDS          (1u << 31)  /* Cold Port Detect Status */
#define AHCI_PxIS_TFES          (1u << 30)  /* Task File Error Status */
#define AHCI_PxIS_HBFS          (1u << 29)  /* Host Bus Fatal Error Status */
#define AHCI_PxIS_HBDS          (1u << 28)  /* Host Bus Data Error Status */
#define AHCI_PxIS_IFS           (1u << 27)  /* Interface Fatal Error Status */
#define AHCI_PxIS_INFS          (1u << 26)  /* Interface Non-fatal Error Status */
#define AHCI_PxIS_OFS           (1u << 24)  /* Overflow Status */
#define AHCI_PxIS_DHRS          (1u << 0)   /* Device to Host Register FIS Interrupt */
/* Status bits that end a non-queued command in error: a task-file error (the device set
 * ERR in a received FIS), or a fatal condition the HBA detected (3.3.5). After any of them
 * the HBA stops processing the list and software runs the 6.2.2.1 recovery. */
#define AHCI_PxIS_ERRORS        (AHCI_PxIS_TFES | AHCI_PxIS_HBFS | AHCI_PxIS_HBDS | \
                                 AHCI_PxIS_IFS | AHCI_PxIS_OFS)

/* PxCMD (3.3.7) */
#define AHCI_PxCMD_ICC_MASK     (0xfu << 28) /* Interface Communication Control */
#define AHCI_PxCMD_CR           (1u << 15)  /* Command List Running (RO) */
#define AHCI_PxCMD_FR           (1u << 14)  /* FIS Receive Running (RO) */
#define AHCI_PxCMD_FRE          (1u << 4)   /* FIS Receive Enable */
#define AHCI_PxCMD_CLO          (1u << 3)   /* Command List Override (write 1 to act) */
#define AHCI_PxCMD_POD          (1u << 2)   /* Power On Device */
#define AHCI_PxCMD_SUD          (1u << 1)   /* Spin-Up Device */
#define AHCI_PxCMD_ST           (1u << 0)   /* Start */
/* Bits that must never be written back as read: ICC requests an interface state change
 * unless 0 (3.3.7, "ICC"), CLO acts on a written 1. */
#define AHCI_PxCMD_WRITE_MASK   (~(AHCI_PxCMD_ICC_MASK | AHCI_PxCMD_CLO))

/* PxTFD (3.3.8): STS in bits 7:0 (the ATA Status register), ERR in bits 15:8. */
#define AHCI_PxTFD_STS_BSY      (1u << 7)
#define AHCI_PxTFD_STS_DF       (1u << 5)   /* ATA8-ACS: DEVICE FAULT */
#define AHCI_PxTFD_STS_DRQ      (1u << 3)
#define AHCI_PxTFD_STS_ERR      (1u << 0)
#define AHCI_PxTFD_ERR_SHIFT    8

/* PxSSTS (3.3.10) */
#define AHCI_PxSSTS_DET_MASK    0xfu
#define AHCI_PxSSTS_DET_PRESENT 0x3u    /* device present and Phy communication established */
#define AHCI_PxSSTS_IPM_SHIFT   8
#define AHCI_PxSSTS_IPM_MASK    0xfu

/* PxSCTL (3.3.11) */
#define AHCI_PxSCTL_DET_MASK    0xfu
#define AHCI_PxSCTL_DET_NONE    0x0u
#define AHCI_PxSCTL_DET_COMRESET 0x1u   /* perform interface initialization (COMRESET) */

/* ---- In-memory structures (AHCI 4.2), little-endian, phys == virt ---------------------- */

/* Received FIS structure (4.2.1, figure "FIS Receive Area"), 256 bytes, 256 B aligned
 * when FIS-based switching is off. */
#define AHCI_RFIS_SIZE          256
#define AHCI_RFIS_ALIGN         256
#define AHCI_RFIS_DSFIS         0x00    /* DMA Setup FIS */
#define AHCI_RFIS_PSFIS         0x20    /* PIO Setup FIS */
#define AHCI_RFIS_RFIS          0x40    /* D2H Register FIS */
#define AHCI_RFIS_SDBFIS        0x58    /* Set Device Bits FIS */
#define AHCI_RFIS_UFIS          0x60    /* Unknown FIS */

/* Command header (4.2.2), 32 bytes; the command list holds 32 of them (1 KiB, 1 KiB aligned). */
struct ahci_cmd_header {
    uint32_t dw0;       /* PRDTL 31:16, PMP 15:12, C 10, B 9, R 8, P 7, W 6, A 5, CFL 4:0 */
    uint32_t prdbc;     /* PRD Byte Count: bytes transferred, written by the HBA */
    uint32_t ctba;      /* Command Table Base Address, 128 B aligned */
    uint32_t ctbau;     /* ... upper 32 bits */
    uint32_t reserved[4];
};
#define AHCI_CMD_LIST_SIZE      1024
#define AHCI_CMD_LIST_ALIGN     1024
#define AHCI_CMDH_PRDTL_SHIFT   16
#define AHCI_CMDH_C             (1u << 10)  /* Clear Busy upon R_OK */
#define AHCI_CMDH_P             (1u << 7)   /* Prefetchable */
#define AHCI_CMDH_W             (1u << 6)   /* Write: direction is system memory -> device */
#define AHCI_CMDH_A             (1u << 5)   /* ATAPI */
#define AHCI_CMDH_CFL_MASK      0x1fu       /* Command FIS Length in DWORDs, 2..16 */

/* Physical Region Descriptor (4.2.3.3), 16 bytes. */
struct ahci_prd {
    uint32_t dba;       /* Data Base Address; bit 0 reserved: word aligned */
    uint32_t dbau;      /* ... upper 32 bits */
    uint32_t reserved;
    uint32_t dw3;       /* I 31, DBC 21:0 = byte count - 1, bit 0 always 1 (even count) */
};
#define AHCI_PRD_I              (1u << 31)  /* Interrupt on Completion: unused (polled) */
#define AHCI_PRD_DBC_MAX        (4u << 20)  /* 4 MiB: DBC is 22 bits, 0's based */
#define AHCI_PRD_DBC_MASK       0x3fffffu
#define AHCI_PRDTL_MAX          65535u      /* PRDTL is a 16-bit field (4.2.2) */
/* The driver's own limit on PRDs per command. The field allows 65535, but QEMU hands each
 * PRD to the host as one iovec, and preadv/pwritev refuse more than IOV_MAX (1024) of them:
 * a 1025-PRD command fails there with ERR/ABRT (measured, QEMU 7.2). Real HBAs take more,
 * but 1024 PRDs already describe 4 MiB of scattered pages, so nothing is lost: a longer
 * list is issued as more commands. */
#define AHCI_PRDS_PER_COMMAND   1024u

/* Command table (4.2.3): CFIS at 00h (up to 64 bytes), ACMD at 40h (16 bytes), reserved,
 * PRDT at 80h. 128 B aligned. */
struct ahci_cmd_table {
    uint8_t  cfis[64];
    uint8_t  acmd[16];
    uint8_t  reserved[48];
    struct ahci_prd prdt[];
};
#define AHCI_CMD_TABLE_ALIGN    128
#define AHCI_CMD_TABLE_HDR      0x80

/* Register Host to Device FIS (Serial ATA 3.x, section 10.3.4 "Register - Host to Device
 * FIS"; AHCI 4.2.3.1 carries it as the CFIS), 20 bytes = 5 DWORDs. */
struct sata_fis_h2d {
    uint8_t fis_type;       /* 27h */
    uint8_t pm_flags;       /* C 7 (command register update), PM Port 3:0 */
    uint8_t command;
    uint8_t features;       /* 7:0 */
    uint8_t lba0;           /* LBA 7:0 */
    uint8_t lba1;           /* LBA 15:8 */
    uint8_t lba2;           /* LBA 23:16 */
    uint8_t device;
    uint8_t lba3;           /* LBA 31:24 */
    uint8_t lba4;           /* LBA 39:32 */
    uint8_t lba5;           /* LBA 47:40 */
    uint8_t features_exp;   /* 15:8 */
    uint8_t count0;         /* Count 7:0 */
    uint8_t count1;         /* Count 15:8 */
    uint8_t icc;
    uint8_t control;
    uint8_t auxiliary[4];
};
#define SATA_FIS_TYPE_REG_H2D   0x27
#define SATA_FIS_TYPE_REG_D2H   0x34
#define SATA_FIS_H2D_C          0x80
#define SATA_FIS_H2D_DWORDS     5
/* Register Device to Host FIS: byte 2 Status, 3 Error, 4..6 LBA 23:0, 8..10 LBA 47:24. */

/* ---- ATA commands (ATA8-ACS, clause 7) ------------------------------------------------ */
#define ATA_CMD_IDENTIFY_DEVICE 0xEC    /* PIO data-in, 512 bytes */
#define ATA_CMD_READ_DMA_EXT    0x25    /* DMA, 48-bit LBA */
#define ATA_CMD_WRITE_DMA_EXT   0x35    /* DMA, 48-bit LBA */
#define ATA_CMD_FLUSH_CACHE_EXT 0xEA    /* non-data */
#define ATA_DEV_LBA             0x40    /* Device register bit 6: LBA addressing (48-bit cmds) */
#define ATA_SECTOR_SIZE         512
#define ATA_LBA48_MAX_SECTORS   65536u  /* Count 0000h means 65536 for 48-bit commands */
#define ATA_LBA48_LIMIT         (1ull << 48)

/* IDENTIFY DEVICE data words (ATA8-ACS, IDENTIFY DEVICE data table). */
#define ATA_ID_MODEL            27      /* words 27..46: model number, 40 ASCII, byte-swapped */
#define ATA_ID_MODEL_WORDS      20
#define ATA_ID_LBA28_SECTORS    60      /* words 60..61: total user addressable sectors */
#define ATA_ID_CMDSET_83        83      /* bit 10: 48-bit Address feature set supported */
#define ATA_ID_CMDSET_86        86      /* bit 10: 48-bit Address feature set enabled */
#define ATA_ID_LBA48_SECTORS    100     /* words 100..103: 48-bit total user addressable sectors */
#define ATA_ID_SECTOR_SIZE      106     /* bits 15:14 = 01b valid; bit 12: logical sector > 256 words */
#define ATA_ID_LOGICAL_SIZE     117     /* words 117..118: logical sector size in words */
#define ATA_ID_48BIT            (1u << 10)

/* ---- Timeouts (milliseconds). Every polled wait in ahci.c uses one of these. ---------- */

/* PxCMD.CR to clear after PxCMD.ST is cleared, and PxCMD.FR after PxCMD.FRE is cleared:
 * AHCI 10.1.2 (item 3) and 3.3.7 — "software should wait at least 500 milliseconds". */
#define AHCI_TIMEOUT_CR_CLEAR_MS        500
#define AHCI_TIMEOUT_FR_CLEAR_MS        500
/* PxCMD.FR to follow PxCMD.FRE = 1. The spec gives no bound (10.3.2); the HBA only has to
 * map the FIS area, so the stop bound above is borrowed. */
#define AHCI_TIMEOUT_FR_SET_MS          500
/* PxTFD.STS.BSY and DRQ to clear before PxCMD.ST may be set (AHCI 10.3.1). The device is
 * normally idle already (the host quiesced it); after a COMRESET a rotating disk may have
 * to spin up and run its power-on diagnostics, which takes seconds, so allow 10 s. */
#define AHCI_TIMEOUT_DEVICE_READY_MS    10000
/* COMRESET (AHCI 10.4.2): hold PxSCTL.DET = 1 for at least 1 ms (the SATA spec's COMRESET
 * length), then wait for PxSSTS.DET = 3. The device answers with COMINIT within 10 ms by
 * SATA OOB rules; allow 1 s for the link to come up, as phys retry speed negotiation. */
#define AHCI_COMRESET_ASSERT_US         1000
#define AHCI_TIMEOUT_LINK_UP_MS         1000
/* Commands the host left outstanding (PxCI/PxSACT) when it handed the port over: they
 * are given one data-command timeout to drain before the port is taken. */
#define AHCI_TIMEOUT_HOST_DRAIN_MS      AHCI_TIMEOUT_DATA_CMD_MS
/* IDENTIFY DEVICE: 512 bytes from the drive's memory; no media access. */
#define AHCI_TIMEOUT_IDENTIFY_MS        5000
/* READ/WRITE DMA EXT of up to 65536 sectors (32 MiB; the module uses 4 MiB). Even a slow
 * 20 MB/s rotating disk moves 32 MiB in under 2 s; the rest is for the drive's internal
 * error recovery (typically limited to 7 s by drives made for arrays, "ERC/TLER") before it
 * reports an error itself. A healthy 4 MiB write takes milliseconds, so this only decides
 * how long a dying disk can stall the module. */
#define AHCI_TIMEOUT_DATA_CMD_MS        10000
/* FLUSH CACHE EXT writes back the whole volatile write cache (ATA8-ACS: may take longer
 * than any single command). Up to 256 MiB of cache at a worst-case 10 MB/s is ~26 s. */
#define AHCI_TIMEOUT_FLUSH_MS           30000
/* After a task-file error with several commands issued: how long PxCI may stay unchanged
 * before the HBA counts as halted (a conforming HBA halts at once, 6.2.2.1; QEMU's runs on
 * through the commands still issued, and each of ours moves at most 32 MiB). */
#define AHCI_TIMEOUT_ERROR_SETTLE_MS    2000

#endif
