/*
 * The per-page checksum table: one u64 per usable page (layout.h), recorded after the
 * fill just before the handoff and compared after it returns, or after a resume
 * re-enters the host through the same call.
 */
#ifndef HOST_PAGESUM_H
#define HOST_PAGESUM_H
#include <stdint.h>
#include "layout.h"

#define MAX_CHANGED_PRINTED 16

/* Checksum every FILL and KEEP page into the table; returns the RAM hash: a hash of the
 * FILL pages' checksums in address order, equal for equal seed, mix and layout. */
uint64_t pagesum_record(const struct layout *l);

/* Recompute and compare; prints "@@CHANGED <addr>" for the first MAX_CHANGED_PRINTED
 * changed pages and returns how many changed. */
uint64_t pagesum_compare(const struct layout *l);

#endif
