/*
 * Bochs VBE mode setting through the DISPI registers: an index port and a data port, 16-bit
 * accesses (Bochs vbe.h / QEMU hw/display/vga.c vbe_ioport_*; constants in QEMU's
 * include/hw/display/bochs-vbe.h). To change the mode: disable, write XRES, YRES, BPP,
 * enable with LFB_ENABLED (the adapter recomputes the virtual width and clears video memory
 * unless NOCLEARMEM is set), then read back what it took.
 */
#include "vbe.h"
#include "port_io.h"

#define VBE_DISPI_IOPORT_INDEX      0x01ce
#define VBE_DISPI_IOPORT_DATA       0x01cf

#define VBE_DISPI_INDEX_ID          0x0
#define VBE_DISPI_INDEX_XRES        0x1
#define VBE_DISPI_INDEX_YRES        0x2
#define VBE_DISPI_INDEX_BPP         0x3
#define VBE_DISPI_INDEX_ENABLE      0x4
#define VBE_DISPI_INDEX_BANK        0x5
#define VBE_DISPI_INDEX_VIRT_WIDTH  0x6
#define VBE_DISPI_INDEX_VIRT_HEIGHT 0x7
#define VBE_DISPI_INDEX_X_OFFSET    0x8
#define VBE_DISPI_INDEX_Y_OFFSET    0x9

#define VBE_DISPI_ID0               0xb0c0  /* IDs the DISPI interface answers: 0xb0c0..5 */
#define VBE_DISPI_ID5               0xb0c5

#define VBE_DISPI_DISABLED          0x00
#define VBE_DISPI_ENABLED           0x01
#define VBE_DISPI_LFB_ENABLED       0x40

static uint16_t dispi_read(uint16_t index)
{
    outw(VBE_DISPI_IOPORT_INDEX, index);
    return inw(VBE_DISPI_IOPORT_DATA);
}

static void dispi_write(uint16_t index, uint16_t value)
{
    outw(VBE_DISPI_IOPORT_INDEX, index);
    outw(VBE_DISPI_IOPORT_DATA, value);
}

int vbe_set_mode(unsigned width, unsigned height, unsigned bpp, struct vbe_mode *out)
{
    uint16_t id = dispi_read(VBE_DISPI_INDEX_ID);
    if (id < VBE_DISPI_ID0 || id > VBE_DISPI_ID5)
        return -1;
    dispi_write(VBE_DISPI_INDEX_ENABLE, VBE_DISPI_DISABLED);
    dispi_write(VBE_DISPI_INDEX_XRES, (uint16_t)width);
    dispi_write(VBE_DISPI_INDEX_YRES, (uint16_t)height);
    dispi_write(VBE_DISPI_INDEX_BPP, (uint16_t)bpp);
    dispi_write(VBE_DISPI_INDEX_BANK, 0);
    dispi_write(VBE_DISPI_INDEX_X_OFFSET, 0);
    dispi_write(VBE_DISPI_INDEX_Y_OFFSET, 0);
    dispi_write(VBE_DISPI_INDEX_ENABLE, VBE_DISPI_ENABLED | VBE_DISPI_LFB_ENABLED);
    out->width = dispi_read(VBE_DISPI_INDEX_XRES);
    out->height = dispi_read(VBE_DISPI_INDEX_YRES);
    out->bpp = dispi_read(VBE_DISPI_INDEX_BPP);
    out->pitch = (uint32_t)dispi_read(VBE_DISPI_INDEX_VIRT_WIDTH) * ((out->bpp + 7) / 8);
    if (out->width != width || out->height != height || out->bpp != bpp ||
        !(dispi_read(VBE_DISPI_INDEX_ENABLE) & VBE_DISPI_ENABLED))
        return -1;
    return 0;
}
