#!/usr/bin/env bash
# Install everything suspendos needs on a fresh Debian 12 machine: the toolchain and QEMU
# from Debian (only what is missing), then a virtualenv in .venv with the package and its
# test dependencies. Safe to run again: it only does what is still missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v gcc >/dev/null || need+=(gcc)
command -v ld >/dev/null || need+=(binutils)
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v gdb >/dev/null || need+=(gdb)
command -v make >/dev/null || need+=(make)      # kbuild of the Linux module
command -v clang >/dev/null || need+=(clang)
[ -e /usr/include/lz4.h ] || need+=(liblz4-dev)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# The kexec-jump test builds a kernel from Debian's source (suspendos/linuxvm/kernel.py).
for p in make flex bison bc xz-utils libelf-dev libssl-dev; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
# The real Debian guest (suspendos/linuxvm/debian.py): built with mmdebstrap, its ext4 root
# with mkfs.ext4 -d and checked with e2fsck, runs on qcow2 overlays (qemu-img).
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v qemu-img >/dev/null || need+=(qemu-utils)
# The disk guard (suspendos/diskguard.py) probes signatures with wipefs; its tests attach
# loop devices (losetup, mount) and put ext4 and swap on them.
command -v wipefs >/dev/null || need+=(util-linux)
command -v losetup >/dev/null || need+=(mount)
# UEFI machines (`qemu linux --firmware uefi`, the EFI resume loader): OVMF as the firmware,
# the ESP made with mkfs.vfat and filled with mtools (nothing mounted).
[ -e /usr/share/OVMF/OVMF_CODE_4M.fd ] || need+=(ovmf)
command -v mkfs.vfat >/dev/null || need+=(dosfstools)
command -v mcopy >/dev/null || need+=(mtools)
command -v sfdisk >/dev/null || need+=(fdisk)      # the guest disk's GPT
# tests/test_linux_uefi_install.py checks install-resume's efibootmgr commands against
# Debian's efibootmgr (17) itself, and makes boot entries with its libraries (libefivar1,
# libefiboot1, which it depends on).
command -v efibootmgr >/dev/null || need+=(efibootmgr)
# tests/test_cli_docs.py renders the man page the wheel installs.
command -v groff >/dev/null || need+=(groff-base)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
# The Linux tests fetch Debian's kernel with `apt-get download`: they need package lists too.
if [ ${#need[@]} -gt 0 ] || ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
    # another apt (unattended-upgrades, a second setup) may hold the lock: wait for it
    $sudo apt-get -o DPkg::Lock::Timeout=600 update -q
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]} from Debian"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -q "${need[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=.venv/.suspendos-installed
if [ ! -e "$stamp" ] || [ setup.cfg -nt "$stamp" ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[test]'
    touch "$stamp"
fi
