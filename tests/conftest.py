"""Shared fixtures: the test machine's PCI addresses (probed once per session from real QEMU)
and helpers to run the CLI."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def qemu_pci():
    from suspendos.qemu.probe import probe_pci
    return probe_pci(256 << 20)


def run_cli(*args, cwd=None, timeout=900, check=False):
    """Run `suspendos ARGS` as a user would; returns the CompletedProcess."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "suspendos.cli", *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, timeout=timeout, env=env)
    if check and p.returncode:
        raise AssertionError(f"suspendos {' '.join(map(str, args))} exited {p.returncode}\n"
                             f"{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture
def cli():
    return run_cli


# -- the order of a run, and what shares a worker --------------------------------------------
# `./run test` runs two pytest-xdist workers with --dist loadgroup. Each file's tests share a
# group (its module fixtures are made once, on one worker), except the two chains that fill a
# cache every later test of theirs reuses: the runs on the cached Debian guest (the guest and
# its install-resume layer are about half the suite's time cold) and the runs on the kexec
# kernel built from Debian's source. Each chain is one group, so one worker builds its cache
# while the other goes on, and both go first, so the longest chain does not start last.
# A chain runs in the order of its list (then of collection), so its first entry builds the
# cache. A test taken from a file for a chain has the file's module fixtures made again on
# its worker (test_packaging.py's wheel and venv: about a minute).
CHAINS = {
    "debian-guest": ["tests/test_linux_real_qemu.py",
                     "tests/test_signals_linux_qemu.py::test_qemu_linux_is_torn_down_on_sigterm",
                     "tests/test_packaging.py::test_qemu_linux_from_the_installed_wheel"],
    "kexec-kernel": ["tests/test_kexec_jump_qemu.py",
                     "tests/test_signals_linux_qemu.py::test_qemu_kexec_jump_is_torn_down_on_sigterm"],
}


def chain_of(nodeid):
    """(the chain's rank, the entry's place in it, the chain's name); tests of no chain
    rank after every chain."""
    for rank, (name, prefixes) in enumerate(CHAINS.items()):
        for place, p in enumerate(prefixes):
            if nodeid == p or nodeid.startswith(p + "::"):
                return rank, place, name
    return len(CHAINS), 0, None


def pytest_collection_modifyitems(config, items):
    ranked = []
    for index, item in enumerate(items):
        rank, place, chain = chain_of(item.nodeid)
        item.add_marker(pytest.mark.xdist_group(chain or item.nodeid.split("::")[0]))
        ranked.append((rank, place, index, item))
    items[:] = [item for *_, item in sorted(ranked, key=lambda r: r[:3])]
