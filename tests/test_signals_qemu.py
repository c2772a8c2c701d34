"""SIGTERM and SIGHUP (what `timeout`, `kill`, systemd and a closed terminal send) end every
command the way Ctrl-C does: QEMU killed, temp folders removed, the image not used up, one
line "suspendos: terminated (SIGTERM)" and exit status 128 + the signal number.

Each case starts the real command, waits until the work it must tear down is really running
(a qemu-system process with the test's disk on its command line, or the compiler of a build),
signals the suspendos process alone (not its group: the teardown must be its own doing) and
looks at what is left. TMPDIR is a fresh folder per case, so a forgotten temp folder shows.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

START_DEADLINE = 600.0      # seconds for a build and a TCG boot on a loaded machine
EXIT_DEADLINE = 120.0
SIGNALS = [signal.SIGTERM, signal.SIGHUP]


def processes_with(text):
    """PIDs (other than ours) whose command line holds `text`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path("/proc", entry, "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue                    # ended meanwhile
        if text.encode() in cmdline:
            found.append(int(entry))
    return found


def children_of(pid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path("/proc", entry, "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def child_working_in(pid, folder):
    """True while a child of `pid` (the compiler of a build) works in or names `folder`."""
    for c in children_of(pid):
        try:
            where = os.readlink(f"/proc/{c}/cwd")
            cmdline = Path(f"/proc/{c}/cmdline").read_text(errors="replace")
        except OSError:
            continue                    # ended meanwhile
        if where.startswith(folder) or folder in cmdline:
            return True
    return False


def default_signals():
    """preexec_fn: the child starts with SIGINT, SIGHUP and SIGTERM at their defaults, as
    from a terminal. A runner started in the background (`cmd &`, nohup) hands its children
    SIGINT and SIGHUP ignored, an ignored signal stays ignored across exec, and the tool
    rightly keeps a SIGHUP the user chose to ignore (suspendos/interrupt.py)."""
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def start(tmp_path, *args, **env_extra):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmpdir), **env_extra)
    return subprocess.Popen([sys.executable, "-m", "suspendos.cli", *map(str, args)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_signals)


def wait_until(proc, ready, what):
    deadline = time.monotonic() + START_DEADLINE
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"ended before {what}: exit {proc.returncode}\n"
                                 f"{proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {what} within {START_DEADLINE:.0f} s")
        time.sleep(0.05)


def signal_and_check(proc, signum, tmp_path, qemu_marker):
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=EXIT_DEADLINE)
    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum, (proc.returncode, err)
    assert err.splitlines() == [f"suspendos: terminated ({name})"], err
    assert processes_with(qemu_marker) == []
    assert sorted(p.name for p in (tmp_path / "tmp").iterdir()) == []
    return out


def qemu_running_with(marker):
    return lambda: any(Path(f"/proc/{p}/exe").resolve().name.startswith("qemu-system")
                       for p in processes_with(marker) if Path(f"/proc/{p}").exists())


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_suspend_is_torn_down(tmp_path, signum):
    disk = tmp_path / "disk.img"
    p = start(tmp_path, "qemu", "suspend", "--memory", "64M", "--disk", disk, "--quiet",
              "--json", "--compress", "none")
    wait_until(p, qemu_running_with(str(disk)), "QEMU with the disk")
    signal_and_check(p, signum, tmp_path, str(disk))


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """One hibernated 64M machine; each case resumes a copy of it."""
    disk = tmp_path_factory.mktemp("image") / "disk.img"
    run_cli("qemu", "suspend", "--memory", "64M", "--disk", disk, "--quiet", "--json",
            check=True)
    return disk


def image_state(disk):
    p = run_cli("image", "info", disk, "--json", check=True)
    return json.loads(p.stdout)["state"]


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_resume_is_torn_down_and_the_image_kept(tmp_path, image, signum):
    disk = tmp_path / "disk.img"
    shutil.copyfile(image, disk)
    p = start(tmp_path, "qemu", "resume", "--memory", "64M", "--disk", disk, "--quiet",
              "--json")
    wait_until(p, qemu_running_with(str(disk)), "QEMU with the disk")
    signal_and_check(p, signum, tmp_path, str(disk))
    assert image_state(disk) == "valid"
    again = run_cli("qemu", "resume", "--memory", "64M", "--disk", disk, "--quiet", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "resumed", \
        again.stderr
    assert image_state(disk) == "resumed"


def test_build_is_torn_down(tmp_path):
    run_cli("target", "qemu", "--memory", "64M", "-o", tmp_path / "t.toml", check=True)
    # The object cache off: the case waits for the compiler, which a warm cache (every
    # earlier build of the run fills it) would leave out, the build then only copying
    # objects and linking, too briefly to be caught.
    p = start(tmp_path, "build", "--target", "t.toml", "-o", "p.blob",
              SUSPENDOS_OBJECT_CACHE="off")
    tmpdir = str(tmp_path / "tmp")
    wait_until(p, lambda: child_working_in(p.pid, tmpdir), "compiler in the build folder")
    signal_and_check(p, signal.SIGTERM, tmp_path, tmpdir + "/sos-")
    assert not (tmp_path / "p.blob").exists()


def test_demo_is_torn_down(tmp_path):
    """The signal reaches the demo alone; it hands it to its running step, which stops its
    QEMU, and removes its work folder."""
    p = start(tmp_path, "demo", "--memory", "64M", "--compress", "none")
    tmpdir = str(tmp_path / "tmp")
    wait_until(p, qemu_running_with(tmpdir + "/sos-demo-"), "QEMU on the demo's disk")
    signal_and_check(p, signal.SIGTERM, tmp_path, tmpdir)
