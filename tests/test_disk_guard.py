"""suspendos/diskguard.py on real loop devices: a block device that is mounted, held open
exclusively or carries a signature is refused (exit 2, one line, the device unchanged) by
every command that writes a user-named disk, and --force is the only way past; a blank one
is written. The /proc and /sys parsing is also tried on made-up trees (partitions, holders,
swap), which a loop device in a container cannot always show."""
import hashlib
import json
import os
import subprocess

import pytest

from suspendos.diskguard import claim_disk, device_users
from suspendos.errors import UsageError
from suspendos.target.linux import SUSPENDOS_SWAP_MAGIC, mark_swap

from conftest import run_cli

MiB = 1 << 20
DISK_BYTES = 96 * MiB       # room for a 64M machine's worst-case image


def _sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


def _mkfs_ext4(path):
    # no lazy initialisation: nothing writes the file system in the background once mounted
    subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0",
                    str(path)], check=True, capture_output=True)


@pytest.fixture
def loop(tmp_path):
    """loop(name, ext4=False, swap=False) -> (device, backing file); every device is
    unmounted and detached at teardown."""
    devices, mounts = [], []

    def attach(name="disk.img", ext4=False, swap=False):
        backing = tmp_path / name
        with open(backing, "wb") as f:
            f.truncate(DISK_BYTES)
        if ext4:
            _mkfs_ext4(backing)
        if swap:
            subprocess.run(["mkswap", str(backing)], check=True, capture_output=True)
        dev = subprocess.run(["losetup", "--find", "--show", str(backing)], check=True,
                             capture_output=True, text=True).stdout.strip()
        devices.append(dev)
        return dev, backing

    def mount(dev):
        point = tmp_path / f"mnt{len(mounts)}"
        point.mkdir()
        # read-only and no journal replay: the mount itself changes no byte of the device
        subprocess.run(["mount", "-o", "ro,noload", dev, str(point)], check=True,
                       capture_output=True)
        mounts.append(point)
        return point

    attach.mount = mount
    try:
        yield attach
    finally:
        for point in mounts:
            subprocess.run(["umount", str(point)], capture_output=True)
        for dev in devices:
            subprocess.run(["losetup", "--detach", dev], capture_output=True)


def _refused(p, *words):
    assert p.returncode == 2, p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("suspendos: error: "), p.stderr
    assert "--force" in lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    assert p.stdout == ""
    return lines[0]


def _suspend(dev, *extra):
    return run_cli("qemu", "suspend", "--memory", "64M", "--disk", dev, "--quiet", "--json",
                   *extra)


# ---- refusals: nothing written ------------------------------------------------------------
def test_mounted_device_is_refused_and_unchanged(loop):
    dev, backing = loop(ext4=True)
    point = loop.mount(dev)
    before = _sha(backing)
    line = _refused(_suspend(dev), "--disk", dev, "mounted", str(point))
    assert _sha(backing) == before, line


def test_device_held_open_exclusively_is_refused(loop):
    dev, backing = loop()
    before = _sha(backing)
    fd = os.open(dev, os.O_RDONLY | os.O_EXCL)       # as a mount or mkfs would hold it
    try:
        _refused(_suspend(dev), dev, "in use", "exclusively")
    finally:
        os.close(fd)
    assert _sha(backing) == before


def test_file_system_signature_is_refused_and_named(loop):
    dev, backing = loop(ext4=True)
    before = _sha(backing)
    _refused(_suspend(dev), dev, "signature", "ext4")
    assert _sha(backing) == before


def test_resume_refuses_a_mounted_device(loop):
    dev, backing = loop(ext4=True)
    loop.mount(dev)
    before = _sha(backing)
    _refused(run_cli("qemu", "resume", "--memory", "64M", "--disk", dev), "--disk", "mounted")
    assert _sha(backing) == before


def test_discard_refuses_a_mounted_device(loop):
    dev, backing = loop(ext4=True)
    loop.mount(dev)
    before = _sha(backing)
    _refused(run_cli("image", "discard", dev), "AREA", "mounted")
    _refused(run_cli("image", "discard", dev, "--offset", "0"), "mounted")
    assert _sha(backing) == before


def test_discard_refuses_a_file_system_but_accepts_swap(loop):
    """The swap signature is what a swap area carries: discard writes it back; anything
    else is refused without --force."""
    dev, backing = loop("fs.img", ext4=True)
    _refused(run_cli("image", "discard", dev), "ext4")
    area, swap_file = loop("swap.img", swap=True)
    p = run_cli("image", "discard", area)
    assert (p.returncode, p.stdout.strip()) == (0, f"{area}: no image"), p.stderr
    mark_swap(swap_file)                 # as `hibernate` leaves it before the handoff
    p = run_cli("image", "discard", area)
    assert (p.returncode, p.stdout.strip()) == (0, f"{area}: discarded"), p.stderr
    with open(swap_file, "rb") as f:
        f.seek(4096 - 10)
        assert f.read(10) == b"SWAPSPACE2" != SUSPENDOS_SWAP_MAGIC


# ---- what may be written: a blank device, and --force ----------------------------------
def test_blank_device_is_written_and_resumed(loop):
    dev, backing = loop()
    p = _suspend(dev)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["status"] == "written"
    # the image is not a signature libblkid knows: resume may use the device as it is
    p = run_cli("qemu", "resume", "--memory", "64M", "--disk", dev, "--quiet", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["status"] == "resumed"


def test_force_writes_over_a_signature(loop):
    dev, backing = loop(ext4=True)
    before = _sha(backing)
    p = _suspend(dev, "--force")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["status"] == "written"
    assert _sha(backing) != before
    info = run_cli("image", "info", dev, "--json")
    assert info.returncode == 0, info.stderr
    # the image lies past the file system's superblock, which still names ext4: the resume
    # is refused as well, until forced
    written = _sha(backing)
    _refused(run_cli("qemu", "resume", "--memory", "64M", "--disk", dev), "ext4")
    assert _sha(backing) == written
    p = run_cli("qemu", "resume", "--memory", "64M", "--disk", dev, "--force", "--quiet",
                "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["status"] == "resumed"


# ---- the claim, and regular files -------------------------------------------------------
def test_claim_holds_the_device_until_the_command_ends(loop):
    dev, _ = loop()
    with claim_disk(dev, "--disk") as claim:
        assert claim.fd is not None
        with pytest.raises(OSError) as busy:
            os.close(os.open(dev, os.O_RDONLY | os.O_EXCL))     # nobody can mount it now
        assert busy.value.errno == 16
        os.close(os.open(dev, os.O_RDWR))       # QEMU's plain open still works
    os.close(os.open(dev, os.O_RDONLY | os.O_EXCL))


def test_a_regular_file_passes_whatever_it_holds(tmp_path):
    image = tmp_path / "disk.img"
    with open(image, "wb") as f:
        f.truncate(DISK_BYTES)
    _mkfs_ext4(image)                    # a disk image is the user's to overwrite
    with claim_disk(image, "--disk") as claim:
        assert claim.fd is None
    with claim_disk(tmp_path / "new.img", "--disk") as claim:
        assert claim.fd is None


def test_force_passes_a_mounted_device(loop):
    dev, _ = loop(ext4=True)
    loop.mount(dev)
    with pytest.raises(UsageError):
        claim_disk(dev, "--disk")
    with claim_disk(dev, "--disk", force=True) as claim:
        assert claim.fd is None          # the mount holds it: forced, but not claimed


# ---- /proc and /sys as they look with partitions, holders and swap ----------------------
def _fake_root(tmp_path, mountinfo="", swaps="", holders=()):
    """A /sys with disk vdz (MAJ:MIN 250:0) and its partition vdz1 (250:1), and a /proc."""
    root = tmp_path / "root"
    disk = root / "sys/devices/virtual/block/vdz"
    part = disk / "vdz1"
    (part / "holders").mkdir(parents=True)
    (disk / "holders").mkdir()
    (disk / "dev").write_text("250:0\n")
    (part / "dev").write_text("250:1\n")
    (part / "partition").write_text("1\n")
    for name in holders:
        (part / "holders" / name).mkdir()
    (root / "sys/dev/block").mkdir(parents=True)
    (root / "sys/dev/block/250:0").symlink_to("../../devices/virtual/block/vdz")
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text(
        "22 1 0:21 / / rw - ext4 /dev/root rw\n" + mountinfo)
    (root / "proc/swaps").write_text("Filename\tType\tSize\tUsed\tPriority\n" + swaps)
    return str(root)


VDZ = os.makedev(250, 0)


def test_sysfs_partition_mounted_by_number(tmp_path):
    root = _fake_root(tmp_path, "40 22 250:1 / /mnt/my\\040data rw - ext4 /dev/vdz1 rw\n")
    assert device_users(VDZ, root) == "has partition vdz1, which is mounted on /mnt/my data"


def test_sysfs_mount_matched_by_source_name(tmp_path):
    # btrfs reports an anonymous device number; its source still names the device
    root = _fake_root(tmp_path, "41 22 0:45 / /srv rw - btrfs /dev/vdz rw\n")
    assert device_users(VDZ, root) == "is mounted on /srv"


def test_sysfs_holder_of_a_partition(tmp_path):
    root = _fake_root(tmp_path, holders=("dm-3",))
    assert device_users(VDZ, root).startswith("has partition vdz1, which is held by dm-3")


def test_proc_swaps_partition(tmp_path):
    root = _fake_root(tmp_path, swaps="/dev/vdz1\tpartition\t1048572\t0\t-2\n")
    assert device_users(VDZ, root) == "has partition vdz1, which is active swap"


def test_nothing_uses_an_idle_device(tmp_path):
    root = _fake_root(tmp_path, "42 22 250:7 / /other rw - ext4 /dev/vdy rw\n",
                      "/swapfile\tfile\t1048572\t0\t-2\n")
    assert device_users(VDZ, root) is None
