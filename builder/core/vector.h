/*
 * The vector units in the payload: which ChaCha20 keystream path the CPU allows, and the
 * host's vector state saved on entry and restored before every way back to the host
 * (normal return and fault, boot CPU and APs alike). See vector.c.
 */
#ifndef SOS_VECTOR_H
#define SOS_VECTOR_H
#include <stdint.h>

/* On every CPU before it runs payload code that may use vector registers: cpu 0 is the
 * boot CPU (it also chooses the path for all CPUs, so it goes first), slot + 1 an AP.
 * Returns the chosen path (CHACHA20_SCALAR, _SSE2 or _AVX2). */
int vector_enter(unsigned cpu);
/* Back to the host's vector state on this CPU; does nothing when not entered (or left),
 * so every exit path may call it. */
void vector_leave(unsigned cpu);

#endif
