/*
 * PCI configuration space through configuration mechanism #1 (the 0xCF8 address /
 * 0xCFC data port pair, PCI Local Bus Specification 3.0, section 3.2.2.3.2).
 * Only bus 0..255 / device 0..31 / function 0..7 and the first 256 bytes are reachable.
 */
#ifndef SOS_PCI_H
#define SOS_PCI_H
#include <stdint.h>

#define PCI_CONFIG_ADDRESS   0xCF8
#define PCI_CONFIG_DATA      0xCFC

/* Type 0 header offsets (PCI 3.0, section 6.1). */
#define PCI_VENDOR_ID        0x00   /* 16 bits; 0xFFFF when no function answers */
#define PCI_DEVICE_ID        0x02
#define PCI_COMMAND          0x04   /* 16 bits */
#define PCI_STATUS           0x06
#define PCI_REVISION_ID      0x08
#define PCI_PROG_IF          0x09   /* class code: programming interface */
#define PCI_SUBCLASS         0x0A   /* class code: sub-class */
#define PCI_CLASS            0x0B   /* class code: base class */
#define PCI_HEADER_TYPE      0x0E
#define PCI_BAR0             0x10
#define PCI_BAR5             0x24   /* AHCI: ABAR (AHCI 1.3.1, section 2.1.11) */

/* Command register bits (PCI 3.0, section 6.2.2). */
#define PCI_COMMAND_IO       0x0001 /* I/O Space enable */
#define PCI_COMMAND_MEMORY   0x0002 /* Memory Space enable */
#define PCI_COMMAND_MASTER   0x0004 /* Bus Master enable */
#define PCI_COMMAND_INTX_DISABLE 0x0400

#define PCI_BAR_IO           0x1    /* bit 0: I/O space indicator */
#define PCI_BAR_MEM_MASK     (~0xFu) /* memory BAR: bits 3:0 are type/prefetchable */

uint8_t  pci_read8(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t reg);
uint16_t pci_read16(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t reg);
uint32_t pci_read32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t reg);
void     pci_write8(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t reg, uint8_t v);
void     pci_write16(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t reg, uint16_t v);
void     pci_write32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t reg, uint32_t v);

#endif
