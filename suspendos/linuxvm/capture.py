"""Capture the /sys and /proc files `suspendos target linux` reads, from Debian's kernel
booted on the QEMU test machine, and turn them into a sysroot tree (tests/data/linux-sysroot).

The guest's /init prints every file between `@@FILE path` and `@@END`, every symlink as
`@@LINK path target`, the swap partition's first page as `@@HEAD dev/sda1 <hex>`, and a
binary file (the ACPI IVRS table, where AMD-Vi units have their register base) as
`@@HEX path <hex>`. With an IOMMU (QEMU's intel-iommu or amd-iommu device) it also prints the
disk function's `iommu` link, the unit's /sys/class/iommu link, its intel-iommu/address and
its `device` link; without one those are absent and nothing is printed for them.

    python -m suspendos.linuxvm.capture OUT_DIR [--memory 512M] [--reserved 2M@0x10000000]
"""
import argparse
import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

from ..qemu.machine import QemuMachine, disk_args, machine_args
from . import INIT_PRELUDE, Debian, build_initrd, make_disk

CAPTURE_BODY = r"""
dump() { for f in "$@"; do [ -f "$f" ] || continue; echo "@@FILE $f"; cat "$f"; echo "@@END"; done; }
link() { for f in "$@"; do [ -L "$f" ] && echo "@@LINK $f $(readlink "$f")"; done; }
dump /proc/cmdline /proc/iomem /proc/swaps /proc/sys/kernel/hostname
for d in /sys/firmware/memmap/*; do dump $d/start $d/end $d/type; done
link /sys/class/block/* /sys/dev/block/* /sys/class/ata_port/* /sys/class/graphics/*
for b in /sys/class/block/*; do
  r=$(readlink -f $b); dump $r/dev $r/start $r/size $r/partition $r/queue/logical_block_size
done
for a in /sys/class/ata_port/*; do dump $(readlink -f $a)/port_no; done
r=$(readlink -f /sys/class/block/sda)
pci=$(echo $r | sed -n 's#^\(.*/[0-9a-f]\{4\}:[0-9a-f]\{2\}:[0-9a-f]\{2\}\.[0-7]\)/ata[0-9]*/.*#\1#p')
dump $pci/resource $pci/class $pci/vendor $pci/device
if [ -L $pci/iommu ]; then
  link $pci/iommu; u=/sys/class/iommu/$(basename $(readlink $pci/iommu))
  link $u; u=$(readlink -f $u); dump $u/intel-iommu/address; link $u/device
fi
hexdump() { [ -f "/$1" ] && echo "@@HEX $1 $(od -A n -t x1 -v "/$1" | tr -d ' \n')"; }
hexdump sys/firmware/acpi/tables/IVRS
for g in /sys/class/graphics/*; do g=$(readlink -f $g); dump $g/virtual_size $g/bits_per_pixel $g/stride $g/name; done
echo "@@HEAD dev/sda1 $(dd if=/dev/sda1 bs=4096 count=1 2>/dev/null | od -A n -t x1 -v | tr -d ' \n')"
echo "@@DONE"
sleep 1      # the tty drains the long lines above asynchronously: poweroff now would cut them
poweroff -f
"""
CAPTURE_INIT = INIT_PRELUDE + CAPTURE_BODY


def parse_capture(lines, out):
    """Write the sysroot tree described by the capture lines into `out`."""
    out = Path(out)
    current, body = None, []
    for line in lines:
        if current is not None:
            if line == "@@END":
                p = out / current.lstrip("/")
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text("".join(l + "\n" for l in body))
                current, body = None, []
            else:
                body.append(line)
        elif line.startswith("@@FILE "):
            current = line[7:].strip()
        elif line.startswith("@@LINK "):
            _, path, target = line.split(" ", 2)
            p = out / path.lstrip("/")
            p.parent.mkdir(parents=True, exist_ok=True)
            if p.is_symlink() or p.exists():
                p.unlink()
            os.symlink(target, p)
        elif line.startswith(("@@HEAD ", "@@HEX ")):
            _, path, hexdata = line.split(" ", 2)
            p = out / path.lstrip("/")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(bytes.fromhex(hexdata.strip()))


async def _run(args, deadline_s=120):
    m = QemuMachine(args)
    lines = []
    try:
        await m.start()
        deadline = time.monotonic() + deadline_s
        while True:
            line = await m.readline(deadline)
            if line is None or line == "@@DONE":
                break
            lines.append(line)
    finally:
        await m.stop()
    return lines


def capture(out, memory=512 << 20, reserved="2M$0x10000000", swap_mib=640):
    deb = Debian()
    with tempfile.TemporaryDirectory(prefix="sos-capture-") as tmp:
        tmp = Path(tmp)
        build_initrd(deb, CAPTURE_INIT, tmp / "initrd.gz")
        make_disk(tmp / "disk.img", swap_mib)
        args = [*machine_args(memory), *disk_args(tmp / "disk.img"),
                "-kernel", str(deb.vmlinuz), "-initrd", str(tmp / "initrd.gz"),
                "-append", f"console=ttyS0 memmap={reserved} nokaslr=0 quiet"]
        lines = asyncio.run(_run(args))
    if not any(l.startswith("@@FILE /proc/iomem") for l in lines):
        raise SystemExit("capture failed:\n" + "\n".join(lines[-30:]))
    if Path(out).exists():
        shutil.rmtree(out)
    parse_capture(lines, out)
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--memory", default="512")
    ap.add_argument("--reserved", default="2M$0x10000000")
    a = ap.parse_args()
    capture(a.out, int(a.memory) << 20, a.reserved)


if __name__ == "__main__":
    main()
