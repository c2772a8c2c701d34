"""A power cut during a suspend, under real QEMU: QEMU is killed (SIGKILL) mid-stream, after
the data but before the header, and while the header write is held by a blkdebug
breakpoint (suspendos.qemu.suspend.power_cut_at times each kill deterministically). The disk
already held an older, valid image. Afterwards it must hold no image a resume would take
(`image info` finds none, `qemu resume` refuses), and a new suspend on it must succeed.

SIGKILL ends QEMU, not the host kernel: what QEMU handed to pwritev stays in the page cache.
That is the harder case for the writer's order (every written chunk is there, only the
header is not). A header torn between sectors, which no single pwritev can leave, is made by
hand from a complete image (the writer zeroes the header block first, so unwritten sectors
read as zero)."""
import json
import shutil

import pytest

from suspendos.image.reader import open_image
from suspendos.qemu.suspend import POWER_CUTS, qemu_suspend

MEM = "64M"


@pytest.fixture(scope="module")
def older_image(tmp_path_factory):
    from conftest import run_cli
    d = tmp_path_factory.mktemp("older") / "disk.img"
    run_cli("qemu", "suspend", "--memory", MEM, "--disk", d, "--quiet", "--seed", "3",
            check=True, timeout=600)
    return d


@pytest.fixture
def disk(tmp_path, older_image):
    path = tmp_path / "disk.img"
    shutil.copyfile(older_image, path)
    assert open_image(path).info()["state"] == "valid"
    return path


def assert_no_resumable_image(cli, disk, reason="no-image", words="no image"):
    p = cli("image", "info", disk)
    assert p.returncode == 2, p.stdout
    p = cli("qemu", "resume", "--memory", MEM, "--disk", disk, "--json", "--quiet", timeout=600)
    assert p.returncode == 1, p.stderr
    r = json.loads(p.stdout)
    assert r["status"] == "refused" and r["reason"] == reason and r["ram"] == "untouched", r
    assert words in p.stderr, p.stderr


def assert_new_suspend_succeeds(cli, disk):
    p = cli("qemu", "suspend", "--memory", MEM, "--disk", disk, "--json", "--quiet",
            timeout=600)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["status"] == "written"
    p = cli("image", "verify", disk)
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("where", POWER_CUTS)
def test_power_cut_leaves_no_image_and_the_disk_stays_usable(cli, disk, where):
    summary, ok = qemu_suspend(64 << 20, disk, seed=5, show_progress=False, power_cut=where)
    assert not ok and summary["status"] == "power-cut" and summary["where"] == where, summary
    p = cli("image", "info", disk)
    assert p.returncode == 2 and "no image" in p.stderr, p.stderr
    assert_no_resumable_image(cli, disk)
    assert_new_suspend_succeeds(cli, disk)


def _header_block(disk):
    lba = open_image(disk).lba
    return lba * 512


@pytest.mark.parametrize("torn, reason, words", [
    ("first sector only", "header-damaged", "header checksum"),
    ("all but the first sector", "no-image", "no image"),
])
def test_torn_header_is_refused(cli, disk, torn, reason, words):
    at = _header_block(disk)
    with open(disk, "r+b") as f:
        if torn == "first sector only":
            f.seek(at + 512)
            f.write(bytes(4096 - 512))
        else:
            f.seek(at)
            f.write(bytes(512))
    assert_no_resumable_image(cli, disk, reason, words)     # (a new suspend: tested above)
