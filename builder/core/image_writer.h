#ifndef SOS_IMAGE_WRITER_H
#define SOS_IMAGE_WRITER_H
#include <stdint.h>

struct ahci;
uint32_t write_image(struct ahci *disk);
uint64_t chunk_header_size(uint32_t pages, int raw_zero_copy);

#endif
