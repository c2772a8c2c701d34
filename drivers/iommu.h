/*
 * The IOMMU unit over the disk controller, read before the first DMA.
 *
 * The drivers hand the controller physical addresses. While an IOMMU translates the
 * controller's requests, those addresses go through the host's I/O page tables instead:
 * the writes fault or, worse, read other memory. Linux's syscore_suspend turns translation
 * off on both vendors' units (docs/LINUX.md, IOMMU), but that is the host's side effect, so
 * the payload and the resume loader read the unit's status themselves and stop with
 * SOS_STATUS_IOMMU_TRANSLATING rather than trust it.
 */
#ifndef SOS_IOMMU_H
#define SOS_IOMMU_H
#include <stdint.h>

/* VT-d (Intel VT-d spec, 11.4.5): Global Status Register, bit 31 TES (translation enable
 * status). AMD-Vi (AMD IOMMU spec, MMIO offset 0018h): IOMMU Control Register, bit 0
 * IommuEn; while it is clear the unit passes DMA through untranslated. */
#define VTD_GSTS             0x1C
#define VTD_GSTS_TES         (1u << 31)
#define AMDVI_CONTROL        0x18
#define AMDVI_CONTROL_EN     (1u << 0)

/* What a caller prints when iommu_translating() says yes: unit name, base, register name
 * and the register's value. */
#define IOMMU_TRANSLATING_FMT "%s unit %lx translates DMA (%s %x)"

/* Non-zero while the unit of `kind` (SOS_IOMMU_*) at `base` translates; *reg gets the status
 * register's value. SOS_IOMMU_NONE: 0 without a read. `base` must be mapped uncached. */
int iommu_translating(uint32_t kind, uint64_t base, uint32_t *reg);
/* "VT-d" / "AMD-Vi", and the register iommu_translating() read: "GSTS" / "Control". */
const char *iommu_unit_name(uint32_t kind);
const char *iommu_register_name(uint32_t kind);

#endif
