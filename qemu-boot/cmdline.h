/*
 * The host's command line (QEMU -append), space-separated options:
 *   seed=N          fill seed, decimal or 0x-hex (default 1)
 *   mix=Z,R,T,P     percent of zero / random / text / pattern pages, summing to 100
 *                   (default 25,25,25,25)
 *   pause=before|after|both   SOS_HANDOFF_PAUSE_BEFORE_READ / _BEFORE_RETURN in handoff.flags
 *   pause_header    SOS_HANDOFF_PAUSE_BEFORE_HEADER in handoff.flags
 *   quiet           SOS_HANDOFF_QUIET in handoff.flags
 *   raw_ceiling     SOS_HANDOFF_RAW_CEILING: the payload measures the disk, writes no image
 *   tsc_hz=N        handoff.tsc_hz: the TSC rate the host claims (default 0: the payload
 *                   calibrates); an implausible value makes the payload fall back
 *   vbe=WxHxBPP|off the Bochs VBE framebuffer mode to set before the handoff
 *                   (default 800x600x32; BPP 16, 24 or 32)
 *   ap_deaf=ID      the AP with this local APIC id parks and is handed in, but never
 *                   answers the payload (smp.c): stands for an AP that does not respond;
 *                   with ap_offline: a slot naming this APIC id, which no CPU has
 *   ap_offline      the APs are handed in as Linux's module hands them: not started, slot
 *                   state OFFLINE, for the payload to wake from AP_START_PAGE (then its page:
 *                   neither filled nor checked); after the return the host checks each was
 *                   sent INIT (STOPPED) and starts them itself, as Linux's add_cpu does
 * QEMU passes "<kernel file name> <append>" (hw/i386/multiboot.c), so the first word is
 * skipped. Anything else is refused: exit EXIT_BAD_BOOT_INFO.
 */
#ifndef HOST_CMDLINE_H
#define HOST_CMDLINE_H
#include <stdint.h>

enum page_kind { KIND_ZERO, KIND_RANDOM, KIND_TEXT, KIND_PATTERN, KIND_COUNT };

struct host_options {
    uint64_t seed;
    unsigned mix[KIND_COUNT];   /* percent per enum page_kind, sum 100 */
    uint32_t handoff_flags;     /* SOS_HANDOFF_* */
    uint64_t tsc_hz;            /* handoff.tsc_hz */
    unsigned vbe_width, vbe_height, vbe_bpp;   /* 0 x 0 x 0: leave the display alone */
    int ap_deaf;                /* APIC id of an AP that parks but never answers, or -1 */
    int ap_offline;             /* hand the APs in OFFLINE, for the payload to wake */
};

void cmdline_parse(const char *cmdline, struct host_options *out);

#endif
