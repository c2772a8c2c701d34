"""builder/core/xxh64.c against the reference xxhash package (host build, ctypes)."""
from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import pytest
import xxhash
from hypothesis import given, settings, strategies as st

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "builder/core/xxh64.c", ROOT / "builder/core/lz4.c",
           ROOT / "tests/c/hostbuild_helpers.c"]

U64 = 2**64 - 1


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    so = tmp_path_factory.mktemp("hostbuild") / "libcodec.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
                    *map(str, SOURCES), "-o", str(so)], check=True)
    L = ctypes.CDLL(str(so))
    L.xxh64.restype = ctypes.c_uint64
    L.xxh64.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint64]
    L.xxh64_reset.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
    L.xxh64_update.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    L.xxh64_digest.restype = ctypes.c_uint64
    L.xxh64_digest.argtypes = [ctypes.c_void_p]
    L.hb_xxh64_state_size.restype = ctypes.c_size_t
    return L


def one_shot(L, data: bytes, seed: int, offset: int = 0) -> int:
    # `offset` places the data at an odd address to exercise unaligned loads.
    buf = ctypes.create_string_buffer(bytes(offset) + data, offset + len(data) + 1)
    return L.xxh64(ctypes.addressof(buf) + offset, len(data), seed)


def streamed(L, parts: list[bytes], seed: int) -> int:
    state = ctypes.create_string_buffer(L.hb_xxh64_state_size())
    L.xxh64_reset(state, seed)
    for p in parts:
        L.xxh64_update(state, p, len(p))
    return L.xxh64_digest(state)


def ref(data: bytes, seed: int) -> int:
    return xxhash.xxh64(data, seed=seed).intdigest()


# Known answers from the reference implementation's documentation/tests.
@pytest.mark.parametrize("data,seed,expected", [
    (b"", 0, 0xEF46DB3751D8E999),
    (b"a", 0, 0xD24EC4F1A98C6E5B),
    (b"abc", 0, 0x44BC2CF5AD770999),
])
def test_known_answers(lib, data, seed, expected):
    assert one_shot(lib, data, seed) == expected
    assert ref(data, seed) == expected


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 31, 32, 33, 63, 64, 65,
                               100, 4095, 4096, 4097, 8192, 65536])
def test_boundary_lengths(lib, n):
    data = bytes((i * 131 + 7) & 0xFF for i in range(n))
    for seed in (0, 1, U64, 0x9E3779B185EBCA87):
        assert one_shot(lib, data, seed) == ref(data, seed)
        assert one_shot(lib, data, seed, offset=3) == ref(data, seed)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2000), seed=st.integers(0, U64), offset=st.integers(0, 7))
def test_one_shot_matches_reference(lib, data, seed, offset):
    assert one_shot(lib, data, seed, offset) == ref(data, seed)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=3000), seed=st.integers(0, U64),
       cuts=st.lists(st.integers(0, 3000), max_size=8))
def test_streaming_split_anywhere(lib, data, seed, cuts):
    points = sorted({min(c, len(data)) for c in cuts})
    parts, prev = [], 0
    for p in points + [len(data)]:
        parts.append(data[prev:p])  # empty parts included on purpose
        prev = p
    assert streamed(lib, parts, seed) == ref(data, seed)


@settings(max_examples=30, deadline=None)
@given(pages=st.lists(st.sampled_from(["zero", "rand", "text"]), min_size=1, max_size=12),
       seed=st.integers(0, U64), rnd=st.randoms(use_true_random=False))
def test_streaming_noncontiguous_pages(lib, pages, seed, rnd):
    """The payload hashes a chunk made of several non-contiguous 4 KiB pages."""
    content = []
    for kind in pages:
        if kind == "zero":
            content.append(bytes(4096))
        elif kind == "rand":
            content.append(rnd.randbytes(4096))
        else:
            content.append((b"The quick brown fox jumps over the lazy dog. " * 92)[:4096])
    assert streamed(lib, content, seed) == ref(b"".join(content), seed)
    assert one_shot(lib, b"".join(content), seed) == ref(b"".join(content), seed)


def test_digest_does_not_consume_state(lib):
    state = ctypes.create_string_buffer(lib.hb_xxh64_state_size())
    lib.xxh64_reset(state, 5)
    lib.xxh64_update(state, b"x" * 40, 40)
    assert lib.xxh64_digest(state) == lib.xxh64_digest(state) == ref(b"x" * 40, 5)
    lib.xxh64_update(state, b"y" * 3, 3)
    assert lib.xxh64_digest(state) == ref(b"x" * 40 + b"y" * 3, 5)
