/*
 * TSC timekeeping with a PIT channel 2 calibration.
 *
 * Calibration uses the 8254 PIT channel 2, whose gate and output the PC exposes through
 * port 0x61 (NMI status and control register: bit 0 = timer 2 gate, bit 1 = speaker data
 * enable, bit 5 = timer 2 output). Channel 2 is programmed in mode 0 ("interrupt on terminal
 * count", Intel 8254 datasheet): OUT goes low when the mode is written and high when the
 * count reaches zero, so the TSC delta between loading the count and OUT rising spans a
 * known number of PIT ticks. The speaker stays off (bit 1 clear) and port 0x61 is put back.
 *
 * All state is two words; timer_init must run before any deadline is computed.
 */
#include "timer.h"
#include "port_io.h"

#define PIT_CH2_DATA        0x42
#define PIT_MODE_COMMAND    0x43
#define PIT_SEL_CH2         0x80    /* bits 7:6 = 10b: channel 2 */
#define PIT_ACCESS_LOHI     0x30    /* bits 5:4 = 11b: low byte then high byte */
#define PIT_MODE0           0x00    /* bits 3:1 = 000b: interrupt on terminal count */
#define PORT_NMI_SC         0x61
#define NMI_SC_TIM2_GATE    0x01
#define NMI_SC_SPKR_DAT     0x02
#define NMI_SC_TIM2_OUT     0x20

static uint64_t tsc_hz = TIMER_FALLBACK_HZ;
static int tsc_calibrated;

uint64_t timer_tsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi) :: "memory");
    return ((uint64_t)hi << 32) | lo;
}

/* One gate of TIMER_CALIBRATE_TICKS PIT ticks; 0 if it did not end within its bounds. */
static uint64_t calibrate_once(void)
{
    uint8_t saved = inb(PORT_NMI_SC);
    uint64_t t0, t1;
    uint32_t polls = 0;
    int done = 0;

    /* Gate high and speaker off first: in mode 0 the count then starts as soon as its
     * second byte is written, so t0 is taken right after that write. */
    outb(PORT_NMI_SC, (saved & ~NMI_SC_SPKR_DAT) | NMI_SC_TIM2_GATE);
    outb(PIT_MODE_COMMAND, PIT_SEL_CH2 | PIT_ACCESS_LOHI | PIT_MODE0);
    outb(PIT_CH2_DATA, TIMER_CALIBRATE_TICKS & 0xff);
    outb(PIT_CH2_DATA, TIMER_CALIBRATE_TICKS >> 8);
    t0 = timer_tsc();
    t1 = t0;
    while (polls++ < TIMER_CALIBRATE_MAX_POLLS) {
        if (inb(PORT_NMI_SC) & NMI_SC_TIM2_OUT) {
            t1 = timer_tsc();
            done = 1;
            break;
        }
        if (timer_tsc() - t0 > TIMER_CALIBRATE_MAX_CYCLES)
            break;
    }
    outb(PORT_NMI_SC, saved);
    if (!done || t1 <= t0)
        return 0;
    return (t1 - t0) * TIMER_PIT_HZ / TIMER_CALIBRATE_TICKS;
}

/* The median of TIMER_CALIBRATE_RUNS gates: one run disturbed by an SMI, a preempted
 * vCPU or a slow I/O exit cannot skew the result either way. */
static uint64_t calibrate_pit(void)
{
    uint64_t r[TIMER_CALIBRATE_RUNS], t;
    for (int i = 0; i < TIMER_CALIBRATE_RUNS; i++) {
        r[i] = calibrate_once();
        if (!r[i])
            return 0;
        for (int j = i; j > 0 && r[j - 1] > r[j]; j--) {
            t = r[j];
            r[j] = r[j - 1];
            r[j - 1] = t;
        }
    }
    return r[TIMER_CALIBRATE_RUNS / 2];
}

void timer_init(uint64_t hz)
{
    if (!hz)
        hz = calibrate_pit();
    if (hz >= TIMER_MIN_HZ && hz <= TIMER_MAX_HZ) {
        tsc_hz = hz;
        tsc_calibrated = 1;
    } else {
        tsc_hz = TIMER_FALLBACK_HZ;
        tsc_calibrated = 0;
    }
}

int timer_calibrated(void)
{
    return tsc_calibrated;
}

uint64_t timer_hz(void)
{
    return tsc_hz;
}

/* us * hz / 1e6 without a 128-bit division (no libgcc here): split whole seconds off. */
static uint64_t us_to_cycles(uint64_t us)
{
    return (us / 1000000u) * tsc_hz + (us % 1000000u) * tsc_hz / 1000000u;
}

uint64_t timer_tsc_to_us(uint64_t cycles)
{
    return (cycles / tsc_hz) * 1000000u + (cycles % tsc_hz) * 1000000u / tsc_hz;
}

uint64_t timer_deadline_us(uint64_t us)
{
    return timer_tsc() + us_to_cycles(us);
}

int timer_expired(uint64_t deadline)
{
    return (int64_t)(timer_tsc() - deadline) >= 0;
}

void timer_udelay(uint64_t us)
{
    uint64_t deadline = timer_deadline_us(us);
    while (!timer_expired(deadline))
        __asm__ volatile("pause");
}
