"""SIGTERM during the two Linux runs: `qemu linux` (the real Debian guest) and `qemu
kexec-jump` (a kernel built from Debian's source). Both stop their QEMU and remove their work
folder, as the test-host commands do (tests/test_signals_qemu.py, whose helpers these
reuse). Each waits until the run's own QEMU is up — on the run's overlay (`sos-qlinux-*`) or
in its work folder (`sos-kexec-jump-*`) — so the cached guest or kernel is built by then and
only the run itself is torn down. The file sorts after tests/test_linux_*.py and
tests/test_kexec_jump_qemu.py, which build those caches in the suite.
"""
import signal

from test_signals_qemu import qemu_running_with, signal_and_check, start, wait_until


def test_qemu_linux_is_torn_down_on_sigterm(tmp_path):
    p = start(tmp_path, "qemu", "linux", "--memory", "512M", "--json")
    marker = str(tmp_path / "tmp" / "sos-qlinux-")
    wait_until(p, qemu_running_with(marker), "the Debian guest's QEMU")
    signal_and_check(p, signal.SIGTERM, tmp_path, marker)


def test_qemu_kexec_jump_is_torn_down_on_sigterm(tmp_path):
    p = start(tmp_path, "qemu", "kexec-jump", "--memory", "256M", "--json")
    marker = str(tmp_path / "tmp" / "sos-kexec-jump-")
    wait_until(p, qemu_running_with(marker), "the kexec-jump machine's QEMU")
    signal_and_check(p, signal.SIGTERM, tmp_path, marker)
