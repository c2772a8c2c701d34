"""Files the Debian guest carries for the runner (suspendos/linuxvm/realvm.py): a console on
ttyS0 that the host types commands into, and small scripts for the working set and its check.

Lines meant for the host start with @@. Everything here runs as root inside the guest.
"""

CONSOLE_UNIT = """[Unit]
Description=suspendos runner console on ttyS0 (a shell the test host types into)
After=multi-user.target systemd-user-sessions.service

[Service]
Type=idle
ExecStart=/usr/local/sbin/sos-console
StandardInput=tty
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
TTYReset=yes
TTYVHangup=yes
Restart=no
# an interactive bash ignores SIGTERM; SIGHUP ends it (and what it started) at shutdown
KillSignal=SIGHUP
TimeoutStopSec=10

[Install]
WantedBy=multi-user.target
"""

# No echo, no line editing, no prompt: the host sees only what commands print. PATH and
# HOME as debian.GUEST_ENV (the chroot's object cache warm-up fills /root/.cache for them).
CONSOLE = """#!/bin/sh
stty -echo 2>/dev/null
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
cd /root
echo "@@GUEST ready uptime=$(cut -d' ' -f1 /proc/uptime) cpus=$(nproc)"
exec /bin/bash --noediting --rcfile /usr/local/sbin/sos-console.rc -i
"""
CONSOLE_RC = """PS1= PS2= PS4=
HISTFILE=/dev/null
"""

SWAPFILE_OFFSET = """#!/bin/sh
# resume_offset for swsusp: the physical block (in pages, the ext4 block size here) of the
# file's first page (Documentation/power/swsusp-and-swap-files.rst).
filefrag -v "$1" | awk '$1 == "0:" { sub(/\\.\\..*/, "", $4); print $4; exit }'
"""

# A process that keeps a counter and a random token in its memory only; SIGUSR1 makes it
# report them, so the host can tell it ran on after the resume (same pid, same token, higher
# count).
COUNTER = """#!/usr/bin/python3
import os, secrets, signal, time
token = secrets.token_hex(8)
count = 0
def report(*_):
    with open("/run/sos-counter.state", "w") as f:
        f.write(f"{os.getpid()} {token} {count}\\n")
signal.signal(signal.SIGUSR1, report)
report()
while True:
    count += 1
    time.sleep(0.05)
"""

# The working set: a tmpfs with known content, the counter, a file on the ext4 root.
WORKSET = """#!/bin/bash
set -e
mkdir -p /mnt/ws
mountpoint -q /mnt/ws || mount -t tmpfs -o size=256m tmpfs /mnt/ws
head -c 32M /dev/urandom > /mnt/ws/rand
dd if=/dev/zero of=/mnt/ws/zero bs=1M count=16 status=none
seq 1 400000 > /mnt/ws/text
echo "marker $(cat /proc/sys/kernel/random/uuid)" > /mnt/ws/marker
head -c 16M /dev/urandom > /root/ext4-file
sync
md5sum /mnt/ws/* /root/ext4-file > /run/sos-md5.before
rm -f /run/sos-counter.state
setsid /usr/local/sbin/sos-counter </dev/null >/dev/null 2>&1 &
echo $! > /run/sos-counter.pid
# it reports once when its handler is in place (python starts slowly under TCG)
for i in $(seq 600); do [ -s /run/sos-counter.state ] && break; sleep 0.1; done
sleep 1
kill -USR1 $(cat /run/sos-counter.pid); sleep 0.5
cp /run/sos-counter.state /run/sos-counter.before
echo "@@WORKSET md5=$(md5sum < /run/sos-md5.before | cut -c1-32) counter=$(cat /run/sos-counter.before)"
"""

# Free memory full of stale data: SIZE MiB of random bytes in a file, then the file deleted.
DIRTY = """#!/bin/bash
set -e
mkdir -p /mnt/dirty
mountpoint -q /mnt/dirty || mount -t tmpfs -o size=$(( $1 + 16 ))m tmpfs /mnt/dirty
head -c $1M /dev/urandom > /mnt/dirty/stale
rm /mnt/dirty/stale
umount /mnt/dirty
echo "@@DIRTY mib=$1 memfree_kib=$(awk '/MemFree/ {print $2}' /proc/meminfo)"
"""

# After a resume: the md5s again (the ext4 file read back from the disk), the counter, the CPUs.
CHECK = """#!/bin/bash
sync; echo 3 > /proc/sys/vm/drop_caches
md5sum /mnt/ws/* /root/ext4-file > /run/sos-md5.after 2>&1
cmp -s /run/sos-md5.before /run/sos-md5.after && md5=true || md5=false
pid=$(cat /run/sos-counter.pid)
cont=false
if kill -USR1 "$pid" 2>/dev/null; then
  # its report can take seconds: after the resume its pages (the caches were dropped, or
  # swsusp reclaimed them) fault back in from the disk on a loaded TCG host
  read p0 t0 c0 < /run/sos-counter.before
  for i in $(seq 300); do
    read p1 t1 c1 < /run/sos-counter.state
    [ "$p0" = "$p1" ] && [ "$t0" = "$t1" ] && [ "${c1:-0}" -gt "$c0" ] && { cont=true; break; }
    sleep 0.1
  done
fi
online=$(grep -c ^processor /proc/cpuinfo)
present=$(cat /sys/devices/system/cpu/present)
# every online CPU runs something: one busy loop pinned to each
ran=0
for c in $(seq 0 $(( $(nproc --all) - 1 ))); do
  taskset -c $c true 2>/dev/null && ran=$((ran + 1))
done
echo "@@CHECK {\\"md5_match\\": $md5, \\"process_continued\\": $cont, \\"cpus_online\\": $online, \\"cpus_ran\\": $ran, \\"cpus_present\\": \\"$present\\"}"
"""

# Before the handoff: what the kernel says of its IOMMU, and of the disk controller's DMA.
# $1 is the partition the root is on (sda2, nvme0n1p2, vda2); its sysfs path passes through
# the controller's PCI function, whose IOMMU group's `type` is the domain its DMA goes
# through ("DMA" / "DMA-FQ": translated, "identity": passed through).
IOMMU = """#!/bin/bash
dom=$(dmesg | grep -o 'Default domain type: [A-Za-z]*' | tail -1 | cut -d' ' -f4)
units=$(ls /sys/class/iommu 2>/dev/null | tr '\\n' ' ')
groups=$(ls /sys/kernel/iommu_groups 2>/dev/null | wc -l)
pci=$(readlink -f /sys/class/block/$1 | tr '/' '\\n' | grep -E '^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}[.][0-7]$' | tail -1)
grp=; typ=
if [ -n "$pci" ] && [ -e /sys/bus/pci/devices/$pci/iommu_group ]; then
  grp=$(basename "$(readlink -f /sys/bus/pci/devices/$pci/iommu_group)")
  typ=$(cat /sys/kernel/iommu_groups/$grp/type 2>/dev/null)
fi
echo "@@IOMMU {\\"default_domain\\": \\"$dom\\", \\"units\\": \\"${units% }\\", \\"groups\\": $groups, \\"disk_pci\\": \\"$pci\\", \\"disk_group\\": \\"$grp\\", \\"disk_group_type\\": \\"$typ\\"}"
"""

# On a UEFI boot: the firmware's runtime services through the kernel, as systemd and
# efibootmgr use them (UEFI 2.10, 8.2: GetVariable, SetVariable, GetNextVariableName). A
# variable of our own vendor GUID is written (attributes NV+BS+RT, then the data, in one
# write as efivarfs wants), read back and deleted; efibootmgr must list the boot entries.
EFI_CHECK = """#!/usr/bin/python3
import os, subprocess, sys, time
d = "/sys/firmware/efi/efivars"
def say(state, **kw):
    print("@@EFI " + state + "".join(f" {k}={v}" for k, v in kw.items()), flush=True)
    sys.exit(0 if state == "ok" else 1)
if not os.path.isdir(d):
    say("no-efi")
if not os.listdir(d):
    subprocess.run(["mount", "-t", "efivarfs", "efivarfs", d])
path = f"{d}/SosRuntimeCheck-50534f53-0000-4000-8000-0000000000ef"
value = str(time.time_ns()).encode()
try:
    with open(path, "wb", buffering=0) as f:
        f.write((7).to_bytes(4, "little") + value)
    with open(path, "rb") as f:
        back = f.read()[4:]
    subprocess.run(["chattr", "-i", path], capture_output=True)
    os.unlink(path)
except OSError as e:
    say("failed", error=repr(str(e)))
gone = not os.path.exists(path)
out = subprocess.run(["efibootmgr"], capture_output=True, text=True)
entries = sum(1 for l in out.stdout.splitlines() if l[:4] == "Boot" and l[4:8].isalnum() and l[8:9] in "* ")
if back == value and gone and out.returncode == 0 and entries > 0:
    say("ok", entries=entries)
say("failed", read_back=back == value, deleted=gone, efibootmgr=out.returncode, entries=entries)
"""

# Baked into the guest image (debian.py): the console itself.
# Debian's default MODULES=most makes update-initramfs look at every driver the kernel has,
# one modprobe call each: inside the guest under TCG that took 8 of the install-resume
# layer's 12 minutes (layer.json step_seconds). The guest's own initramfs was built in the
# chroot with the default (dep cannot see the guest's hardware from there); rebuilt inside
# the running guest (install-resume), `dep` takes the drivers of this machine's root disk,
# a common setting on real machines too.
INITRAMFS_CONF = """# the sos guest: only the modules this machine boots with (see suspendos/linuxvm/guest.py)
MODULES=dep
"""

GUEST_FILES = {
    "/etc/initramfs-tools/conf.d/sos-guest.conf": (0o644, INITRAMFS_CONF),
    "/etc/systemd/system/sos-console.service": (0o644, CONSOLE_UNIT),
    "/usr/local/sbin/sos-console": (0o755, CONSOLE),
    "/usr/local/sbin/sos-console.rc": (0o644, CONSOLE_RC),
}

# Typed into the guest by the runner at every boot (realvm.GuestVM.install_scripts), so
# changing them does not rebuild the guest.
RUNTIME_FILES = {
    "/usr/local/sbin/sos-swapfile-offset": (0o755, SWAPFILE_OFFSET),
    "/usr/local/sbin/sos-counter": (0o755, COUNTER),
    "/usr/local/sbin/sos-workset": (0o755, WORKSET),
    "/usr/local/sbin/sos-dirty": (0o755, DIRTY),
    "/usr/local/sbin/sos-check": (0o755, CHECK),
    "/usr/local/sbin/sos-iommu": (0o755, IOMMU),
    "/usr/local/sbin/sos-efi-check": (0o755, EFI_CHECK),
}
