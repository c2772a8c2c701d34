/*
 * Time for polled deadlines: the TSC, calibrated once against PIT channel 2 unless the
 * caller knows its frequency. Deadlines are absolute TSC values; comparisons are
 * wrap-safe. Assumes one CPU and a TSC that ticks at a constant rate while the module
 * runs (true of every CPU with an invariant TSC, and of QEMU TCG, whose TSC is the host's).
 */
#ifndef SOS_TIMER_H
#define SOS_TIMER_H
#include <stdint.h>

/* PIT input clock (Intel 8254 as wired in every PC: 14.31818 MHz / 12). */
#define TIMER_PIT_HZ            1193182u
/* Calibration gate: 11932 PIT ticks = 10.0 ms; three gates, the median is kept. */
#define TIMER_CALIBRATE_TICKS   11932u
#define TIMER_CALIBRATE_RUNS    3
/* Bounds of the calibration wait, independent of the TSC being calibrated: give up after
 * this many reads of port 0x61 (about 10 s even at 1 us per I/O read on real hardware), or
 * once the TSC has advanced this far (10 ms of it would mean a 1.7 THz TSC). */
#define TIMER_CALIBRATE_MAX_POLLS  10000000u
#define TIMER_CALIBRATE_MAX_CYCLES (1ull << 34)
/* Believable TSC rates; a calibration outside them is discarded. */
#define TIMER_MIN_HZ            100000000ull    /* 100 MHz */
#define TIMER_MAX_HZ            20000000000ull  /* 20 GHz */
/* Used when calibration fails. Deliberately high: overestimating the rate makes every
 * deadline longer than asked, never shorter, so no healthy wait times out early. */
#define TIMER_FALLBACK_HZ       5000000000ull

void     timer_init(uint64_t tsc_hz);   /* 0: calibrate against PIT channel 2 (3 x 10 ms) */
int      timer_calibrated(void);        /* 1 if timer_init measured or was told the rate */
uint64_t timer_tsc(void);
uint64_t timer_hz(void);
uint64_t timer_deadline_us(uint64_t us);  /* the TSC value us microseconds from now */
int      timer_expired(uint64_t deadline);
void     timer_udelay(uint64_t us);
uint64_t timer_tsc_to_us(uint64_t cycles);

#endif
