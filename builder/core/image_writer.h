#ifndef SOS_IMAGE_WRITER_H
#define SOS_IMAGE_WRITER_H
#include <stdint.h>

/* Write the image through the open disk (drivers/disk.h). */
uint32_t write_image(void);
uint64_t chunk_header_size(uint32_t pages, int raw_zero_copy);

#endif
