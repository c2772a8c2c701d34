/*
 * NVMe register, queue entry and data structure layouts the polled driver uses.
 * Reference: NVM Express Base Specification 1.4 (sections cited as numbers; the same
 * layouts are in 2.0, renumbered).
 */
#ifndef SOS_NVME_REGS_H
#define SOS_NVME_REGS_H
#include <stdint.h>

/* PCI class code of an NVMe controller: mass storage / NVM / NVM Express (2.1.5 CC:
 * 01h/08h/02h). BAR0/BAR1 hold the 64-bit MLBAR/MUBAR (2.1.10, 2.1.11). */
#define NVME_PCI_CLASS          0x01
#define NVME_PCI_SUBCLASS       0x08
#define NVME_PCI_PROG_IF        0x02

/* Controller registers (3.1, figure 78). */
#define NVME_REG_CAP            0x00    /* 64 bits */
#define NVME_REG_VS             0x08
#define NVME_REG_INTMS          0x0C
#define NVME_REG_CC             0x14
#define NVME_REG_CSTS           0x1C
#define NVME_REG_AQA            0x24
#define NVME_REG_ASQ            0x28    /* 64 bits */
#define NVME_REG_ACQ            0x30    /* 64 bits */
#define NVME_REG_DOORBELL       0x1000  /* SQ y tail: 0x1000 + (2y) * (4 << DSTRD) (3.1.24) */

/* CAP (3.1.1). */
#define NVME_CAP_MQES(c)        ((uint32_t)((c) & 0xffff))          /* 0's based */
#define NVME_CAP_CQR            (1ull << 16)
#define NVME_CAP_TO(c)          ((uint32_t)(((c) >> 24) & 0xff))    /* 500 ms units */
#define NVME_CAP_DSTRD(c)       ((uint32_t)(((c) >> 32) & 0xf))
#define NVME_CAP_CSS_NVM        (1ull << 37)
#define NVME_CAP_MPSMIN(c)      ((uint32_t)(((c) >> 48) & 0xf))     /* 2^(12 + n) bytes */

/* CC (3.1.5). */
#define NVME_CC_EN              (1u << 0)
#define NVME_CC_CSS_NVM         (0u << 4)
#define NVME_CC_MPS_4K          (0u << 7)
#define NVME_CC_AMS_RR          (0u << 11)
#define NVME_CC_SHN_MASK        (3u << 14)
#define NVME_CC_SHN_NORMAL      (1u << 14)
#define NVME_CC_IOSQES_64       (6u << 16)  /* 2^6 = 64-byte SQ entries */
#define NVME_CC_IOCQES_16       (4u << 20)  /* 2^4 = 16-byte CQ entries */

/* CSTS (3.1.6). */
#define NVME_CSTS_RDY           (1u << 0)
#define NVME_CSTS_CFS           (1u << 1)
#define NVME_CSTS_SHST_MASK     (3u << 2)
#define NVME_CSTS_SHST_DONE     (2u << 2)

/* Submission queue entry (4.2, figure 105), 64 bytes. */
struct nvme_sqe {
    uint32_t cdw0;              /* opcode 7:0, FUSE 9:8, PSDT 15:14 (0: PRPs), CID 31:16 */
    uint32_t nsid;
    uint32_t cdw2, cdw3;
    uint64_t mptr;
    uint64_t prp1, prp2;        /* DPTR as PRP entry 1 and 2 (4.3) */
    uint32_t cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
};

/* Completion queue entry (4.6, figure 124), 16 bytes. */
struct nvme_cqe {
    uint32_t dw0, dw1;
    uint16_t sqhd, sqid;
    uint16_t cid;
    uint16_t status;            /* bit 0: phase tag; 15:1: status field (SC 8:1, SCT 11:9,
                                   CRD 13:12, M 14, DNR 15) */
};

_Static_assert(sizeof(struct nvme_sqe) == 64, "SQE is 64 bytes");
_Static_assert(sizeof(struct nvme_cqe) == 16, "CQE is 16 bytes");

/* Admin commands (5, figure 139). */
#define NVME_ADMIN_DELETE_SQ    0x00
#define NVME_ADMIN_CREATE_SQ    0x01
#define NVME_ADMIN_DELETE_CQ    0x04
#define NVME_ADMIN_CREATE_CQ    0x05
#define NVME_ADMIN_IDENTIFY     0x06
#define NVME_ADMIN_SET_FEATURES 0x09    /* 5.21 */
#define NVME_ADMIN_GET_FEATURES 0x0A    /* 5.13 */
/* NVM I/O commands (6, figure 346). */
#define NVME_CMD_FLUSH          0x00
#define NVME_CMD_WRITE          0x01
#define NVME_CMD_READ           0x02

/* Identify CNS values (5.15.1, figure 244). */
#define NVME_CNS_NAMESPACE      0x00
#define NVME_CNS_CONTROLLER     0x01

/* Identify Controller data (5.15.2.1, figure 247): byte offsets. */
#define NVME_IDC_SN             4       /* 20 ASCII bytes */
#define NVME_IDC_MN             24      /* 40 ASCII bytes */
#define NVME_IDC_MDTS           77      /* 2^n units of CAP.MPSMIN; 0: no limit */
#define NVME_IDC_HMPRE          272     /* 32 bits: Host Memory Buffer Preferred Size, 4 KiB
                                           units; 0: the controller wants no HMB */
#define NVME_IDC_NN             516     /* 32 bits: number of namespaces */
#define NVME_IDC_VWC            525     /* bit 0: volatile write cache present */

/* Identify Namespace data (5.15.2.2, figure 245): byte offsets. */
#define NVME_IDN_NSZE           0       /* 64 bits, in logical blocks */
#define NVME_IDN_NLBAF          25      /* 0's based count of LBA formats */
#define NVME_IDN_FLBAS          26      /* bits 3:0 (+ 6:5 high bits): the format in use */
#define NVME_IDN_LBAF           128     /* 4 bytes each: MS 15:0, LBADS 23:16 (2^n), RP */

/* CDW10 of Create I/O Completion / Submission Queue (5.3, 5.4): QSIZE 31:16 (0's
 * based), QID 15:0; CDW11: CQ: IV 31:16, IEN bit 1, PC bit 0; SQ: CQID 31:16, PC bit 0. */
#define NVME_QUEUE_PC           (1u << 0)

/* Features: CDW10 bits 7:0 are the Feature Identifier (5.13 Get Features: SEL 10:8, 000b
 * the current value; 5.21 Set Features: SV bit 31, 0 not saved). */
#define NVME_FID_HMB            0x0D    /* Host Memory Buffer (5.21.1.13) */
/* HMB: Set Features CDW11, and Dword 0 of a Get Features completion (5.21.1.13). Get
 * Features also returns the 4 KiB Host Memory Buffer Attributes structure (HSIZE, the
 * descriptor list) in its data buffer, so it needs one. */
#define NVME_HMB_EHM            (1u << 0)   /* Enable Host Memory */
#define NVME_HMB_MR             (1u << 1)   /* Memory Return */

#endif
