/*
 * The suspend module blob (suspendos/formats/blob.py): verified in place where the loader
 * put multiboot module 0, then its segments copied into the reserved region.
 */
#ifndef HOST_BLOB_H
#define HOST_BLOB_H
#include <stdint.h>
#include "suspendos_abi.h"

struct blob {
    const uint8_t *data;                    /* the module's bytes */
    uint64_t size;
    const struct sos_blob_header *header;
    const struct sos_blob_segment *segments;
};

/* Checks magic, version, sizes, CRC32, the segment table and the entry/handoff addresses;
 * on failure prints @@ERROR and exits EXIT_BAD_BLOB. */
void blob_verify(const void *data, uint64_t size, struct blob *out);

/* Zeroes the reserved region, copies each segment to its address (zero-filled up to
 * mem_size) and returns the handoff block after checking the magic/revision/size the blob
 * initialised it with (EXIT_BAD_BLOB otherwise). */
struct sos_handoff *blob_load(const struct blob *b);

#endif
