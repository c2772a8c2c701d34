"""--json on `target check`, `plugin info` and `plugin verify`: one JSON object with the facts
the text prints (`image verify --json`: tests/test_image_tools.py, which has the images).
Real files: a target from the snapshot of a Debian guest, a theme packed from a picture and
signed with a fresh key."""
import json
from pathlib import Path

import pytest
from PIL import Image

from conftest import run_cli

SYSROOT = Path(__file__).parent / "data" / "linux-sysroot"


def test_target_check_json(tmp_path):
    target = tmp_path / "linux.toml"
    run_cli("target", "linux", "--sysroot", SYSROOT, "--swap", "/dev/sda1", "-o", target,
            check=True)
    text = run_cli("target", "check", target, check=True).stdout
    facts = json.loads(run_cli("target", "check", target, "--json", check=True).stdout)
    assert facts["valid"] is True and facts["file"] == str(target)
    assert f"{facts['pages_to_save']} pages to save" in text
    assert f"worst-case image {facts['worst_case_image_bytes']} bytes" in text
    assert f"extents hold {facts['image_capacity_bytes']}" in text
    # the swap partition less its header page, in 512-byte sectors (tests/test_linux_target.py)
    assert facts["image_capacity_bytes"] == 1310712 * 512


@pytest.fixture(scope="module")
def theme(tmp_path_factory):
    d = tmp_path_factory.mktemp("theme")
    Image.new("RGB", (32, 16), (200, 30, 60)).save(d / "logo.png")
    run_cli("plugin", "keygen", "-o", d / "key", check=True)
    run_cli("plugin", "pack", "--splash", d / "logo.png", "--key", d / "key", "--name", "logo",
            "-o", d / "logo.sop", check=True)
    run_cli("plugin", "pack", "--splash", d / "logo.png", "--name", "plain",
            "-o", d / "plain.sop", check=True)
    (d / "trusted").mkdir()
    (d / "trusted" / "key.pub").write_bytes((d / "key.pub").read_bytes())
    return d


def test_plugin_info_json(theme):
    package = theme / "logo.sop"
    text = run_cli("plugin", "info", package, check=True).stdout
    facts = json.loads(run_cli("plugin", "info", package, "--json", check=True).stdout)
    assert (facts["kind"], facts["name"], facts["signed"], facts["signature_valid"]) == \
        ("theme", "logo", True, True)
    assert f"signed by {facts['signer']} (signature valid" in text
    for section, size in facts["sections"].items():
        assert f"section {section}: {size} bytes" in text
    assert f"plugin ABI revision {facts['plugin_abi_revision']}" in text
    plain = json.loads(run_cli("plugin", "info", theme / "plain.sop", "--json",
                               check=True).stdout)
    assert (plain["signed"], plain["signature_valid"], plain["signer"]) == (False, None, None)


def test_plugin_verify_json(theme):
    args = ("plugin", "verify", theme / "logo.sop", "--trust", theme / "trusted")
    text = run_cli(*args, check=True).stdout
    facts = json.loads(run_cli(*args, "--json", check=True).stdout)
    assert facts["signature_valid"] and facts["trusted"]
    assert (facts["kind"], facts["name"], facts["trust"]) == ("theme", "logo",
                                                              str(theme / "trusted"))
    assert f"signature good, signed by {facts['signer']}" in text
    # A refused package is still one line on stderr and exit 2, with --json too.
    p = run_cli("plugin", "verify", theme / "plain.sop", "--trust", theme / "trusted", "--json")
    assert p.returncode == 2 and p.stdout == "" and len(p.stderr.splitlines()) == 1
