"""Write the seed corpus of the libFuzzer harnesses (deterministic; run again to refresh).

    .venv/bin/python tests/fuzz/make_corpus.py
    .venv/bin/python tests/fuzz/make_corpus.py --resume-parse DISK...   # from real images

tests/fuzz/corpus/<harness>/seed-*: a few dozen small inputs per harness in the harness's
input format (see the comment at the top of tests/fuzz/<harness>.c). bench/fuzz_long.sh
adds the inputs a long run finds that reach new code (named by libFuzzer, sha1 of the
contents); this script only rewrites the seed-* files.
"""
import random
import struct
from pathlib import Path

import lz4.block

CORPUS = Path(__file__).resolve().parent / "corpus"


def ram_like(rng, pages, page=512):
    """Zero, text, pattern and random 'pages' (small ones: seeds stay small)."""
    text = b"the quick brown fox jumps over the lazy dog; suspend writes every page. "
    out = b""
    for _ in range(pages):
        kind = rng.randrange(4)
        if kind == 0:
            out += bytes(page)
        elif kind == 1:
            out += (text * (page // len(text) + 1))[:page]
        elif kind == 2:
            out += struct.pack("<Q", rng.getrandbits(64)) * (page // 8)
        else:
            out += rng.randbytes(page)
    return out


def lz4_seeds(rng):
    plain = {
        "empty": b"",
        "one": b"A",
        "short": b"hello hello hello",
        "zeros-4k": bytes(4096),
        "text": b"Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 20,
        "random-300": rng.randbytes(300),
        "ram-4": ram_like(rng, 4),
        "ram-8": ram_like(rng, 8),
        "pattern": bytes(range(256)) * 6,
        "long-literals": rng.randbytes(40) + bytes(300) + rng.randbytes(300),
    }
    seeds = {}
    for name, data in plain.items():
        block = lz4.block.compress(data, store_size=False)
        n = len(data)
        seeds[f"{name}-exact"] = (n, block)
        seeds[f"{name}-short-cap"] = (max(0, n - 1), block)
        seeds[f"{name}-big-cap"] = (n + 100, block)
        if len(block) > 4:
            seeds[f"{name}-truncated"] = (n, block[:len(block) // 2])
    # Hand-made blocks: the edge cases of the format.
    seeds["hand-token-only"] = (16, b"\x00")
    seeds["hand-offset-0"] = (64, b"\x14abcd\x00\x00")              # offset 0: invalid
    seeds["hand-offset-too-far"] = (64, b"\x14abcd\x09\x00" + b"\x10x")
    seeds["hand-overlap-copy"] = (64, b"\x1fa\x01\x00\x0a\x10b")       # run of 'a'
    seeds["hand-ends-after-match"] = (64, b"\x14abcd\x04\x00")
    seeds["hand-lit-ext-255"] = (600, b"\xf0\xff\xff\x00" + bytes(525))
    seeds["hand-match-ext"] = (2000, b"\x1fz\x01\x00\xff\xff\x10" + b"e")
    return {k: struct.pack("<H", cap) + block for k, (cap, block) in seeds.items()}


def aead_seeds(rng):
    seeds = {}
    lengths = [0, 1, 15, 16, 17, 63, 64, 65, 128, 200, 513]
    for i, n in enumerate(lengths):
        for kind in (i % 8, (i + 3) % 8, (i + 5) % 8):
            aad = rng.randbytes(rng.choice([0, 1, 13, 16, 40]))
            head = (rng.randbytes(32) + rng.randbytes(12)
                    + bytes([len(aad), kind]) + struct.pack("<H", rng.randrange(65536))
                    + bytes([rng.randrange(1, 256)]))
            seeds[f"len{n}-kind{kind}"] = head + aad + rng.randbytes(n)
    return seeds


def resume_parse_seeds(disks):
    """Seeds for resume_parse.c from real images (`suspendos qemu suspend` disks): the header,
    the tables twice (expected and stored), the first chunk headers; variants with the
    checksum repair bits, a truncated disk and a wrong memory-map hash."""
    from suspendos.formats import image as fmt
    from suspendos.image.reader import open_image
    seeds = {}
    for disk in disks:
        img = open_image(disk)
        h = img.header
        raw_header = img.read(0, fmt.ImageHeader.sizeof())
        tables = img.read(h.extents_offset, h.chunks_offset - h.extents_offset)
        tables = tables[:(h.extent_count + h.range_count) * 16]
        chunks, pos = b"", h.chunks_offset
        for _ in range(min(h.chunk_count, 24)):
            c = fmt.ChunkHeader.parse(img.read(pos, fmt.ChunkHeader.sizeof()))
            blen = fmt.align_up((c.page_count + 7) // 8, 8)
            chunks += img.read(pos, fmt.ChunkHeader.sizeof() + blen)
            pos = fmt.align_up(pos + c.header_size + c.stored_size, fmt.CHUNK_ALIGN)
        capacity = 512 * sum(struct.unpack_from("<QQ", tables, 16 * i)[1]
                             for i in range(h.extent_count))
        sectors = img.size // 512
        name = Path(disk).stem
        for variant, (fix, disk_sectors, memmap) in {
                "exact": (0, sectors, h.memmap_hash), "fix": (7, sectors, h.memmap_hash),
                "truncated": (7, img.lba + 16, h.memmap_hash),
                "other-machine": (0, sectors, h.memmap_hash ^ 1)}.items():
            data = (struct.pack("<BQQQ", fix, capacity, disk_sectors, memmap) + raw_header
                    + tables + tables + chunks)
            seeds[f"{name}-{variant}"] = data[:16384]
    return seeds


def main():
    import sys
    if sys.argv[1:2] == ["--resume-parse"]:
        write("resume_parse", resume_parse_seeds(sys.argv[2:]))
        return
    rng = random.Random(20240611)
    for harness, seeds in (("lz4_decompress", lz4_seeds(rng)), ("aead_open", aead_seeds(rng))):
        write(harness, seeds)


def write(harness, seeds):
    d = CORPUS / harness
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("seed-*"):
        old.unlink()
    for name, data in seeds.items():
        (d / f"seed-{name}").write_bytes(data)
    print(f"{d}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
