"""Faults under real QEMU: disk errors, a command that never completes, absent or wrong
hardware, wrong targets, deliberate CPU faults. In every case the run ends in bounded time
with a status that names the problem, the host's memory and CPU state are intact, no image
header is written, and nothing outside the image extents changes on the disk."""
import json
import os
from pathlib import PosixPath

import pytest
import tomli_w
import tomllib

from suspendos.target.qemu import qemu_target

MEM = "64M"


class DiskPath(PosixPath):
    """The disk file, knowing its target and the byte spans outside the extents."""


@pytest.fixture
def disk(tmp_path, qemu_pci):
    """A disk of the 64M machine's size with random bytes outside the image extents."""
    t = qemu_target(64 << 20, pci=qemu_pci)
    path = DiskPath(tmp_path / "disk.img")
    with open(path, "wb") as f:
        f.truncate(t.disk.sectors * 512)
    first = t.extents[0]
    spans = [(0, first.lba * 512), ((first.lba + first.count) * 512, t.disk.sectors * 512)]
    with open(path, "r+b") as f:
        for s, e in spans:
            f.seek(s)
            f.write(os.urandom(e - s))
    path.spans = spans
    path.target = t
    return path


def _outside(path):
    with open(path, "rb") as f:
        out = []
        for s, e in path.spans:
            f.seek(s)
            out.append(f.read(e - s))
        return out


def suspend(cli, disk, *extra):
    p = cli("qemu", "suspend", "--memory", MEM, "--disk", disk, "--json", "--quiet", *extra,
            timeout=300)
    return p, (json.loads(p.stdout) if p.stdout.strip() else None)


def assert_orderly_failure(p, s, status):
    assert p.returncode == 1, p.stderr
    assert s["status"] == status, s
    assert s["host_memory_check"] == "passed" and s["host_cpu_check"] == "passed", s
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def assert_no_image(cli, disk):
    p = cli("image", "info", disk)
    assert p.returncode == 2 and "no image" in p.stderr, p.stderr


def test_write_error_names_the_lba_and_leaves_no_image(cli, disk):
    before = _outside(disk)
    lba = disk.target.extents[0].lba + 20000
    p, s = suspend(cli, disk, "--inject", f"write-error:{lba},always")
    assert_orderly_failure(p, s, "ahci_taskfile_error")
    assert s["failed_lba"] == lba
    assert f"LBA {lba}" in p.stderr
    assert_no_image(cli, disk)
    assert _outside(disk) == before


def test_single_write_error_is_not_retried(cli, disk):
    """A one-off error still stops the run; the message names the failed command's range."""
    lba = disk.target.extents[0].lba + 20000
    p, s = suspend(cli, disk, "--inject", f"write-error:{lba}")
    assert_orderly_failure(p, s, "ahci_taskfile_error")
    lo, hi = (int(x) for x in s["message"].split("LBAs ")[1].split(",")[0].split("-"))
    assert lo <= lba <= hi
    assert_no_image(cli, disk)


def test_failed_suspend_invalidates_an_older_image(cli, disk):
    p, s = suspend(cli, disk)
    assert p.returncode == 0 and s["status"] == "written"
    assert cli("image", "info", disk).returncode == 0
    p, s = suspend(cli, disk, "--inject", f"write-error:{disk.target.extents[0].lba + 9000},always")
    assert_orderly_failure(p, s, "ahci_taskfile_error")
    assert_no_image(cli, disk)


def test_a_write_that_never_completes_times_out(cli, disk):
    before = _outside(disk)
    p, s = suspend(cli, disk, "--inject", "write-stall")     # the harness bounds the wait
    assert_orderly_failure(p, s, "ahci_timeout")
    assert "within" in s["message"]
    assert _outside(disk) == before


def _target_file(tmp_path, disk, change):
    d = tomllib.loads(tomli_w.dumps(disk.target.to_dict()))
    change(d)
    path = tmp_path / "target.toml"
    path.write_text(tomli_w.dumps(d))
    return path


@pytest.mark.parametrize("change, status", [
    (lambda d: d["disk"].update(ahci_base=d["disk"]["ahci_base"] + 0x1000), "pci_mismatch"),
    (lambda d: d["disk"].update(port=3), "ahci_no_device"),
    (lambda d: d["disk"].update(pci="00:1f.3"), "pci_mismatch"),
])
def test_wrong_disk_in_the_target(cli, disk, tmp_path, change, status):
    before = _outside(disk)
    p, s = suspend(cli, disk, "--target", _target_file(tmp_path, disk, change))
    assert_orderly_failure(p, s, status)
    assert _outside(disk) == before


def test_extents_past_the_end_of_the_disk_refused_by_the_payload(cli, disk, tmp_path):
    """The builder cannot know the disk size when the target says 0; the payload can."""
    def change(d):
        d["disk"]["sectors"] = 0
        d["extents"][0]["count"] += 1 << 20
    with open(disk, "rb") as f:
        whole_before = f.read()
    p, s = suspend(cli, disk, "--target", _target_file(tmp_path, disk, change))
    assert_orderly_failure(p, s, "disk_too_small")
    with open(disk, "rb") as f:
        assert f.read() == whole_before, "the disk changed"


@pytest.mark.parametrize("kind, where", [
    ("write-saved-ram", "saved"), ("write-text", "reserved"), ("execute-data", "reserved"),
    ("read-unmapped", "reserved"), ("divide-error", None),
])
def test_cpu_faults_end_in_order(cli, disk, kind, where):
    before = _outside(disk)
    p, s = suspend(cli, disk, "--selftest", kind)
    assert_orderly_failure(p, s, "cpu_fault")
    load, end = disk.target.reserved_range
    if where == "saved":
        assert any(a <= s["fault_address"] < b for a, b in disk.target.saved_ranges())
        assert s["message"].startswith("#PF write to")
    elif where == "reserved":
        assert load <= s["fault_address"] < end
    else:
        assert s["fault_vector"] == 0
    assert _outside(disk) == before
    assert_no_image(cli, disk)


def test_target_claiming_ram_the_machine_lacks_is_refused(cli, tmp_path, qemu_pci):
    """A 256M machine's target on a 128M machine: only the payload can know (the host's
    memory map arrives in the handoff block)."""
    from suspendos.target.description import dumps
    big = qemu_target(256 << 20, pci=qemu_pci)
    target = tmp_path / "t256.toml"
    target.write_text(dumps(big))
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(big.disk.sectors * 512)
    p = cli("qemu", "suspend", "--memory", "128M", "--disk", disk, "--target", target,
            "--json", "--quiet", timeout=300)
    s = json.loads(p.stdout)
    assert_orderly_failure(p, s, "memory_mismatch")
    assert "not RAM on this machine" in s["message"]
    with open(disk, "rb") as f:
        assert not any(f.read()), "the disk was written"
