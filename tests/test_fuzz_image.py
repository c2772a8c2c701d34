"""Fuzzing the image reader: suspendos.image.reader.open_image, .info(), .describe(),
.verify() and the chunk walk, on damaged disks.

Three real images are made once (QEMU, 64 MiB: uncompressed, LZ4, LZ4 + ChaCha20-Poly1305).
Each example damages one disk in place and puts the original bytes back afterwards:
bit flips and byte runs in the header block, the tables and the chunk area; header fields,
extent and range entries, chunk header fields, zero bitmaps and chunk data set to hostile
values; bytes inserted or deleted (the following bytes shift). Most examples then rewrite
the checksums the damage broke — chunk data_xxh64 and header_xxh64, re-sealing encrypted
chunks with the key, tables_xxh64, the header's key_check and header_xxh64 — so the checks
behind them run on hostile values. Truncated copies of the disks are read too.

Whatever the damage, the reader returns or raises the project's own exception
(SuspendosError), never another exception type, never a hang (hypothesis deadlines). Most
examples walk only the first few chunks; some verify the whole image.
"""
import os
import re
import struct
import subprocess
import sys
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import xxhash
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import (HealthCheck, Phase, currently_in_test_context, event, given,
                        settings, strategies as st)

from suspendos.errors import SuspendosError
from suspendos.formats import image as fmt
from suspendos.formats.common import SECTOR_SIZE, offset_of
from suspendos.formats.lists import MemRange
from suspendos.image.reader import header_checksum, open_image

ROOT = Path(__file__).resolve().parent.parent

def examples(n):
    """n, scaled by SUSPENDOS_FUZZ_SCALE (bench/fuzz_long.sh runs these tests longer)."""
    return max(1, int(n * float(os.environ.get("SUSPENDOS_FUZZ_SCALE", "1"))))

EXTRACT = os.environ.get("SUSPENDOS_FUZZ_EXTRACT") == "1"   # also fuzz extract (slow)
# The deadline guards against a parser that hangs or loops on bad input; it is not a
# speed claim, so it is generous enough for a loaded 2-core machine.
SETTINGS = settings(deadline=timedelta(seconds=120 if EXTRACT else 30),
                    max_examples=examples(120),
                    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])
KINDS = ("raw", "lz4", "enc")
WALK = 4                  # chunks walked by most examples
HSIZE = fmt.ChunkHeader.sizeof()
IMAGE_HEADER = fmt.ImageHeader.sizeof()


def note(what, e=None):
    if currently_in_test_context():
        event(f"{what}: " + (re.sub(r"0x[0-9a-f]+|\d+", "N", str(e))[:70] if e else "ok"))


# ---- the real images ----------------------------------------------------------------------

class Disk:
    """A real disk image, its key, the original image bytes and where things are in them
    (image byte offsets: 0 = the header's first byte)."""

    def __init__(self, kind, path, key):
        self.kind, self.path, self.key = kind, path, key
        img = open_image(path, key=key)
        try:
            self.lba, h = img.lba, img.header
            self.header = h
            self.start = img.lba * SECTOR_SIZE
            self.disk_size = os.path.getsize(path)
            list(img.chunks())                      # the unmutated image reads
            walk = img.chunks(check_data=False)
            self.chunks = []                        # (pos, header size, stored size)
            pos = h.chunks_offset
            for c, _ in walk:
                self.chunks.append((pos, c.header_size, c.stored_size, c))
                pos = -(-(pos + c.header_size + c.stored_size) // fmt.CHUNK_ALIGN) * fmt.CHUNK_ALIGN
            self.end = -(-pos // SECTOR_SIZE) * SECTOR_SIZE
        finally:
            img.close()
        with open(path, "rb") as f:
            f.seek(self.start)
            self.orig = f.read(self.end)
        self.tables_end = h.ranges_offset + h.range_count * MemRange.sizeof()
        self.plain = {}                             # chunk index -> decrypted stored bytes
        if key:
            aead = ChaCha20Poly1305(key)
            for i, (pos, hs, ss, c) in enumerate(self.chunks[:WALK + 2]):
                hb = self.orig[pos:pos + HSIZE + fmt.bitmap_bytes(c.page_count)]
                self.plain[i] = aead.decrypt(fmt.nonce(h.image_id, c.index),
                                             self.orig[pos + hs:pos + hs + ss] + c.tag,
                                             fmt.chunk_aad(h.image_id, hb))


@pytest.fixture(scope="module")
def disks(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzzimg")
    key = base / "key"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cli = [sys.executable, "-m", "suspendos.cli"]
    subprocess.run(cli + ["key", "new", "-o", str(key)], check=True, env=env,
                   capture_output=True)
    args = {"raw": ["--compress", "none"], "lz4": ["--compress", "lz4"],
            "enc": ["--compress", "lz4", "--encrypt-key", str(key)]}
    procs = {k: subprocess.Popen(cli + ["qemu", "suspend", "--memory", "64M", "--disk",
                                        str(base / f"{k}.img"), "--quiet", "--seed", "7",
                                        *a], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
             for k, a in args.items()}
    for k, p in procs.items():
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, f"suspend ({k}) failed:\n{out}"
    kb = key.read_bytes()
    return {k: Disk(k, base / f"{k}.img", kb if k == "enc" else None) for k in KINDS}


# ---- damage: an overlay of patches on the original bytes --------------------------------

class Overlay:
    def __init__(self, disk):
        self.disk = disk
        self.patches = []                           # (image offset, bytes), in order

    def read(self, off, n):
        b = bytearray(self.disk.orig[off:off + n])
        b += bytes(n - len(b))
        for po, pd in self.patches:
            lo, hi = max(off, po), min(off + n, po + len(pd))
            if lo < hi:
                b[lo - off:hi - off] = pd[lo - po:hi - po]
        return bytes(b)

    def write(self, off, data):
        limit = self.disk.disk_size - self.disk.start
        data = bytes(data)[:max(0, limit - off)]
        if data and off >= 0:
            self.patches.append((off, data))

    def u(self, off, width):
        return int.from_bytes(self.read(off, width), "little")

    def set_u(self, off, width, value):
        self.write(off, (value & ((1 << 8 * width) - 1)).to_bytes(width, "little"))

    @contextmanager
    def applied(self):
        """Write the patches to the disk; put the original bytes back afterwards."""
        d = self.disk
        with open(d.path, "r+b") as f:
            try:
                for off, data in self.patches:
                    f.seek(d.start + off)
                    f.write(data)
                f.flush()
                yield
            finally:
                for off, data in self.patches:
                    orig = d.orig[off:off + len(data)]
                    f.seek(d.start + off)
                    f.write(orig + bytes(len(data) - len(orig)))


def struct_fields(struct_, base=0, skip=()):
    """(offset, width, name) of the integer fields of a construct Struct."""
    out, off = [], base
    for sc in struct_.subcons:
        size = sc.sizeof()
        if size in (1, 2, 4, 8) and sc.name not in skip and not sc.name.startswith("_"):
            out.append((off, size, sc.name))
        elif sc.name == "context":
            out += [(o, w, "context." + n) for o, w, n in struct_fields(sc.subcon, off)]
        off += size
    return out


HEADER_FIELDS = struct_fields(fmt.ImageHeader, skip=("header_xxh64",))
CHUNK_FIELDS = struct_fields(fmt.ChunkHeader, skip=("header_xxh64",))
INTERESTING = [0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 63, 64, 255, 256, 511, 512, 1023, 1024, 1025,
               4095, 4096, 4097, 8192, 0x7FFF, 0xFFFF, 0x10000, 2**31 - 1, 2**31, 2**32 - 1,
               2**32, 2**40, 2**52, 2**54, 2**63 - 1, 2**63, 2**64 - 4096, 2**64 - 1]


def hostile(draw, original, width):
    mask = (1 << 8 * width) - 1
    return draw(st.sampled_from(INTERESTING).map(lambda v: v & mask)
                | st.integers(0, mask)
                | st.integers(-64, 64).map(lambda d: (original + d) & mask)
                | st.integers(-8, 8).map(lambda d: (original * 2 ** d if d >= 0
                                                    else original >> -d) & mask))


def position(draw, disk):
    """An image byte offset, mostly where the parsing is: header, tables, first chunks."""
    h = disk.header
    first = disk.chunks[min(WALK, len(disk.chunks)) - 1]
    walk_end = first[0] + first[1] + first[2]
    area = draw(st.sampled_from(["header", "tables", "chunk-headers", "walked", "anywhere"]))
    if area == "header":
        return draw(st.integers(0, IMAGE_HEADER + 64))
    if area == "tables":
        return draw(st.integers(h.extents_offset, disk.tables_end + 16))
    if area == "chunk-headers":
        pos, hs = draw(st.sampled_from([(c[0], c[1]) for c in disk.chunks[:WALK + 1]]))
        return pos + draw(st.integers(0, hs - 1))
    if area == "walked":
        return draw(st.integers(h.chunks_offset, walk_end - 1))
    return draw(st.integers(0, disk.end - 1))


def damage(draw, disk, ov):
    """1-4 pieces of damage; returns the chunk indexes whose headers or data were touched."""
    touched = set()
    h = disk.header
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "bytes", "header", "header", "extent", "range",
                                     "counts", "chunk", "chunk", "bitmap", "data", "shift"]))
        if kind == "flip":
            pos = position(draw, disk)
            ov.write(pos, bytes([ov.u(pos, 1) ^ (1 << draw(st.integers(0, 7)))]))
        elif kind == "bytes":
            ov.write(position(draw, disk), draw(st.binary(min_size=1, max_size=24)))
        elif kind == "header":
            off, width, _ = draw(st.sampled_from(HEADER_FIELDS))
            ov.set_u(off, width, hostile(draw, ov.u(off, width), width))
        elif kind == "counts":   # the table sizes the header claims
            name, width = draw(st.sampled_from([("extent_count", 4), ("range_count", 4),
                                                ("chunk_pages", 4), ("chunk_count", 8),
                                                ("pages_total", 8)]))
            off = offset_of(fmt.ImageHeader, name)
            ov.set_u(off, width, draw(st.integers(0, 6)) if draw(st.booleans())
                     else hostile(draw, ov.u(off, width), width))
        elif kind in ("extent", "range"):
            base = h.extents_offset if kind == "extent" else h.ranges_offset
            count = h.extent_count if kind == "extent" else h.range_count
            i = draw(st.integers(0, count))
            field = draw(st.sampled_from([0, 8]))
            off = base + 16 * i + field
            ov.set_u(off, 8, hostile(draw, ov.u(off, 8), 8))
        elif kind in ("chunk", "bitmap", "data"):
            i = draw(st.integers(0, min(WALK, len(disk.chunks)) - 1))
            pos, hs, ss, c = disk.chunks[i]
            touched.add(i)
            if kind == "chunk":
                off, width, _ = draw(st.sampled_from(CHUNK_FIELDS))
                ov.set_u(pos + off, width, hostile(draw, ov.u(pos + off, width), width))
            elif kind == "bitmap":
                bit = draw(st.integers(0, c.page_count + 7))
                o = pos + HSIZE + bit // 8
                ov.write(o, bytes([ov.u(o, 1) ^ (1 << bit % 8)]))
            elif i in disk.plain:    # encrypted: damage the plaintext, re-seal below
                p = bytearray(disk.plain[i])
                if p:
                    j = draw(st.integers(0, len(p) - 1))
                    p[j] ^= draw(st.integers(1, 255))
                disk.plain_override = (i, bytes(p))
            else:
                o = pos + hs + draw(st.integers(0, max(0, ss - 1)))
                ov.write(o, bytes([ov.u(o, 1) ^ draw(st.integers(1, 255))]))
        elif kind == "shift":    # insert or delete bytes; the next 64 KiB move
            pos = position(draw, disk)
            tail = ov.read(pos, 65536)
            if draw(st.booleans()):
                ov.write(pos, draw(st.binary(min_size=1, max_size=32)) + tail)
            else:
                ov.write(pos, tail[draw(st.integers(1, 32)):] + bytes(32))
            touched.update(range(min(WALK, len(disk.chunks))))
    return touched


def fix_chunk(disk, ov, i, reseal):
    """Rewrite chunk i's checksums (and re-seal its data) to match its damaged header."""
    pos = disk.chunks[i][0]
    c = fmt.ChunkHeader.parse(ov.read(pos, HSIZE))     # no constants: always parses
    bm = fmt.bitmap_bytes(c.page_count)
    if bm > 4096 or c.stored_size > 8 << 20:
        return
    if reseal and disk.key and i in disk.plain:
        plain = disk.plain[i]
        override = getattr(disk, "plain_override", None)
        if override and override[0] == i:
            plain = override[1]
        hb = ov.read(pos, HSIZE + bm)
        sealed = ChaCha20Poly1305(disk.key).encrypt(
            fmt.nonce(disk.header.image_id, c.index), plain, fmt.chunk_aad(disk.header.image_id, hb))
        ov.write(pos + c.header_size, sealed[:-16])
        ov.write(pos + offset_of(fmt.ChunkHeader, "tag"), sealed[-16:])
    stored = ov.read(pos + c.header_size, c.stored_size)
    ov.set_u(pos + offset_of(fmt.ChunkHeader, "data_xxh64"), 8, xxhash.xxh64(stored).intdigest())
    raw = bytearray(ov.read(pos, HSIZE + bm))
    off = offset_of(fmt.ChunkHeader, "header_xxh64")
    raw[off:off + 8] = bytes(8)
    ov.set_u(pos + off, 8, xxhash.xxh64(bytes(raw)).intdigest())


def fix_header(disk, ov, tables, key_check):
    def field(name, width=8):
        return ov.u(offset_of(fmt.ImageHeader, name), width)

    n_ext, n_rng = field("extent_count", 4), field("range_count", 4)
    if tables and (n_ext + n_rng) * 16 <= 1 << 20:
        raw = ov.read(field("extents_offset"), n_ext * 16) + \
            ov.read(field("ranges_offset"), n_rng * 16)
        ov.set_u(offset_of(fmt.ImageHeader, "tables_xxh64"), 8, xxhash.xxh64(raw).intdigest())
    if key_check and disk.key:
        block = ov.read(0, fmt.HEADER_BLOCK)
        image_id = ov.read(offset_of(fmt.ImageHeader, "image_id"), 16)
        tag = ChaCha20Poly1305(disk.key).encrypt(fmt.nonce(image_id, fmt.HEADER_NONCE_INDEX),
                                                 b"", fmt.header_aad(block))
        ov.write(offset_of(fmt.ImageHeader, "key_check"), tag)
    ov.set_u(offset_of(fmt.ImageHeader, "header_xxh64"), 8,
             header_checksum(ov.read(0, fmt.HEADER_BLOCK)))


def exercise(path, key, walk):
    """Everything a user can ask of the image; returns what happened (for the statistics)."""
    try:
        img = open_image(path, key=key)
    except SuspendosError as e:
        note("open", e)
        return
    try:
        info = img.info()
        assert info["lba"] == img.lba
        img.describe()
        if walk == "verify":
            img.verify()
        elif walk == "extract":       # SUSPENDOS_FUZZ_EXTRACT=1 (slow: writes ~64 MiB)
            out = Path(path).with_suffix(".extracted")
            try:
                img.extract_elf(out)
                img.extract_raw(out)
            finally:
                out.unlink(missing_ok=True)
        else:
            for n, _ in enumerate(img.chunks()):
                if n + 1 >= walk:
                    break
        note("read")
    except SuspendosError as e:
        note("read", e)
    finally:
        img.close()


def walks():
    extract = ["extract"] if EXTRACT else []
    return st.sampled_from([1, 2, WALK, WALK, "verify"] + extract)


def keys_for(draw, disk):
    if not disk.key:
        return None
    return draw(st.sampled_from([disk.key, disk.key, None, bytes(32)]))


# ---- the properties ---------------------------------------------------------------------

@SETTINGS
@given(data=st.data())
def test_damaged_image_without_checksum_repair(disks, data):
    """Plain damage: mostly the checksums catch it."""
    disk = disks[data.draw(st.sampled_from(KINDS))]
    disk.plain_override = None
    ov = Overlay(disk)
    damage(data.draw, disk, ov)
    walk = data.draw(walks())
    with ov.applied():
        exercise(disk.path, keys_for(data.draw, disk), walk)


@SETTINGS
@given(data=st.data())
def test_damaged_image_with_checksums_repaired(disks, data):
    """Damage behind rewritten checksums (and re-sealed chunks, and key_check): the
    structure checks, the table walks, LZ4 decoding and decryption see hostile values."""
    disk = disks[data.draw(st.sampled_from(KINDS))]
    disk.plain_override = None
    ov = Overlay(disk)
    touched = damage(data.draw, disk, ov)
    reseal = data.draw(st.booleans())
    for i in sorted(touched):
        if data.draw(st.integers(0, 9)):            # mostly
            fix_chunk(disk, ov, i, reseal)
    fix_header(disk, ov, tables=data.draw(st.integers(0, 9)) > 0,
               key_check=data.draw(st.integers(0, 9)) > 0)
    walk = data.draw(walks())
    with ov.applied():
        exercise(disk.path, keys_for(data.draw, disk), walk)


@settings(SETTINGS, max_examples=examples(60))
@given(data=st.data())
def test_truncated_disk(disks, data, tmp_path):
    disk = disks[data.draw(st.sampled_from(KINDS))]
    h = disk.header
    first = disk.chunks[min(WALK, len(disk.chunks)) - 1]
    cut = data.draw(st.one_of(st.integers(0, fmt.HEADER_BLOCK + 64),
                              st.integers(h.extents_offset, h.chunks_offset + 64),
                              st.integers(h.chunks_offset, first[0] + first[1] + first[2]),
                              st.integers(0, disk.end)))
    path = tmp_path / "cut.img"
    with open(path, "wb") as f:
        f.truncate(disk.start + cut)                # the start of the disk stays a hole
        f.seek(disk.start)
        f.write(disk.orig[:cut])
    exercise(path, disk.key, data.draw(st.sampled_from([2, WALK, "verify"])))


# ---- regressions: what the fuzzing found ---------------------------------------------------

def test_empty_range_table_is_a_format_error(disks):
    """range_count 0 and pages_total 0 (checksums right): page_address() raised IndexError
    on the first chunk. The reader now refuses an empty range table."""
    disk = disks["lz4"]
    ov = Overlay(disk)
    ov.set_u(offset_of(fmt.ImageHeader, "range_count"), 4, 0)
    ov.set_u(offset_of(fmt.ImageHeader, "pages_total"), 8, 0)
    fix_header(disk, ov, tables=True, key_check=False)
    with ov.applied(), pytest.raises(SuspendosError):
        img = open_image(disk.path)
        try:
            list(img.chunks())
        finally:
            img.close()


@pytest.mark.parametrize("lba", [1 << 40, 1 << 54, (1 << 64) - 1])
def test_extent_far_past_the_disk_is_a_format_error(disks, lba):
    """A second extent at a huge LBA (tables and header checksums right): reading a chunk
    through it raised OSError (EINVAL) or ValueError from seek(). Now: truncated disk."""
    disk = disks["lz4"]
    h = disk.header
    ov = Overlay(disk)
    ranges = ov.read(h.ranges_offset, 16 * h.range_count)
    ov.write(fmt.HEADER_BLOCK + 32, ranges)                 # make room for two extents
    ov.set_u(offset_of(fmt.ImageHeader, "ranges_offset"), 8, fmt.HEADER_BLOCK + 32)
    ov.set_u(offset_of(fmt.ImageHeader, "extent_count"), 4, 2)
    # extent 0 holds only the header and tables: the chunks are read through extent 1
    ov.write(fmt.HEADER_BLOCK, struct.pack("<QQQQ", disk.lba, 16, lba, 1 << 20))
    fix_header(disk, ov, tables=True, key_check=False)
    with ov.applied(), pytest.raises(SuspendosError):
        img = open_image(disk.path)
        try:
            list(img.chunks())
        finally:
            img.close()


@pytest.mark.parametrize("shift", [1 << 50])
def test_extract_raw_range_past_the_largest_file(disks, shift, tmp_path):
    disk = disks["lz4"]
    h = disk.header
    ov = Overlay(disk)
    last = h.ranges_offset + 16 * (h.range_count - 1)  # move the last range up, same size
    ov.set_u(last, 8, ov.u(last, 8) + shift)
    ov.set_u(last + 8, 8, ov.u(last + 8, 8) + shift)
    fix_header(disk, ov, tables=True, key_check=False)
    with ov.applied():
        img = open_image(disk.path)
        try:
            img.verify()                                # the image itself reads fine
            try:
                img.extract_raw(tmp_path / "ram.raw")
            except SuspendosError:
                pass
        finally:
            img.close()
