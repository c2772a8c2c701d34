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
