/*
 * virtio 1.x over PCI, the split virtqueue and the block device, as the polled driver uses
 * them. Reference: Virtual I/O Device (VIRTIO) Version 1.1 (sections cited as numbers).
 */
#ifndef SOS_VIRTIO_REGS_H
#define SOS_VIRTIO_REGS_H
#include <stdint.h>

#define VIRTIO_PCI_VENDOR           0x1AF4
#define VIRTIO_PCI_BLK_TRANSITIONAL 0x1001  /* 4.1.2.1 */
#define VIRTIO_PCI_BLK_MODERN       0x1042  /* 0x1040 + device id 2 */

/* Vendor-specific PCI capability describing a structure (4.1.4). */
#define PCI_STATUS_CAP_LIST     0x10    /* PCI status bit 4 */
#define PCI_CAP_PTR             0x34
#define PCI_CAP_ID_VNDR         0x09
#define VIRTIO_CAP_CFG_TYPE     3       /* byte offsets inside the capability */
#define VIRTIO_CAP_BAR          4
#define VIRTIO_CAP_OFFSET       8
#define VIRTIO_CAP_LENGTH       12
#define VIRTIO_CAP_NOTIFY_MULT  16      /* notify capability only (4.1.4.4) */
#define VIRTIO_PCI_CAP_COMMON   1
#define VIRTIO_PCI_CAP_NOTIFY   2
#define VIRTIO_PCI_CAP_ISR      3
#define VIRTIO_PCI_CAP_DEVICE   4

/* Common configuration structure (4.1.4.3): byte offsets. */
#define VIRTIO_COMMON_DFSELECT  0x00
#define VIRTIO_COMMON_DF        0x04
#define VIRTIO_COMMON_GFSELECT  0x08
#define VIRTIO_COMMON_GF        0x0C
#define VIRTIO_COMMON_MSIX      0x10
#define VIRTIO_COMMON_NUMQ      0x12
#define VIRTIO_COMMON_STATUS    0x14
#define VIRTIO_COMMON_Q_SELECT  0x16
#define VIRTIO_COMMON_Q_SIZE    0x18
#define VIRTIO_COMMON_Q_MSIX    0x1A
#define VIRTIO_COMMON_Q_ENABLE  0x1C
#define VIRTIO_COMMON_Q_NOFF    0x1E
#define VIRTIO_COMMON_Q_DESC    0x20
#define VIRTIO_COMMON_Q_AVAIL   0x28
#define VIRTIO_COMMON_Q_USED    0x30
#define VIRTIO_MSI_NO_VECTOR    0xFFFF

/* Device status (2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE   1
#define VIRTIO_STATUS_DRIVER        2
#define VIRTIO_STATUS_DRIVER_OK     4
#define VIRTIO_STATUS_FEATURES_OK   8
#define VIRTIO_STATUS_NEEDS_RESET   64
#define VIRTIO_STATUS_FAILED        128

/* Feature bits (5.2.3, 6). */
#define VIRTIO_BLK_F_SEG_MAX    2
#define VIRTIO_BLK_F_RO         5
#define VIRTIO_BLK_F_BLK_SIZE   6
#define VIRTIO_BLK_F_FLUSH      9
#define VIRTIO_F_VERSION_1      32
#define VIRTIO_F_ACCESS_PLATFORM 33

/* Block device configuration (5.2.4): byte offsets. capacity counts 512-byte sectors. */
#define VIRTIO_BLK_CFG_CAPACITY 0
#define VIRTIO_BLK_CFG_SEG_MAX  12
#define VIRTIO_BLK_CFG_BLK_SIZE 20

/* Requests (5.2.6): header, data, status byte. sector is always in 512-byte units. */
struct virtio_blk_req_hdr {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};
#define VIRTIO_BLK_T_IN         0
#define VIRTIO_BLK_T_OUT        1
#define VIRTIO_BLK_T_FLUSH      4
#define VIRTIO_BLK_S_OK         0
#define VIRTIO_BLK_S_IOERR      1
#define VIRTIO_BLK_S_UNSUPP     2

/* Split virtqueue (2.6): descriptor table, driver (avail) ring, device (used) ring. */
struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};
#define VIRTQ_DESC_F_NEXT       1
#define VIRTQ_DESC_F_WRITE      2
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

struct virtq_used_elem {
    uint32_t id;
    uint32_t len;
};

#endif
