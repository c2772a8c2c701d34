"""Debian version order for the cached kernel packages: dpkg itself is the oracle."""
import subprocess

import pytest

from suspendos.linuxvm import compare_versions, kernel_abi

PAIRS = [("6.1.0-9", "6.1.0-56"), ("6.1.0-56", "6.1.0-9"), ("6.1.0-10", "6.1.0-10"),
         ("1:1.35.0-4", "1.36.0-1"), ("1.0~rc1-1", "1.0-1"), ("1.0-1", "1.0+b1-1"),
         ("6.1.192-2", "6.1.27-1"), ("2.0a-1", "2.0-1"), ("1.0-1~bpo12+1", "1.0-1"),
         ("6.10.0-1", "6.9.0-3"), ("1.0", "1.0-0"), ("0:1.2", "1.2")]


@pytest.mark.parametrize("a, b", PAIRS)
def test_compare_versions_agrees_with_dpkg(a, b):
    def dpkg(op):
        return subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode == 0
    want = -1 if dpkg("lt") else 1 if dpkg("gt") else 0
    assert compare_versions(a, b) == want


def test_kernel_abi_takes_the_newest_cached_kernel(tmp_path, monkeypatch):
    """By name, 6.1.0-9 sorts after 6.1.0-56; by version it is older."""
    monkeypatch.delenv("SOS_LINUX_ABI", raising=False)
    for name in ("linux-image-6.1.0-9-amd64_6.1.27-1_amd64.deb",
                 "linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb",
                 "linux-image-6.1.0-10-amd64_6.1.38-1_amd64.deb"):
        (tmp_path / name).write_bytes(b"")
    assert kernel_abi(tmp_path) == "6.1.0-56-amd64"
