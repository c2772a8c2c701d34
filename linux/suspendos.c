// SPDX-License-Identifier: GPL-2.0
/*
 * suspendos.ko: hand a Linux machine to a suspendos payload blob (docs/LINUX.md).
 *
 *   cat payload.blob > /dev/suspendos                      (every open for writing starts over)
 *   echo "go serial=0x3f8" > /sys/class/misc/suspendos/hibernate
 *   cat /sys/class/misc/suspendos/status                   ("resumed", "failed 0x113 ...")
 * or the ioctl SOS_IOC_HIBERNATE on /dev/suspendos (struct sos_linux_request).
 *
 * The blob is loaded into the reserved region (memmap=SIZE$ADDR: Linux must not own it).
 * Then: lock_system_sleep, ksys_sync_helper, dpm_suspend_start(PMSG_FREEZE),
 * dpm_suspend_end(PMSG_FREEZE), stop_machine (one CPU: the others are taken offline first,
 * since a resume brings back only the boot CPU), syscore_suspend; with interrupts off the
 * blob's entry is called with RDI = handoff under page tables that identity-map the
 * reserved region and share the kernel half of the current PGD. 'written': ACPI S5 at
 * once (kernel_power_off() would run device_shutdown on frozen SCSI devices and hang;
 * it is the fallback after a thaw). 'resumed': syscore_resume, dpm_resume_start/end
 * (PMSG_RESTORE). Anything else: the same with PMSG_RECOVER, and -EIO with the status.
 */
#include <linux/acpi.h>
#include <linux/cpu.h>
#include <linux/crc32.h>
#include <linux/io.h>
#include <linux/ioport.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/mmzone.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/nodemask.h>
#include <linux/pm.h>
#include <linux/reboot.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/stop_machine.h>
#include <linux/suspend.h>
#include <linux/syscore_ops.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include <asm/fpu/api.h>
#include <asm/msr.h>
#include <asm/special_insns.h>
#include <asm/tlbflush.h>
#include <asm/x86_init.h>

#include "suspendos_abi.h"
#include "suspendos_linux.h"

#define MAX_BLOB (64u << 20)
#define PTE_FLAGS (_PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY)

static DEFINE_MUTEX(sos_lock);
static u8 *blob;
static size_t blob_len, blob_cap;
static char last_status[160] = "none";
static char last_stats[256] = "none";

/*
 * The pages free in the buddy allocator at the handoff, as sorted, merged physical ranges
 * (handoff.free_list): the payload leaves them out of the image. The array is allocated
 * before quiescing (physically contiguous: the payload reads it by physical address) and
 * lists itself, since it means nothing after the return. The walk happens inside
 * stop_machine with interrupts off, right before the entry call, so nothing allocates in
 * between. When the array is full the smaller blocks are simply saved (largest orders are
 * walked first).
 */
struct sos_free {
	struct sos_mem_range *r;
	unsigned long pa;
	unsigned int order, cap, count;
	u64 pages;                       /* free pages listed (the array's own included) */
};

struct sos_run {
	u64 entry;
	struct sos_handoff *handoff;     /* at its identity-mapped physical address */
	struct sos_handoff *ho_map;      /* the same through the kernel's mapping */
	struct sos_free free;
	unsigned long pgd_pa;
	u32 status;
	int error;
	int acpi_off;                    /* S5 prepared: power off right after 'written' */
	int syscore;                     /* syscore_suspend/resume around the call */
};

/* ---- page tables: the reserved region 1:1, the kernel half from the current PGD ------- */
struct pt_pool {
	unsigned long pages[8 + 2 * (SOS_MAX_RESERVED_MIB / 2)];
	int used, count;
};

static void *pool_get(struct pt_pool *p)
{
	if (p->used >= p->count)
		return NULL;
	return (void *)p->pages[p->used++];
}

static u64 *next_level(u64 *table, int index, struct pt_pool *pool)
{
	if (!(table[index] & _PAGE_PRESENT)) {
		void *page = pool_get(pool);

		if (!page)
			return NULL;
		table[index] = __pa(page) | PTE_FLAGS;
	}
	return __va(table[index] & PTE_PFN_MASK);
}

static int build_tables(struct pt_pool *pool, u64 base, u64 size, unsigned long *pgd_pa)
{
	u64 *pgd = pool_get(pool), *kernel_pgd, a;

	if (!pgd)
		return -ENOMEM;
	kernel_pgd = __va(__read_cr3() & CR3_ADDR_MASK);
	memcpy(pgd + 256, kernel_pgd + 256, 256 * sizeof(u64));
	for (a = base; a < base + size; a += PAGE_SIZE) {
		u64 *pud, *pmd, *pte;

		if ((a >> 39) >= 256)
			return -EINVAL;         /* must be in the lower half */
		pud = next_level(pgd, (a >> 39) & 511, pool);
		pmd = pud ? next_level(pud, (a >> 30) & 511, pool) : NULL;
		pte = pmd ? next_level(pmd, (a >> 21) & 511, pool) : NULL;
		if (!pte)
			return -ENOMEM;
		pte[(a >> 12) & 511] = a | PTE_FLAGS;   /* executable, writable, write-back */
	}
	*pgd_pa = __pa(pgd);
	return 0;
}

/* ---- free pages -------------------------------------------------------------------------- */
#define FREE_MAX_ORDER 8                 /* 1 MiB: 65536 ranges */

static int free_alloc(struct sos_free *f)
{
	int order;

	for (order = FREE_MAX_ORDER; order >= 0; order--) {
		unsigned long va = __get_free_pages(GFP_KERNEL | __GFP_NOWARN | __GFP_NORETRY, order);

		if (va) {
			f->r = (void *)va;
			f->pa = __pa(va);
			f->order = order;
			f->cap = (PAGE_SIZE << order) / sizeof(*f->r);
			return 0;
		}
	}
	return -ENOMEM;
}

static void free_add(struct sos_free *f, u64 start, u64 end)
{
	if (f->count < f->cap) {
		f->r[f->count].start = start;
		f->r[f->count].end = end;
		f->count++;
		f->pages += (end - start) >> PAGE_SHIFT;
	}
}

static int free_cmp(const void *a, const void *b)
{
	const struct sos_mem_range *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* Called with interrupts off on the one running CPU (stop_machine). */
static void free_collect(struct sos_free *f)
{
	int order, nid, z, mt;
	unsigned int i, n;

	f->count = 0;
	f->pages = 0;
	free_add(f, f->pa, f->pa + (PAGE_SIZE << f->order));
	for (order = MAX_ORDER - 1; order >= 0 && f->count < f->cap; order--) {
		for_each_online_node(nid) {
			pg_data_t *pgdat = NODE_DATA(nid);

			for (z = 0; z < MAX_NR_ZONES; z++) {
				struct zone *zone = &pgdat->node_zones[z];
				struct page *page;

				if (!populated_zone(zone))
					continue;
				spin_lock(&zone->lock);
				for (mt = 0; mt < MIGRATE_TYPES; mt++)
					list_for_each_entry(page, &zone->free_area[order].free_list[mt],
							    buddy_list) {
						u64 start = (u64)page_to_pfn(page) << PAGE_SHIFT;

						if (f->count == f->cap)
							break;
						free_add(f, start, start + (PAGE_SIZE << order));
					}
				spin_unlock(&zone->lock);
			}
		}
	}
	sort(f->r, f->count, sizeof(*f->r), free_cmp, NULL);
	for (i = 1, n = f->count ? 1 : 0; i < f->count; i++) {
		if (f->r[i].start <= f->r[n - 1].end) {
			if (f->r[i].end > f->r[n - 1].end)
				f->r[n - 1].end = f->r[i].end;
		} else {
			f->r[n++] = f->r[i];
		}
	}
	f->count = n;
}

/* What the kernel expects in free pages: the resume must leave them so. Page poisoning
 * takes precedence over init_on_free in 6.1 (mm/page_alloc.c turns the latter off). */
static u32 free_fill(void)
{
	if (page_poisoning_enabled_static())
		return SOS_FREE_FILL_POISON;
	if (want_init_on_free())
		return SOS_FREE_FILL_ZERO;
	return SOS_FREE_FILL_NONE;
}

/* ---- the handoff, on one CPU with interrupts off --------------------------------------- */
struct sos_saved_msrs {
	u64 sysenter_cs, sysenter_esp, sysenter_eip, tsc_aux;
};

static int sos_handoff_cpu(void *data)
{
	struct sos_run *run = data;
	u32 (*entry)(struct sos_handoff *) = (void *)(unsigned long)run->entry;
	struct sos_saved_msrs m;
	unsigned long cr3;
	int error;

	error = run->syscore ? syscore_suspend() : 0;
	if (error) {
		run->error = error;
		return 0;
	}
	if (run->free.r) {
		free_collect(&run->free);
		run->ho_map->free_list = run->free.pa;
		run->ho_map->free_count = run->free.count;
		run->ho_map->free_fill = free_fill();
	}
	kernel_fpu_begin();       /* no live user FPU state in the registers across the call */
	if (x86_platform.save_sched_clock_state)
		x86_platform.save_sched_clock_state();
	rdmsrl(MSR_IA32_SYSENTER_CS, m.sysenter_cs);
	rdmsrl(MSR_IA32_SYSENTER_ESP, m.sysenter_esp);
	rdmsrl(MSR_IA32_SYSENTER_EIP, m.sysenter_eip);
	if (boot_cpu_has(X86_FEATURE_RDTSCP) || boot_cpu_has(X86_FEATURE_RDPID))
		rdmsrl(MSR_TSC_AUX, m.tsc_aux);

	cr3 = __read_cr3();
	native_write_cr3(run->pgd_pa);
	run->status = entry(run->handoff);
	native_write_cr3(cr3);
	__flush_tlb_all();

	if (run->status == SOS_STATUS_RESUMED) {
		/* A fresh boot ran in between: what the trampoline and the loader do not carry. */
		wrmsrl(MSR_IA32_SYSENTER_CS, m.sysenter_cs);
		wrmsrl(MSR_IA32_SYSENTER_ESP, m.sysenter_esp);
		wrmsrl(MSR_IA32_SYSENTER_EIP, m.sysenter_eip);
		if (boot_cpu_has(X86_FEATURE_RDTSCP) || boot_cpu_has(X86_FEATURE_RDPID))
			wrmsrl(MSR_TSC_AUX, m.tsc_aux);
		if (x86_platform.restore_sched_clock_state)
			x86_platform.restore_sched_clock_state();
	}
	kernel_fpu_end();
#ifdef CONFIG_ACPI
	if (run->status == SOS_STATUS_WRITTEN && run->acpi_off)
		acpi_enter_sleep_state(ACPI_STATE_S5);      /* does not return when it works */
#endif
	if (run->syscore)
		syscore_resume();
	return 0;
}

/* ---- the blob -------------------------------------------------------------------------- */
static int load_blob(struct sos_run *run, const struct sos_linux_request *req, void **map_out,
		     u64 *size_out)
{
	struct sos_blob_header h;
	const struct sos_blob_segment *seg;
	struct sos_handoff *ho;
	u32 crc, want;
	void *map;
	u32 i;

	if (blob_len < sizeof(h))
		return -ENODATA;
	memcpy(&h, blob, sizeof(h));
	if (memcmp(h.magic, SOS_BLOB_MAGIC, 8) || h.version != SOS_BLOB_VERSION ||
	    h.header_size != sizeof(h) || h.blob_size != blob_len ||
	    h.segment_count > SOS_BLOB_MAX_SEGMENTS ||
	    sizeof(h) + h.segment_count * sizeof(*seg) > blob_len)
		return -EINVAL;
	want = h.crc32;
	((struct sos_blob_header *)blob)->crc32 = 0;
	crc = crc32_le(~0u, blob, blob_len) ^ ~0u;
	((struct sos_blob_header *)blob)->crc32 = want;
	if (crc != want)
		return -EBADMSG;
	if (h.load_base % PAGE_SIZE || h.reserved_size % PAGE_SIZE ||
	    h.reserved_size > (u64)SOS_MAX_RESERVED_MIB << 20 ||
	    h.entry < h.load_base || h.entry >= h.load_base + h.reserved_size ||
	    h.handoff < h.load_base || h.handoff + sizeof(*ho) > h.load_base + h.reserved_size)
		return -EINVAL;
	/* The region must be kept from Linux (memmap=SIZE$ADDR): never System RAM. */
	if (region_intersects(h.load_base, h.reserved_size, IORESOURCE_SYSTEM_RAM,
			      IORES_DESC_NONE) != REGION_DISJOINT) {
		pr_err("suspendos: %#llx+%#llx is System RAM; boot with memmap=%lluK$%#llx\n",
		       h.load_base, h.reserved_size, h.reserved_size >> 10, h.load_base);
		return -EADDRINUSE;
	}
	seg = (const void *)(blob + sizeof(h));
	for (i = 0; i < h.segment_count; i++)
		if (seg[i].addr < h.load_base || seg[i].file_size > seg[i].mem_size ||
		    seg[i].addr + seg[i].mem_size > h.load_base + h.reserved_size ||
		    seg[i].file_offset + seg[i].file_size > blob_len)
			return -EINVAL;
	map = memremap(h.load_base, h.reserved_size, MEMREMAP_WB);
	if (!map)
		return -ENOMEM;
	memset(map, 0, h.reserved_size);
	for (i = 0; i < h.segment_count; i++)
		memcpy(map + (seg[i].addr - h.load_base), blob + seg[i].file_offset,
		       seg[i].file_size);
	ho = map + (h.handoff - h.load_base);
	if (ho->magic != SOS_HANDOFF_MAGIC || ho->revision != SOS_HANDOFF_REVISION ||
	    ho->size != sizeof(*ho)) {
		memunmap(map);
		return -EINVAL;
	}
	ho->flags = req->flags & ~(SOS_LINUX_NO_POWEROFF | SOS_LINUX_SAVE_FREE |
				   SOS_LINUX_TEST_NO_SYSCORE);
	ho->serial_port = req->serial_port;
	ho->tsc_hz = (u64)tsc_khz * 1000;
	run->entry = h.entry;
	run->handoff = (struct sos_handoff *)(unsigned long)h.handoff;
	run->ho_map = ho;
	*map_out = map;
	*size_out = h.reserved_size;
	return 0;
}

static int offline_others(struct cpumask *taken)
{
	int cpu, error;

	cpumask_clear(taken);
	if (!cpu_online(0))
		return -EBUSY;
	for_each_online_cpu(cpu) {
		if (cpu == 0)
			continue;
		error = remove_cpu(cpu);
		if (error)
			return error;
		cpumask_set_cpu(cpu, taken);
	}
	return 0;
}

/*
 * The CPUs taken offline, handed to the payload by APIC id (formats/smp.py, state OFFLINE):
 * an offline CPU sits in the play-dead loop and polls nothing, so the payload wakes it with
 * INIT-SIPI-SIPI from the target's AP start page (a second memmap=4K$ADDR below 1 MiB, never
 * Linux's) and ends with INIT: it then waits for a STARTUP IPI, which is where add_cpu's
 * do_boot_cpu (INIT, STARTUP, STARTUP) starts it from, as after a plain offline.
 */
static void hand_in_offline(struct sos_handoff *ho, const struct cpumask *taken)
{
	u32 n = 0;
	int cpu;

	memset(ho->cpus, 0, sizeof(ho->cpus));
	for_each_cpu(cpu, taken) {
		if (n == SOS_MAX_CPUS)
			break;
		ho->cpus[n].apic_id = cpu_physical_id(cpu);
		ho->cpus[n].state = SOS_CPU_OFFLINE;
		n++;
	}
	ho->cpu_count = n;
}

static int sos_hibernate(struct sos_linux_request *req)
{
	struct sos_run run = { 0 };
	struct pt_pool *pool;
	cpumask_var_t taken;
	unsigned int sleep_flags;
	struct sos_blob_header *h = (void *)blob;
	struct sos_handoff *ho;
	void *map = NULL;
	u64 size = 0;
	pm_message_t back;
	int error, i, cpu;

	if (__read_cr4() & X86_CR4_LA57)
		return -EOPNOTSUPP;      /* 5-level paging: boot with no5lvl */
	if (!alloc_cpumask_var(&taken, GFP_KERNEL))
		return -ENOMEM;
	pool = kzalloc(sizeof(*pool), GFP_KERNEL);
	if (!pool) {
		free_cpumask_var(taken);
		return -ENOMEM;
	}
	pool->count = ARRAY_SIZE(pool->pages);
	for (i = 0; i < pool->count; i++) {
		pool->pages[i] = get_zeroed_page(GFP_KERNEL);
		if (!pool->pages[i]) {
			error = -ENOMEM;
			goto out_pool;
		}
	}
	error = load_blob(&run, req, &map, &size);
	if (error)
		goto out_pool;
	if (!(req->flags & SOS_LINUX_SAVE_FREE) && free_alloc(&run.free))
		pr_warn("suspendos: no memory for the free-page list: free pages are saved\n");
	error = build_tables(pool, h->load_base, h->reserved_size, &run.pgd_pa);
	if (error)
		goto out_map;
	error = offline_others(taken);
	if (error)
		goto out_cpus;
	hand_in_offline(run.ho_map, taken);
	run.syscore = !(req->flags & SOS_LINUX_TEST_NO_SYSCORE);

	sleep_flags = lock_system_sleep();
	ksys_sync_helper();
#ifdef CONFIG_ACPI
	run.acpi_off = !(req->flags & SOS_LINUX_NO_POWEROFF) &&
		       ACPI_SUCCESS(acpi_enter_sleep_state_prep(ACPI_STATE_S5));
#endif
	pr_info("suspendos: quiescing devices, then handing off to %#llx\n", run.entry);
	error = dpm_suspend_start(PMSG_FREEZE);
	if (!error) {
		error = dpm_suspend_end(PMSG_FREEZE);
		if (!error) {
			error = stop_machine(sos_handoff_cpu, &run, cpumask_of(0));
			if (!error)
				error = run.error;
			back = run.status == SOS_STATUS_RESUMED ? PMSG_RESTORE : PMSG_RECOVER;
			if (run.status == SOS_STATUS_WRITTEN)
				back = PMSG_THAW;
			dpm_resume_start(back);
		} else {
			back = PMSG_RECOVER;
		}
	} else {
		back = PMSG_RECOVER;
	}
	dpm_resume_end(back);

	ho = map + ((unsigned long)run.handoff - h->load_base);
	req->status = run.status;
	req->pages_saved = ho->pages_saved;
	req->pages_free = ho->pages_free;
	req->zero_pages = ho->zero_pages;
	/* After a resume the loader's numbers: detail = the image's size on disk. */
	req->image_bytes = run.status == SOS_STATUS_RESUMED ? ho->detail : ho->bytes_written;
	req->free_ranges = run.free.count;
	req->cpus_used = ho->cpus_used;
	memcpy(req->message, ho->message, sizeof(req->message));
	req->message[sizeof(req->message) - 1] = 0;
	if (!error && run.status == SOS_STATUS_WRITTEN && !(req->flags & SOS_LINUX_NO_POWEROFF)) {
		pr_emerg("suspendos: image written, powering off\n");
		kernel_power_off();
	}
	unlock_system_sleep(sleep_flags);
	if (error)
		pr_err("suspendos: quiesce failed (%d)\n", error);
	else if (run.status == SOS_STATUS_RESUMED)
		pr_info("suspendos: resumed (%llu pages restored)\n", ho->pages_saved);
	else if (run.status != SOS_STATUS_WRITTEN) {
		pr_err("suspendos: payload status %#x: %s\n", run.status, req->message);
		error = -EIO;
	}
out_cpus:
	for_each_cpu(cpu, taken)
		add_cpu(cpu);
out_map:
	memunmap(map);
	if (run.free.r)
		free_pages((unsigned long)run.free.r, run.free.order);
out_pool:
	for (i = 0; i < pool->count; i++)
		if (pool->pages[i])
			free_page(pool->pages[i]);
	kfree(pool);
	free_cpumask_var(taken);
	return error;
}

static int run_request(struct sos_linux_request *req)
{
	int error;

	mutex_lock(&sos_lock);
	error = sos_hibernate(req);
	if (error == -EOPNOTSUPP)
		snprintf(last_status, sizeof(last_status), "error %d 5-level paging (boot with no5lvl)", error);
	else if (error && error != -EIO)
		snprintf(last_status, sizeof(last_status), "error %d", error);
	else
		snprintf(last_status, sizeof(last_status), "%s %#x %llu %s",
			 req->status == SOS_STATUS_RESUMED ? "resumed" :
			 req->status == SOS_STATUS_WRITTEN ? "written" : "failed",
			 req->status, req->pages_saved, req->message);
	snprintf(last_stats, sizeof(last_stats),
		 "status=%#x pages_saved=%llu free_pages_skipped=%llu zero_pages=%llu "
		 "bytes_written=%llu free_ranges=%u cpus_used=%u error=%d",
		 req->status, req->pages_saved, req->pages_free, req->zero_pages,
		 req->image_bytes, req->free_ranges, req->cpus_used, error);
	mutex_unlock(&sos_lock);
	return error;
}

/* ---- the device ------------------------------------------------------------------------ */
static int sos_open(struct inode *inode, struct file *f)
{
	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	if (f->f_mode & FMODE_WRITE) {
		mutex_lock(&sos_lock);
		blob_len = 0;
		mutex_unlock(&sos_lock);
	}
	return 0;
}

static ssize_t sos_write(struct file *f, const char __user *buf, size_t len, loff_t *pos)
{
	ssize_t done = len;

	mutex_lock(&sos_lock);
	if (blob_len + len > MAX_BLOB) {
		done = -EFBIG;
	} else if (blob_len + len > blob_cap) {
		size_t cap = max_t(size_t, 2 * blob_cap, blob_len + len);
		u8 *n = vmalloc(cap);

		if (!n) {
			done = -ENOMEM;
			goto out;
		}
		if (blob)
			memcpy(n, blob, blob_len);
		vfree(blob);
		blob = n;
		blob_cap = cap;
	}
	if (done > 0) {
		if (copy_from_user(blob + blob_len, buf, len))
			done = -EFAULT;
		else
			blob_len += len;
	}
out:
	mutex_unlock(&sos_lock);
	return done;
}

static long sos_ioctl(struct file *f, unsigned int cmd, unsigned long arg)
{
	struct sos_linux_request req;
	int error;

	if (cmd != SOS_IOC_HIBERNATE)
		return -ENOTTY;
	if (copy_from_user(&req, (void __user *)arg, sizeof(req)))
		return -EFAULT;
	error = run_request(&req);
	if (copy_to_user((void __user *)arg, &req, sizeof(req)))
		return -EFAULT;
	return error;
}

static ssize_t hibernate_store(struct device *dev, struct device_attribute *attr,
			       const char *buf, size_t count)
{
	struct sos_linux_request req = { .serial_port = 0 };
	char *copy = kstrndup(buf, count, GFP_KERNEL), *p, *word;
	int error = 0;

	if (!copy)
		return -ENOMEM;
	p = strim(copy);
	while ((word = strsep(&p, " \t")) && !error) {
		unsigned long v;

		if (!*word || !strcmp(word, "go"))
			continue;
		if (!strncmp(word, "serial=", 7) && !kstrtoul(word + 7, 0, &v) && v < 0x10000)
			req.serial_port = v;
		else if (!strcmp(word, "pause=before"))
			req.flags |= SOS_HANDOFF_PAUSE_BEFORE_READ;
		else if (!strcmp(word, "pause=after"))
			req.flags |= SOS_HANDOFF_PAUSE_BEFORE_RETURN;
		else if (!strcmp(word, "nopoweroff"))
			req.flags |= SOS_LINUX_NO_POWEROFF;
		else if (!strcmp(word, "savefree"))
			req.flags |= SOS_LINUX_SAVE_FREE;
		else if (!strcmp(word, "test=no-syscore"))
			req.flags |= SOS_LINUX_TEST_NO_SYSCORE;
		else
			error = -EINVAL;
	}
	kfree(copy);
	if (error)
		return error;
	error = run_request(&req);
	return error ? error : count;
}

static ssize_t status_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%s\n", last_status);
}

static ssize_t stats_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%s\n", last_stats);
}

static DEVICE_ATTR_WO(hibernate);
static DEVICE_ATTR_RO(status);
static DEVICE_ATTR_RO(stats);
static struct attribute *sos_attrs[] = { &dev_attr_hibernate.attr, &dev_attr_status.attr,
					 &dev_attr_stats.attr, NULL };
ATTRIBUTE_GROUPS(sos);

static const struct file_operations sos_fops = {
	.owner = THIS_MODULE,
	.open = sos_open,
	.write = sos_write,
	.unlocked_ioctl = sos_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice sos_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "suspendos",
	.fops = &sos_fops,
	.groups = sos_groups,
	.mode = 0600,
};

static int __init sos_init(void)
{
	return misc_register(&sos_dev);
}

static void __exit sos_exit(void)
{
	misc_deregister(&sos_dev);
	vfree(blob);
}

module_init(sos_init);
module_exit(sos_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Hand the machine to a suspendos payload blob (hibernate and resume)");
