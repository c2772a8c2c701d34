"""builder/core/chacha20poly1305.c against RFC 8439 and the cryptography package.

* the RFC's own test vectors: 2.3.2 (block function), 2.4.2 (encryption),
  2.5.2 (Poly1305), 2.6.2 (one-time key), 2.8.2 (AEAD), and appendix A.1
  (block function), A.2 (encryption), A.3 (Poly1305, including the
  reduction edge cases #5..#11), A.4 (key generation), A.5 (AEAD decryption);
* random keys, nonces, aad and plaintexts of many lengths: our seal equals
  cryptography's ChaCha20Poly1305.encrypt (ciphertext || tag), our open
  accepts what cryptography seals, a flipped bit anywhere (ciphertext, tag,
  aad) or a wrong nonce gives -1 with the buffer unchanged; the copy and
  pages forms equal the in-place form; nothing is written outside the output;
* the pieces (ChaCha20, Poly1305) against cryptography's ChaCha20/Poly1305;
* the same source built with AddressSanitizer + UBSan over random inputs;
* every keystream path (scalar, SSE2, AVX2 where this CPU has it; chacha20_use forces one)
  against cryptography on random inputs, lengths and alignments, and against the scalar
  path where the 32-bit block counter wraps;
* built with the payload's flags: vector registers only in chacha20_simd.h's functions,
  only memcpy/memset external, stack depth under 2 KiB, and a speed number
  (`pytest -s -k speed` shows it).
"""
from __future__ import annotations

import ctypes
import json
import os
import random
import re
import struct
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.poly1305 import Poly1305
from hypothesis import HealthCheck, given, settings, strategies as st

from suspendos.build.toolchain import FREESTANDING

ROOT = Path(__file__).resolve().parent.parent
AEAD_C = ROOT / "builder/core/chacha20poly1305.c"
DRIVER_C = ROOT / "tests/c/hostbuild_aead.c"
PAGE = 4096
GUARD = b"\xEE" * 32


def h(text: str) -> bytes:
    """Bytes from RFC-style hex: hexdump lines ("016  c7 d1 ..." offsets are
    dropped), colon-separated octets, or plain hex."""
    out = []
    for line in text.strip().splitlines():
        toks = line.replace(":", " ").split()
        if toks and len(toks[0]) == 3 and toks[0].isdigit() and len(toks) > 1:
            toks = toks[1:]
        out.append("".join(toks))
    return bytes.fromhex("".join(out))


# ---- host build (ctypes) -------------------------------------------------------

@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    so = tmp_path_factory.mktemp("hostbuild") / "libaead.so"
    # Hosted (libc's memcpy/memset) but with the payload's code-generation flags.
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
                    "-mgeneral-regs-only", "-mno-red-zone", "-fno-stack-protector",
                    str(AEAD_C), "-o", str(so)], check=True)
    L = ctypes.CDLL(str(so))
    P, S, U32 = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint32
    L.aead_seal.argtypes = [P, P, P, S, P, S, P]
    L.aead_open.argtypes = [P, P, P, S, P, S, P]
    L.aead_open.restype = ctypes.c_int
    L.aead_seal_copy.argtypes = [P, P, P, S, P, P, S, P]
    L.aead_open_copy.argtypes = [P, P, P, S, P, P, S, P]
    L.aead_open_copy.restype = ctypes.c_int
    L.aead_seal_pages.argtypes = [P, P, P, S, P, ctypes.c_uint, P, P]
    L.aead_verify.argtypes = [P, P, P, S, P, S, P]
    L.aead_verify.restype = ctypes.c_int
    L.chacha20_block.argtypes = [P, U32, P, P]
    L.chacha20_xor.argtypes = [P, U32, P, P, P, S]
    L.poly1305_mac.argtypes = [P, P, S, P]
    L.poly1305_key_gen.argtypes = [P, P, P]
    L.chacha20_use.argtypes = [ctypes.c_int]
    L.chacha20_use.restype = ctypes.c_int
    return L


class Buf:
    """len bytes at an offset (for unaligned pointers), guard bytes after."""

    def __init__(self, data: bytes, offset: int = 0):
        self.n, self.off = len(data), offset
        self.raw = ctypes.create_string_buffer(b"\x5A" * offset + data + GUARD,
                                               offset + len(data) + len(GUARD))

    @property
    def ptr(self) -> int:
        return ctypes.addressof(self.raw) + self.off

    def value(self) -> bytes:
        r = self.raw.raw
        assert r[self.off + self.n:self.off + self.n + len(GUARD)] == GUARD, "wrote past the end"
        assert r[:self.off] == b"\x5A" * self.off, "wrote before the start"
        return r[self.off:self.off + self.n]


def block(L, key, counter, nonce) -> bytes:
    out = Buf(bytes(64))
    L.chacha20_block(key, counter, nonce, out.ptr)
    return out.value()


def chacha_xor(L, key, counter, nonce, data, offset=0) -> bytes:
    b = Buf(data, offset)
    L.chacha20_xor(key, counter, nonce, b.ptr, b.ptr, len(data))
    return b.value()


def poly(L, key, msg, offset=0) -> bytes:
    m, tag = Buf(msg, offset), Buf(bytes(16))
    L.poly1305_mac(key, m.ptr, len(msg), tag.ptr)
    assert m.value() == msg
    return tag.value()


def keygen(L, key, nonce) -> bytes:
    out = Buf(bytes(32))
    L.poly1305_key_gen(key, nonce, out.ptr)
    return out.value()


def seal(L, key, nonce, aad, pt, offset=0) -> bytes:
    """aead_seal in place; returns ciphertext || tag."""
    b, tag = Buf(pt, offset), Buf(bytes(16))
    L.aead_seal(key, nonce, aad, len(aad), b.ptr, len(pt), tag.ptr)
    return b.value() + tag.value()


def seal_copy(L, key, nonce, aad, pt, offset=0) -> bytes:
    src, dst, tag = Buf(pt, offset), Buf(b"\xA5" * len(pt), (offset * 3) % 8), Buf(bytes(16))
    L.aead_seal_copy(key, nonce, aad, len(aad), src.ptr, dst.ptr, len(pt), tag.ptr)
    assert src.value() == pt, "seal_copy wrote its source"
    return dst.value() + tag.value()


def seal_pages(L, key, nonce, aad, pages: list[bytes]) -> bytes:
    bufs = [Buf(p, i % 3) for i, p in enumerate(pages)]   # scattered, some unaligned
    arr = (ctypes.c_void_p * max(1, len(pages)))(*[b.ptr for b in bufs])
    n = PAGE * len(pages)
    dst, tag = Buf(b"\xA5" * n), Buf(bytes(16))
    L.aead_seal_pages(key, nonce, aad, len(aad), arr, len(pages), dst.ptr, tag.ptr)
    assert [b.value() for b in bufs] == pages, "seal_pages wrote a page"
    return dst.value() + tag.value()


def open_(L, key, nonce, aad, ct, tag, offset=0) -> tuple[int, bytes]:
    """aead_open in place; returns (result, buffer afterwards)."""
    b = Buf(ct, offset)
    r = L.aead_open(key, nonce, aad, len(aad), b.ptr, len(ct), tag)
    return r, b.value()


def open_copy(L, key, nonce, aad, ct, tag, offset=0) -> tuple[int, bytes]:
    src, dst = Buf(ct, offset), Buf(b"\xA5" * len(ct), (offset + 5) % 8)
    r = L.aead_open_copy(key, nonce, aad, len(aad), src.ptr, dst.ptr, len(ct), tag)
    assert src.value() == ct, "open_copy wrote its source"
    return r, dst.value()


def verify(L, key, nonce, aad, ct, tag, offset=0) -> int:
    """aead_verify: the tag checked, the ciphertext only read."""
    src = Buf(ct, offset)
    r = L.aead_verify(key, nonce, aad, len(aad), src.ptr, len(ct), tag)
    assert src.value() == ct, "aead_verify wrote its source"
    return r


def ref_chacha(key, counter, nonce, data) -> bytes:
    # cryptography's ChaCha20 nonce: 32-bit little-endian counter || 96-bit nonce.
    c = Cipher(algorithms.ChaCha20(key, struct.pack("<I", counter) + nonce), None).encryptor()
    return c.update(data) + c.finalize()


# ---- RFC 8439 test vectors ---------------------------------------------------------

KEY_SEQ = bytes(range(32))                    # 00:01:..:1f (2.3.2, 2.4.2)
KEY_80 = bytes(range(0x80, 0xA0))             # 80:81:..:9f (2.6.2, 2.8.2)
KEY_1C = h("""
000  1c 92 40 a5 eb 55 d3 8a f3 33 88 86 04 f6 b5 f0
016  47 39 17 c1 40 2b 80 09 9d ca 5c bc 20 70 75 c0""")
SUNSCREEN = (b"Ladies and Gentlemen of the class of '99: If I could offer you only one "
             b"tip for the future, sunscreen would be it.")
IETF_TEXT = (b"Any submission to the IETF intended by the Contributor for publication as "
             b"all or part of an IETF Internet-Draft or RFC and any statement made within "
             b"the context of an IETF activity is considered an \"IETF Contribution\". Such "
             b"statements include oral statements in IETF sessions, as well as written and "
             b"electronic communications made at any time or place, which are addressed to")
JABBERWOCKY = (b"'Twas brillig, and the slithy toves\nDid gyre and gimble in the wabe:\n"
               b"All mimsy were the borogoves,\nAnd the mome raths outgrabe.")


def test_vector_texts():
    assert (len(SUNSCREEN), len(IETF_TEXT), len(JABBERWOCKY)) == (114, 375, 127)


def test_rfc_2_3_2_block_function(lib):
    out = block(lib, KEY_SEQ, 1, h("00:00:00:09:00:00:00:4a:00:00:00:00"))
    assert out == h("""
        000  10 f1 e7 e4 d1 3b 59 15 50 0f dd 1f a3 20 71 c4
        016  c7 d1 f4 c7 33 c0 68 03 04 22 aa 9a c3 d4 6c 4e
        032  d2 82 64 46 07 9f aa 09 14 c2 d7 05 d9 8b 02 a2
        048  b5 12 9c d1 de 16 4e b9 cb d0 83 e8 a2 50 3c 4e""")


RFC_2_4_2_CT = h("""
    000  6e 2e 35 9a 25 68 f9 80 41 ba 07 28 dd 0d 69 81
    016  e9 7e 7a ec 1d 43 60 c2 0a 27 af cc fd 9f ae 0b
    032  f9 1b 65 c5 52 47 33 ab 8f 59 3d ab cd 62 b3 57
    048  16 39 d6 24 e6 51 52 ab 8f 53 0c 35 9f 08 61 d8
    064  07 ca 0d bf 50 0d 6a 61 56 a3 8e 08 8a 22 b6 5e
    080  52 bc 51 4d 16 cc f8 06 81 8c e9 1a b7 79 37 36
    096  5a f9 0b bf 74 a3 5b e6 b4 0b 8e ed f2 78 5e 42
    112  87 4d""")


def test_rfc_2_4_2_encryption(lib):
    nonce = h("00:00:00:00:00:00:00:4a:00:00:00:00")
    assert chacha_xor(lib, KEY_SEQ, 1, nonce, SUNSCREEN) == RFC_2_4_2_CT
    assert chacha_xor(lib, KEY_SEQ, 1, nonce, RFC_2_4_2_CT) == SUNSCREEN
    # the keystream as the RFC lists it
    assert chacha_xor(lib, KEY_SEQ, 1, nonce, bytes(114)) == h("""
        22:4f:51:f3:40:1b:d9:e1:2f:de:27:6f:b8:63:1d:ed:8c:13:1f:82:3d:2c:06
        e2:7e:4f:ca:ec:9e:f3:cf:78:8a:3b:0a:a3:72:60:0a:92:b5:79:74:cd:ed:2b
        93:34:79:4c:ba:40:c6:3e:34:cd:ea:21:2c:4c:f0:7d:41:b7:69:a6:74:9f:3f
        63:0f:41:22:ca:fe:28:ec:4d:c4:7e:26:d4:34:6d:70:b9:8c:73:f3:e9:c5:3a
        c4:0c:59:45:39:8b:6e:da:1a:83:2c:89:c1:67:ea:cd:90:1d:7e:2b:f3:63""")


def test_rfc_2_5_2_poly1305(lib):
    key = h("85:d6:be:78:57:55:6d:33:7f:44:52:fe:42:d5:06:a8:01:03:80:8a:fb:0d:b2:fd:4a:bf:"
            "f6:af:41:49:f5:1b")
    assert poly(lib, key, b"Cryptographic Forum Research Group") == \
        h("a8:06:1d:c1:30:51:36:c6:c2:2b:8b:af:0c:01:27:a9")


def test_rfc_2_6_2_key_generation(lib):
    assert keygen(lib, KEY_80, h("00 00 00 00 00 01 02 03 04 05 06 07")) == h("""
        000  8a d5 a0 8b 90 5f 81 cc 81 50 40 27 4a b2 94 71
        016  a8 33 b6 37 e3 fd 0d a5 08 db b8 e2 fd d1 a6 46""")


RFC_2_8_2 = dict(
    key=KEY_80,
    nonce=h("07 00 00 00") + h("40 41 42 43 44 45 46 47"),   # fixed-common part | IV
    aad=h("50 51 52 53 c0 c1 c2 c3 c4 c5 c6 c7"),
    pt=SUNSCREEN,
    otk=h("""
        000  7b ac 2b 25 2d b4 47 af 09 b6 7a 55 a4 e9 55 84
        016  0a e1 d6 73 10 75 d9 eb 2a 93 75 78 3e d5 53 ff"""),
    ct=h("""
        000  d3 1a 8d 34 64 8e 60 db 7b 86 af bc 53 ef 7e c2
        016  a4 ad ed 51 29 6e 08 fe a9 e2 b5 a7 36 ee 62 d6
        032  3d be a4 5e 8c a9 67 12 82 fa fb 69 da 92 72 8b
        048  1a 71 de 0a 9e 06 0b 29 05 d6 a5 b6 7e cd 3b 36
        064  92 dd bd 7f 2d 77 8b 8c 98 03 ae e3 28 09 1b 58
        080  fa b3 24 e4 fa d6 75 94 55 85 80 8b 48 31 d7 bc
        096  3f f4 de f0 8e 4b 7a 9d e5 76 d2 65 86 ce c6 4b
        112  61 16"""),
    tag=h("1a:e1:0b:59:4f:09:e2:6a:7e:90:2e:cb:d0:60:06:91"),
)


def test_rfc_2_8_2_aead(lib):
    v = RFC_2_8_2
    assert keygen(lib, v["key"], v["nonce"]) == v["otk"]
    # "AEAD Construction for Poly1305": aad | 4 zero bytes | ct | 14 zero bytes | lengths
    mac_data = v["aad"] + bytes(4) + v["ct"] + bytes(14) + struct.pack("<QQ", 12, 114)
    assert poly(lib, v["otk"], mac_data) == v["tag"]
    for form in (seal, seal_copy):
        assert form(lib, v["key"], v["nonce"], v["aad"], v["pt"]) == v["ct"] + v["tag"]
    assert open_(lib, v["key"], v["nonce"], v["aad"], v["ct"], v["tag"]) == (0, v["pt"])
    assert ChaCha20Poly1305(v["key"]).encrypt(v["nonce"], v["pt"], v["aad"]) == v["ct"] + v["tag"]


# A.1: (key, nonce, block counter, keystream)
A1 = [
    (bytes(32), bytes(12), 0, """
        000  76 b8 e0 ad a0 f1 3d 90 40 5d 6a e5 53 86 bd 28
        016  bd d2 19 b8 a0 8d ed 1a a8 36 ef cc 8b 77 0d c7
        032  da 41 59 7c 51 57 48 8d 77 24 e0 3f b8 d8 4a 37
        048  6a 43 b8 f4 15 18 a1 1c c3 87 b6 69 b2 ee 65 86"""),
    (bytes(32), bytes(12), 1, """
        000  9f 07 e7 be 55 51 38 7a 98 ba 97 7c 73 2d 08 0d
        016  cb 0f 29 a0 48 e3 65 69 12 c6 53 3e 32 ee 7a ed
        032  29 b7 21 76 9c e6 4e 43 d5 71 33 b0 74 d8 39 d5
        048  31 ed 1f 28 51 0a fb 45 ac e1 0a 1f 4b 79 4d 6f"""),
    (bytes(31) + b"\x01", bytes(12), 1, """
        000  3a eb 52 24 ec f8 49 92 9b 9d 82 8d b1 ce d4 dd
        016  83 20 25 e8 01 8b 81 60 b8 22 84 f3 c9 49 aa 5a
        032  8e ca 00 bb b4 a7 3b da d1 92 b5 c4 2f 73 f2 fd
        048  4e 27 36 44 c8 b3 61 25 a6 4a dd eb 00 6c 13 a0"""),
    (b"\x00\xff" + bytes(30), bytes(12), 2, """
        000  72 d5 4d fb f1 2e c4 4b 36 26 92 df 94 13 7f 32
        016  8f ea 8d a7 39 90 26 5e c1 bb be a1 ae 9a f0 ca
        032  13 b2 5a a2 6c b4 a6 48 cb 9b 9d 1b e6 5b 2c 09
        048  24 a6 6c 54 d5 45 ec 1b 73 74 f4 87 2e 99 f0 96"""),
    (bytes(32), bytes(11) + b"\x02", 0, """
        000  c2 c6 4d 37 8c d5 36 37 4a e2 04 b9 ef 93 3f cd
        016  1a 8b 22 88 b3 df a4 96 72 ab 76 5b 54 ee 27 c7
        032  8a 97 0e 0e 95 5c 14 f3 a8 8e 74 1b 97 c2 86 f7
        048  5f 8f c2 99 e8 14 83 62 fa 19 8a 39 53 1b ed 6d"""),
]


@pytest.mark.parametrize("key,nonce,counter,ks", A1, ids=[f"#{i + 1}" for i in range(len(A1))])
def test_rfc_a1_block_functions(lib, key, nonce, counter, ks):
    assert block(lib, key, counter, nonce) == h(ks)
    assert chacha_xor(lib, key, counter, nonce, bytes(64)) == h(ks)


# A.2: (key, nonce, initial counter, plaintext, ciphertext)
A2 = [
    (bytes(32), bytes(12), 0, bytes(64), A1[0][3]),
    (bytes(31) + b"\x01", bytes(11) + b"\x02", 1, IETF_TEXT, """
        000  a3 fb f0 7d f3 fa 2f de 4f 37 6c a2 3e 82 73 70
        016  41 60 5d 9f 4f 4f 57 bd 8c ff 2c 1d 4b 79 55 ec
        032  2a 97 94 8b d3 72 29 15 c8 f3 d3 37 f7 d3 70 05
        048  0e 9e 96 d6 47 b7 c3 9f 56 e0 31 ca 5e b6 25 0d
        064  40 42 e0 27 85 ec ec fa 4b 4b b5 e8 ea d0 44 0e
        080  20 b6 e8 db 09 d8 81 a7 c6 13 2f 42 0e 52 79 50
        096  42 bd fa 77 73 d8 a9 05 14 47 b3 29 1c e1 41 1c
        112  68 04 65 55 2a a6 c4 05 b7 76 4d 5e 87 be a8 5a
        128  d0 0f 84 49 ed 8f 72 d0 d6 62 ab 05 26 91 ca 66
        144  42 4b c8 6d 2d f8 0e a4 1f 43 ab f9 37 d3 25 9d
        160  c4 b2 d0 df b4 8a 6c 91 39 dd d7 f7 69 66 e9 28
        176  e6 35 55 3b a7 6c 5c 87 9d 7b 35 d4 9e b2 e6 2b
        192  08 71 cd ac 63 89 39 e2 5e 8a 1e 0e f9 d5 28 0f
        208  a8 ca 32 8b 35 1c 3c 76 59 89 cb cf 3d aa 8b 6c
        224  cc 3a af 9f 39 79 c9 2b 37 20 fc 88 dc 95 ed 84
        240  a1 be 05 9c 64 99 b9 fd a2 36 e7 e8 18 b0 4b 0b
        256  c3 9c 1e 87 6b 19 3b fe 55 69 75 3f 88 12 8c c0
        272  8a aa 9b 63 d1 a1 6f 80 ef 25 54 d7 18 9c 41 1f
        288  58 69 ca 52 c5 b8 3f a3 6f f2 16 b9 c1 d3 00 62
        304  be bc fd 2d c5 bc e0 91 19 34 fd a7 9a 86 f6 e6
        320  98 ce d7 59 c3 ff 9b 64 77 33 8f 3d a4 f9 cd 85
        336  14 ea 99 82 cc af b3 41 b2 38 4d d9 02 f3 d1 ab
        352  7a c6 1d d2 9c 6f 21 ba 5b 86 2f 37 30 e3 7c fd
        368  c4 fd 80 6c 22 f2 21"""),
    (KEY_1C, bytes(11) + b"\x02", 42, JABBERWOCKY, """
        000  62 e6 34 7f 95 ed 87 a4 5f fa e7 42 6f 27 a1 df
        016  5f b6 91 10 04 4c 0d 73 11 8e ff a9 5b 01 e5 cf
        032  16 6d 3d f2 d7 21 ca f9 b2 1e 5f b1 4c 61 68 71
        048  fd 84 c5 4f 9d 65 b2 83 19 6c 7f e4 f6 05 53 eb
        064  f3 9c 64 02 c4 22 34 e3 2a 35 6b 3e 76 43 12 a6
        080  1a 55 32 05 57 16 ea d6 96 25 68 f8 7d 3f 3f 77
        096  04 c6 a8 d1 bc d1 bf 4d 50 d6 15 4b 6d a7 31 b1
        112  87 b5 8d fd 72 8a fa 36 75 7a 79 7a c1 88 d1"""),
]


@pytest.mark.parametrize("key,nonce,counter,pt,ct", A2, ids=[f"#{i + 1}" for i in range(len(A2))])
def test_rfc_a2_encryption(lib, key, nonce, counter, pt, ct):
    assert chacha_xor(lib, key, counter, nonce, pt) == h(ct)
    assert chacha_xor(lib, key, counter, nonce, h(ct), offset=3) == pt
    assert ref_chacha(key, counter, nonce, pt) == h(ct)   # the transcription, checked


def _r_s(r: str, s: str) -> bytes:
    return h(r) + h(s)


ZERO16 = "00 " * 16
# A.3: (one-time key, text, tag)
A3 = [
    (bytes(32), bytes(64), bytes(16)),
    (bytes(16) + h("36 e5 f6 b5 c5 e0 60 70 f0 ef ca 96 22 7a 86 3e"), IETF_TEXT,
     h("36 e5 f6 b5 c5 e0 60 70 f0 ef ca 96 22 7a 86 3e")),
    (h("36 e5 f6 b5 c5 e0 60 70 f0 ef ca 96 22 7a 86 3e") + bytes(16), IETF_TEXT,
     h("f3 47 7e 7c d9 54 17 af 89 a6 b8 79 4c 31 0c f0")),
    (KEY_1C, JABBERWOCKY, h("45 41 66 9a 7e aa ee 61 e7 08 dc 7c bc c5 eb 62")),
    # #5: partially reduced final result not fully reduced
    (_r_s("02" + " 00" * 15, ZERO16), h("FF" * 16), h("03" + "00" * 15)),
    # #6: addition of s overflows modulo 2^128
    (_r_s("02" + " 00" * 15, "FF" * 16), h("02" + "00" * 15), h("03" + "00" * 15)),
    # #7: data limb all ones with a carry from the lower limb
    (_r_s("01" + " 00" * 15, ZERO16),
     h("FF" * 16 + "F0" + "FF" * 15 + "11" + "00" * 15), h("05" + "00" * 15)),
    # #8: final result from the polynomial part exactly 2^130-5
    (_r_s("01" + " 00" * 15, ZERO16),
     h("FF" * 16 + "FB" + "FE" * 15 + "01" * 16), bytes(16)),
    # #9: final result exactly 2^130-6
    (_r_s("02" + " 00" * 15, ZERO16), h("FD" + "FF" * 15), h("FA" + "FF" * 15)),
    # #10: 5*H+L-type reduction produces a 131-bit intermediate result
    (_r_s("01 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00", ZERO16), h("""
        E3 35 94 D7 50 5E 43 B9 00 00 00 00 00 00 00 00
        33 94 D7 50 5E 43 79 CD 01 00 00 00 00 00 00 00
        00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
        01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"""),
     h("14 00 00 00 00 00 00 00 55 00 00 00 00 00 00 00")),
    # #11: 5*H+L-type reduction produces a 131-bit final result
    (_r_s("01 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00", ZERO16), h("""
        E3 35 94 D7 50 5E 43 B9 00 00 00 00 00 00 00 00
        33 94 D7 50 5E 43 79 CD 01 00 00 00 00 00 00 00
        00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"""),
     h("13" + "00" * 15)),
]


@pytest.mark.parametrize("key,text,tag", A3, ids=[f"#{i + 1}" for i in range(len(A3))])
def test_rfc_a3_poly1305(lib, key, text, tag):
    assert poly(lib, key, text) == tag
    assert poly(lib, key, text, offset=5) == tag
    assert Poly1305.generate_tag(key, text) == tag        # the transcription, checked


A4 = [
    (bytes(32), bytes(12), """
        000  76 b8 e0 ad a0 f1 3d 90 40 5d 6a e5 53 86 bd 28
        016  bd d2 19 b8 a0 8d ed 1a a8 36 ef cc 8b 77 0d c7"""),
    (bytes(31) + b"\x01", bytes(11) + b"\x02", """
        000  ec fa 25 4f 84 5f 64 74 73 d3 cb 14 0d a9 e8 76
        016  06 cb 33 06 6c 44 7b 87 bc 26 66 dd e3 fb b7 39"""),
    (KEY_1C, bytes(11) + b"\x02", """
        000  96 5e 3b c6 f9 ec 7e d9 56 08 08 f4 d2 29 f9 4b
        016  13 7f f2 75 ca 9b 3f cb dd 59 de aa d2 33 10 ae"""),
]


@pytest.mark.parametrize("key,nonce,otk", A4, ids=[f"#{i + 1}" for i in range(len(A4))])
def test_rfc_a4_key_generation(lib, key, nonce, otk):
    want = h(otk)
    assert len(want) == 32
    assert keygen(lib, key, nonce) == want


A5 = dict(
    key=KEY_1C,
    nonce=h("00 00 00 00 01 02 03 04 05 06 07 08"),
    aad=h("f3 33 88 86 00 00 00 00 00 00 4e 91"),
    tag=h("ee ad 9d 67 89 0c bb 22 39 23 36 fe a1 85 1f 38"),
    otk=h("""
        000  bd f0 4a a9 5c e4 de 89 95 b1 4b b6 a1 8f ec af
        016  26 47 8f 50 c0 54 f5 63 db c0 a2 1e 26 15 72 aa"""),
    ct=h("""
        000  64 a0 86 15 75 86 1a f4 60 f0 62 c7 9b e6 43 bd
        016  5e 80 5c fd 34 5c f3 89 f1 08 67 0a c7 6c 8c b2
        032  4c 6c fc 18 75 5d 43 ee a0 9e e9 4e 38 2d 26 b0
        048  bd b7 b7 3c 32 1b 01 00 d4 f0 3b 7f 35 58 94 cf
        064  33 2f 83 0e 71 0b 97 ce 98 c8 a8 4a bd 0b 94 81
        080  14 ad 17 6e 00 8d 33 bd 60 f9 82 b1 ff 37 c8 55
        096  97 97 a0 6e f4 f0 ef 61 c1 86 32 4e 2b 35 06 38
        112  36 06 90 7b 6a 7c 02 b0 f9 f6 15 7b 53 c8 67 e4
        128  b9 16 6c 76 7b 80 4d 46 a5 9b 52 16 cd e7 a4 e9
        144  90 40 c5 a4 04 33 22 5e e2 82 a1 b0 a0 6c 52 3e
        160  af 45 34 d7 f8 3f a1 15 5b 00 47 71 8c bc 54 6a
        176  0d 07 2b 04 b3 56 4e ea 1b 42 22 73 f5 48 27 1a
        192  0b b2 31 60 53 fa 76 99 19 55 eb d6 31 59 43 4e
        208  ce bb 4e 46 6d ae 5a 10 73 a6 72 76 27 09 7a 10
        224  49 e6 17 d9 1d 36 10 94 fa 68 f0 ff 77 98 71 30
        240  30 5b ea ba 2e da 04 df 99 7b 71 4d 6c 6f 2c 29
        256  a6 ad 5c b4 02 2b 02 70 9b"""),
    pt=h("""
        000  49 6e 74 65 72 6e 65 74 2d 44 72 61 66 74 73 20
        016  61 72 65 20 64 72 61 66 74 20 64 6f 63 75 6d 65
        032  6e 74 73 20 76 61 6c 69 64 20 66 6f 72 20 61 20
        048  6d 61 78 69 6d 75 6d 20 6f 66 20 73 69 78 20 6d
        064  6f 6e 74 68 73 20 61 6e 64 20 6d 61 79 20 62 65
        080  20 75 70 64 61 74 65 64 2c 20 72 65 70 6c 61 63
        096  65 64 2c 20 6f 72 20 6f 62 73 6f 6c 65 74 65 64
        112  20 62 79 20 6f 74 68 65 72 20 64 6f 63 75 6d 65
        128  6e 74 73 20 61 74 20 61 6e 79 20 74 69 6d 65 2e
        144  20 49 74 20 69 73 20 69 6e 61 70 70 72 6f 70 72
        160  69 61 74 65 20 74 6f 20 75 73 65 20 49 6e 74 65
        176  72 6e 65 74 2d 44 72 61 66 74 73 20 61 73 20 72
        192  65 66 65 72 65 6e 63 65 20 6d 61 74 65 72 69 61
        208  6c 20 6f 72 20 74 6f 20 63 69 74 65 20 74 68 65
        224  6d 20 6f 74 68 65 72 20 74 68 61 6e 20 61 73 20
        240  2f e2 80 9c 77 6f 72 6b 20 69 6e 20 70 72 6f 67
        256  72 65 73 73 2e 2f e2 80 9d"""),
)


def test_rfc_a5_aead_decryption(lib):
    v = A5
    assert len(v["ct"]) == len(v["pt"]) == 265
    assert keygen(lib, v["key"], v["nonce"]) == v["otk"]
    assert open_(lib, v["key"], v["nonce"], v["aad"], v["ct"], v["tag"]) == (0, v["pt"])
    assert open_copy(lib, v["key"], v["nonce"], v["aad"], v["ct"], v["tag"], 1) == (0, v["pt"])
    assert seal(lib, v["key"], v["nonce"], v["aad"], v["pt"]) == v["ct"] + v["tag"]
    bad = bytes([v["tag"][0] ^ 1]) + v["tag"][1:]
    assert open_(lib, v["key"], v["nonce"], v["aad"], v["ct"], bad) == (-1, v["ct"])


# ---- against cryptography, random inputs ------------------------------------------------

LENGTHS = [0, 1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 4095, 4096, 4097, 65536 + 17]


def rnd(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.mark.parametrize("n", LENGTHS)
def test_lengths_match_cryptography(lib, n):
    r = random.Random(n)
    key, nonce = r.randbytes(32), r.randbytes(12)
    for aad_len in (0, 1, 12, 16, 33):
        aad, pt = r.randbytes(aad_len), r.randbytes(n)
        want = ChaCha20Poly1305(key).encrypt(nonce, pt, aad)
        off = r.randrange(8)
        assert seal(lib, key, nonce, aad, pt, off) == want
        assert seal_copy(lib, key, nonce, aad, pt, off) == want
        assert open_(lib, key, nonce, aad, want[:-16], want[-16:], off) == (0, pt)
        assert open_copy(lib, key, nonce, aad, want[:-16], want[-16:], off) == (0, pt)
        if n > 4096:
            break    # the big one once is enough


inputs = dict(key=st.binary(min_size=32, max_size=32), nonce=st.binary(min_size=12, max_size=12),
              aad=st.one_of(st.binary(max_size=40), st.binary(max_size=300)),
              pt=st.one_of(st.binary(max_size=200),
                           st.builds(rnd, st.integers(0, 2**32), st.integers(0, 9000))),
              off=st.integers(0, 7))
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(**inputs)
def test_seal_matches_cryptography(lib, key, nonce, aad, pt, off):
    want = ChaCha20Poly1305(key).encrypt(nonce, pt, aad)
    assert seal(lib, key, nonce, aad, pt, off) == want
    assert seal_copy(lib, key, nonce, aad, pt, off) == want


@SETTINGS
@given(**inputs, where=st.sampled_from(["ct", "tag", "aad", "nonce", "key", "aad_len"]),
       bit=st.integers(0, 2**20))
def test_open_accepts_cryptography_and_rejects_tampering(lib, key, nonce, aad, pt, off,
                                                          where, bit):
    sealed = ChaCha20Poly1305(key).encrypt(nonce, pt, aad)
    ct, tag = sealed[:-16], sealed[-16:]
    assert open_(lib, key, nonce, aad, ct, tag, off) == (0, pt)
    assert open_copy(lib, key, nonce, aad, ct, tag, off) == (0, pt)
    assert verify(lib, key, nonce, aad, ct, tag, off) == 0

    def flip(b: bytes) -> bytes:
        i = bit % (8 * len(b))
        return b[:i // 8] + bytes([b[i // 8] ^ (1 << (i % 8))]) + b[i // 8 + 1:]

    if where == "ct" and not ct:
        where = "tag"
    if where == "aad" and not aad:
        where = "aad_len"
    k, n, a, c, t = key, nonce, aad, ct, tag
    if where == "ct":
        c = flip(ct)
    elif where == "tag":
        t = flip(tag)
    elif where == "aad":
        a = flip(aad)
    elif where == "aad_len":
        a = aad + b"\x00"        # same bytes padded differently: the length block differs
    elif where == "nonce":
        n = flip(nonce)
    else:
        k = flip(key)
    assert open_(lib, k, n, a, c, t, off) == (-1, c)             # buffer unchanged
    assert open_copy(lib, k, n, a, c, t, off) == (-1, b"\xA5" * len(c))   # dst untouched
    assert verify(lib, k, n, a, c, t, off) == -1


@settings(max_examples=60, deadline=None)
@given(key=st.binary(min_size=32, max_size=32), nonce=st.binary(min_size=12, max_size=12),
       aad=st.binary(max_size=64), npages=st.integers(0, 20), seed=st.integers(0, 2**32))
def test_pages_equal_plain_form(lib, key, nonce, aad, npages, seed):
    pages = [rnd(seed + i, PAGE) for i in range(npages)]
    whole = b"".join(pages)
    got = seal_pages(lib, key, nonce, aad, pages)
    assert got == seal(lib, key, nonce, aad, whole)
    assert got == ChaCha20Poly1305(key).encrypt(nonce, whole, aad)


def test_empty_with_null_pointers(lib):
    """aad and data may be NULL when their length is 0."""
    key, nonce = bytes(range(32)), bytes(12)
    want = ChaCha20Poly1305(key).encrypt(nonce, b"", b"")
    tag = Buf(bytes(16))
    lib.aead_seal(key, nonce, None, 0, None, 0, tag.ptr)
    assert tag.value() == want
    lib.aead_seal_copy(key, nonce, None, 0, None, None, 0, tag.ptr)
    assert tag.value() == want
    lib.aead_seal_pages(key, nonce, None, 0, None, 0, None, tag.ptr)
    assert tag.value() == want
    assert lib.aead_open(key, nonce, None, 0, None, 0, want) == 0
    assert lib.aead_open_copy(key, nonce, None, 0, None, None, 0, want) == 0
    assert lib.aead_open(key, nonce, None, 0, None, 0, bytes(16)) == -1


def test_pages_zero_and_ram_like(lib):
    """Zero pages and repeated pages (as a RAM image has them) are just data."""
    key, nonce = bytes(range(32)), bytes(12)
    pages = [bytes(PAGE), bytes(PAGE), b"\xff" * PAGE, bytes(PAGE)]
    got = seal_pages(lib, key, nonce, b"chunk 7", pages)
    assert got == ChaCha20Poly1305(key).encrypt(nonce, b"".join(pages), b"chunk 7")
    assert got[:PAGE] != got[PAGE:2 * PAGE]          # same plaintext, different keystream


@settings(max_examples=200, deadline=None)
@given(key=st.binary(min_size=32, max_size=32), nonce=st.binary(min_size=12, max_size=12),
       counter=st.integers(0, 2**32 - 200), data=st.binary(max_size=700), off=st.integers(0, 7))
def test_chacha20_matches_cryptography(lib, key, nonce, counter, data, off):
    assert chacha_xor(lib, key, counter, nonce, data, off) == ref_chacha(key, counter, nonce, data)


@settings(max_examples=300, deadline=None)
@given(key=st.binary(min_size=32, max_size=32),
       msg=st.one_of(st.binary(max_size=300), st.builds(lambda n, b: bytes([b]) * n,
                                                         st.integers(0, 600),
                                                         st.sampled_from([0, 0xFF, 0xFE]))),
       off=st.integers(0, 7))
def test_poly1305_matches_cryptography(lib, key, msg, off):
    assert poly(lib, key, msg, off) == Poly1305.generate_tag(key, msg)


@pytest.mark.parametrize("fill", [0x00, 0xFF])
def test_poly1305_extreme_keys(lib, fill):
    """All-ones r (after clamping the largest r) and s with all-ones messages:
    the accumulator bounds the code relies on are at their widest here."""
    rng = random.Random(fill)
    for n in (16, 17, 1000, 4096):
        for key in (b"\xff" * 32, bytes([fill]) * 16 + rng.randbytes(16), rng.randbytes(32)):
            msg = b"\xff" * n
            assert poly(lib, key, msg) == Poly1305.generate_tag(key, msg)


def test_poly1305_fold_carry_reaches_top_limb(lib):
    """r = 1: after three zero blocks and one of all ones the accumulator is
    5*2^128 - 1; folding 2^130 back in as 5 carries through both 64-bit limbs
    into the top one. A lost carry only shows once h reaches 2^130 again."""
    key = b"\x01" + bytes(31)
    msg = bytes(48) + b"\xff" * 16 + bytes(48)
    assert poly(lib, key, msg) == Poly1305.generate_tag(key, msg) == h("09" + "00" * 15)


EXTREME_BLOCKS = [bytes(16), b"\xff" * 16, b"\xfe" + b"\xff" * 15, b"\xfb" + b"\xfe" * 15,
                  b"\x01" * 16, b"\xff" * 8 + bytes(8), bytes(8) + b"\xff" * 8]


@settings(max_examples=300, deadline=None)
@given(r=st.sampled_from([1, 2, 4, 5, 0x0ffffffc0ffffffc0ffffffc0fffffff,
                          0x0ffffffc0ffffffc0000000000000000, 0x00000000000000000ffffffc0fffffff]),
       s=st.sampled_from([bytes(16), b"\xff" * 16, b"\x01" + bytes(15)]),
       blocks=st.lists(st.sampled_from(EXTREME_BLOCKS), max_size=24),
       tail=st.sampled_from([b"", b"\xff", b"\xff" * 15, b"\x00" * 7]))
def test_poly1305_extreme_limbs(lib, r, s, blocks, tail):
    """Messages of all-ones / near-P blocks with tiny and maximal r drive the
    64-bit limbs to their carry edges, which random data almost never reaches."""
    key = r.to_bytes(16, "little") + s
    msg = b"".join(blocks) + tail
    assert poly(lib, key, msg) == Poly1305.generate_tag(key, msg)


# ---- AddressSanitizer + UBSan ---------------------------------------------------------

class Sanitized:
    def __init__(self, exe: Path):
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
                   UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
        self.proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)

    def call(self, op: bytes, key, nonce, aad, data, tag=b"") -> tuple[int, bytes, bytes]:
        p = self.proc
        p.stdin.write(op + key + nonce + struct.pack("<II", len(aad), len(data)) + aad + data + tag)
        p.stdin.flush()
        head = p.stdout.read(4)
        if len(head) != 4:
            p.kill()
            err = p.stderr.read().decode(errors="replace")
            raise AssertionError("sanitized driver died:\n" + err)
        (r,) = struct.unpack("<i", head)
        return r, p.stdout.read(len(data)), p.stdout.read(16)

    def close(self):
        self.proc.stdin.close()
        assert self.proc.wait(timeout=10) == 0, self.proc.stderr.read().decode(errors="replace")


@pytest.fixture(scope="module")
def san(tmp_path_factory):
    exe = tmp_path_factory.mktemp("sanbuild") / "aead_san"
    subprocess.run(["gcc", "-O1", "-g", "-fsanitize=address,undefined",
                    "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-Wall", "-Wextra",
                    str(AEAD_C), str(DRIVER_C), "-o", str(exe)],
                   check=True)
    s = Sanitized(exe)
    yield s
    s.close()


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(key=st.binary(min_size=32, max_size=32), nonce=st.binary(min_size=12, max_size=12),
       aad=st.binary(max_size=100),
       pt=st.one_of(st.binary(max_size=300), st.builds(rnd, st.integers(0, 2**32),
                                                       st.integers(0, 3 * PAGE + 100))),
       tamper=st.booleans())
def test_sanitized(san, key, nonce, aad, pt, tamper):
    want = ChaCha20Poly1305(key).encrypt(nonce, pt, aad)
    ct, tag = want[:-16], want[-16:]
    for op in (b"S", b"C"):
        assert san.call(op, key, nonce, aad, pt) == (0, ct, tag)
    npages = len(pt) // PAGE
    if npages:
        whole = pt[:npages * PAGE]
        assert san.call(b"P", key, nonce, aad, whole)[1:] == \
            tuple(_split(ChaCha20Poly1305(key).encrypt(nonce, whole, aad)))
    if tamper:
        tag = bytes([tag[0] ^ 0x80]) + tag[1:]
    r, out_o, _ = san.call(b"O", key, nonce, aad, ct, tag)
    r2, out_d, _ = san.call(b"D", key, nonce, aad, ct, tag)
    if tamper:
        assert (r, out_o, r2, out_d) == (-1, ct, -1, b"\xA5" * len(ct))
    else:
        assert (r, out_o, r2, out_d) == (0, pt, 0, pt)


def _split(sealed: bytes) -> tuple[bytes, bytes]:
    return sealed[:-16], sealed[-16:]


# ---- the vector keystream paths -------------------------------------------------------

def host_impls() -> list[str]:
    """The paths this CPU runs: SSE2 is part of x86-64; AVX2 where Linux reports it (Linux
    enables the ymm state in XCR0 whenever the CPU has AVX)."""
    flags = re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M).group(1)
    return ["scalar", "sse2"] + (["avx2"] if "avx2" in flags.split() else [])


IMPL = {"scalar": 0, "sse2": 1, "avx2": 2}


@pytest.fixture(params=host_impls())
def impl_lib(lib, request):
    assert lib.chacha20_use(IMPL[request.param]) == IMPL[request.param]
    yield lib
    assert lib.chacha20_use(0) == 0


def test_each_path_matches_cryptography(impl_lib):
    L, r = impl_lib, random.Random(8439)
    lengths = [0, 1, 63, 64, 65, 255, 256, 257, 511, 512, 513, 767, 1024, 4096, 8191, 65536]
    for n in lengths + [r.randrange(20000) for _ in range(60)]:
        key, nonce, aad = r.randbytes(32), r.randbytes(12), r.randbytes(r.randrange(40))
        pt, off = r.randbytes(n), r.randrange(8)
        want = ChaCha20Poly1305(key).encrypt(nonce, pt, aad)
        assert seal(L, key, nonce, aad, pt, off) == want, n
        assert seal_copy(L, key, nonce, aad, pt, off) == want, n
        assert open_(L, key, nonce, aad, want[:-16], want[-16:], off) == (0, pt), n
        assert open_copy(L, key, nonce, aad, want[:-16], want[-16:], off) == (0, pt), n
        counter = r.randrange(2**32 - 400)
        assert chacha_xor(L, key, counter, nonce, pt[:4000], off) == \
            ref_chacha(key, counter, nonce, pt[:4000]), n
    pages = [r.randbytes(PAGE) if i % 3 else bytes(PAGE) for i in range(7)]
    assert seal_pages(L, key, nonce, b"aad", pages) == \
        ChaCha20Poly1305(key).encrypt(nonce, b"".join(pages), b"aad")


def test_each_path_wraps_the_counter_like_scalar(lib):
    """RFC 8439 2.3: the block counter is one 32-bit word; every path wraps it alike."""
    r = random.Random(2)
    key, nonce, data = r.randbytes(32), r.randbytes(12), r.randbytes(64 * 40 + 5)
    for counter in (2**32 - 1, 2**32 - 3, 2**32 - 7, 2**32 - 13):
        outs = set()
        for name in host_impls():
            lib.chacha20_use(IMPL[name])
            outs.add(chacha_xor(lib, key, counter, nonce, data, 3))
        lib.chacha20_use(0)
        assert len(outs) == 1, counter


# ---- the payload build: flags, symbols, stack, speed ------------------------------------

@pytest.fixture(scope="module")
def payload_obj(tmp_path_factory):
    d = tmp_path_factory.mktemp("payloadbuild")
    obj = d / "chacha20poly1305.o"
    subprocess.run(["gcc", *FREESTANDING, "-Werror", "-fstack-usage", "-fcallgraph-info=su",
                    "-c", str(AEAD_C), "-o", str(obj)], check=True, cwd=d)
    return obj


def test_payload_object_is_self_contained(payload_obj):
    undefined = subprocess.run(["nm", "-u", str(payload_obj)], capture_output=True, text=True,
                               check=True).stdout.split()
    assert set(undefined[1::2]) <= {"memcpy", "memset"}
    dis = subprocess.run(["objdump", "-d", str(payload_obj)], capture_output=True, text=True,
                         check=True).stdout
    # Vector registers only inside the functions chosen at run time (chacha20_simd.h).
    funcs = re.split(r"\n(?=[0-9a-f]+ <)", dis)
    vec = {re.match(r"[0-9a-f]+ <([^>]+)>", f).group(1) for f in funcs
           if re.match(r"[0-9a-f]+ <", f) and re.search(r"%[xyz]mm\d", f)}
    assert vec == {"chacha_xor4_sse2", "chacha_xor8_avx2"}, vec


def worst_stack(ci_text: str, extern_frame: int = 64) -> dict[str, int]:
    """Deepest stack use from each public function, from gcc's -fcallgraph-info=su output."""
    frame, calls = {}, {}
    node = r'node: \{ title: "([^"]+)" label: "[^"]*?\\n[^"]*?\\n(\d+) bytes'
    for m in re.finditer(node, ci_text):
        frame[m.group(1)] = int(m.group(2))
    for m in re.finditer(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"', ci_text):
        calls.setdefault(m.group(1), set()).add(m.group(2))

    def depth(f, seen=()):
        assert f not in seen, f"recursion through {f}"
        own = frame.get(f, extern_frame)   # memcpy/memset: small leaf functions
        return own + max((depth(g, seen + (f,)) for g in calls.get(f, ())), default=0)

    return {f: depth(f) for f in frame if ":" not in f}   # static ones are "file:name"


def test_payload_stack_use(payload_obj):
    public = worst_stack(payload_obj.with_suffix(".ci").read_text())
    assert set(public) >= {"aead_seal", "aead_open", "aead_seal_copy", "aead_open_copy",
                           "aead_seal_pages", "aead_verify"}
    print("\nworst-case stack bytes:", json.dumps(public, sort_keys=True))
    # The AVX2 path's frame (16 ymm values spilled, 32-byte aligned) is most of it; an AP's
    # stack is 8 KiB (builder/core/smp.c).
    assert max(public.values()) < 2048, public


def test_speed(payload_obj, tmp_path):
    """MB/s on 64 KiB buffers, the AEAD compiled with the payload's flags."""
    exe = tmp_path / "aead_bench"
    subprocess.run(["gcc", "-O2", "-no-pie", "-Wall", str(DRIVER_C), str(payload_obj),
                    "-o", str(exe)], check=True)
    out = subprocess.run([str(exe), "bench", "65536", "0.25"], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    speed = json.loads(out)
    print("\nChaCha20-Poly1305 MB/s (64 KiB, payload flags):", out.strip())
    assert speed["bytes"] == 65536
    # Generous floor: only a gross slowdown (e.g. a byte-at-a-time loop) fails.
    assert speed["seal"] > 50 and speed["open"] > 50, speed
