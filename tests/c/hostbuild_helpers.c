/*
 * Host build of the payload's codecs, for the Python tests and the benchmark:
 * builder/core/{lz4,xxh64}.c compiled hosted (they then use libc's
 * memcpy/memset) together with this file into a shared library for ctypes.
 * Here: the sizes of caller-provided structures, so Python need not guess.
 */
#include <stddef.h>
#include "../../builder/core/lz4.h"
#include "../../builder/core/xxh64.h"

size_t hb_xxh64_state_size(void) { return sizeof(struct xxh64_state); }
int hb_lz4_work_size(void) { return LZ4_WORK_SIZE; }
int hb_lz4_high_work_size(void) { return LZ4_HIGH_WORK_SIZE; }
