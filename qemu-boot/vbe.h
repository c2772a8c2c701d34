/*
 * Bochs VBE (the DISPI interface of QEMU's -vga std, "bochs-display" and Bochs itself):
 * switch the adapter to a linear framebuffer mode, so the suspend module's plugins have
 * something to draw on. The framebuffer is the VGA's BAR0 (the tool reads its address with
 * QMP query-pci); its pitch is the virtual width times the bytes per pixel.
 */
#ifndef HOST_VBE_H
#define HOST_VBE_H
#include <stdint.h>

struct vbe_mode {
    uint16_t width, height, bpp;
    uint32_t pitch;             /* bytes per row */
};

/* Set width x height x bpp (bpp 8, 15, 16, 24 or 32), linear framebuffer on, cleared.
 * Returns 0 and the mode as the adapter reports it, or -1 if there is no Bochs VBE
 * adapter or it does not take the mode. */
int vbe_set_mode(unsigned width, unsigned height, unsigned bpp, struct vbe_mode *out);

#endif
