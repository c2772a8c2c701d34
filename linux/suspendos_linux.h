/* The user interface of suspendos.ko (linux/suspendos.c, docs/LINUX.md). */
#ifndef SUSPENDOS_LINUX_H
#define SUSPENDOS_LINUX_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define SOS_MAX_RESERVED_MIB 64          /* the largest reserved region the module maps */
#define SOS_LINUX_NO_POWEROFF 0x80000000u /* request flag: return after 'written' (tests) */
#define SOS_LINUX_SAVE_FREE 0x40000000u   /* request flag: save free pages too (comparisons) */
#define SOS_LINUX_TEST_NO_SYSCORE 0x20000000u /* request flag (tests only): no syscore_suspend,
					    * so the IOMMU keeps translating and the payload's
					    * own check must stop it (iommu_translating) */

struct sos_linux_request {
	__u32 flags;          /* in: SOS_HANDOFF_PAUSE_* for the payload, SOS_LINUX_NO_POWEROFF */
	__u16 serial_port;    /* in: the payload's serial port (0: none) */
	__u16 _pad0;
	__u32 status;         /* out: the payload's status (SOS_STATUS_*) */
	__u32 _pad1;
	__u64 pages_saved;    /* out: pages written or recorded as zero */
	__u64 pages_free;     /* out: pages left out, free in the buddy allocator */
	__u64 zero_pages;     /* out */
	__u64 image_bytes;    /* out: the image's bytes on disk */
	__u32 free_ranges;    /* out: entries of the free list given to the payload */
	__u32 cpus_used;      /* out: CPUs in the payload run that returned (after a resume:
			       * the resume loader's), the calling one included */
	char message[64];     /* out: the payload's message */
};

#define SOS_IOC_HIBERNATE _IOWR('S', 0x01, struct sos_linux_request)

#endif
