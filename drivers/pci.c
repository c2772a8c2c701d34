/*
 * PCI configuration mechanism #1 (PCI Local Bus Specification 3.0, section 3.2.2.3.2):
 * write the enable bit, bus, device, function and dword-aligned register to CONFIG_ADDRESS,
 * then access CONFIG_DATA; byte and word accesses go to CONFIG_DATA + (reg & 3).
 * Nothing here is reentrant: the suspend module runs on one CPU with interrupts off.
 */
#include "pci.h"
#include "port_io.h"

#define PCI_CONFIG_ENABLE 0x80000000u

static void pci_select(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t reg)
{
    outl(PCI_CONFIG_ADDRESS, PCI_CONFIG_ENABLE | ((uint32_t)bus << 16) |
                             ((uint32_t)(dev & 0x1f) << 11) | ((uint32_t)(fn & 0x7) << 8) |
                             (reg & 0xfc));
}

uint8_t pci_read8(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t reg)
{
    pci_select(bus, dev, fn, reg);
    return inb(PCI_CONFIG_DATA + (reg & 3));
}

uint16_t pci_read16(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t reg)
{
    pci_select(bus, dev, fn, reg);
    return inw(PCI_CONFIG_DATA + (reg & 2));
}

uint32_t pci_read32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t reg)
{
    pci_select(bus, dev, fn, reg);
    return inl(PCI_CONFIG_DATA);
}

void pci_write8(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t reg, uint8_t v)
{
    pci_select(bus, dev, fn, reg);
    outb(PCI_CONFIG_DATA + (reg & 3), v);
}

void pci_write16(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t reg, uint16_t v)
{
    pci_select(bus, dev, fn, reg);
    outw(PCI_CONFIG_DATA + (reg & 2), v);
}

void pci_write32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t reg, uint32_t v)
{
    pci_select(bus, dev, fn, reg);
    outl(PCI_CONFIG_DATA, v);
}
