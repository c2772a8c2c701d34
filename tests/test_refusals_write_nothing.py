"""Exit status 2 promises that nothing was written: a run that cannot start QEMU, or cannot
hand it the payload, is refused before the disk image or any temp folder exists."""
import os
import subprocess
import sys

from conftest import ROOT


def run(tmp_path, tmpdir, *args, path=None):
    tmpdir.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmpdir))
    if path is not None:
        env["PATH"] = str(path)
    return subprocess.run([sys.executable, "-m", "suspendos.cli", *map(str, args)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def refused(p, *words):
    lines = p.stderr.splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert all(w in lines[0] for w in words), lines[0]


def test_a_temp_folder_with_a_space_is_refused_before_the_disk_is_made(tmp_path):
    """QEMU's multiboot loader splits -initrd at the first space (the module's command
    line), so the payload cannot be loaded from there."""
    tmpdir = tmp_path / "with space"
    p = run(tmp_path, tmpdir, "qemu", "suspend", "--memory", "64M", "--disk", "disk.img")
    refused(p, "TMPDIR")
    assert list(tmp_path.iterdir()) == [tmpdir] and list(tmpdir.iterdir()) == []


def test_no_qemu_leaves_nothing(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    tmpdir = tmp_path / "tmp"
    p = run(tmp_path, tmpdir, "qemu", "suspend", "--memory", "64M", "--disk", "disk.img",
            path=empty)
    refused(p, "qemu-system-x86_64 is not installed")
    assert not (tmp_path / "disk.img").exists() and list(tmpdir.iterdir()) == []

    (tmp_path / "old.img").write_bytes(bytes(64 << 20))
    p = run(tmp_path, tmpdir, "qemu", "resume", "--memory", "64M", "--disk", "old.img",
            path=empty)
    refused(p, "qemu-system-x86_64 is not installed")
    assert list(tmpdir.iterdir()) == []
    assert (tmp_path / "old.img").read_bytes() == bytes(64 << 20)
