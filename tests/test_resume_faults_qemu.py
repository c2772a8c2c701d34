"""Faults during a resume, under real QEMU: read errors and stalls (blkdebug under the AHCI
disk), and a disk that changes between the loader's verify pass and its restore pass (a
host-side write while the loader waits at its "verified" pause). Each ends in a refusal with
RAM untouched, or, once RAM is written, in a failure the host is told about plainly.

"RAM untouched" is not taken from the loader's word: QMP pmemsave dumps every saved page at
the loader's first pause ("start", before it touches the disk) and at its last ("end",
right before it exits), and the two must be equal byte for byte. The loader's pause points:
builder/resume/pause.c."""
import asyncio
import shutil

import pytest

from suspendos.formats import image as fmt
from suspendos.image.reader import open_image
from suspendos.keys import read_key
from suspendos.qemu.ramdump import dump_ram
from suspendos.qemu.resume import parse_inject, qemu_resume
from suspendos.target.qemu import qemu_target
from ramcompare import differing_pages

MEM = 64 << 20


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """One 64M image (uncompressed, so chunks are restored by DMA straight into RAM)."""
    from conftest import run_cli
    d = tmp_path_factory.mktemp("pristine") / "disk.img"
    run_cli("qemu", "suspend", "--memory", "64M", "--disk", d, "--quiet", check=True,
            timeout=600)
    return d


@pytest.fixture
def disk(tmp_path, pristine):
    path = tmp_path / "disk.img"
    shutil.copyfile(pristine, path)
    return path


class Dumps:
    """At each of the loader's pauses: dump the saved RAM, then run the test's own action."""

    def __init__(self, tmp_path, pci, actions=None):
        self.dir, self.actions, self.seen = tmp_path, actions or {}, []
        self.ranges = qemu_target(MEM, pci=pci).saved_ranges()

    async def __call__(self, machine, where):
        self.seen.append(where)
        if where in ("start", "end"):
            await dump_ram(machine, self.ranges, self.dir / f"{where}.raw")
        action = self.actions.get(where)
        if action:
            result = action(machine)
            if asyncio.iscoroutine(result):
                await result

    def assert_ram_untouched(self):
        assert self.seen[0] == "start" and self.seen[-1] == "end", self.seen
        changed = differing_pages(self.dir / "start.raw", self.dir / "end.raw", self.ranges)
        assert changed == [], f"{len(changed)} saved pages changed, first {changed[:4]}"


def resume(disk, dumps, inject=None, key=None):
    """`inject`: as `qemu resume --inject` takes it, or "blkdebug" (no rule: the test sets a
    breakpoint itself)."""
    return qemu_resume(MEM, disk, key=key, show_progress=False, on_pause=dumps,
                       inject=inject if inject == "blkdebug" else parse_inject(inject))


def assert_refused(summary, ok, reason, words):
    assert not ok
    assert summary["status"] == "refused" and summary["reason"] == reason, summary
    assert summary["ram"] == "untouched"
    assert words in summary["message"], summary


def test_read_error_in_the_verify_pass_is_refused_with_ram_untouched(tmp_path, qemu_pci, disk):
    lba = open_image(disk).lba + 2000          # inside the chunks
    dumps = Dumps(tmp_path, qemu_pci)
    summary, ok = resume(disk, dumps, f"read-error:{lba}")
    assert_refused(summary, ok, "read-error", "LBA")
    dumps.assert_ram_untouched()
    assert open_image(disk).info()["state"] == "valid"     # a later boot may try again


def test_a_read_that_never_completes_is_refused_with_ram_untouched(tmp_path, qemu_pci, disk):
    """The header read is held for good by a blkdebug breakpoint: the read's deadline ends it."""
    dumps = Dumps(tmp_path, qemu_pci)
    summary, ok = resume(disk, dumps, "read-stall")
    assert_refused(summary, ok, "read-error", "within")
    dumps.assert_ram_untouched()


def test_a_read_stall_as_the_restore_pass_starts_is_refused_with_ram_untouched(
        tmp_path, qemu_pci, disk):
    """The restore pass first reads the header again; that read never completes."""
    async def stall(machine):
        await machine.execute("human-monitor-command",
                              {"command-line": 'qemu-io d0 "break read_aio stall"'})
    dumps = Dumps(tmp_path, qemu_pci, {"verified": stall})
    summary, ok = resume(disk, dumps, "blkdebug")
    assert "verified" in dumps.seen
    assert_refused(summary, ok, "read-error", "within")
    dumps.assert_ram_untouched()


def _last_stored_byte(img):
    """Image offset of the last data byte of the last chunk that stores any data."""
    from suspendos.formats import image as fmt
    h, pos, last = img.header, img.header.chunks_offset, None
    for _ in range(h.chunk_count):
        c = fmt.ChunkHeader.parse(img.read(pos, fmt.ChunkHeader.sizeof()))
        if c.stored_size:
            last = pos + c.header_size + c.stored_size - 1
        pos = fmt.align_up(pos + c.header_size + c.stored_size, fmt.CHUNK_ALIGN)
    return last


def _write_image_byte(disk, offset):
    img = open_image(disk)
    with open(disk, "r+b") as f:
        f.seek(img.lba * 512 + offset)
        b = f.read(1)[0]
        f.seek(img.lba * 512 + offset)
        f.write(bytes([b ^ 0x40]))


def test_header_changed_after_the_verify_pass_is_refused_with_ram_untouched(
        tmp_path, qemu_pci, disk):
    """A host-side write to the header block (past the header's checked fields, so only the
    re-read can notice) while the loader waits between its passes."""
    dumps = Dumps(tmp_path, qemu_pci, {"verified": lambda m: _write_image_byte(disk, 4000)})
    summary, ok = resume(disk, dumps)
    assert_refused(summary, ok, "header-damaged", "changed during the verify pass")
    dumps.assert_ram_untouched()


def test_chunk_changed_after_the_verify_pass_is_a_plain_restore_failure(
        tmp_path, qemu_pci, disk, cli):
    """Too late to refuse once pages are written: the loader stops, says RAM is partly
    restored and the machine must be reset, and never returns into the host; the image is
    not marked resumed. The CLI says so in one line and exits 1."""
    last = _last_stored_byte(open_image(disk))
    dumps = Dumps(tmp_path, qemu_pci, {"verified": lambda m: _write_image_byte(disk, last)})
    summary, ok = resume(disk, dumps)
    assert not ok
    assert summary["status"] == "restore-failed" and summary["ram"] == "partly restored", summary
    assert "changed on disk after the verify pass" in summary["message"], summary
    assert "the machine must be reset" in summary["message"], summary
    assert dumps.seen[-1] == "end" and "restored" not in dumps.seen
    assert open_image(disk).info()["state"] == "valid"


def _reseal_checksums(disk, pos, chunk):
    """Recompute the chunk's data_xxh64 (over the stored bytes as they are now) and its
    header_xxh64, as a forger without the key could: only the AEAD tag is left to notice."""
    import xxhash
    img = open_image(disk)
    stored = img.read(pos + chunk.header_size, chunk.stored_size)
    head = bytearray(img.read(pos, fmt.ChunkHeader.sizeof()
                              + fmt.bitmaps_bytes(chunk.page_count, chunk.flags)))
    data_off = fmt.offset_of(fmt.ChunkHeader, "data_xxh64")
    head[data_off:data_off + 8] = xxhash.xxh64(stored).intdigest().to_bytes(8, "little")
    hdr_off = fmt.offset_of(fmt.ChunkHeader, "header_xxh64")
    head[hdr_off:hdr_off + 8] = bytes(8)
    head[hdr_off:hdr_off + 8] = xxhash.xxh64(bytes(head)).intdigest().to_bytes(8, "little")
    with open(disk, "r+b") as f:
        f.seek(img.lba * 512 + pos)
        f.write(bytes(head))


def test_flipped_ciphertext_byte_is_refused_in_the_verify_pass_with_ram_untouched(
        tmp_path, qemu_pci, cli):
    """The verify pass no longer decrypts: it checks each chunk's Poly1305 tag over the
    ciphertext. One ciphertext byte of the last stored chunk flipped, with its data and header
    checksums made to match again, must still be refused there, before the "verified" pause,
    every saved page as it was."""
    key, disk = tmp_path / "k", tmp_path / "disk.img"
    assert cli("key", "new", "-o", key).returncode == 0
    p = cli("qemu", "suspend", "--memory", "64M", "--disk", disk, "--quiet", "--compress",
            "lz4", "--encrypt-key", key, timeout=600)
    assert p.returncode == 0, p.stderr
    img = open_image(disk)
    h, pos, last = img.header, img.header.chunks_offset, None
    for index in range(h.chunk_count):
        c = fmt.ChunkHeader.parse(img.read(pos, fmt.ChunkHeader.sizeof()))
        if c.stored_size:
            last = index, pos, c
        pos = fmt.align_up(pos + c.header_size + c.stored_size, fmt.CHUNK_ALIGN)
    index, pos, chunk = last
    assert chunk.flags & fmt.CHUNK_FLAGS.ENCRYPTED
    _write_image_byte(disk, pos + chunk.header_size + chunk.stored_size // 2)
    _reseal_checksums(disk, pos, chunk)
    img = open_image(disk)
    assert next(x for i, x in enumerate(img.chunks(check_data=False)) if i == index)  # sums ok

    dumps = Dumps(tmp_path, qemu_pci)
    summary, ok = resume(disk, dumps, key=read_key(key))
    assert_refused(summary, ok, "chunk-damaged", "authentication tag mismatch")
    assert f"chunk {index} " in summary["message"], summary
    assert "verified" not in dumps.seen, dumps.seen
    dumps.assert_ram_untouched()
    assert open_image(disk).info()["state"] == "valid"


def test_cli_resume_inject_is_checked(cli, disk):
    for bad in ("read-error:x", "write-error:5", "read-stall,always", "read-error:5,twice"):
        p = cli("qemu", "resume", "--memory", "64M", "--disk", disk, "--inject", bad)
        assert p.returncode == 2 and "--inject" in p.stderr, (bad, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1
