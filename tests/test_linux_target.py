"""`suspendos target linux` against a snapshot of /sys and /proc captured from Debian's 6.1
kernel on the QEMU test machine (python -m suspendos.linuxvm.capture tests/data/linux-sysroot:
q35, ICH9 AHCI, 512 MiB, memmap=2M$0x10000000, sda1 = 640 MiB swap from LBA 2048)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
