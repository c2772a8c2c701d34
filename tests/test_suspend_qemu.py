"""Suspend end to end under real QEMU: the image, extracted with the host-side tools, equals
QEMU's own dump of guest RAM over every saved range; the test host's memory and CPU checks
pass; the disk outside the image extents is unchanged, byte for byte."""
import json
import mmap
import os

import pytest

from suspendos.image.reader import open_image
from suspendos.target.qemu import qemu_target

MiB = 1 << 20


def _disk_with_sentinels(path, memory, qemu_pci):
    """A disk of the target's size whose bytes outside the extents are a known pattern."""
    t = qemu_target(memory, pci=qemu_pci)
    size = t.disk.sectors * 512
    with open(path, "wb") as f:
        f.truncate(size)
    outside = _outside_extents(t, size)
    with open(path, "r+b") as f:
        for start, end in outside:
            f.seek(start)
            f.write(os.urandom(end - start))
    return outside


def _outside_extents(t, size):
    spans, pos = [], 0
    for e in sorted(t.extents, key=lambda e: e.lba):
        if e.lba * 512 > pos:
            spans.append((pos, e.lba * 512))
        pos = (e.lba + e.count) * 512
    if pos < size:
        spans.append((pos, size))
    return spans


def _read_spans(path, spans):
    with open(path, "rb") as f:
        out = []
        for s, e in spans:
            f.seek(s)
            out.append(f.read(e - s))
        return out


def compare_with_dump(info, ram_path, extracted_path):
    with open(ram_path, "rb") as fr, open(extracted_path, "rb") as fe:
        ram = mmap.mmap(fr.fileno(), 0, access=mmap.ACCESS_READ)
        ext = mmap.mmap(fe.fileno(), 0, access=mmap.ACCESS_READ)
        for start, end in info["ranges"]:
            for off in range(start, end, 16 * MiB):
                stop = min(off + 16 * MiB, end)
                if ram[off:stop] != ext[off:stop]:
                    for p in range(off, stop, 4096):
                        assert ram[p:p + 4096] == ext[p:p + 4096], f"page {p:#x} differs"
    return sum(e - s for s, e in info["ranges"])


CASES = [("64M", 1, "none", False), ("64M", 2, "none", False),
         ("256M", 1, "none", False), ("256M", 2, "none", False),
         ("3G", 1, "none", False), ("3G", 2, "none", False),
         ("64M", 3, "lz4", False), ("256M", 3, "lz4", False), ("256M", 4, "lz4", True),
         ("64M", 5, "none", True), ("3G", 3, "lz4", True)]


@pytest.mark.parametrize("memory, seed, compress, encrypt", CASES)
def test_suspend_matches_qemu_ground_truth(tmp_path, cli, qemu_pci, memory, seed, compress,
                                           encrypt):
    mem_bytes = int(memory[:-1]) << (20 if memory[-1] == "M" else 30)
    disk, ram = tmp_path / "disk.img", tmp_path / "ram.bin"
    outside = _disk_with_sentinels(disk, mem_bytes, qemu_pci)
    before = _read_spans(disk, outside)

    key, enc = None, []
    if encrypt:
        cli("key", "new", "-o", tmp_path / "key", check=True)
        key = (tmp_path / "key").read_bytes()
        enc = ["--encrypt-key", tmp_path / "key"]
    p = cli("qemu", "suspend", "--memory", memory, "--seed", seed, "--disk", disk,
            "--ram-dump", ram, "--json", "--quiet", "--compress", compress, *enc)
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["status"] == "written"
    assert s["host_memory_check"] == "passed" and s["host_cpu_check"] == "passed"
    # QEMU's -cpu max has AVX2 (TCG, QEMU >= 7.2): the payload ran its AVX2 path, and the
    # host's ymm upper halves and XCR0 were among the registers checked above.
    assert s["vector_path"] == "avx2" and s["host_avx"] == "on", s
    assert s["pages_saved"] == s["pages_total"] > 0
    assert s["seconds"] > 0 and s["mb_per_s"] > 0
    assert 0.1 < s["zero_pages"] / s["pages_total"] < 0.4     # the test host's mix: ~25 %

    img = open_image(disk, key=key)
    info = img.info()
    assert info["pages"] == s["pages_saved"] and info["state"] == "valid"
    assert info["compression"] == compress
    assert info["encryption"] == ("chacha20-poly1305" if encrypt else "none")
    img.extract_raw(tmp_path / "extracted.bin")
    saved = compare_with_dump(info, ram, tmp_path / "extracted.bin")
    assert saved >= 0.95 * mem_bytes
    assert _read_spans(disk, outside) == before, "bytes outside the image extents changed"
    assert "every checksum matches" in img.verify()


@pytest.mark.parametrize("host_hz, source, used", [
    (None, "pit", None),                    # the test host gives none: PIT calibration
    (2_500_000_000, "host", 2_500_000_000),  # a plausible rate from the host is taken
    (1, "fallback", 5_000_000_000),          # an implausible one: the 5 GHz fallback, said
])
def test_tsc_rate_and_its_source_are_reported(tmp_path, qemu_pci, host_hz, source, used):
    from suspendos.qemu.suspend import qemu_suspend
    s, ok = qemu_suspend(64 << 20, tmp_path / "disk.img", show_progress=False,
                         host_tsc_hz=host_hz)
    assert ok and s["status"] == "written", s
    assert s["tsc_source"] == source, s
    assert s["guest_clock_trusted"] == (source != "fallback")
    assert s["tsc_hz"] == used if used else s["tsc_hz"] > 0
    assert s["host_seconds"] > 0 and s["host_disk_mb_per_s"] > 0, s
