#ifndef SOS_RAW_CEILING_H
#define SOS_RAW_CEILING_H
#include <stdint.h>

/* Stream a constant buffer through the disk and extents (handoff RAW_CEILING). */
uint32_t raw_ceiling(void);

#endif
