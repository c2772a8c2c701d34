/*
 * The compiler's vector intrinsics without the C library's headers. <immintrin.h> pulls in
 * <mm_malloc.h>, which includes <stdlib.h> for _mm_malloc; a machine with gcc but without
 * libc6-dev (a minimal Debian that builds kernel modules, where `suspendos hibernate` builds
 * the payload) has no <stdlib.h>. Defining that header's include guard first leaves it
 * out; nothing here calls _mm_malloc. The toolchain builds with -nostdinc, so a libc
 * header creeping back in fails every build, not only such a machine's.
 */
#ifndef SOS_INTRINSICS_H
#define SOS_INTRINSICS_H
#ifndef _MM_MALLOC_H_INCLUDED
#define _MM_MALLOC_H_INCLUDED
#endif
#include <immintrin.h>
#endif
