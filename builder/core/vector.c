/*
 * The vector units (SDM vol. 1 ch. 13, "Managing state using the XSAVE feature set").
 *
 * The host's x87/SSE/AVX state belongs to the host: Linux may hold a task's user registers
 * in them, the test host fills them with canaries. Everything else in the payload is built
 * -mgeneral-regs-only; only ChaCha20's keystream functions (chacha20_simd.h) and LZ4's
 * long-match counter (lz4.c, AVX2) use xmm or ymm registers, and only after vector_enter on
 * that CPU:
 *
 *  1. save: when the host runs with CR4.OSXSAVE, XSAVE of every component the payload's
 *     instructions can change: x87, SSE and AVX, plus ZMM_Hi256 when the host has AVX-512
 *     on, since a VEX instruction zeroes bits 511:256 of the zmm register it writes (SDM
 *     vol. 1 15.5). Masked by the host's XCR0, in the standard (non-compacted) format whose
 *     offsets CPUID leaf 0Dh gives (13.4.3). Without CR4.OSXSAVE: FXSAVE (x87 and SSE).
 *  2. enable: for AVX2, CR4.OSXSAVE and XCR0 bits x87|SSE|AVX (13.3: AVX needs SSE), set
 *     only where the host left them off.
 *  3. leave: XCR0 and CR4 back to the host's values, then XRSTOR (same mask) or FXRSTOR.
 *
 * The path is the boot CPU's choice (CPUID is the same on every CPU of the machine): AVX2
 * when CPUID offers XSAVE, AVX and AVX2 and the save area fits; SSE2 (part of x86-64) when
 * CR4.OSFXSR is set and CR0.EM and CR0.TS are clear (else SSE instructions fault, SDM vol.
 * 3 2.5); scalar otherwise. The resume loader uses it too, on every CPU that verifies and
 * decrypts: its boot CPU leaves before it loads the saved CPU context, its APs end in INIT.
 */
#include "vector.h"
#include "chacha20poly1305.h"
#include "lz4.h"
#include "printf.h"
#include "string.h"
#include "suspendos_abi.h"

#define CR0_EM           (1ull << 2)
#define CR0_TS           (1ull << 3)
#define CR4_OSFXSR       (1ull << 9)
#define CR4_OSXSAVE      (1ull << 18)
/* XCR0 / XSAVE state-component bits (SDM vol. 1 13.1). */
#define XS_X87           (1ull << 0)
#define XS_SSE           (1ull << 1)
#define XS_AVX           (1ull << 2)
#define XS_ZMM_HI256     (1ull << 6)
#define XS_TOUCHED       (XS_X87 | XS_SSE | XS_AVX | XS_ZMM_HI256)
/* CPUID.1:ECX and CPUID.(7,0):EBX feature bits (SDM vol. 2A, CPUID). */
#define CPUID1_XSAVE     (1u << 26)
#define CPUID1_AVX       (1u << 28)
#define CPUID7_AVX2      (1u << 5)
/* XSAVE area: legacy region (512), header (64), then components at CPUID 0Dh offsets;
 * AVX is at 576..831 and ZMM_Hi256 at 1152..1663 on every CPU so far. */
#define LEGACY_SIZE      512
#define HEADER_SIZE      64
#define AREA_SIZE        2048

struct vec_cpu {
    uint8_t area[AREA_SIZE];        /* first: XSAVE needs 64-byte alignment */
    uint64_t host_xcr0;             /* XCR0 as the host had it (when it could be read) */
    uint64_t mask;                  /* XSAVE components saved; 0: FXSAVE */
    uint8_t entered, set_osxsave, set_xcr0;
} __attribute__((aligned(64)));

/* One save area per CPU that may run payload or loader code. */
#ifndef VECTOR_CPUS
#define VECTOR_CPUS (SOS_MAX_CPUS + 1)
#endif
static struct vec_cpu vec_cpus[VECTOR_CPUS];
static int vec_path = -1;           /* chosen by the boot CPU */

static void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
                     : "a"(leaf), "c"(sub));
}

static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t)hi << 32 | lo;
}

static void xsetbv0(uint64_t v)
{
    __asm__ volatile("xsetbv" :: "c"(0), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

static uint64_t read_cr0(void) { uint64_t v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static uint64_t read_cr4(void) { uint64_t v; __asm__ volatile("mov %%cr4, %0" : "=r"(v)); return v; }
static void write_cr4(uint64_t v) { __asm__ volatile("mov %0, %%cr4" :: "r"(v) : "memory"); }

/* Whether the standard-format area holds every component in mask (13.4.3: component i at
 * CPUID.(0Dh,i).EBX, EAX bytes long, for i >= 2). */
static int area_fits(uint64_t mask)
{
    for (unsigned i = 2; i < 64; i++) {
        if (!(mask >> i & 1))
            continue;
        uint32_t r[4];
        cpuid(0xD, i, r);
        if ((uint64_t)r[1] + r[0] > AREA_SIZE || r[1] < LEGACY_SIZE + HEADER_SIZE)
            return 0;
    }
    return 1;
}

static int choose_path(void)
{
    uint32_t r1[4], r7[4] = { 0 }, r0[4];
    if ((read_cr0() & (CR0_EM | CR0_TS)) || !(read_cr4() & CR4_OSFXSR))
        return CHACHA20_SCALAR;
    cpuid(0, 0, r0);
    cpuid(1, 0, r1);
    if (r0[0] >= 7)
        cpuid(7, 0, r7);
    if (r0[0] < 0xD || !(r1[2] & CPUID1_XSAVE) || !(r1[2] & CPUID1_AVX) || !(r7[1] & CPUID7_AVX2))
        return CHACHA20_SSE2;
    /* The host's components we would have to save; ZMM_Hi256 only exists if it has it on. */
    uint64_t need = XS_AVX | ((read_cr4() & CR4_OSXSAVE) ? xgetbv0() & XS_ZMM_HI256 : 0);
    return area_fits(need) ? CHACHA20_AVX2 : CHACHA20_SSE2;
}

int vector_enter(unsigned cpu)
{
    if (cpu >= VECTOR_CPUS)
        return CHACHA20_SCALAR;
    struct vec_cpu *v = &vec_cpus[cpu];
    if (cpu == 0 && vec_path < 0) {
        vec_path = choose_path();
        chacha20_use(vec_path);
        lz4_use(vec_path == CHACHA20_AVX2 ? LZ4_AVX2 : LZ4_SCALAR);
        kprintf("@@VECTOR path=%s\n", vec_path == CHACHA20_AVX2 ? "avx2" :
                vec_path == CHACHA20_SSE2 ? "sse2" : "scalar");
    }
    if (vec_path <= CHACHA20_SCALAR || v->entered)
        return vec_path < 0 ? CHACHA20_SCALAR : vec_path;
    uint64_t cr4 = read_cr4();
    v->set_osxsave = v->set_xcr0 = 0;
    v->mask = 0;
    if (cr4 & CR4_OSXSAVE) {
        v->host_xcr0 = xgetbv0();
        v->mask = v->host_xcr0 & XS_TOUCHED;
        if (!area_fits(v->mask))
            v->mask = 0;            /* cannot happen when choose_path said AVX2 */
    }
    if (v->mask) {
        memset(v->area + LEGACY_SIZE, 0, HEADER_SIZE);  /* XRSTOR checks the header */
        __asm__ volatile("xsave64 %0" : "+m"(v->area)
                         : "a"((uint32_t)v->mask), "d"((uint32_t)(v->mask >> 32)));
    } else {
        __asm__ volatile("fxsave64 %0" : "=m"(*(uint8_t (*)[LEGACY_SIZE])v->area));
    }
    if (vec_path == CHACHA20_AVX2) {
        if (!(cr4 & CR4_OSXSAVE)) {
            write_cr4(cr4 | CR4_OSXSAVE);
            v->set_osxsave = 1;
            v->host_xcr0 = xgetbv0();
        }
        if ((v->host_xcr0 & (XS_X87 | XS_SSE | XS_AVX)) != (XS_X87 | XS_SSE | XS_AVX)) {
            xsetbv0(v->host_xcr0 | XS_X87 | XS_SSE | XS_AVX);
            v->set_xcr0 = 1;
        }
    }
    __atomic_store_n(&v->entered, 1, __ATOMIC_RELEASE);
    return vec_path;
}

void vector_leave(unsigned cpu)
{
    if (cpu >= VECTOR_CPUS)
        return;
    struct vec_cpu *v = &vec_cpus[cpu];
    if (!v->entered)
        return;
    v->entered = 0;                 /* first: a fault below must not come back in here */
    /* XCR0 first: XRSTOR's mask lies within the host's XCR0, and the host's
     * CR4.OSXSAVE state decides between XRSTOR and FXRSTOR. */
    if (v->set_xcr0)
        xsetbv0(v->host_xcr0);
    if (v->set_osxsave)
        write_cr4(read_cr4() & ~CR4_OSXSAVE);
    if (v->mask)
        __asm__ volatile("xrstor64 %0" :: "m"(v->area), "a"((uint32_t)v->mask),
                         "d"((uint32_t)(v->mask >> 32)) : "memory");
    else
        __asm__ volatile("fxrstor64 %0" :: "m"(*(const uint8_t (*)[LEGACY_SIZE])v->area)
                         : "memory");
}
