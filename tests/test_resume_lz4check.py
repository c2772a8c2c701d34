"""lz4_decoded_size (builder/core/lz4.c), which the resume loader's verify pass uses to prove
that every LZ4 block will decode before any page is written, must give exactly the answer of
lz4_decompress_safe, which the restore pass then runs: the decoded size or -1, for valid,
truncated, mutated and random blocks and every kind of capacity. Host build, ctypes."""
import ctypes
import random
import subprocess
from pathlib import Path

import lz4.block
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    so = tmp_path_factory.mktemp("lz4check") / "liblz4check.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
                    str(ROOT / "builder/core/lz4.c"), "-o", str(so)], check=True, timeout=120)
    L = ctypes.CDLL(str(so))
    L.lz4_decoded_size.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
    L.lz4_decompress_safe.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p,
                                      ctypes.c_int]
    return L


def both(L, block, cap):
    out = ctypes.create_string_buffer(max(cap, 1))
    return L.lz4_decoded_size(block, len(block), cap), L.lz4_decompress_safe(block, len(block),
                                                                          out, cap)


def samples(rng):
    text = b"the quick brown fox jumps over the lazy dog, again and again; " * 80
    yield bytes(4096)
    yield rng.randbytes(4096)
    yield text[:4096]
    yield bytes([7, 7, 7, 1]) * 1024
    for _ in range(40):
        n = rng.choice([1, 5, 13, 64, 300, 4096, 8192, 65536])
        kind = rng.randrange(3)
        if kind == 0:
            yield rng.randbytes(n)
        elif kind == 1:
            yield (text * (n // len(text) + 1))[:n]
        else:
            yield bytes(rng.choice([0, 0, 1, 255]) for _ in range(min(n, 512))) * (n // 512 + 1)


def test_agrees_with_the_decoder(lib):
    rng = random.Random(20240601)
    checked = 0
    for data in samples(rng):
        block = lz4.block.compress(data, store_size=False)
        n = len(data)
        for cap in {n, n - 1, n + 1, n + 4096, 0, n // 2}:
            if cap < 0:
                continue
            size, ref = both(lib, block, cap)
            assert size == ref, (n, cap, size, ref)
            checked += 1
        assert both(lib, block, n) == (n, n)
        for cut in {1, 2, len(block) // 2, len(block) - 1}:
            if 0 < cut < len(block):
                size, ref = both(lib, block[:cut], n)
                assert size == ref
                checked += 1
        for _ in range(60):
            m = bytearray(block)
            for _ in range(rng.randrange(1, 4)):
                m[rng.randrange(len(m))] ^= 1 << rng.randrange(8)
            size, ref = both(lib, bytes(m), n)
            assert size == ref, (n, size, ref)
            checked += 1
    for _ in range(3000):
        junk = rng.randbytes(rng.randrange(1, 200))
        cap = rng.choice([0, 16, 100, 4096, 65536])
        size, ref = both(lib, junk, cap)
        assert size == ref, (junk.hex(), cap, size, ref)
        checked += 1
    assert checked > 5000


def test_bad_arguments(lib):
    assert lib.lz4_decoded_size(None, 5, 100) == -1
    assert lib.lz4_decoded_size(b"\x10a", 0, 100) == -1
    assert lib.lz4_decoded_size(b"\x10a", 2, -1) == -1
    assert lib.lz4_decoded_size(b"\x10a", 2, 1) == 1
