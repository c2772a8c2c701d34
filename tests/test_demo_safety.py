"""`suspendos demo` checks every argument before it makes anything, never deletes or replaces a
file it did not make, and removes what it made when it is interrupted (Ctrl-C, a closed
output pipe) — its running step stops its own QEMU."""
import os
import signal
import subprocess
import sys

import pytest

from conftest import ROOT, run_cli
from test_signals_qemu import (children_of, default_signals, processes_with,
                               qemu_running_with, wait_until)

USER_FILES = {"disk.img": b"the user's disk", "ram.bin": b"the user's dump"}


def user_folder(tmp_path):
    keep = tmp_path / "keep"
    keep.mkdir()
    for name, data in USER_FILES.items():
        (keep / name).write_bytes(data)
    return keep


def assert_untouched(keep):
    assert {p.name: p.read_bytes() for p in keep.iterdir()} == USER_FILES


def one_line_exit_2(p, *words):
    lines = p.stderr.splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert lines[0].startswith("suspendos: error: ") and all(w in lines[0] for w in words), \
        lines[0]


@pytest.mark.parametrize("args, words", [
    (("--seed", "x"), ("--seed",)),
    (("--seed", "²"), ("--seed",)),
    (("--compress", "zstd"), ("--compress",)),
    (("--memory", "63M"), ("--memory",)),
    (("--bogus",), ("--bogus",)),
])
def test_a_bad_argument_is_one_line_and_touches_no_kept_file(tmp_path, args, words):
    keep = user_folder(tmp_path)
    p = run_cli("demo", "--keep", keep, *args, cwd=tmp_path)
    one_line_exit_2(p, *words)
    assert_untouched(keep)


def test_a_kept_folder_holding_files_is_refused(tmp_path):
    keep = user_folder(tmp_path)
    p = run_cli("demo", "--memory", "64M", "--keep", keep, cwd=tmp_path)
    one_line_exit_2(p, "--keep", "disk.img", "exists")
    assert_untouched(keep)


def test_keep_must_name_a_folder(tmp_path):
    (tmp_path / "afile").write_text("mine")
    p = run_cli("demo", "--memory", "64M", "--keep", tmp_path / "afile", cwd=tmp_path)
    one_line_exit_2(p, "--keep", "not a folder")
    assert (tmp_path / "afile").read_text() == "mine"


def start_demo(tmp_path, *args, **popen):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmpdir))
    return subprocess.Popen([sys.executable, str(ROOT / "scripts" / "demo.py"), "--memory",
                             "64M", "--compress", "none", *map(str, args)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=default_signals, **popen)


def keep_folder_with_users_file(tmp_path):
    """A kept folder that already holds a file of the user's."""
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    return keep


def assert_interrupted_and_cleaned(p, tmp_path, keep):
    """Exit 130 with one line; the user's file stays with its folder, nothing of the demo's
    (files, QEMU, temp folders) is left."""
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130 and err.splitlines() == ["suspendos: interrupted"], err
    assert [x.name for x in keep.iterdir()] == ["notes.txt"]
    assert processes_with(str(keep)) == []
    assert list((tmp_path / "tmp").iterdir()) == []


def test_ctrl_c_removes_what_the_demo_made_and_nothing_else(tmp_path):
    """Ctrl-C: the terminal signals the whole foreground process group (the demo and its
    step). The kept folder already held a file of the user's: it stays, with the folder."""
    keep = keep_folder_with_users_file(tmp_path)
    p = start_demo(tmp_path, "--keep", keep, start_new_session=True)
    wait_until(p, qemu_running_with(str(keep / "disk.img")), "QEMU on the demo's disk")
    os.killpg(p.pid, signal.SIGINT)
    assert_interrupted_and_cleaned(p, tmp_path, keep)


def test_a_closed_output_pipe_removes_the_work_folder(tmp_path):
    """The reader goes away after the first line; the demo notices at its next line, after
    the running step, and removes its temporary work folder."""
    p = start_demo(tmp_path)
    assert p.stdout.readline().startswith("suspendos demo: a 64M QEMU machine")
    p.stdout.close()
    p.wait(timeout=900)
    err = p.stderr.read()
    assert p.returncode == 1 and err == "", err
    assert processes_with(str(tmp_path / "tmp")) == []
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_step_ended_by_the_interrupt_counts_as_the_demos_own(tmp_path):
    """Ctrl-C reaches the demo and its step together; when the step wins the race (it stops
    its QEMU and exits 130 before the demo's KeyboardInterrupt is raised) the demo must still
    clean up as interrupted, not report a failed step and leave its files. Here the step
    alone is interrupted, which is that race decided for the step."""
    keep = keep_folder_with_users_file(tmp_path)
    p = start_demo(tmp_path, "--keep", keep)
    step = lambda: [c for c in children_of(p.pid) if c in processes_with(str(keep / "disk.img"))]
    wait_until(p, qemu_running_with(str(keep / "disk.img")), "QEMU on the demo's disk")
    wait_until(p, step, "the demo's step")
    os.kill(step()[0], signal.SIGINT)
    assert_interrupted_and_cleaned(p, tmp_path, keep)


def test_keep_may_name_a_folder_the_demo_makes(tmp_path):
    """`--keep DIR` with DIR not there yet is the README's own use: accepted and nothing made
    by the check; one whose parent is missing is refused naming that parent."""
    from suspendos.demo import _keep_folder
    from suspendos.errors import UsageError
    _keep_folder(str(tmp_path / "work,1"))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UsageError, match="nodir"):
        _keep_folder(str(tmp_path / "nodir" / "work"))
