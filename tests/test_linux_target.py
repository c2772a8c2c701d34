"""`suspendos target linux` against a snapshot of /sys and /proc captured from Debian's 6.1
kernel on the QEMU test machine (python -m suspendos.linuxvm.capture tests/data/linux-sysroot:
q35, ICH9 AHCI, 512 MiB, memmap=2M$0x10000000, sda1 = 640 MiB swap from LBA 2048)."""
import os
import shutil
import struct
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import run_cli

from suspendos.errors import UsageError
from suspendos.target import load
from suspendos.target.description import Extent
from suspendos.target.linux import file_extents, linux_target

SYSROOT = Path(__file__).parent / "data" / "linux-sysroot"
PART = "sys/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda1"


def cli(*args):
    return subprocess.run([sys.executable, "-m", "suspendos.cli", *args], capture_output=True,
                          text=True)


def test_linux_target_from_snapshot(tmp_path):
    out = tmp_path / "linux.toml"
    r = cli("target", "linux", "--sysroot", str(SYSROOT), "--swap", "/dev/sda1", "-o", str(out))
    assert r.returncode == 0, r.stderr
    t = load(out)
    start = int((SYSROOT / PART / "start").read_text())
    size = int((SYSROOT / PART / "size").read_text())
    # exactly the swap partition without its header page
    assert [(e.lba, e.count) for e in t.extents] == [(start + 8, size - 8)] == [(2056, 1310712)]
    assert (t.reserved.load_address, t.reserved.size) == (0x10000000, 0x200000)
    assert (t.disk.pci, t.disk.port, t.disk.ahci_base) == ("00:1f.2", 0, 0xfebf1000)
    assert t.disk.sectors == 1347584
    # the firmware's map: the memmap= region is still RAM there
    ram = [(m.start, m.end) for m in t.memory if m.type == "ram"]
    assert ram == [(0, 0x9fc00), (0x100000, 0x1ffdf000)]
    assert t.saved_ranges() == [(0, 0x9f000), (0x100000, 0x10000000), (0x10200000, 0x1ffdf000)]
    assert t.framebuffer is None
    # and a payload builds from it
    blob = tmp_path / "p.blob"
    r = cli("build", "--target", str(out), "-o", str(blob))
    assert r.returncode == 0, r.stderr
    r = cli("inspect", str(blob), "--json")
    assert r.returncode == 0 and "2056" in r.stdout


def _copy(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(SYSROOT, root, symlinks=True)
    return root


def test_a_second_memmap_of_one_low_page_is_the_ap_start_page(tmp_path):
    """memmap=4K$0x8000 beside the reserved region: where the payload starts the CPUs the
    module took offline. It is left out of saved RAM like the region, and the payload maps
    it (the shared start code runs there) with the xAPIC page."""
    root = _copy(tmp_path)
    (root / "proc/cmdline").write_text("console=ttyS0 memmap=2M$0x10000000 memmap=4K$0x8000\n")
    iomem = (root / "proc/iomem").read_text().replace(
        "00001000-0009fbff : System RAM\n", "00001000-00007fff : System RAM\n"
        "00008000-00008fff : Reserved\n00009000-0009fbff : System RAM\n")
    (root / "proc/iomem").write_text(iomem)
    t = linux_target("/dev/sda1", root)
    assert t.reserved.ap_start == 0x8000
    assert t.saved_ranges()[:2] == [(0, 0x8000), (0x9000, 0x9f000)]
    from suspendos.build.payload import XAPIC_BASE, build_payload
    regions = {r.name: r for r in build_payload(t).regions}
    assert (regions["AP start page"].start, regions["AP start page"].perm) == (0x8000, "rwx")
    assert regions["local APIC"].start == XAPIC_BASE and regions["local APIC"].uncached


@pytest.mark.parametrize("change, message", [
    (lambda r: (r / "proc/cmdline").write_text("console=ttyS0\n"), "no memmap=SIZE$ADDR"),
    (lambda r: (r / "proc/cmdline").write_text("memmap=2M$0x10000000 memmap=1M$0x1000000\n"),
     "keep exactly one"),
    (lambda r: (r / "proc/cmdline").write_text("memmap=2M$0x11000000\n"), "not a Reserved range"),
    (lambda r: (r / "sys/devices/pci0000:00/0000:00:1f.2/class").write_text("0x010185\n"),
     "not an AHCI controller"),
    (lambda r: (r / "dev/sda1").write_bytes(bytes(4096)), "no swap signature"),
    (lambda r: (r / "dev/sda1").write_bytes(bytes(4086) + b"SOSIMAGE01"), "holds a suspendos image"),
])
def test_linux_target_refuses(tmp_path, change, message):
    root = _copy(tmp_path)
    change(root)
    with pytest.raises(UsageError, match=message.replace("$", r"\$")):
        linux_target("/dev/sda1", root)


def test_linux_target_cli_errors_are_one_line(tmp_path):
    r = cli("target", "linux", "--sysroot", str(SYSROOT), "-o", str(tmp_path / "x.toml"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "/proc/swaps" in r.stderr
    r = cli("target", "linux", "--sysroot", str(SYSROOT), "--swap", "/dev/sda",
            "-o", str(tmp_path / "x.toml"))
    assert r.returncode == 2 and "whole disk" in r.stderr
    assert not (tmp_path / "x.toml").exists()


def test_linux_swap_file_extents():
    # FIEMAP answers (logical, physical, length, flags): the header page is left out,
    # physically adjacent pieces merge, everything shifts by the partition start.
    m = [(0, 1 << 20, 8192, 0), (8192, (1 << 20) + 8192, 4096, 0), (12288, 5 << 20, 8192, 1)]
    assert file_extents("f", 2048, 20480, m) == [
        Extent(2048 + (1 << 20) // 512 + 8, 16), Extent(2048 + (5 << 20) // 512, 16)]
    with pytest.raises(UsageError, match="hole"):
        file_extents("f", 0, 20480, [(0, 0, 4096, 0), (8192, 8192, 12288, 1)])
    with pytest.raises(UsageError, match="delayed allocation"):
        file_extents("f", 0, 8192, [(0, 0, 8192, 5)])


@pytest.mark.parametrize("root, swap, kind, pci, bar, block, extent", [
    ("linux-sysroot-nvme", "/dev/nvme0n1p2", "nvme", "00:04.0", 0xfebd0000, 4096,
     (264192 // 8 + 1, 1310720 // 8 - 1)),
    ("linux-sysroot-virtio", "/dev/vda2", "virtio-blk", "00:03.0", 0xfe000000, 512,
     (264192 + 8, 1310720 - 8)),
])
def test_linux_target_on_nvme_and_virtio(tmp_path, root, swap, kind, pci, bar, block, extent):
    """Synthetic sysroots (tests/data): an NVMe namespace with 4096-byte blocks (BAR0,
    nsid) and a virtio-blk disk (the common configuration's BAR from config space);
    extents in the disk's own blocks; a payload builds for each with its one driver."""
    out = tmp_path / "t.toml"
    r = cli("target", "linux", "--sysroot", str(SYSROOT.parent / root), "--swap", swap,
            "-o", str(out))
    assert r.returncode == 0, r.stderr
    t = load(out)
    assert (t.disk.kind, t.disk.pci, t.disk.bar, t.disk.block_size) == (kind, pci, bar, block)
    assert t.disk.namespace == (1 if kind == "nvme" else 0)
    assert [(e.lba, e.count) for e in t.extents] == [extent]
    blob = tmp_path / "p.blob"
    r = cli("build", "--target", str(out), "-o", str(blob))
    assert r.returncode == 0, r.stderr
    assert blob.stat().st_size <= 64 * 1024
    r = cli("inspect", str(blob))
    assert r.returncode == 0 and f"{block}-byte blocks" in r.stdout, r.stdout


def test_linux_target_refuses_a_legacy_virtio_device(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(SYSROOT.parent / "linux-sysroot-virtio", root, symlinks=True)
    (root / "sys/devices/pci0000:00/0000:00:03.0/config").write_bytes(bytes(64))
    with pytest.raises(UsageError, match="no virtio 1.x common configuration"):
        linux_target("/dev/vda2", root)


# ---- NVMe set-ups QEMU does not emulate (synthetic sysroots built from the NVMe one) ------
NVME_SYSROOT = SYSROOT.parent / "linux-sysroot-nvme"
NVME_PCI = "sys/devices/pci0000:00/0000:00:04.0"
NVME_NS1 = f"{NVME_PCI}/nvme/nvme0/nvme0n1"


def _nvme_copy(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(NVME_SYSROOT, root, symlinks=True)
    return root


def _relink_block(root, name, target):
    link = root / "sys/class/block" / name
    link.unlink()
    link.symlink_to(Path("../../..") / target)


def _move_controller(root, new_pci, vmd_driver):
    """Put the NVMe function at `new_pci` (under sys/devices), below a VMD device 0000:00:0e.0
    that is bound to `vmd_driver`, as Linux lays VMD out: the VMD function, the host bridge
    it creates, a root port, the controller."""
    vmd = root / "sys/devices/pci0000:00/0000:00:0e.0"
    vmd.mkdir(parents=True)
    (vmd / "driver").symlink_to(f"../../../bus/pci/drivers/{vmd_driver}")
    dest = root / "sys/devices" / new_pci
    dest.parent.mkdir(parents=True)
    shutil.move(str(root / NVME_PCI), str(dest))
    _relink_block(root, "nvme0n1", f"sys/devices/{new_pci}/nvme/nvme0/nvme0n1")
    _relink_block(root, "nvme0n1p2", f"sys/devices/{new_pci}/nvme/nvme0/nvme0n1/nvme0n1p2")


@pytest.mark.parametrize("new_pci, driver", [
    # Linux numbers VMD's domains from 0x10000: the domain alone says it
    ("pci0000:00/0000:00:0e.0/pci10000:e0/10000:e0:06.0/10000:e1:00.0", "pcieport"),
    # and a VMD device above the controller says it whatever the domain reads
    ("pci0000:00/0000:00:0e.0/pci0000:e0/0000:e0:06.0/0000:e1:00.0", "vmd"),
])
def test_linux_target_refuses_nvme_behind_intel_vmd(tmp_path, new_pci, driver):
    root = _nvme_copy(tmp_path)
    _move_controller(root, new_pci, driver)
    out = tmp_path / "t.toml"
    r = cli("target", "linux", "--sysroot", str(root), "--swap", "/dev/nvme0n1p2", "-o", str(out))
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "behind Intel VMD" in r.stderr and "switch the firmware's SATA/NVMe mode to " \
        "AHCI/NVMe" in r.stderr
    assert not out.exists()


def test_linux_target_takes_a_controller_beside_a_vmd_device(tmp_path):
    """A VMD device elsewhere on the machine (bound to vmd, not above our controller) does
    not make the controller in domain 0000 a VMD one."""
    root = _nvme_copy(tmp_path)
    vmd = root / "sys/devices/pci0000:00/0000:00:0e.0"
    vmd.mkdir(parents=True)
    (vmd / "driver").symlink_to("../../../bus/pci/drivers/vmd")
    assert linux_target("/dev/nvme0n1p2", root).disk.pci == "00:04.0"


@pytest.mark.parametrize("files, found", [
    # 6.1: the nvme driver registers an integrity profile for every namespace with metadata
    ({"integrity/format": "nop"}, "integrity format nop"),
    ({"integrity/format": "T10-DIF-TYPE1-CRC"}, "integrity format T10-DIF-TYPE1-CRC"),
    # from 6.8 the namespace says how many bytes
    ({"metadata_bytes": "8", "integrity/format": "none"}, "8 bytes of metadata"),
    ({"metadata_bytes": "16"}, "16 bytes of metadata"),
])
def test_linux_target_refuses_an_nvme_format_with_metadata(tmp_path, files, found):
    root = _nvme_copy(tmp_path)
    for name, text in files.items():
        (root / NVME_NS1 / name).write_text(text + "\n")
    with pytest.raises(UsageError, match=f"carries metadata or protection information \\({found}\\)"):
        linux_target("/dev/nvme0n1p2", root)


def test_linux_target_nvme_metadata_unknown_or_none(tmp_path):
    root = _nvme_copy(tmp_path)
    (root / NVME_NS1 / "metadata_bytes").write_text("0\n")     # 6.8's way of saying none
    assert linux_target("/dev/nvme0n1p2", root).disk.kind == "nvme"
    (root / NVME_NS1 / "metadata_bytes").unlink()
    shutil.rmtree(root / NVME_NS1 / "integrity")    # a kernel without CONFIG_BLK_DEV_INTEGRITY
    with pytest.raises(UsageError, match="cannot tell whether nvme0n1's LBA format carries"):
        linux_target("/dev/nvme0n1p2", root)


def test_linux_target_uses_the_namespace_holding_the_swap_area(tmp_path):
    """Two namespaces on one controller; the swap area is on the second block device,
    nvme0n2, whose NSID is 3 (names follow discovery order, NSIDs are the controller's):
    the target names NSID 3 and nvme0n2's own geometry (512-byte blocks here)."""
    root = _nvme_copy(tmp_path)
    ns2 = root / NVME_PCI / "nvme/nvme0/nvme0n2"
    for name, text in {"nsid": "3", "size": "4194304", "queue/logical_block_size": "512",
                       "integrity/format": "none", "nvme0n2p1/start": "2048",
                       "nvme0n2p1/size": "2097152", "nvme0n2p1/partition": "1"}.items():
        (ns2 / name).parent.mkdir(parents=True, exist_ok=True)
        (ns2 / name).write_text(text + "\n")
    for name in ("nvme0n2", "nvme0n2/nvme0n2p1"):
        (root / "sys/class/block" / Path(name).name).symlink_to(
            f"../../devices/pci0000:00/0000:00:04.0/nvme/nvme0/{name}")
    shutil.copy(root / "dev/nvme0n1p2", root / "dev/nvme0n2p1")      # its swap signature
    (root / "proc/swaps").write_text("Filename\tType\tSize\tUsed\tPriority\n"
                                     "/dev/nvme0n2p1 partition\t524284\t0\t-2\n")
    out = tmp_path / "t.toml"
    r = cli("target", "linux", "--sysroot", str(root), "-o", str(out))
    assert r.returncode == 0, r.stderr
    t = load(out)
    assert (t.disk.kind, t.disk.namespace, t.disk.block_size, t.disk.sectors) == \
        ("nvme", 3, 512, 4194304)
    assert [(e.lba, e.count) for e in t.extents] == [(2048 + 8, 2097152 - 8)]
    blob = tmp_path / "p.blob"
    r = cli("build", "--target", str(out), "-o", str(blob))
    assert r.returncode == 0, r.stderr
    r = cli("inspect", str(blob))
    assert r.returncode == 0 and "namespace 3" in r.stdout, r.stdout


# ---- the same, read from Debian's 6.1 kernel with QEMU's NVMe namespaces ------------------
NVME_CAPTURE = r"""#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
for m in %(modules)s; do insmod /lib/modules/$m.ko || echo "@@ERROR insmod $m"; done
i=0; while [ "$(ls /dev/nvme0n*p1 2>/dev/null | wc -l)" -lt 2 ] && [ $i -lt 600 ]; do
  sleep 0.1; i=$((i+1)); done
dump() { for f in "$@"; do [ -f "$f" ] || continue; echo "@@FILE $f"; cat "$f"; echo "@@END"; done; }
dump /proc/cmdline /proc/iomem
for d in /sys/firmware/memmap/*; do dump $d/start $d/end $d/type; done
for b in /sys/class/block/*; do
  echo "@@LINK $b $(readlink $b)"; r=$(readlink -f $b)
  dump $r/start $r/size $r/partition $r/nsid $r/queue/logical_block_size $r/integrity/format
done
c=$(readlink -f /sys/class/block/nvme0n1); dump ${c%%/nvme/*}/resource ${c%%/nvme/*}/class
for p in /dev/nvme0n*p1; do
  echo "@@HEAD ${p#/} $(dd if=$p bs=4096 count=1 2>/dev/null | od -A n -t x1 -v | tr -d ' \n')"
done
echo "@@DONE"
sleep 1
poweroff -f
"""


def test_linux_target_on_nvme_namespaces_of_a_real_kernel(tmp_path):
    """Debian's 6.1 kernel on QEMU's NVMe controller with three namespaces: NSID 2 plain,
    NSID 5 holding a swap partition, NSID 7 formatted with 8 bytes of metadata per block
    (nvme-ns ms=8) and a swap partition too. The sysfs it shows (captured as in
    suspendos/linuxvm/capture.py): the target of the NSID 5 swap area names NSID 5 (not the
    1 of nvme0n1, nor the 2 its name may suggest); the one on NSID 7 is refused, its
    integrity format reading "nop"."""
    import asyncio
    from suspendos.linuxvm import AHCI_MODULES, Debian, build_initrd, make_disk
    from suspendos.linuxvm.capture import _run, parse_capture
    from suspendos.qemu.machine import machine_args
    deb = Debian()
    mods = AHCI_MODULES[:7] + ["drivers/nvme/host/nvme-core", "drivers/nvme/host/nvme"]
    build_initrd(deb, NVME_CAPTURE % {"modules": " ".join(Path(m).name for m in mods)},
                 tmp_path / "i.gz", modules=mods)
    with open(tmp_path / "plain.img", "wb") as f:
        f.truncate(16 << 20)
    make_disk(tmp_path / "swap.img", 320)
    make_disk(tmp_path / "meta.img", 320)
    ns = []
    for i, (img, opts) in enumerate([("plain.img", "nsid=2"), ("swap.img", "nsid=5"),
                                     ("meta.img", "nsid=7,ms=8")]):
        ns += ["-drive", f"if=none,id=n{i},file={tmp_path / img},format=raw",
               "-device", f"nvme-ns,drive=n{i},bus=nv0,{opts}"]
    args = [*machine_args(256 << 20), "-device", "nvme,serial=SOSNVME0,id=nv0", *ns,
            "-kernel", str(deb.vmlinuz), "-initrd", str(tmp_path / "i.gz"),
            "-append", "console=ttyS0 memmap=2M$0x4000000 quiet"]
    lines = asyncio.run(_run(args, deadline_s=300))
    root = tmp_path / "root"
    parse_capture(lines, root)
    nsids = {p.name: (root / "sys/class/block" / p.name).resolve() for p in
             (root / "sys/class/block").iterdir() if p.name.endswith("p1")}
    by_nsid = {int((path.parent / "nsid").read_text()): name for name, path in nsids.items()}
    assert set(by_nsid) == {5, 7}, (by_nsid, lines[-20:])
    fmt = {n: (path.parent / "integrity/format").read_text().strip()
           for n, path in nsids.items()}
    assert fmt[by_nsid[5]] == "none" and fmt[by_nsid[7]] == "nop", fmt
    t = linux_target(f"/dev/{by_nsid[5]}", root)
    assert (t.disk.kind, t.disk.namespace, t.disk.block_size) == ("nvme", 5, 512)
    assert t.extents[0].lba == 2048 + 8
    with pytest.raises(UsageError, match="carries metadata .*integrity format nop"):
        linux_target(f"/dev/{by_nsid[7]}", root)


# ---- the IOMMU unit translating the disk's DMA (synthetic, added to the sysroots) ----------
# Laid out as Linux lays it out: the disk function's `iommu` link leads to the unit, which
# /sys/class/iommu lists; a VT-d unit is a virtual device with intel-iommu/address, an AMD-Vi
# unit sits below its own PCI function (its `device`) and has its base only in ACPI's IVRS.
# The IVRS bytes are written with struct, not with suspendos.formats.acpi, so the parser is
# checked against an encoding of its own (AMD IOMMU spec 48882, 5.2; ACPI 6.5, 5.2.6).
AHCI_PCI = "sys/devices/pci0000:00/0000:00:1f.2"
VIRTIO_PCI = "sys/devices/pci0000:00/0000:00:03.0"
IVRS = "sys/firmware/acpi/tables/IVRS"
VTD_BASE = 0xfed90000       # QEMU's intel-iommu; outside the sysroots' RAM (ends 0x1ffdf000)
AMD_VI_BASE = 0xfed80000    # QEMU's amd-iommu; likewise


def _symlink(root, path, target):
    """A relative symlink root/path -> root/target, as sysfs writes them."""
    link = root / path
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(root / target, link.parent))


def _add_vt_d(root, pci_dir, address="fed90000", name="dmar0"):
    unit = f"sys/devices/virtual/iommu/{name}"
    (root / unit / "intel-iommu").mkdir(parents=True)
    (root / unit / "intel-iommu/address").write_text(address + "\n")
    _symlink(root, f"sys/class/iommu/{name}", unit)
    _symlink(root, f"{pci_dir}/iommu", unit)


def _add_amd_vi(root, pci_dir, ivrs, function="0000:00:00.2"):
    unit = f"sys/devices/pci0000:00/{function}/iommu/ivhd0"
    (root / unit).mkdir(parents=True)
    _symlink(root, f"{unit}/device", f"sys/devices/pci0000:00/{function}")
    _symlink(root, "sys/class/iommu/ivhd0", unit)
    _symlink(root, f"{pci_dir}/iommu", unit)
    if ivrs is not None:
        (root / IVRS).parent.mkdir(parents=True, exist_ok=True)
        (root / IVRS).write_bytes(ivrs)


def _acpi_table(signature, body):
    """36-byte header (signature, length, revision, checksum, OEM ids and revisions), the
    body, and the checksum byte set so that every byte sums to 0 modulo 256."""
    table = bytearray(struct.pack("<4sIBB6s8sIII", signature, 36 + len(body), 2, 0, b"SOSOEM",
                                  b"SOSTESTS", 1, 0x534F5354, 1) + body)
    table[9] = -sum(table) & 0xFF
    return bytes(table)


def _ivrs(*blocks):
    return _acpi_table(b"IVRS", struct.pack("<I8x", 0x00203041) + b"".join(blocks))


def _ivhd(kind, device_id, base, segment=0):
    """IVHD type 10h (24-byte header) or 11h/40h (40 bytes: EFR copies, zero here), then one
    device entry of type 1 (all devices), so the block is longer than its header."""
    header = struct.pack("<BBHHHQHHI", kind, 0xB0, (24 if kind == 0x10 else 40) + 4,
                         device_id, 0x40, base, segment, 0, 0)
    return header + bytes(0 if kind == 0x10 else 16) + struct.pack("<BHB", 1, 0, 0)


def _ivmd(start, length):
    return struct.pack("<BBHHHH6xQQ", 0x21, 0x01, 32, 0, 0, 0, start, length)


def _amd_ivrs(device_id=0x0002, base=AMD_VI_BASE):
    """What an AMD firmware writes: a memory block, the unit twice (10h for older readers,
    40h for newer), and another unit elsewhere whose base must not be taken."""
    return _ivrs(_ivmd(0x9F000, 0x1000), _ivhd(0x10, device_id, base),
                 _ivhd(0x40, device_id, base), _ivhd(0x10, 0x4012, 0xFEC00000),
                 _ivmd(0xFEE00000, 0x100000))


def _sysroot_copy(tmp_path, name):
    root = tmp_path / "root"
    shutil.copytree(SYSROOT.parent / name, root, symlinks=True)
    return root


@pytest.mark.parametrize("name, swap", [("linux-sysroot", "/dev/sda1"),
                                        ("linux-sysroot-nvme", "/dev/nvme0n1p2"),
                                        ("linux-sysroot-virtio", "/dev/vda2")])
def test_linux_target_without_an_iommu(name, swap):
    """The captured sysroots (Debian's kernel on QEMU without an IOMMU device) have no
    `iommu` link and no /sys/class/iommu."""
    disk = linux_target(swap, SYSROOT.parent / name).disk
    assert (disk.iommu, disk.iommu_base) == ("none", 0)


@pytest.mark.parametrize("name, swap, pci_dir, kind, base", [
    ("linux-sysroot", "/dev/sda1", AHCI_PCI, "vt-d", VTD_BASE),
    ("linux-sysroot", "/dev/sda1", AHCI_PCI, "amd-vi", AMD_VI_BASE),
    ("linux-sysroot-nvme", "/dev/nvme0n1p2", NVME_PCI, "amd-vi", AMD_VI_BASE),
    ("linux-sysroot-virtio", "/dev/vda2", VIRTIO_PCI, "vt-d", VTD_BASE),
])
def test_linux_target_finds_the_iommu_unit(tmp_path, name, swap, pci_dir, kind, base):
    root = _sysroot_copy(tmp_path, name)
    if kind == "vt-d":
        _add_vt_d(root, pci_dir)
    elif name.endswith("nvme"):       # bus 0x40: device ID 0x4002, the other unit's is 0x4012
        _add_amd_vi(root, pci_dir, _ivrs(_ivhd(0x10, 0x0002, 0xFEC00000),
                                         _ivhd(0x11, 0x4002, base)), "0000:40:00.2")
    else:
        _add_amd_vi(root, pci_dir, _amd_ivrs())
    disk = linux_target(swap, root).disk
    assert (disk.iommu, disk.iommu_base) == (kind, base)


def test_linux_target_cli_writes_the_iommu_unit(tmp_path):
    root = _sysroot_copy(tmp_path, "linux-sysroot")
    _add_amd_vi(root, AHCI_PCI, _amd_ivrs())
    out = tmp_path / "t.toml"
    r = run_cli("target", "linux", "--sysroot", root, "--swap", "/dev/sda1", "-o", out)
    assert r.returncode == 0, r.stderr
    disk = tomllib.loads(out.read_text())["disk"]
    assert (disk["iommu"], disk["iommu_base"]) == ("amd-vi", AMD_VI_BASE)
    assert load(out).disk.iommu_base == AMD_VI_BASE


def _checksummed(table, at, value):
    """`table` with the byte at `at` replaced and its checksum made right again."""
    table = bytearray(table)
    table[at] = value
    table[9] = (table[9] - sum(table)) & 0xFF
    return bytes(table)


@pytest.mark.parametrize("ivrs, message", [
    pytest.param(None, "cannot read /sys/firmware/acpi/tables/IVRS (No such file or "
                 "directory)", id="missing"),
    pytest.param(_amd_ivrs()[:-10], "IVRS: truncated, 202 of the 212 bytes", id="truncated"),
    pytest.param(_amd_ivrs()[:20], "IVRS: 20 bytes, too short for an ACPI table header",
                 id="no-header"),
    pytest.param(_amd_ivrs() + bytes(4), "IVRS: 216 bytes, but its header declares 212",
                 id="longer-than-declared"),
    pytest.param(_checksummed(_amd_ivrs(), 0, ord("X")), "IVRS: signature b'XVRS', not "
                 "b'IVRS'", id="signature"),
    pytest.param(_amd_ivrs()[:16] + b"\x01" + _amd_ivrs()[17:], "IVRS: bad checksum",
                 id="checksum"),
    pytest.param(_ivrs(_ivhd(0x10, 0x0010, AMD_VI_BASE)), "no IVHD block for the AMD-Vi "
                 "unit at 0000:00:00.2 (device ID 0x0002)", id="no-matching-ivhd"),
    pytest.param(_ivrs(_ivhd(0x40, 0x0002, AMD_VI_BASE, segment=1)), "in PCI segment 1; "
                 "only segment 0", id="segment-1"),
    pytest.param(_ivrs(_ivhd(0x10, 0x0002, AMD_VI_BASE), _ivhd(0x11, 0x0002, 0xFED81000)),
                 "disagree on its base (0xfed80000, 0xfed81000)", id="bases-disagree"),
    pytest.param(_ivrs(_ivhd(0x10, 0x0002, 0)), "gives the register base 0x0, not a 4 "
                 "KiB-aligned", id="base-0"),
    pytest.param(_ivrs(_ivhd(0x10, 0x0002, AMD_VI_BASE + 0x80)), "register base "
                 "0xfed80080, not a 4 KiB", id="base-unaligned"),
    # a block whose length runs past the table, or is too short for its kind
    pytest.param(_checksummed(_ivrs(_ivmd(0, 0x1000)), 50, 64), "block of type 0x21 at "
                 "offset 48 declares 64 bytes", id="block-past-end"),
    pytest.param(_checksummed(_ivrs(_ivhd(0x10, 0x0002, AMD_VI_BASE)), 50, 20), "block of "
                 "type 0x10 at offset 48 declares 20 bytes", id="ivhd-too-short"),
    pytest.param(_ivrs(_ivmd(0, 0x1000), b"\x10\x00"), "block header at offset 80 runs "
                 "past", id="cut-block-header"),
])
def test_linux_target_refuses_an_amd_vi_unit_it_cannot_place(tmp_path, ivrs, message):
    root = _sysroot_copy(tmp_path, "linux-sysroot")
    _add_amd_vi(root, AHCI_PCI, ivrs)
    with pytest.raises(UsageError, match=r"^disk\.iommu: ") as e:
        linux_target("/dev/sda1", root)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_linux_target_cli_refuses_a_damaged_ivrs_in_one_line(tmp_path):
    root = _sysroot_copy(tmp_path, "linux-sysroot")
    _add_amd_vi(root, AHCI_PCI, _amd_ivrs()[:-1])
    out = tmp_path / "t.toml"
    r = run_cli("target", "linux", "--sysroot", root, "--swap", "/dev/sda1", "-o", out)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "/sys/firmware/acpi/tables/IVRS: truncated" in r.stderr and not out.exists()


@pytest.mark.parametrize("change, message", [
    (lambda r: _add_vt_d(r, AHCI_PCI, name="viommu0"), "translated by IOMMU unit viommu0 "
     "(/sys/class/iommu/viommu0), neither Intel VT-d (dmarN) nor AMD-Vi (ivhdN)"),
    (lambda r: _add_vt_d(r, AHCI_PCI, address="fed90800"), "intel-iommu/address gives the "
     "register base 0xfed90800, not a 4 KiB-aligned address"),
    (lambda r: _add_vt_d(r, AHCI_PCI, address="0"), "register base 0x0"),
    (lambda r: _add_vt_d(r, AHCI_PCI, address="dmar at fed90000"), "reads 'dmar at "
     "fed90000', not a hexadecimal address"),
    (lambda r: (_add_vt_d(r, AHCI_PCI), (r / "sys/class/iommu/dmar0").unlink()),
     "00:1f.2's iommu link names dmar0, which /sys/class/iommu does not list"),
    (lambda r: _add_amd_vi(r, AHCI_PCI, _amd_ivrs(), function="0001:00:00.2"),
     "PCI function 0001:00:00.2: PCI domain 0001 is not supported"),
    # a VT-d base inside RAM: target linux takes it, Target.validate() refuses it
    (lambda r: _add_vt_d(r, AHCI_PCI, address="1000000"), "disk.iommu_base: "
     "0x1000000-0x1001000 lies inside RAM"),
])
def test_linux_target_refuses_an_iommu_unit(tmp_path, change, message):
    root = _sysroot_copy(tmp_path, "linux-sysroot")
    change(root)
    with pytest.raises(UsageError) as e:
        linux_target("/dev/sda1", root)
    assert message in str(e.value), str(e.value)


def test_capture_lines_give_the_amd_vi_unit(tmp_path):
    """What CAPTURE_BODY prints for a disk behind an AMD-Vi unit (QEMU's amd-iommu is PCI
    function 00:02.0) becomes a sysroot linux_target reads the unit from."""
    from suspendos.linuxvm.capture import CAPTURE_BODY, parse_capture
    assert "@@HEX" in CAPTURE_BODY and "intel-iommu/address" in CAPTURE_BODY
    root = _sysroot_copy(tmp_path, "linux-sysroot")
    ivrs = _amd_ivrs(device_id=0x0010)
    parse_capture([
        "@@LINK /sys/devices/pci0000:00/0000:00:1f.2/iommu ../0000:00:02.0/iommu/ivhd0",
        "@@LINK /sys/class/iommu/ivhd0 ../../devices/pci0000:00/0000:00:02.0/iommu/ivhd0",
        "@@LINK /sys/devices/pci0000:00/0000:00:02.0/iommu/ivhd0/device ../../../0000:00:02.0",
        f"@@HEX sys/firmware/acpi/tables/IVRS {ivrs.hex()}",
    ], root)
    assert (root / IVRS).read_bytes() == ivrs
    disk = linux_target("/dev/sda1", root).disk
    assert (disk.iommu, disk.iommu_base) == ("amd-vi", AMD_VI_BASE)
