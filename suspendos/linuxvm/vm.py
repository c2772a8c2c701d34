"""Run the Linux test VM and talk to it over serial (tests/test_linux_qemu.py).

The hibernate init (HIB_INIT) fills a tmpfs with the swsusp baseline's mix, records md5sums,
optionally fills free memory with stale data (a deleted file of random bytes), marks the swap
area (SOSIMAGE01 over SWAPSPACE2), optionally first tries /blob.small (extents too small:
the payload must stop with image_full and Linux go on), optionally runs the blob once with
the module's test switch that leaves the IOMMU translating (the payload must stop with
iommu_translating before any DMA: the disk's first 64 MiB unchanged), loads the blob into /dev/suspendos
and triggers it. After
a resume it reports the module's statistics, the online CPUs and a process run on the last
CPU, puts SWAPSPACE2 back, compares the md5sums, writes, syncs and
reads back the scratch partition, and leaves a shell on the console. Lines for the tool
start with @@LINUX.
"""
import asyncio
import re
import time

from ..qemu.machine import QemuMachine

HIB_INIT_BODY = r"""
mark() { echo "@@LINUX $*"; }
insmod /lib/modules/suspendos.ko || mark "error insmod suspendos"
# from here on only warnings reach the console: the resumed kernel's info lines (ata power
# modes, the IOMMU coming back) would otherwise land in the middle of a @@LINUX line
dmesg -n 4
grep -q la57 /proc/cpuinfo && mark "note cpu has la57"
mkdir -p /mnt/t && mount -t tmpfs -o size=300m tmpfs /mnt/t
dd if=/dev/zero of=/mnt/t/zero bs=1M count=%(zero_mib)d 2>/dev/null
dd if=/dev/urandom of=/mnt/t/rand bs=1M count=%(rand_mib)d 2>/dev/null
seq 1 %(seq)d > /mnt/t/chunk
for k in 1 2 3 4 5 6 7 8 9 10; do cat /mnt/t/chunk; done > /mnt/t/text; rm /mnt/t/chunk
echo "written-before-hibernate $(cat /proc/sys/kernel/random/uuid)" > /mnt/t/marker
if [ %(dirty_mib)d -gt 0 ]; then  # stale data in free memory: what the image must leave out
  dd if=/dev/urandom of=/mnt/t/junk bs=1M count=%(dirty_mib)d 2>/dev/null; rm /mnt/t/junk
fi
md5sum /mnt/t/zero /mnt/t/rand /mnt/t/text /mnt/t/marker > /md5.before
mark "md5 $(md5sum < /md5.before | cut -d' ' -f1)"
free -m
printf SOSIMAGE01 | dd of=/dev/sda1 bs=1 seek=4086 conv=notrunc,fsync 2>/dev/null
if [ -f /blob.small ]; then       # first a blob whose extents are too small: it must fail cleanly
  cat /blob.small > /dev/suspendos || mark "error loading the small blob"
  echo "go serial=0x3f8" > /sys/class/misc/suspendos/hibernate
  rc=$?
  mark "small rc=$rc status=$(cat /sys/class/misc/suspendos/status)"
  mark "small cpus online $(cat /sys/devices/system/cpu/online)"
fi
if [ %(iommu_probe)d -gt 0 ]; then  # the IOMMU left on (test switch): the payload must refuse
  sum() { dd if=/dev/sda bs=1M count=64 2>/dev/null | md5sum | cut -d' ' -f1; }
  before=$(sum)
  cat /blob > /dev/suspendos || mark "error loading the blob"
  echo "go serial=0x3f8 test=no-syscore" > /sys/class/misc/suspendos/hibernate
  rc=$?
  mark "iommu rc=$rc status=$(cat /sys/class/misc/suspendos/status)"
  if [ "$before" = "$(sum)" ]; then mark "iommu disk unchanged"; else mark "iommu disk changed"; fi
fi
cat /blob > /dev/suspendos || mark "error loading the blob"
sync
mark "hibernating"
echo "go %(go)s" > /sys/class/misc/suspendos/hibernate
rc=$?
mark "back rc=$rc status=$(cat /sys/class/misc/suspendos/status)"
mark "stats $(cat /sys/class/misc/suspendos/stats)"
mark "cpus online $(cat /sys/devices/system/cpu/online)"
last=$(ls -d /sys/devices/system/cpu/cpu[0-9]* | sed 's#.*/cpu##' | sort -n | tail -1)
mark "ran on cpu $(taskset -c $last awk '{print $39}' /proc/self/stat) of $last"
printf SWAPSPACE2 | dd of=/dev/sda1 bs=1 seek=4086 conv=notrunc,fsync 2>/dev/null
mark "swap signature $(dd if=/dev/sda1 bs=1 skip=4086 count=10 2>/dev/null)"
md5sum /mnt/t/zero /mnt/t/rand /mnt/t/text /mnt/t/marker > /md5.after
if cmp -s /md5.before /md5.after; then mark "md5 ok"; else mark "md5 mismatch"; cat /md5.after; fi
dd if=/dev/urandom of=/tmp/disk.w bs=64k count=16 2>/dev/null
dd if=/tmp/disk.w of=/dev/sda2 bs=64k conv=fsync 2>/dev/null
sync; echo 3 > /proc/sys/vm/drop_caches
dd if=/dev/sda2 of=/tmp/disk.r bs=64k count=16 2>/dev/null
if cmp -s /tmp/disk.w /tmp/disk.r; then mark "disk ok"; else mark "disk mismatch"; fi
mark "shell"
exec sh
"""


def hib_init(prelude, zero_mib=64, rand_mib=64, seq=1000000, go="serial=0x3f8 pause=before",
             dirty_mib=0, iommu_probe=False):
    return prelude + HIB_INIT_BODY % {"zero_mib": zero_mib, "rand_mib": rand_mib, "seq": seq,
                                      "go": go, "dirty_mib": dirty_mib,
                                      "iommu_probe": int(iommu_probe)}


class Session:
    """A QEMU machine whose serial output is followed line by line."""

    def __init__(self, args, log_path=None):
        self.m = QemuMachine(args, log_path=log_path)
        self.lines = []

    async def __aenter__(self):
        await self.m.start()
        return self

    async def __aexit__(self, *exc):
        await self.m.stop()

    async def expect(self, pattern, timeout, on_pause=None):
        """The first line matching `pattern` (regex); @@PAUSE lines are answered on the way
        (on_pause(machine) first, while the guest is stopped). None if QEMU ended first."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            try:
                line = await self.m.readline(deadline)
            except asyncio.TimeoutError:
                raise self.m.failure(f"no line matching {pattern!r} within {timeout} s")
            if line is None:
                return None
            self.lines.append(line)
            if line.startswith("@@PAUSE"):
                if on_pause:
                    await self.m.execute("stop")
                    await on_pause(self.m)
                    await self.m.execute("cont")
                await self.m.send_serial(b"g")
                continue
            if rx.search(line):
                return line

    async def send(self, text):
        await self.m.send_serial(text.encode())

    async def wait_exit(self, timeout):
        try:
            return await self.m.wait(time.monotonic() + timeout)
        except asyncio.TimeoutError:
            raise self.m.failure(f"QEMU did not exit within {timeout} s")
