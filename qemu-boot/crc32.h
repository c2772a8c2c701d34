/* CRC-32 as zlib computes it (reflected polynomial 0xEDB88320, init and final XOR ~0). */
#ifndef HOST_CRC32_H
#define HOST_CRC32_H
#include <stdint.h>

/* Continue a CRC: start with crc = 0; feed pieces in order. */
uint32_t crc32_update(uint32_t crc, const void *data, uint64_t len);

#endif
