"""The stale-image guard: the initramfs check (suspendos/linuxhost/initramfs/local-premount)
run with sh on the host against a disk image file, and `suspendos install-resume` into a
synthetic sysroot (the machine of tests/test_linux_hibernate_refusals.py)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from suspendos.linuxhost import guard
from suspendos.linuxhost.hibernate import Request, plan
from suspendos.linuxvm import swap_header
from suspendos.target import linux as tl
from test_linux_hibernate_refusals import host, root  # noqa: F401  (the fixture)

CHECK = Path(tl.__file__).resolve().parent.parent / "linuxhost" / "initramfs" / "local-premount"
MiB = 1 << 20


def run_check(conf_text, tmp_path):
    conf = tmp_path / "suspendos.conf"
    conf.write_text(conf_text)
    return subprocess.run(["sh", str(CHECK)], capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], "SOS_CONF": str(conf)})


def partition_with_image(path, header_at, size=4 * MiB, sig_at=0):
    """A swap area at byte sig_at of `path` marked as holding an image whose header (and
    data) start at byte header_at."""
    data = bytearray(os.urandom(size))
    data[sig_at:sig_at + 4096] = swap_header(size - sig_at)
    data[sig_at + 4086:sig_at + 4096] = tl.SUSPENDOS_SWAP_MAGIC
    data[header_at:header_at + 8] = b"SOSIMAGE"
    path.write_bytes(bytes(data))
    return bytes(data)


@pytest.mark.parametrize("sig_at, header_at", [(0, 4096), (1 * MiB, 1 * MiB + 4096)])
def test_check_discards_an_image_like_image_discard(tmp_path, sig_at, header_at):
    dev = tmp_path / "sda2.img"
    before = partition_with_image(dev, header_at, sig_at=sig_at)
    expect = tmp_path / "expect.img"
    expect.write_bytes(before)
    assert tl.discard_image(expect, sig_at) == "discarded"
    conf = (f'SOS_DEVICES="{tmp_path}/missing {dev}"\nSOS_SIG_OFFSET="{sig_at + 4086}"\n'
            f'SOS_HEADER_OFFSET="{header_at}"\n')
    r = run_check(conf, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "discarded an image that was not resumed" in r.stdout
    after = dev.read_bytes()
    assert after == expect.read_bytes()               # the same bytes `image discard` leaves
    assert after[sig_at + 4086:sig_at + 4096] == b"SWAPSPACE2"
    assert after[header_at:header_at + 4096] == bytes(4096)
    # once discarded (or for a plain swap area) nothing changes and nothing is said
    r = run_check(conf, tmp_path)
    assert r.returncode == 0 and r.stdout == "" and dev.read_bytes() == after


def test_check_without_device_or_config(tmp_path):
    r = run_check(f'SOS_DEVICES="{tmp_path}/gone"\nSOS_SIG_OFFSET="4086"\n'
                  f'SOS_HEADER_OFFSET="4096"\n', tmp_path)
    assert r.returncode == 0 and "stale image check skipped" in r.stdout
    r = subprocess.run(["sh", str(CHECK)], capture_output=True, text=True,
                       env={"PATH": os.environ["PATH"], "SOS_CONF": str(tmp_path / "none")})
    assert r.returncode == 0 and r.stdout == ""
    r = subprocess.run(["sh", str(CHECK), "prereqs"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == ""


def test_install_resume_into_a_sysroot(root, tmp_path):  # noqa: F811
    boot = tmp_path / "boot"
    boot.mkdir()
    r = subprocess.run([sys.executable, "-m", "suspendos.cli", "install-resume", "--sysroot",
                        str(root), "--swap", "/dev/sda1", "--boot-dir", str(boot), "--no-grub"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    loader = boot / "suspendos-resume.elf"
    assert loader.read_bytes()[:4] == b"\x7fELF"
    etc = root / "etc"
    conf = guard.parse((etc / "suspendos/resume.conf").read_text())
    assert conf["SOS_DEVICES"] == "/dev/sda1"
    assert (conf["SOS_SIG_OFFSET"], conf["SOS_HEADER_OFFSET"]) == ("4086", "4096")
    for p in ("initramfs-tools/hooks/suspendos", "initramfs-tools/scripts/local-premount/suspendos"):
        assert os.access(etc / p, os.X_OK)
    assert not (etc / "grub.d").exists()
    assert "update-initramfs not run" in r.stdout
    # hibernate now finds the guard installed and matching
    _, _, _, notes, _ = plan(host(root, tmp_path), Request(swap="/dev/sda1"))
    assert notes == []
    # with GRUB: the menu entry boots the loader with multiboot
    r = subprocess.run([sys.executable, "-m", "suspendos.cli", "install-resume", "--sysroot",
                        str(root), "--swap", "/dev/sda1", "--boot-dir", str(boot)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    entry = subprocess.run(["sh", str(etc / "grub.d/42_suspendos")], capture_output=True,
                           text=True).stdout
    assert "multiboot /suspendos-resume.elf" in entry and "menuentry" in entry
    shutil.rmtree(etc)
