"""builder/core/lz4.c against python-lz4 (the reference liblz4), host build.

* round trips: ours -> python-lz4, python-lz4 -> ours, ours -> ours, on random,
  adversarial and RAM-like inputs of 0..65536+ bytes (both table modes);
* dst_cap handling: too small gives 0 (compressor) / -1 (decompressor), never
  a write past dst_cap; an exact fit succeeds;
* the decompressor on garbage, truncated and mutated blocks, built with
  AddressSanitizer + UBSan, answers -1 or a size within dst_cap and agrees with
  liblz4 whenever either accepts the block.
"""
from __future__ import annotations

import ctypes
import os
import random
import re
import struct
import subprocess
from pathlib import Path

import lz4.block
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

ROOT = Path(__file__).resolve().parent.parent
LZ4_C = ROOT / "builder/core/lz4.c"
WORK_SIZE = 16384
SMALL_LIMIT = 65536 + 10  # largest input using the 16-bit table (liblz4: < LZ4_64Klimit)


def bound(n: int) -> int:
    return n + n // 255 + 16


# ---- host build (ctypes) ------------------------------------------------

@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    so = tmp_path_factory.mktemp("hostbuild") / "liblz4ours.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
                    str(LZ4_C), str(ROOT / "builder/core/xxh64.c"),
                    str(ROOT / "tests/c/hostbuild_helpers.c"), "-o", str(so)], check=True)
    L = ctypes.CDLL(str(so))
    L.lz4_compress.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p,
                               ctypes.c_int, ctypes.c_void_p]
    L.lz4_decompress_safe.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p,
                                      ctypes.c_int]
    L.lz4_use.argtypes = [ctypes.c_int]
    L.lz4_use.restype = ctypes.c_int
    assert L.hb_lz4_work_size() == WORK_SIZE
    L.work = ctypes.create_string_buffer(WORK_SIZE)
    L.lz4_compress_high.argtypes = L.lz4_compress.argtypes
    L.high_work_size = L.hb_lz4_high_work_size()
    L.high_work = ctypes.create_string_buffer(L.high_work_size)
    return L


GUARD = b"\xEE" * 64


def compress(L, data: bytes, cap: int | None = None, *, garbage_work: bool = False) -> bytes | None:
    """Our compressor; None when it reports 0. Checks nothing is written past cap."""
    cap = bound(len(data)) if cap is None else cap
    out = ctypes.create_string_buffer(b"\x5A" * cap + GUARD, cap + len(GUARD))
    if garbage_work:
        ctypes.memmove(L.work, os.urandom(WORK_SIZE), WORK_SIZE)
    r = L.lz4_compress(data, len(data), out, cap, L.work)
    assert out.raw[cap:cap + len(GUARD)] == GUARD, "wrote past dst_cap"
    assert 0 <= r <= cap
    return out.raw[:r] if r else None


def compress_high(L, data: bytes, cap: int | None = None, *,
                  garbage_work: bool = False) -> bytes | None:
    """lz4_compress_high, checked like compress()."""
    cap = bound(len(data)) if cap is None else cap
    out = ctypes.create_string_buffer(b"\x5A" * cap + GUARD, cap + len(GUARD))
    if garbage_work:
        ctypes.memmove(L.high_work, os.urandom(L.high_work_size), L.high_work_size)
    r = L.lz4_compress_high(data, len(data), out, cap, L.high_work)
    assert out.raw[cap:cap + len(GUARD)] == GUARD, "wrote past dst_cap"
    assert 0 <= r <= cap
    return out.raw[:r] if r else None


def decompress(L, block: bytes, cap: int) -> bytes | int:
    out = ctypes.create_string_buffer(cap + len(GUARD))
    ctypes.memmove(out, b"\x00" * cap + GUARD, cap + len(GUARD))
    r = L.lz4_decompress_safe(block, len(block), out, cap)
    assert out.raw[cap:cap + len(GUARD)] == GUARD, "wrote past dst_cap"
    assert -1 <= r <= cap
    return out.raw[:r] if r >= 0 else r


# ---- inputs ---------------------------------------------------------------

TEXT = (b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod "
        b"tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, "
        b"quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo. ")


def _code_bytes() -> bytes:
    for p in ("/usr/bin/gcc", "/usr/bin/ls", "/usr/bin/python3", "/bin/sh"):
        try:
            return Path(p).resolve().read_bytes()[:1 << 20]
        except OSError:
            continue
    return bytes(range(256)) * 4096


CODE = _code_bytes()


@st.composite
def segment(draw):
    kind = draw(st.sampled_from(["zero", "byte", "period", "random", "text", "code",
                                 "ascending", "sparse"]))
    n = draw(st.integers(0, 9000))
    if kind == "zero":
        return bytes(n)
    if kind == "byte":
        return bytes([draw(st.integers(0, 255))]) * n
    if kind == "period":
        p = draw(st.binary(min_size=1, max_size=20))
        return (p * (n // len(p) + 1))[:n]
    if kind == "random":
        return draw(st.randoms(use_true_random=False)).randbytes(n)
    if kind == "text":
        off = draw(st.integers(0, len(TEXT) - 1))
        return ((TEXT * (n // len(TEXT) + 2))[off:off + n])
    if kind == "code":
        off = draw(st.integers(0, max(0, len(CODE) - n)))
        return CODE[off:off + n]
    if kind == "ascending":
        start = draw(st.integers(0, 2**40))
        return b"".join(struct.pack("<Q", start + 8 * i) for i in range(n // 8 + 1))[:n]
    b = bytearray(n)
    for _ in range(draw(st.integers(0, 10))):
        if n:
            b[draw(st.integers(0, n - 1))] = draw(st.integers(1, 255))
    return bytes(b)


@st.composite
def structured(draw, max_len=70000):
    parts = draw(st.lists(segment(), min_size=0, max_size=16))
    data = b"".join(parts)[:max_len]
    tail = draw(st.sampled_from(["none", "repeat_head", "short_literal"]))
    if tail == "repeat_head" and data:  # a match that reaches the very end
        data += data[:draw(st.integers(1, 64))]
    elif tail == "short_literal":
        data += draw(st.binary(max_size=13))
    return data


any_input = st.one_of(st.binary(max_size=3000), structured())

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---- round trips ----------------------------------------------------------

@pytest.mark.parametrize("n", list(range(0, 40)) + [4095, 4096, 65535, 65536, 65547,
                                                   65548, 65549, 100000, 300000])
@pytest.mark.parametrize("kind", ["zero", "random", "text", "period3"])
def test_sizes_and_kinds(lib, n, kind):
    rng = random.Random(n)
    data = {"zero": bytes(n), "random": rng.randbytes(n),
            "text": (TEXT * (n // len(TEXT) + 1))[:n],
            "period3": (b"abc" * (n // 3 + 1))[:n]}[kind]
    c = compress(lib, data)
    assert c is not None
    assert len(c) <= bound(len(data))
    assert lz4.block.decompress(c, uncompressed_size=n) == data
    assert decompress(lib, c, n) == data
    ref = lz4.block.compress(data, store_size=False)
    assert decompress(lib, ref, n) == data


def test_size_parity_with_liblz4(lib):
    """Same greedy parse as liblz4's default: sizes within 2%."""
    rng = random.Random(7)
    data = b"".join(rng.choice([bytes(4096), rng.randbytes(4096), (TEXT * 40)[:4096],
                                CODE[rng.randrange(len(CODE) - 4096):][:4096]])
                    for _ in range(64))
    ours = sum(len(compress(lib, data[i:i + 65536])) for i in range(0, len(data), 65536))
    ref = sum(len(lz4.block.compress(data[i:i + 65536], store_size=False))
              for i in range(0, len(data), 65536))
    assert ours <= ref * 1.02


# ---- byte for byte liblz4's output, on every match-length path --------------------------

def system_lz4_default(data: bytes) -> bytes:
    """The system liblz4's LZ4_compress_default (Debian liblz4-1; `bench compress` links the
    same library). python-lz4's wheel carries its own liblz4 build, whose blocks under
    64 KiB differ from it, so it is not the reference for identity."""
    S = ctypes.CDLL("liblz4.so.1")
    S.LZ4_compress_default.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int,
                                       ctypes.c_int]
    out = ctypes.create_string_buffer(bound(len(data)))
    n = S.LZ4_compress_default(data, out, len(data), bound(len(data)))
    assert n > 0
    return out.raw[:n]


def host_paths() -> list[str]:
    """scalar everywhere; AVX2 where Linux reports it (then XCR0 has the ymm state on)."""
    flags = re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M).group(1)
    return ["scalar"] + (["avx2"] if "avx2" in flags.split() else [])


@pytest.mark.parametrize("path", host_paths())
def test_output_is_liblz4s_byte_for_byte(lib, path):
    """Every block size, both position tables (the 16-bit one below LZ4_64Klimit = 65547
    bytes, hash of 4 bytes; the 32-bit one from there, hash of 5 bytes)."""
    assert lib.lz4_use({"scalar": 0, "avx2": 2}[path]) == {"scalar": 0, "avx2": 2}[path]
    try:
        r = random.Random(65547)
        sizes = [0, 1, 12, 13, 14, 100, 4096, 65535, 65536, 65545, 65546, 65547, 65548, 100000,
                 300000] + [r.randrange(1, 200000) for _ in range(12)]
        for n in sizes:
            ram = b"".join(r.choice([bytes(4096), r.randbytes(4096), (TEXT * 40)[:4096],
                                     CODE[r.randrange(len(CODE) - 4096):][:4096]])
                           for _ in range(n // 4096 + 1))[:n]
            sparse = bytes(b if r.random() < 0.05 else 0 for b in r.randbytes(n))
            for data in (r.randbytes(n), (TEXT * (n // len(TEXT) + 1))[:n],
                         CODE[r.randrange(len(CODE) // 2):][:n], sparse, ram):
                assert compress(lib, data) == system_lz4_default(data), (path, n)
    finally:
        lib.lz4_use(0)


@FAST
@given(data=any_input, garbage=st.booleans())
def test_ours_to_reference(lib, data, garbage):
    c = compress(lib, data, garbage_work=garbage)
    assert c is not None
    assert lz4.block.decompress(c, uncompressed_size=max(len(data), 1)) == data
    assert decompress(lib, c, len(data)) == data


@FAST
@given(data=any_input, mode=st.sampled_from(["default", "fast", "high_compression"]))
def test_reference_to_ours(lib, data, mode):
    ref = lz4.block.compress(data, store_size=False, mode=mode)
    assert decompress(lib, ref, len(data)) == data
    assert decompress(lib, ref, len(data) + 100) == data  # spare room is fine
    if data:
        assert decompress(lib, ref, len(data) - 1) == -1  # too little room


@FAST
@given(data=any_input, short=st.integers(1, 40))
def test_dst_cap_too_small(lib, data, short):
    c = compress(lib, data)
    assert compress(lib, data, len(c)) == c             # exact fit works
    if len(c) - short >= 0:
        assert compress(lib, data, len(c) - short) is None  # any less: 0


# ---- the high compressor (--compress lz4hc): any LZ4 decoder reads it ---------------------

@pytest.mark.parametrize("n", [0, 1, 12, 13, 14, 100, 4095, 4096, 65535, 65536, 65547, 100000,
                               300000])
@pytest.mark.parametrize("kind", ["zero", "random", "text", "period3", "ram"])
def test_high_sizes_and_kinds(lib, n, kind):
    rng = random.Random(n)
    data = {"zero": bytes(n), "random": rng.randbytes(n),
            "text": (TEXT * (n // len(TEXT) + 1))[:n],
            "period3": (b"abc" * (n // 3 + 1))[:n],
            "ram": b"".join(rng.choice([bytes(4096), rng.randbytes(4096), (TEXT * 40)[:4096],
                                        CODE[rng.randrange(len(CODE) - 4096):][:4096]])
                            for _ in range(n // 4096 + 1))[:n]}[kind]
    c = compress_high(lib, data)
    assert c is not None
    assert lz4.block.decompress(c, uncompressed_size=max(n, 1)) == data
    assert decompress(lib, c, n) == data


@FAST
@given(data=any_input, garbage=st.booleans(), short=st.integers(1, 40))
def test_high_round_trip_and_dst_cap(lib, data, garbage, short):
    c = compress_high(lib, data, garbage_work=garbage)
    assert c is not None
    assert lz4.block.decompress(c, uncompressed_size=max(len(data), 1)) == data
    assert compress_high(lib, data, len(c)) == c                 # exact fit works
    if len(c) - short >= 0:
        assert compress_high(lib, data, len(c) - short) is None  # any less: 0


def test_high_is_smaller_than_fast_on_ram_like_data(lib):
    """What the option is for: the same RAM-like 64 KiB blocks (code, text, zero and random
    pages) come out smaller than lz4_compress's, and no bigger than liblz4's own
    high-compression mode at its lowest level plus 2 %."""
    rng = random.Random(11)
    data = b"".join(rng.choice([bytes(4096), rng.randbytes(4096), (TEXT * 40)[:4096],
                                CODE[rng.randrange(len(CODE) - 4096):][:4096]])
                    for _ in range(256))
    blocks = [data[i:i + 65536] for i in range(0, len(data), 65536)]
    fast = sum(len(compress(lib, b)) for b in blocks)
    high = sum(len(compress_high(lib, b)) for b in blocks)
    hc = sum(len(lz4.block.compress(b, store_size=False, mode="high_compression",
                                    compression=1)) for b in blocks)
    assert high < fast
    assert high <= hc * 1.02


def test_dst_cap_degenerate(lib):
    assert compress(lib, b"abc", 0) is None
    assert compress(lib, b"", 1) == b"\x00"
    assert lib.lz4_compress(b"abc", -1, ctypes.create_string_buffer(16), 16, lib.work) == 0
    assert decompress(lib, b"\x00", 0) == b""
    assert decompress(lib, b"", 10) == -1


@pytest.mark.parametrize("block,cap", [
    (b"\x10", 10),                   # literal run past the input end
    (b"\x1fa\x01\x00", 100),         # ends after a match (last sequence must be literals)
    (b"\x1fa\x00\x00\x10b", 100),    # offset 0
    (b"\x1fa\x02\x00\x10b", 100),    # offset before the block start
    (b"\xf0", 100),                  # literal length bytes missing
    (b"\xf0\xff\xff", 100000),       # length bytes run off the end
    (b"\x1fa\x01", 100),             # truncated offset
    (b"\x1fa\x01\x00\xff", 100),     # match length bytes missing
    (b"\x1fa\x01\x00\x10b", 10),     # match longer than dst
])
def test_malformed_rejected(lib, block, cap):
    assert decompress(lib, block, cap) == -1


# ---- decompressor under AddressSanitizer / UBSan ----------------------------

class Sanitized:
    def __init__(self, exe: Path):
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
                   UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
        self.proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

    def call(self, op: bytes, src: bytes, cap: int) -> bytes | int:
        p = self.proc
        p.stdin.write(op + struct.pack("<II", len(src), cap) + src)
        p.stdin.flush()
        head = p.stdout.read(4)
        if len(head) != 4:
            p.kill()
            raise AssertionError("sanitized driver died:\n" + p.stderr.read().decode(errors="replace"))
        (r,) = struct.unpack("<i", head)
        if r > 0:
            return p.stdout.read(r)
        return b"" if r == 0 and op == b"D" else r

    def close(self):
        self.proc.stdin.close()
        assert self.proc.wait(timeout=10) == 0


@pytest.fixture(scope="module")
def san(tmp_path_factory):
    exe = tmp_path_factory.mktemp("sanbuild") / "lz4_fuzz"
    subprocess.run(["gcc", "-O1", "-g", "-fsanitize=address,undefined",
                    "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-Wall",
                    str(LZ4_C), str(ROOT / "tests/c/hostbuild_fuzz.c"), "-o", str(exe)],
                   check=True)
    s = Sanitized(exe)
    yield s
    s.close()


def reference_decode(block: bytes, cap: int):
    """liblz4's LZ4_decompress_safe (via python-lz4) into cap bytes; None = rejected."""
    try:
        out = lz4.block.decompress(block, uncompressed_size=max(cap, 1))
    except lz4.block.LZ4BlockError:
        return None
    return out if len(out) <= cap else None  # python-lz4 cannot ask for 0 bytes


def spec_decode(block: bytes, cap: int):
    """A plain reading of the block format spec, for the verdict we promise:
    reject anything that reads past the input, writes past cap, has offset 0
    or before the output start, or ends after a match instead of literals."""
    ip, out = 0, bytearray()
    if not block:
        return None
    while True:
        if ip >= len(block):
            return None  # ended after a match
        token = block[ip]
        ip += 1
        lit = token >> 4
        if lit == 15:
            while True:
                if ip >= len(block):
                    return None
                b = block[ip]
                ip += 1
                lit += b
                if b != 255:
                    break
        if ip + lit > len(block) or len(out) + lit > cap:
            return None
        out += block[ip:ip + lit]
        ip += lit
        if ip == len(block):
            return bytes(out)
        if ip + 2 > len(block):
            return None
        off = block[ip] | block[ip + 1] << 8
        ip += 2
        if off == 0 or off > len(out):
            return None
        ml = token & 15
        if ml == 15:
            while True:
                if ip >= len(block):
                    return None
                b = block[ip]
                ip += 1
                ml += b
                if b != 255:
                    break
        ml += 4
        if len(out) + ml > cap:
            return None
        for _ in range(ml):
            out.append(out[-off])


def check_block(san, block: bytes, cap: int):
    r = san.call(b"D", block, cap)
    if isinstance(r, bytes):
        assert len(r) <= cap
    else:
        assert r == -1
    got = r if isinstance(r, bytes) else None
    assert spec_decode(block, cap) == got
    # Whatever liblz4 accepts and the spec allows, we accept, with the same output.
    # (liblz4 also rejects some blocks that break the spec's end-of-block
    # restrictions 2/3, which the spec allows a decoder to do; we decode those. And
    # liblz4 1.9.4 accepts a match offset of 0, which the spec forbids; we refuse it.)
    ref = reference_decode(block, cap)
    if ref is not None and spec_decode(block, cap) is not None:
        assert got == ref


@settings(max_examples=300, deadline=None)
@given(block=st.binary(max_size=300), cap=st.integers(0, 5000))
def test_fuzz_garbage(san, block, cap):
    check_block(san, block, cap)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=structured(max_len=20000), cut=st.integers(0, 2**16),
       flips=st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), max_size=4),
       extra_cap=st.integers(-20, 20), ours=st.booleans())
def test_fuzz_truncated_and_mutated(san, data, cut, flips, extra_cap, ours):
    block = san.call(b"C", data, bound(len(data))) if ours else \
        lz4.block.compress(data, store_size=False)
    assume(isinstance(block, bytes) and block)
    b = bytearray(block)
    for pos, val in flips:
        b[pos % len(b)] = val
    if cut % 3 == 0:
        b = b[:cut % (len(b) + 1)]
    cap = max(0, len(data) + extra_cap)
    check_block(san, bytes(b), cap)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=structured(), tight=st.integers(0, 30))
def test_compressor_sanitized(san, data, tight):
    """The compressor with exactly sized buffers, ample and too-small dst_cap."""
    c = san.call(b"C", data, bound(len(data)))
    assert isinstance(c, bytes) and c
    assert lz4.block.decompress(c, uncompressed_size=max(len(data), 1)) == data
    small = san.call(b"C", data, max(0, len(c) - tight))
    assert small == (c if tight == 0 else 0)
