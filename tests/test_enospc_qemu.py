"""A full file system under the disk image or the RAM dump is named in one line, and the run
ends: QEMU's default (werror=enospc) pauses the guest, and QMP's BLOCK_IO_ERROR says why; a
QMP pmemsave that cannot write says only "IO error". Real file systems: a 20 MiB tmpfs, too
small for a 64 MiB machine's uncompressed image or its RAM dump.
"""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, run_cli
from test_signals_qemu import processes_with

SMALL = "20M"


@pytest.fixture
def full_fs(tmp_path):
    """A small tmpfs at tmp_path/small (we run as root, as the loop-device tests do)."""
    where = tmp_path / "small"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL}", "tmpfs", str(where)],
                   check=True)
    yield where
    subprocess.run(["umount", str(where)], check=True)


def run(tmp_path, *args):
    """The CLI with a TMPDIR of its own, so temp folders left behind show."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmpdir))
    return subprocess.run([sys.executable, "-m", "suspendos.cli", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=900)


def assert_no_space(p, option, path, tmp_path):
    lines = p.stderr.splitlines()
    assert p.returncode == 1 and len(lines) == 1, p.stderr
    assert lines[0].startswith(f"suspendos: error: {option}: {path}: no space left on the "
                               f"file system (ENOSPC) after "), lines[0]
    assert processes_with(str(path)) == []
    assert [n.name for n in (tmp_path / "tmp").iterdir() if n.name.startswith("sos-")] == []


def test_a_disk_on_a_full_file_system_is_named(tmp_path, full_fs):
    disk = full_fs / "disk.img"
    p = run(tmp_path, "qemu", "suspend", "--memory", "64M", "--disk", disk, "--compress",
            "none", "--quiet", "--json")
    assert_no_space(p, "--disk", disk, tmp_path)


def test_a_ram_dump_onto_a_full_file_system_is_named_and_removed(tmp_path, full_fs):
    ram = full_fs / "ram.bin"
    p = run(tmp_path, "qemu", "suspend", "--memory", "64M", "--disk", tmp_path / "disk.img",
            "--ram-dump", ram, "--quiet", "--json")
    assert_no_space(p, "--ram-dump", ram, tmp_path)
    assert list(full_fs.iterdir()) == []          # neither the dump nor QEMU's part file


def test_a_resume_whose_ram_dump_fails_leaves_the_image_valid(tmp_path, full_fs):
    """The loader marks the image resumed before the pause where the dump is taken; the
    machine never got back to its host, so the image must stay usable."""
    disk = tmp_path / "disk.img"
    run_cli("qemu", "suspend", "--memory", "64M", "--disk", disk, "--quiet", "--json",
            check=True)
    ram = full_fs / "ram.bin"
    p = run(tmp_path, "qemu", "resume", "--memory", "64M", "--disk", disk, "--ram-dump", ram,
            "--quiet", "--json")
    assert_no_space(p, "--ram-dump", ram, tmp_path)
    assert list(full_fs.iterdir()) == []
    info = json.loads(run_cli("image", "info", disk, "--json", check=True).stdout)
    assert info["state"] == "valid", info
    again = run_cli("qemu", "resume", "--memory", "64M", "--disk", disk, "--quiet", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "resumed", \
        again.stderr
