"""Read an image from a disk file: find it, check every checksum, map pages to physical
addresses, extract memory. Layout: suspendos/formats/image.py. Decoding uses well-kept
libraries only (xxhash for checksums, python-lz4 for LZ4), never the payload's own C.
"""
import bisect
import os

import lz4.block
import xxhash
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ..errors import FormatError, UsageError
from ..fileutil import input_size, open_input, show
from ..formats import image as fmt
from ..formats.common import PAGE_SIZE, SECTOR_SIZE, parse
from ..formats.lists import Extent, MemRange

# Where `image` commands look for an image when not told (--lba): the QEMU target's first
# extent, a swap partition at 1 MiB past its header page (suspendos target linux), the start
# of the disk, then every 1 MiB boundary that holds data, and 4 KiB past each.
DEFAULT_LBAS = (2048, 2056, 0)
SCAN_STEP = 1 << 20
COMPRESSION_NAMES = {0: "none", 1: "lz4"}
MAX_PHYSICAL = 1 << 52          # x86-64 MAXPHYADDR can be at most 52 (SDM vol. 3, 4.1.4)
MAX_TABLE_ENTRIES = 1 << 16     # extents or ranges; more is a damaged header
ENCRYPTION_NAMES = {0: "none", 1: "chacha20-poly1305"}
STATE_NAMES = {fmt.IMAGE_STATE.VALID: "valid", fmt.IMAGE_STATE.RESUMED: "resumed"}


class NoImage(FormatError):
    pass


KEY_ON_PLAIN = "--key: the image is not encrypted (leave --key out)"
KEY_MISSING = "the image is encrypted: give --key FILE"


def check_key_given(path, key, lba):
    """Before a resume boots anything: refuse a missing --key for an encrypted image and a
    --key for a plain one, from the header at `lba` (512-byte sectors). A disk without a
    sound, valid header is left to the resume loader, whose refusal names what it found."""
    with open_input(path, "--disk", block_device=True) as f:
        f.seek(lba * SECTOR_SIZE)
        block = f.read(fmt.HEADER_BLOCK)
    if len(block) < fmt.HEADER_BLOCK or block[:8] != fmt.IMAGE_MAGIC:
        return
    h = parse(fmt.ImageHeader, block[:fmt.ImageHeader.sizeof()], "image header")
    if h.version != fmt.IMAGE_VERSION or header_checksum(block) != h.header_xxh64 \
            or h.state != fmt.IMAGE_STATE.VALID:
        return
    if key is not None and not h.encryption:
        raise UsageError(KEY_ON_PLAIN)
    if h.encryption and key is None:
        raise UsageError(f"--disk: {KEY_MISSING}")


def _header_ok(block):
    if block[:8] != fmt.IMAGE_MAGIC:
        return False
    h = parse(fmt.ImageHeader, block[:fmt.ImageHeader.sizeof()], "image header")
    return h


def header_checksum(block):
    size = fmt.ImageHeader.sizeof()
    off = fmt.offset_of(fmt.ImageHeader, "header_xxh64")
    raw = bytearray(block[:size])
    raw[off:off + 8] = bytes(8)
    return xxhash.xxh64(bytes(raw)).intdigest()


def find_image(f, size, lba=None):
    """LBA of the image header on the open disk file."""
    candidates = [lba] if lba is not None else list(DEFAULT_LBAS)
    for c in candidates:
        if c * SECTOR_SIZE + len(fmt.IMAGE_MAGIC) > size:    # spares seeks the OS refuses
            continue
        f.seek(c * SECTOR_SIZE)
        if f.read(8) == fmt.IMAGE_MAGIC:
            return c
    if lba is not None:
        raise NoImage(f"no image header at LBA {lba}" + (
            f" (the disk ends at LBA {size // SECTOR_SIZE})" if lba * SECTOR_SIZE >= size else ""))
    pos = 0
    fd = f.fileno()
    while pos < size:
        try:
            pos = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            break
        pos = pos // SCAN_STEP * SCAN_STEP
        for at in (pos, pos + 4096):
            f.seek(at)
            if f.read(8) == fmt.IMAGE_MAGIC:
                return at // SECTOR_SIZE
        pos += SCAN_STEP
    raise NoImage("no image on this disk (no valid header; an interrupted or failed "
                  "suspend leaves none)")


class Image:
    def __init__(self, path, lba=None, key=None):
        self.path = path
        self.key = key
        self.f = open_input(path, block_device=True)
        self.size = input_size(self.f)
        try:
            self.lba = find_image(self.f, self.size, lba)
        except NoImage as e:        # "no image on this disk": say which disk was read
            raise NoImage(f"{show(path)}: {e}") from None
        self.f.seek(self.lba * SECTOR_SIZE)
        block = self.f.read(fmt.HEADER_BLOCK)
        if len(block) < fmt.HEADER_BLOCK:
            raise FormatError("image header: truncated (the disk ends inside it)")
        h = parse(fmt.ImageHeader, block[:fmt.ImageHeader.sizeof()], "image header")
        if h.version != fmt.IMAGE_VERSION:
            raise FormatError(f"image header: version {h.version}, this tool reads {fmt.IMAGE_VERSION}")
        if header_checksum(block) != h.header_xxh64:
            raise FormatError("image header: checksum mismatch (the header is damaged)")
        if h.page_size != PAGE_SIZE or not 0 < h.chunk_pages <= fmt.MAX_CHUNK_PAGES:
            raise FormatError("image header: page size or chunk size out of range")
        self.header = h
        self.block = block
        # Extents count the disk's logical blocks; older images (block_size 0) used 512.
        self.block_size = h.block_size or SECTOR_SIZE
        if self.block_size not in (512, 4096):
            raise FormatError(f"image header: block size {h.block_size} is not 512 or 4096")
        if self.lba * SECTOR_SIZE % self.block_size:
            raise FormatError(f"image header: at byte {self.lba * SECTOR_SIZE}, not on a "
                              f"{self.block_size}-byte block")
        self.lba = self.lba * SECTOR_SIZE // self.block_size
        self._load_tables()
        self.aead = None
        if h.encryption not in ENCRYPTION_NAMES:
            raise FormatError(f"image header: unknown encryption {h.encryption}")
        if key is not None and not h.encryption:
            raise UsageError(KEY_ON_PLAIN)
        if h.encryption and key is not None:
            self.aead = ChaCha20Poly1305(key)
            try:
                self.aead.decrypt(fmt.nonce(h.image_id, fmt.HEADER_NONCE_INDEX), h.key_check,
                                  fmt.header_aad(block))
            except InvalidTag:
                raise FormatError("wrong key: the image header's key check does not verify "
                                  "with this key (or the header was altered)")

    # ---- byte addressing through the extents ------------------------------------------
    def _map(self, pos):
        """Disk byte offset of image byte `pos`, and the bytes left in its extent."""
        i = bisect.bisect_right(self._ext_starts, pos) - 1
        if i < 0 or pos >= self._ext_starts[i] + self._ext_lens[i]:
            raise FormatError(f"image byte {pos} lies outside the image's extents")
        off = pos - self._ext_starts[i]
        return self.extents[i][0] * self.block_size + off, self._ext_lens[i] - off

    def read(self, pos, size):
        out = bytearray()
        while size:
            disk, room = self._map(pos)
            n = min(size, room)
            if disk + n > self.size:    # also spares seek() offsets the OS refuses
                raise FormatError(f"image byte {pos}: the disk ends at {self.size} bytes "
                                  f"(truncated disk)")
            self.f.seek(disk)
            got = self.f.read(n)
            if len(got) < n:
                raise FormatError(f"image byte {pos}: the disk ends at {self.size} bytes "
                                  f"(truncated disk)")
            out += got
            pos += n
            size -= n
        return bytes(out)

    def _load_tables(self):
        h = self.header
        if h.extent_count > MAX_TABLE_ENTRIES or h.range_count > MAX_TABLE_ENTRIES:
            raise FormatError(f"image header: {h.extent_count} extents / {h.range_count} "
                              f"ranges is more than an image has (damaged header)")
        # The first extent starts at the header and holds the extent table (the builder
        # guarantees it); read the table through that extent, then map the rest.
        bs = self.block_size
        self.extents = [(self.lba, max(0, self.size // bs - self.lba))]
        self._ext_starts, self._ext_lens = [0], [self.extents[0][1] * bs]
        raw_ext = self.read(h.extents_offset, h.extent_count * Extent.sizeof())
        self.extents, self._ext_starts, self._ext_lens = [], [], []
        start = 0
        for i in range(h.extent_count):
            e = parse(Extent, raw_ext[i * 16:(i + 1) * 16], f"extent table entry {i}")
            if i == 0 and e.lba != self.lba:
                raise FormatError(f"extent table: the first extent starts at LBA {e.lba}, "
                                  f"the header is at {self.lba}")
            self.extents.append((e.lba, e.count))
            self._ext_starts.append(start)
            self._ext_lens.append(e.count * bs)
            start += e.count * bs
        if not self.extents:
            raise FormatError("extent table: empty")
        raw_rng = self.read(h.ranges_offset, h.range_count * MemRange.sizeof())
        if xxhash.xxh64(raw_ext + raw_rng).intdigest() != h.tables_xxh64:
            raise FormatError("extent/range tables: checksum mismatch (damaged)")
        self.ranges = []
        for i in range(h.range_count):
            r = parse(MemRange, raw_rng[i * 16:(i + 1) * 16], f"range table entry {i}")
            if r.end <= r.start or r.start % PAGE_SIZE or r.end % PAGE_SIZE:
                raise FormatError(f"range table entry {i}: bad range {r.start:#x}-{r.end:#x}")
            if r.end > MAX_PHYSICAL:
                raise FormatError(f"range table entry {i}: {r.end:#x} is beyond any physical "
                                  f"address (2^52)")
            self.ranges.append((r.start, r.end))
        if not self.ranges:
            raise FormatError("range table: empty")
        self._page_starts = []
        n = 0
        for s, e in self.ranges:
            self._page_starts.append(n)
            n += (e - s) // PAGE_SIZE
        if n != h.pages_total:
            raise FormatError(f"image header: {h.pages_total} pages, the ranges hold {n}")

    def page_address(self, index):
        i = bisect.bisect_right(self._page_starts, index) - 1
        return self.ranges[i][0] + (index - self._page_starts[i]) * PAGE_SIZE

    # ---- chunks -----------------------------------------------------------------------
    def chunks(self, check_data=True):
        """Yield (chunk header, [(page address, page bytes or None for zero)]). Pages the
        chunk's free bitmap marks (free in the host at the handoff) are not in the image and
        not in the list."""
        h = self.header
        pos, next_page = h.chunks_offset, 0
        hsize = fmt.ChunkHeader.sizeof()
        for index in range(h.chunk_count):
            raw = self.read(pos, hsize)
            c = parse(fmt.ChunkHeader, raw, f"chunk {index} header")
            where = f"chunk {index} (image byte {pos})"
            if c.magic != fmt.CHUNK_MAGIC or c.index != index:
                raise FormatError(f"{where}: not a chunk header (damaged or misplaced)")
            if not 0 < c.page_count <= h.chunk_pages or c.first_page != next_page:
                raise FormatError(f"{where}: page numbering broken")
            blen = fmt.bitmap_bytes(c.page_count)
            if c.header_size < hsize + fmt.bitmaps_bytes(c.page_count, c.flags):
                raise FormatError(f"{where}: header size {c.header_size} too small")
            full = raw + self.read(pos + hsize, fmt.bitmaps_bytes(c.page_count, c.flags))
            off = fmt.offset_of(fmt.ChunkHeader, "header_xxh64")
            check = bytearray(full)
            check[off:off + 8] = bytes(8)
            first = self.page_address(c.first_page)
            last = self.page_address(c.first_page + c.page_count - 1) + PAGE_SIZE
            span = f"{where}, physical {first:#x}-{last:#x}"
            if xxhash.xxh64(bytes(check)).intdigest() != c.header_xxh64:
                raise FormatError(f"{span}: header checksum mismatch")
            bitmap = full[hsize:hsize + blen]
            zero = [bool(bitmap[i // 8] >> (i % 8) & 1) for i in range(c.page_count)]
            free_map = full[hsize + blen:] if c.flags & fmt.CHUNK_FLAGS.FREE else bytes(blen)
            free = [bool(free_map[i // 8] >> (i % 8) & 1) for i in range(c.page_count)]
            if any(z and f for z, f in zip(zero, free)):
                raise FormatError(f"{span}: a page is marked both zero and free")
            if c.data_pages != c.page_count - zero.count(True) - free.count(True):
                raise FormatError(f"{span}: bitmaps and data page count disagree")
            if c.stored_size > c.data_pages * PAGE_SIZE + fmt.CHUNK_ALIGN:
                raise FormatError(f"{span}: stored size {c.stored_size} exceeds its pages")
            stored = self.read(pos + c.header_size, c.stored_size)
            if xxhash.xxh64(stored).intdigest() != c.data_xxh64:
                raise FormatError(f"{span}: data checksum mismatch")
            if c.flags & fmt.CHUNK_FLAGS.ENCRYPTED:
                stored = self._decrypt(c, full, stored, span) if check_data else None
            data = self._decode(c, stored, span) if check_data else None
            pages, k = [], 0
            for i in range(c.page_count):
                addr = self.page_address(c.first_page + i)
                if free[i]:
                    continue
                if zero[i]:
                    pages.append((addr, None))
                else:
                    pages.append((addr, data[k * PAGE_SIZE:(k + 1) * PAGE_SIZE] if data else b""))
                    k += 1
            yield c, pages
            pos += c.header_size + c.stored_size
            pos = -(-pos // fmt.CHUNK_ALIGN) * fmt.CHUNK_ALIGN
            next_page += c.page_count
        if next_page != h.pages_total:
            raise FormatError(f"chunks cover {next_page} pages, the header says {h.pages_total}")

    def _decrypt(self, c, header_and_bitmap, stored, span):
        if not self.aead:
            raise FormatError(f"{span}: {KEY_MISSING}")
        try:
            return self.aead.decrypt(fmt.nonce(self.header.image_id, c.index), stored + c.tag,
                                     fmt.chunk_aad(self.header.image_id, header_and_bitmap))
        except InvalidTag:
            raise FormatError(f"{span}: authentication failed (altered data or wrong key)")

    def _decode(self, c, stored, span):
        size = c.data_pages * PAGE_SIZE
        if c.encoding == fmt.CHUNK_ENCODING.RAW:
            if len(stored) != size:
                raise FormatError(f"{span}: raw data is {len(stored)} bytes, expected {size}")
            return stored
        if c.encoding == fmt.CHUNK_ENCODING.LZ4:
            try:
                out = lz4.block.decompress(stored, uncompressed_size=size)
            except lz4.block.LZ4BlockError as e:
                raise FormatError(f"{span}: LZ4 data does not decode ({e})")
            if len(out) != size:
                raise FormatError(f"{span}: LZ4 data decodes to {len(out)} bytes, expected {size}")
            return out
        raise FormatError(f"{span}: unknown encoding {c.encoding}")

    # ---- commands ---------------------------------------------------------------------
    def info(self):
        h = self.header
        return {
            "lba": self.lba,
            "block_size": self.block_size,
            "state": STATE_NAMES.get(h.state, f"unknown({h.state})"),
            "image_id": h.image_id.hex(),
            "ranges": [[s, e] for s, e in self.ranges],
            "pages": h.pages_total,
            "pages_data": h.pages_data,
            "pages_zero": h.pages_zero,
            "pages_free": h.pages_free,
            "bytes_on_disk": h.data_end,
            "raw_bytes": h.raw_bytes,
            "stored_bytes": h.stored_bytes,
            "compression": COMPRESSION_NAMES.get(h.compression, str(h.compression)),
            "encryption": ENCRYPTION_NAMES.get(h.encryption, str(h.encryption)),
            "chunks": h.chunk_count,
            "chunk_pages": h.chunk_pages,
            "extents": [[lba, n] for lba, n in self.extents],
            "memmap_hash": f"{h.memmap_hash:016x}",
            "context": {k: h.context[k] for k in ("rip", "rsp", "cr3")},
        }

    def describe(self):
        i = self.info()
        saved = sum(e - s for s, e in self.ranges)
        lines = [f"image at LBA {i['lba']}: {i['state']}, id {i['image_id']}",
                 f"  {i['pages']} pages ({saved >> 20} MiB) in {len(self.ranges)} ranges: "
                 f"{i['pages_data']} stored, {i['pages_zero']} zero, "
                 f"{i['pages_free']} free (left out)",
                 f"  {i['chunks']} chunks, compression {i['compression']}, encryption "
                 f"{i['encryption']}, {i['bytes_on_disk']} bytes on disk",
                 "  extents: " + ", ".join(f"LBA {l}+{n}" for l, n in self.extents)]
        lines += [f"  range {s:#014x}-{e:#014x}" for s, e in self.ranges]
        return "\n".join(lines)

    def verify_facts(self, ram=None):
        """What `image verify` finds, as data (its --json): raises FormatError at the first
        damage, and when a page differs from the RAM dump `ram`."""
        if self.header.encryption and not self.aead:
            n = sum(1 for _ in self.chunks(check_data=False))
            return {"ok": True, "chunks": n, "pages": None, "pages_free": self.header.pages_free,
                    "contents_checked": False, "ram": None}
        ram_f = open_input(ram, "--ram") if ram else None
        try:
            pages = mismatched = 0
            first_bad = None
            for c, plist in self.chunks():
                for addr, data in plist:
                    pages += 1
                    if ram_f:
                        ram_f.seek(addr)
                        want = ram_f.read(PAGE_SIZE)
                        if want != (data if data is not None else bytes(PAGE_SIZE)):
                            mismatched += 1
                            first_bad = first_bad if first_bad is not None else (c.index, addr)
            if mismatched:
                raise FormatError(f"{mismatched} pages differ from {ram}; first in chunk "
                                  f"{first_bad[0]} at physical {first_bad[1]:#x}")
        finally:
            if ram_f:
                ram_f.close()
        return {"ok": True, "chunks": self.header.chunk_count, "pages": pages,
                "pages_free": self.header.pages_free, "contents_checked": True,
                "ram": str(ram) if ram else None}

    @staticmethod
    def verify_text(facts):
        if not facts["contents_checked"]:
            return (f"ok: {facts['chunks']} chunks, every checksum matches (encrypted: "
                    f"contents not checked without --key)")
        free = (f" ({facts['pages_free']} free pages left out)" if facts["pages_free"] else "")
        return (f"ok: {facts['chunks']} chunks, {facts['pages']} pages{free}, every checksum "
                f"matches" + (f"; every page equals {facts['ram']}" if facts["ram"] else ""))

    def verify(self, ram=None):
        return self.verify_text(self.verify_facts(ram))

    def write_raw(self, out):
        """Memory into the open file `out` at offset = physical address; zero pages stay
        holes (read as zeros)."""
        end = max(e for _, e in self.ranges)
        for _, plist in self.chunks():
            run_addr, run = None, []
            for addr, data in plist + [(None, None)]:
                if data is not None and run and addr == run_addr + len(run) * PAGE_SIZE:
                    run.append(data)
                    continue
                if run:
                    out.seek(run_addr)
                    out.write(b"".join(run))
                run_addr, run = (addr, [data]) if data is not None else (None, [])
        out.truncate(end)

    def write_elf(self, out):
        """An ELF core (formats/elfcore.py) into the open file `out`: one PT_LOAD per range,
        registers in a note."""
        from ..formats import elfcore
        ctx = self.header.context
        regs = {r: ctx[r] for r in ("rbx", "rbp", "r12", "r13", "r14", "r15", "rip", "rsp")}
        regs.update(eflags=ctx.rflags, cs=ctx.cs, ss=ctx.ss, ds=ctx.ds, es=ctx.es, fs=ctx.fs,
                    gs=ctx.gs, fs_base=ctx.fs_base, gs_base=ctx.gs_base)
        head, placed = elfcore.layout(self.ranges, elfcore.prstatus_note(regs))
        starts = [s for (s, _), _ in placed]
        out.write(head)
        for _, plist in self.chunks():
            for addr, data in plist:
                if data is None:
                    continue
                i = bisect.bisect_right(starts, addr) - 1
                (start, _), off = placed[i]
                out.seek(off + addr - start)
                out.write(data)
        (_, last_end), last_off = placed[-1]
        out.truncate(last_off + last_end - placed[-1][0][0])

    def extract_raw(self, out_path):
        self._extract(out_path, self.write_raw, "-o")

    def extract_elf(self, out_path):
        self._extract(out_path, self.write_elf, "--elf")

    def _extract(self, out_path, write, what):
        from ..fileutil import atomic_output
        with atomic_output(out_path, 0o600, what) as f:     # memory holds secrets
            write(f)

    def close(self):
        self.f.close()


def open_image(path, lba=None, key=None):
    return Image(path, lba, key)
