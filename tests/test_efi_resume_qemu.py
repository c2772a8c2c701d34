"""The EFI resume loader under real firmware (OVMF, q35, TCG): booted from an ESP as the
removable-media default (EFI/BOOT/BOOTX64.EFI), with the target's disk on AHCI port 0. When
there is nothing to resume, or the image is refused before RAM is touched, the EFI stage must
give the machine back to the firmware (an error status while boot services are up), which
then boots its next boot option as if the loader had not been there: here OVMF's built-in
UEFI Shell, whose start BdsDxe announces on serial."""
import asyncio
import hashlib
import json
import subprocess
import time
import tomllib

import pytest
import tomli_w

from suspendos.qemu import ovmf
from suspendos.qemu.machine import QemuMachine, disk_args, machine_args
from suspendos.qemu.probe import probe_pci

MEMORY = 256 << 20
# OVMF keeps its DXE firmware volume at 16 MiB (the QEMU target's default reserved region),
# so the EFI targets put the loader at 32 MiB, in the conventional memory OVMF leaves free.
EFI_RESERVED = 32 << 20
# An unresponsive firmware is a failure, not a wait: generous for TCG on a busy host.
RUN_DEADLINE = 600.0
EFI_NOT_FOUND, EFI_ABORTED = (1 << 63) | 14, (1 << 63) | 21


@pytest.fixture(scope="module")
def ovmf_abar(tmp_path_factory):
    """The AHCI ABAR under OVMF, which places BARs its own way (not SeaBIOS's)."""
    vars_fd = ovmf.vars_copy(tmp_path_factory.mktemp("probe") / "vars.fd")
    return probe_pci(MEMORY, firmware_args=ovmf.pflash_args(vars_fd))["ahci"][1]


def _target(tmp_path, cli, abar, memory=None):
    """`target qemu` for 256M, moved to OVMF's ABAR and EFI_RESERVED; `memory`: its memory
    list replaced by these ranges."""
    path = tmp_path / "target.toml"
    p = cli("target", "qemu", "--memory", "256M", "--framebuffer", "none", "-o", path)
    assert p.returncode == 0, p.stderr
    t = tomllib.loads(path.read_text())
    t["disk"]["ahci_base"] = abar
    t["reserved"]["load_address"] = EFI_RESERVED
    if memory is not None:
        t["memory"] = [{"start": a, "end": b, "type": "ram"} for a, b in memory]
    path.write_text(tomli_w.dumps(t))
    return path


def _esp(tmp_path, loader):
    """A FAT ESP holding the loader as the removable-media boot file (UEFI 2.10, 3.5.1.1)."""
    esp = tmp_path / "esp.img"
    subprocess.run(["mkfs.vfat", "-C", str(esp), "8192"], check=True, capture_output=True)
    subprocess.run(["mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT"], check=True)
    subprocess.run(["mcopy", "-i", str(esp), str(loader), "::/EFI/BOOT/BOOTX64.EFI"],
                   check=True)
    return esp


async def _boot(args):
    """Serial lines from power-on until the firmware starts the boot option after ours."""
    lines, back = [], None
    m = QemuMachine(args)
    try:
        await m.start()
        deadline = time.monotonic() + RUN_DEADLINE
        while True:
            line = await m.readline(deadline)
            assert line is not None, "QEMU ended before the firmware went on:\n" + "\n".join(lines)
            lines.append(line)
            if "@@EFI back-to-firmware" in line:
                back = len(lines) - 1
            if back is not None and "BdsDxe: starting" in line and "EFI Internal Shell" in line:
                return lines, back
    finally:
        await m.stop()


def _run(tmp_path, cli, abar, memory=None):
    target = _target(tmp_path, cli, abar, memory)
    loader = tmp_path / "BOOTX64.EFI"
    p = cli("build-resume", "--target", target, "-o", loader, "--format", "efi")
    assert p.returncode == 0, p.stderr
    sectors = tomllib.loads(target.read_text())["disk"]["sectors"]
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:                 # no image on it: all zero
        f.truncate(sectors * 512)
    before = hashlib.sha256(disk.read_bytes()).hexdigest()
    esp = _esp(tmp_path, loader)
    esp_node = {"driver": "raw", "node-name": "esp",
                "file": {"driver": "file", "filename": str(esp)}}
    args = [*machine_args(MEMORY),
            *ovmf.pflash_args(ovmf.vars_copy(tmp_path / "vars.fd")),
            *disk_args(disk),                                   # AHCI port 0: the target's
            "-blockdev", json.dumps(esp_node), "-device", "ide-hd,drive=esp,bus=ide.1"]
    lines, back = asyncio.run(_boot(args))
    assert hashlib.sha256(disk.read_bytes()).hexdigest() == before, "the disk was written"
    return lines, back


def _status(line):
    return int(line.split("status=")[1].split()[0], 16)


def _goes_on(lines, back):
    """After our line, the firmware ends our boot option with our status and starts the
    next one; and the loader never left boot services."""
    after = lines[back + 1:]
    assert any("BdsDxe: failed to start" in l and "QEMU HARDDISK" in l for l in after), after
    assert not any("boot services exited" in l for l in lines)


def test_no_image_goes_back_to_the_firmware_which_boots_on(tmp_path, cli, ovmf_abar):
    # RAM only where OVMF has conventional memory at 256M (its map: @@MMAP lines), so the
    # loader gets as far as the disk.
    lines, back = _run(tmp_path, cli, ovmf_abar, memory=[(EFI_RESERVED, 128 << 20)])
    text = "\n".join(lines)
    assert "@@EFI start" in text
    assert "@@DISK " in text                    # the loader's own AHCI driver read the disk
    assert any(l.startswith("@@RESUME refused no-image ") for l in lines), text
    assert lines[back].endswith(" no-image")
    assert _status(lines[back]) == EFI_NOT_FOUND
    assert "Not Found" in next(l for l in lines[back:] if "BdsDxe: failed to start" in l)
    _goes_on(lines, back)


def test_a_memory_map_unlike_ovmfs_is_refused_with_ram_untouched_and_the_firmware_boots_on(
        tmp_path, cli, ovmf_abar):
    # The QEMU target's memory list is SeaBIOS's map: RAM from 1 MiB up, where OVMF keeps
    # ACPI NVS pages (0x806000 at 256M). The check runs before the disk is even opened.
    lines, back = _run(tmp_path, cli, ovmf_abar)
    text = "\n".join(lines)
    refused = [l for l in lines if l.startswith("@@RESUME refused ")]
    assert len(refused) == 1 and refused[0].startswith("@@RESUME refused memory-map "), text
    assert "is not RAM on this machine" in refused[0]
    assert "@@DISK " not in text                # refused before the disk was touched
    assert lines[back].endswith(" memory-map")
    assert _status(lines[back]) == EFI_ABORTED
    assert "Aborted" in next(l for l in lines[back:] if "BdsDxe: failed to start" in l)
    _goes_on(lines, back)
