/* The IOMMU unit's translation status (iommu.h): one 32-bit MMIO read. */
#include "iommu.h"
#include "suspendos_abi.h"

int iommu_translating(uint32_t kind, uint64_t base, uint32_t *reg)
{
    *reg = 0;
    if (kind == SOS_IOMMU_VTD) {
        *reg = *(volatile uint32_t *)(uintptr_t)(base + VTD_GSTS);
        return (*reg & VTD_GSTS_TES) != 0;
    }
    if (kind == SOS_IOMMU_AMDVI) {
        *reg = *(volatile uint32_t *)(uintptr_t)(base + AMDVI_CONTROL);
        return (*reg & AMDVI_CONTROL_EN) != 0;
    }
    return 0;
}

const char *iommu_unit_name(uint32_t kind)
{
    return kind == SOS_IOMMU_VTD ? "VT-d" : "AMD-Vi";
}

const char *iommu_register_name(uint32_t kind)
{
    return kind == SOS_IOMMU_VTD ? "GSTS" : "Control";
}
