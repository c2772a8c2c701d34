"""NVMe and virtio-blk under real QEMU (issue 12): the same proofs the AHCI path has, on
QEMU's own NVMe controller and virtio-blk-pci device, with 512- and 4096-byte logical blocks.

Ground truth is QEMU's pmemsave; disk bytes outside the extents are checked byte for byte;
faults come from blkdebug under the device. Item 7: after the resume loader gives the disk
back, guest RAM is dumped twice a few seconds apart and must not change."""
import asyncio
import json
import os

import pytest
import tomli_w
import tomllib

from suspendos.image.reader import open_image
from suspendos.qemu.ramdump import dump_ram
from suspendos.qemu.resume import qemu_resume
from suspendos.target.qemu import qemu_target

from test_suspend_qemu import compare_with_dump

MiB = 1 << 20


def _bytes(memory):
    return int(memory[:-1]) << (20 if memory[-1] == "M" else 30)


def _disk(path, memory, bus, sector_size):
    """A disk of the target's size, random bytes outside the extents; returns (target, spans)."""
    t = qemu_target(_bytes(memory), bus=bus, sector_size=sector_size)
    bs = t.disk.block_size
    size = t.disk.sectors * bs
    spans = [(0, t.extents[0].lba * bs), ((t.extents[0].lba + t.extents[0].count) * bs, size)]
    with open(path, "wb") as f:
        f.truncate(size)
        for s, e in spans:
            f.seek(s)
            f.write(os.urandom(e - s))
    return t, spans


def _read(path, spans):
    with open(path, "rb") as f:
        return [(f.seek(s), f.read(e - s))[1] for s, e in spans]


def _bus(bus, sector_size):
    return ["--disk-bus", bus, "--sector-size", str(sector_size)]


def _suspend(cli, disk, memory, bus, sector_size, *extra, timeout=900):
    p = cli("qemu", "suspend", "--memory", memory, "--disk", disk, "--json", "--quiet",
            *_bus(bus, sector_size), *extra, timeout=timeout)
    return p, (json.loads(p.stdout) if p.stdout.strip() else None)


GROUND_TRUTH = [   # (bus, sector size, memory, compress, encrypted)
    ("nvme", 512, "256M", "lz4", False),
    ("nvme", 4096, "64M", "none", True),
    ("nvme", 512, "3G", "none", False),
    ("virtio", 512, "256M", "lz4", True),
    ("virtio", 4096, "64M", "none", False),
]


@pytest.mark.parametrize("bus, sector_size, memory, compress, encrypt", GROUND_TRUTH)
def test_ground_truth(tmp_path, cli, bus, sector_size, memory, compress, encrypt):
    disk, ram = tmp_path / "disk.img", tmp_path / "ram.bin"
    t, spans = _disk(disk, memory, bus, sector_size)
    before = _read(disk, spans)
    key, enc = None, []
    if encrypt:
        cli("key", "new", "-o", tmp_path / "key", check=True)
        key = (tmp_path / "key").read_bytes()
        enc = ["--encrypt-key", tmp_path / "key"]
    p, s = _suspend(cli, disk, memory, bus, sector_size, "--compress", compress,
                    "--ram-dump", ram, *enc)
    assert p.returncode == 0, p.stderr
    assert s["status"] == "written" and s["pages_saved"] == s["pages_total"] > 0, s
    assert s["host_memory_check"] == "passed" and s["host_cpu_check"] == "passed", s
    img = open_image(disk, key=key)
    info = img.info()
    assert info["block_size"] == sector_size and info["extents"][0][0] == t.extents[0].lba
    img.extract_raw(tmp_path / "extracted.bin")
    assert compare_with_dump(info, ram, tmp_path / "extracted.bin") >= 0.95 * _bytes(memory)
    assert _read(disk, spans) == before, "bytes outside the image extents changed"
    assert "every checksum matches" in img.verify()


@pytest.mark.parametrize("bus, sector_size, compress", [("nvme", 4096, "lz4"),
                                                        ("virtio", 512, "none")])
def test_resume_cycle_and_damage(tmp_path, cli, bus, sector_size, compress):
    disk = tmp_path / "disk.img"
    p, s = _suspend(cli, disk, "64M", bus, sector_size, "--compress", compress)
    assert p.returncode == 0 and s["status"] == "written", p.stderr
    if bus == "nvme":       # QEMU's controller asks for no Host Memory Buffer (HMPRE 0)
        assert s["disk_log"] == ["@@NVME hmb not-requested"], s["disk_log"]
    damaged = tmp_path / "damaged.img"
    damaged.write_bytes(disk.read_bytes())
    img = open_image(damaged)
    pos = img.header.chunks_offset + 100          # inside chunk 0's header
    off = img.lba * sector_size + pos
    with open(damaged, "r+b") as f:
        f.seek(off)
        b = f.read(1)[0]
        f.seek(off)
        f.write(bytes([b ^ 0x10]))

    r = cli("qemu", "resume", "--memory", "64M", "--disk", disk, "--json", "--quiet",
            *_bus(bus, sector_size), timeout=900)
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["status"] == "resumed", (out, r.stderr)
    assert out["host_memory_check"] == "passed" and out["host_cpu_check"] == "passed"
    if bus == "nvme":       # the resume loader links the same driver
        assert out["disk_log"] == ["@@NVME hmb not-requested"], out["disk_log"]
    again = cli("qemu", "resume", "--memory", "64M", "--disk", disk, "--json", "--quiet",
                *_bus(bus, sector_size), timeout=900)
    assert again.returncode == 1 and json.loads(again.stdout)["reason"] == "already-resumed"

    before = damaged.read_bytes()
    bad = cli("qemu", "resume", "--memory", "64M", "--disk", damaged, "--json", "--quiet",
              *_bus(bus, sector_size), timeout=900)
    out = json.loads(bad.stdout)
    assert bad.returncode == 1 and out["reason"] == "chunk-damaged", out
    assert out["ram"] == "untouched" and damaged.read_bytes() == before


@pytest.mark.parametrize("bus", ["nvme", "virtio"])
def test_write_error_is_named_by_lba(tmp_path, cli, bus):
    disk = tmp_path / "disk.img"
    t, spans = _disk(disk, "64M", bus, 512)
    before = _read(disk, spans)
    lba = t.extents[0].lba + 20000
    p, s = _suspend(cli, disk, "64M", bus, 512, "--inject", f"write-error:{lba},always")
    assert p.returncode == 1, p.stderr
    assert s["status"] == "disk_io_error" and s["failed_lba"] == lba, s
    assert f"LBA {lba}" in p.stderr
    assert s["host_memory_check"] == "passed" and s["host_cpu_check"] == "passed"
    assert cli("image", "info", disk).returncode == 2          # no header was written
    assert _read(disk, spans) == before


def test_write_error_on_4096_byte_blocks(tmp_path, cli):
    disk = tmp_path / "disk.img"
    t, _ = _disk(disk, "64M", "nvme", 4096)
    lba = t.extents[0].lba + 3000
    p, s = _suspend(cli, disk, "64M", "nvme", 4096, "--inject", f"write-error:{lba},always")
    assert p.returncode == 1 and s["status"] == "disk_io_error" and s["failed_lba"] == lba, s


@pytest.mark.parametrize("bus", ["nvme", "virtio"])
def test_stalled_write_ends_at_its_deadline(tmp_path, cli, bus):
    disk = tmp_path / "disk.img"
    p, s = _suspend(cli, disk, "64M", bus, 512, "--inject", "write-stall")
    assert p.returncode == 1, p.stderr
    assert s["status"] == "disk_timeout" and "within 10000 ms" in s["message"], s
    assert "WRITE at LBA" in s["message"]
    assert s["host_memory_check"] == "passed" and s["host_cpu_check"] == "passed"


def _target_file(tmp_path, memory, bus, change):
    d = tomllib.loads(tomli_w.dumps(qemu_target(_bytes(memory), bus=bus).to_dict()))
    change(d)
    path = tmp_path / "target.toml"
    path.write_text(tomli_w.dumps(d))
    return path


@pytest.mark.parametrize("bus, change, words", [
    ("nvme", lambda d: d["disk"].update(bar=d["disk"]["bar"] + 0x1000), "BAR0"),
    ("nvme", lambda d: d["disk"].update(pci="00:1f.2"), "not an NVMe controller"),
    ("virtio", lambda d: d["disk"].update(bar=d["disk"]["bar"] + 0x1000),
     "is not the configured bar"),
    ("virtio", lambda d: d["disk"].update(pci="00:1f.2"), "not a virtio block device"),
])
def test_wrong_bar_or_function_refused(tmp_path, cli, bus, change, words):
    disk = tmp_path / "disk.img"
    _disk(disk, "64M", bus, 512)
    before = disk.read_bytes()
    p, s = _suspend(cli, disk, "64M", bus, 512, "--target",
                    _target_file(tmp_path, "64M", bus, change))
    assert p.returncode == 1 and s["status"] == "pci_mismatch", s
    assert words in s["message"], s
    assert s["host_memory_check"] == "passed" and s["host_cpu_check"] == "passed"
    assert disk.read_bytes() == before


@pytest.mark.parametrize("bus, sector_size", [("ahci", 512), ("nvme", 512), ("virtio", 512)])
def test_no_ram_changes_after_the_loader_gives_the_disk_back(tmp_path, cli, bus, sector_size):
    """Item 7: once the loader has restored RAM and given the controller back, nothing may
    DMA into it: two dumps of every RAM range, 3 s apart with the guest running, agree."""
    disk = tmp_path / "disk.img"
    p, s = _suspend(cli, disk, "64M", bus, sector_size)
    assert p.returncode == 0 and s["status"] == "written", p.stderr
    # Every saved range: the restored RAM (the reserved region holds the loader, which is
    # still running its wait loop there).
    ram = qemu_target(64 * MiB, bus=bus).saved_ranges()
    first, second = tmp_path / "a.bin", tmp_path / "b.bin"

    async def twice(machine):
        await dump_ram(machine, ram, first)
        await machine.execute("cont")
        await asyncio.sleep(3)
        await machine.execute("stop")
        await dump_ram(machine, ram, second)

    out, ok = qemu_resume(64 * MiB, disk, show_progress=False, bus=bus, sector_size=sector_size,
                          on_release=twice)
    assert ok and out["status"] == "resumed", out
    with open(first, "rb") as a, open(second, "rb") as b:
        for start, end in ram:
            a.seek(start)
            b.seek(start)
            for off in range(start, end, MiB):
                n = min(MiB, end - off)
                assert a.read(n) == b.read(n), f"RAM at {off:#x} changed after the give-back"


def test_image_from_before_block_size_still_reads(tmp_path, cli):
    """Images written before the header had block_size carry 0 there: 512-byte blocks. The
    reader and the resume loader take 0 as 512."""
    from suspendos.formats import image as fmt
    from suspendos.image.reader import header_checksum
    disk = tmp_path / "disk.img"
    p, s = _suspend(cli, disk, "64M", "ahci", 512)
    assert p.returncode == 0 and s["status"] == "written", p.stderr
    lba = open_image(disk).lba
    with open(disk, "r+b") as f:
        f.seek(lba * 512)
        block = bytearray(f.read(fmt.HEADER_BLOCK))
        off = fmt.offset_of(fmt.ImageHeader, "block_size")
        assert block[off:off + 4] == (512).to_bytes(4, "little")
        block[off:off + 4] = bytes(4)
        c = fmt.offset_of(fmt.ImageHeader, "header_xxh64")
        block[c:c + 8] = header_checksum(bytes(block)).to_bytes(8, "little")
        f.seek(lba * 512)
        f.write(block)
    img = open_image(disk)
    assert img.info()["block_size"] == 512 and "every checksum matches" in img.verify()
    r = cli("qemu", "resume", "--memory", "64M", "--disk", disk, "--json", "--quiet",
            timeout=900)
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["status"] == "resumed", (out, r.stderr)
