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
from conftest import run_cli

from suspendos.qemu import ovmf
from suspendos.formats import image as fmt
from suspendos.image.reader import open_image
from suspendos.qemu.machine import QemuMachine, debug_exit_value, disk_args, machine_args
from suspendos.qemu.probe import probe_pci

MEMORY = 256 << 20
# OVMF keeps its DXE firmware volume at 16 MiB (the QEMU target's default reserved region),
# so the EFI targets put the loader at 32 MiB, in the conventional memory OVMF leaves free.
EFI_RESERVED = 32 << 20
# An unresponsive firmware is a failure, not a wait: generous for TCG on a busy host.
RUN_DEADLINE = 600.0
EFI_NOT_FOUND, EFI_ABORTED = (1 << 63) | 14, (1 << 63) | 21
REFUSED, CHUNK_DAMAGED = 0x20, 16          # builder/resume/resume.h, docs/RESUME.md
EFI_MEMORY_RUNTIME = 1 << 63
# Where the targets' runtime regions are "mapped" (canonical, page-aligned; nothing calls the
# firmware there in these tests): downwards from 4 GiB below the top, as Linux x86-64 does.
EFI_VA_START = (1 << 64) - (4 << 30)


@pytest.fixture(scope="module")
def ovmf_abar(tmp_path_factory):
    """The AHCI ABAR under OVMF, which places BARs its own way (not SeaBIOS's)."""
    vars_fd = ovmf.vars_copy(tmp_path_factory.mktemp("probe") / "vars.fd")
    return probe_pci(MEMORY, firmware_args=ovmf.pflash_args(vars_fd))["ahci"][1]


def _target(tmp_path, cli, abar, memory=None, efi_runtime=None, runtime_services=0):
    """`target qemu` for 256M, moved to `abar` (OVMF's; None: SeaBIOS's, as probed) and
    EFI_RESERVED; `memory`: its memory list replaced by these ranges; `efi_runtime`: the
    runtime map it is given (none when None), `runtime_services` its table's address."""
    path = tmp_path / "target.toml"
    p = cli("target", "qemu", "--memory", "256M", "--framebuffer", "none", "-o", path)
    assert p.returncode == 0, p.stderr
    t = tomllib.loads(path.read_text())
    if abar is not None:
        t["disk"]["ahci_base"] = abar
    t["reserved"]["load_address"] = EFI_RESERVED
    if memory is not None:
        t["memory"] = [{"start": a, "end": b, "type": "ram"} for a, b in memory]
    if efi_runtime:
        t["efi_runtime"] = efi_runtime
    if runtime_services:
        t["efi_runtime_services"] = runtime_services
    path.write_text(tomli_w.dumps(t))
    return path


def _runtime_regions(lines):
    """The firmware's runtime regions, as the loader's check prints them."""
    out = []
    for line in lines:
        if line.startswith("@@EFI runtime-region "):
            f = dict(w.split("=") for w in line.split()[2:])
            out.append((int(f["type"]), int(f["start"], 16), int(f["pages"]),
                        int(f["attribute"], 16)))
    return out


def _as_target(regions):
    """A target's efi_runtime for these regions, each at its own virtual address."""
    out, virt = [], EFI_VA_START
    for t, phys, pages, attribute in regions:
        virt -= pages * 4096
        out.append({"type": t, "phys": phys, "virt": virt, "pages": pages,
                    "attribute": attribute})
    return out


def _esp(tmp_path, loader):
    """A FAT ESP holding the loader as the removable-media boot file (UEFI 2.10, 3.5.1.1)."""
    esp = tmp_path / "esp.img"
    subprocess.run(["mkfs.vfat", "-C", str(esp), "8192"], check=True, capture_output=True)
    subprocess.run(["mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT"], check=True)
    subprocess.run(["mcopy", "-i", str(esp), str(loader), "::/EFI/BOOT/BOOTX64.EFI"],
                   check=True)
    return esp


async def _boot(args, until_exit=False):
    """Serial lines from power-on until the firmware starts the boot option after ours, or
    (until_exit) until QEMU ends; and QEMU's exit status then."""
    lines, back = [], None
    m = QemuMachine(args)
    try:
        await m.start()
        deadline = time.monotonic() + RUN_DEADLINE
        while True:
            line = await m.readline(deadline)
            if line is None and until_exit:
                return lines, await m.wait(deadline)
            assert line is not None, "QEMU ended before the firmware went on:\n" + "\n".join(lines)
            lines.append(line)
            if "@@EFI back-to-firmware" in line:
                back = len(lines) - 1
            if (not until_exit and back is not None and "BdsDxe: starting" in line
                    and "EFI Internal Shell" in line):
                return lines, back
    finally:
        await m.stop()


def _ovmf_args(tmp_path, disk, loader):
    """The test machine under OVMF: the target's disk on AHCI port 0, the ESP on port 1."""
    esp = _esp(tmp_path, loader)
    esp_node = {"driver": "raw", "node-name": "esp",
                "file": {"driver": "file", "filename": str(esp)}}
    return [*machine_args(MEMORY),
            *ovmf.pflash_args(ovmf.vars_copy(tmp_path / "vars.fd")),
            *disk_args(disk),
            "-blockdev", json.dumps(esp_node), "-device", "ide-hd,drive=esp,bus=ide.1"]


def _efi_loader(tmp_path, cli, target):
    loader = tmp_path / "BOOTX64.EFI"
    p = cli("build-resume", "--target", target, "-o", loader, "--format", "efi")
    assert p.returncode == 0, p.stderr
    return loader


def _run(tmp_path, cli, abar, memory=None, efi_runtime=None, runtime_services=0):
    target = _target(tmp_path, cli, abar, memory, efi_runtime, runtime_services)
    loader = _efi_loader(tmp_path, cli, target)
    sectors = tomllib.loads(target.read_text())["disk"]["sectors"]
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:                 # no image on it: all zero
        f.truncate(sectors * 512)
    before = hashlib.sha256(disk.read_bytes()).hexdigest()
    lines, back = asyncio.run(_boot(_ovmf_args(tmp_path, disk, loader)))
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


# RAM only where OVMF has conventional memory at 256M (its map: @@MMAP lines), so the
# loader gets past the RAM check.
OVMF_RAM = [(EFI_RESERVED, 128 << 20)]


@pytest.fixture(scope="module")
def no_runtime_map(tmp_path_factory, ovmf_abar):
    """A boot of a target captured without a runtime map (as on a BIOS machine): OVMF has
    runtime regions, which the loader prints, then refuses."""
    tmp_path = tmp_path_factory.mktemp("no-runtime-map")
    return _run(tmp_path, run_cli, ovmf_abar, memory=OVMF_RAM)


@pytest.fixture(scope="module")
def ovmf_runtime(no_runtime_map):
    """OVMF's runtime regions as a target's efi_runtime."""
    regions = _runtime_regions(no_runtime_map[0])
    assert regions and all(a & EFI_MEMORY_RUNTIME for _, _, _, a in regions)
    return _as_target(regions)


@pytest.fixture(scope="module")
def ovmf_runtime_services(no_runtime_map, ovmf_runtime):
    """Where OVMF's runtime services table is, as the loader prints it: in a runtime region."""
    (line,) = [l for l in no_runtime_map[0] if l.startswith("@@EFI runtime-services ")]
    table = int(line.split()[2], 16)
    assert any(r["phys"] <= table < r["phys"] + r["pages"] * 4096 for r in ovmf_runtime)
    return table


def test_a_target_without_a_runtime_map_is_refused_by_a_firmware_with_runtime_regions(
        no_runtime_map):
    """The restored kernel could not call a firmware it never mapped: refused, RAM and disk
    untouched (the disk is not even opened), and the firmware boots on."""
    lines, back = no_runtime_map
    text = "\n".join(lines)
    refused = [l for l in lines if l.startswith("@@RESUME refused ")]
    assert len(refused) == 1 and refused[0].startswith("@@RESUME refused efi-runtime-map "), text
    assert "is not in the target's efi_runtime (0 entries)" in refused[0]
    assert "@@DISK " not in text
    assert lines[back].endswith(" efi-runtime-map")
    assert _status(lines[back]) == EFI_ABORTED
    _goes_on(lines, back)


def test_a_runtime_map_unlike_ovmfs_is_refused_and_the_firmware_boots_on(
        tmp_path, cli, ovmf_abar, ovmf_runtime):
    """One region a page shorter than the firmware's: the same start, another size."""
    changed = [dict(r) for r in ovmf_runtime]
    changed[-1]["pages"] -= 1
    lines, back = _run(tmp_path, cli, ovmf_abar, memory=OVMF_RAM, efi_runtime=changed)
    text = "\n".join(lines)
    refused = [l for l in lines if l.startswith("@@RESUME refused ")]
    assert len(refused) == 1 and refused[0].startswith("@@RESUME refused efi-runtime-map "), text
    r = changed[-1]
    assert (f"firmware runtime region at {r['phys']:#x} is type {r['type']}, {r['pages'] + 1} "
            f"pages; the target's efi_runtime has type {r['type']}, {r['pages']} pages at "
            f"{r['phys']:#x}"
            in refused[0]), refused[0]
    assert "@@DISK " not in text
    assert lines[back].endswith(" efi-runtime-map")
    assert _status(lines[back]) == EFI_ABORTED
    _goes_on(lines, back)


def test_a_runtime_services_table_elsewhere_is_refused(tmp_path, cli, ovmf_abar, ovmf_runtime,
                                                       ovmf_runtime_services):
    """OVMF's regions, but the kernel's table one page further: the kernel would call through
    it."""
    lines, back = _run(tmp_path, cli, ovmf_abar, memory=OVMF_RAM, efi_runtime=ovmf_runtime,
                       runtime_services=ovmf_runtime_services + 0x1000)
    refused = [l for l in lines if l.startswith("@@RESUME refused ")]
    assert len(refused) == 1, lines
    assert refused[0] == (f"@@RESUME refused efi-runtime-map the firmware's runtime services "
                          f"table is at {ovmf_runtime_services:#x}, the target's "
                          f"efi_runtime_services at {ovmf_runtime_services + 0x1000:#x}")
    assert lines[back].endswith(" efi-runtime-map")
    _goes_on(lines, back)


def test_no_image_goes_back_to_the_firmware_which_boots_on(tmp_path, cli, ovmf_abar,
                                                           ovmf_runtime, ovmf_runtime_services):
    # OVMF's runtime map: the loader gets past that check too, as far as the disk.
    lines, back = _run(tmp_path, cli, ovmf_abar, memory=OVMF_RAM, efi_runtime=ovmf_runtime,
                       runtime_services=ovmf_runtime_services)
    text = "\n".join(lines)
    assert f"@@EFI runtime regions: {len(ovmf_runtime)}, as the target's efi_runtime" in text
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


def _flip_first_stored_chunk(disk):
    """One bit in the middle of the first chunk that stores data: the header and tables
    stay valid, so only the verify pass can find it."""
    img = open_image(disk)
    pos = img.header.chunks_offset
    for _ in range(img.header.chunk_count):
        c = fmt.ChunkHeader.parse(img.read(pos, fmt.ChunkHeader.sizeof()))
        if c.stored_size:
            break
        pos = fmt.align_up(pos + c.header_size + c.stored_size, fmt.CHUNK_ALIGN)
    at = img.lba * 512 + pos + c.header_size + c.stored_size // 2
    with open(disk, "r+b") as f:
        f.seek(at)
        b = f.read(1)[0]
        f.seek(at)
        f.write(bytes([b ^ 0x10]))


def test_an_image_that_passes_the_header_checks_is_taken_past_exit_boot_services(
        tmp_path, cli, ovmf_abar, ovmf_runtime, ovmf_runtime_services):
    """The other way: an image whose header and tables pass makes the stage exit boot
    services and enter the loader on its 64-bit entry, which checks it all again on its own
    page tables, GDT and IDT, finds the CPUs through the RSDP the stage handed over, and
    takes the disk again. A chunk damaged on purpose then ends the run in the verify pass,
    before any RAM is written, so nothing is restored into a machine that never ran there.
    The image is written by the test host under SeaBIOS for a target whose memory list is RAM
    in both firmwares' maps (the loader's RAM check compares it with OVMF's)."""
    both_ram = [(0x100000, 0x800000), (EFI_RESERVED, 128 << 20)]
    suspend_target = _target(tmp_path, cli, None, both_ram)    # SeaBIOS's ABAR
    t = tomllib.loads(suspend_target.read_text())
    t["options"]["compress"] = "lz4"
    suspend_target.write_text(tomli_w.dumps(t))
    seabios_abar = t["disk"]["ahci_base"]
    disk = tmp_path / "disk.img"
    p = cli("qemu", "suspend", "--memory", "256M", "--disk", disk, "--target", suspend_target,
            "--json", "--quiet", timeout=900)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["status"] == "written"
    _flip_first_stored_chunk(disk)
    before = hashlib.sha256(disk.read_bytes()).hexdigest()

    t["disk"]["ahci_base"] = ovmf_abar
    assert ovmf_abar != seabios_abar        # the two firmwares place the ABAR apart
    t["efi_runtime"] = ovmf_runtime         # captured on the machine that resumes
    t["efi_runtime_services"] = ovmf_runtime_services
    efi_target = tmp_path / "efi-target.toml"
    efi_target.write_text(tomli_w.dumps(t))
    loader = _efi_loader(tmp_path, cli, efi_target)
    lines, code = asyncio.run(_boot(_ovmf_args(tmp_path, disk, loader), until_exit=True))
    text = "\n".join(lines)
    assert "@@RESUME checked: the image header and tables pass" in text, text
    assert "@@EFI back-to-firmware" not in text
    assert any(l.startswith("@@RESUME efi: boot services exited") for l in lines), text
    # the runtime regions checked on both sides of ExitBootServices, the second time on the
    # map it was given; SetVirtualAddressMap is for after a restore, which this run never has
    passed = [i for i, l in enumerate(lines) if l.startswith("@@EFI runtime regions: ")]
    exited = next(i for i, l in enumerate(lines) if "boot services exited" in l)
    assert len(passed) == 2 and passed[0] < exited < passed[1], text
    assert "set-virtual-address-map" not in text
    assert any(l.startswith("@@CPUS ") and "source=madt" in l for l in lines), text
    assert sum(l.startswith("@@DISK ") for l in lines) == 2     # before and after the exit
    refused = [l for l in lines if l.startswith("@@RESUME refused ")]
    assert len(refused) == 1 and refused[0].startswith("@@RESUME refused chunk-damaged "), text
    assert debug_exit_value(code) == REFUSED + CHUNK_DAMAGED
    assert hashlib.sha256(disk.read_bytes()).hexdigest() == before, "the disk was written"
