"""builder/efi/memmap.c (the firmware's GetMemoryMap as the loader's RAM map) against a model
written here from the rule it follows: EFI loader and boot services code and data and
conventional memory are RAM after ExitBootServices, as in Linux's EFI stub (setup_e820);
ACPI reclaim, ACPI NVS, unusable and persistent memory keep their E820 types; everything else
is reserved. Host build, ctypes; descriptors in random order, walked by descriptor size."""
import ctypes
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

ROOT = Path(__file__).resolve().parent.parent
MAX_ENTRIES = 64                # qemu-boot/multiboot.h MB_MAX_MMAP
PAGE = 4096
E820 = {1: 1, 2: 1, 3: 1, 4: 1, 7: 1,     # loader/boot services code and data, conventional
        9: 3, 10: 4, 8: 5, 14: 7}         # ACPI reclaim, ACPI NVS, unusable, persistent


class Entry(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("end", ctypes.c_uint64), ("type", ctypes.c_uint32)]


class BootInfo(ctypes.Structure):   # the leading fields of struct boot_info
    _fields_ = [("mmap", Entry * MAX_ENTRIES), ("mmap_count", ctypes.c_uint)]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    so = tmp_path_factory.mktemp("hostbuild") / "libmemmap.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
                    f"-I{ROOT / 'builder/efi'}", f"-I{ROOT / 'qemu-boot'}",
                    f"-I{ROOT / 'builder/lib'}", str(ROOT / "builder/efi/memmap.c"),
                    "-o", str(so)], check=True)
    L = ctypes.CDLL(str(so))
    L.efi_memmap_convert.argtypes = [ctypes.c_char_p, ctypes.c_uint64, ctypes.c_uint64,
                                     ctypes.c_void_p]
    return L


def pack(descs, desc_size):
    """EFI_MEMORY_DESCRIPTOR (UEFI 2.10, 7.2) each padded to desc_size, as firmware may."""
    return b"".join(struct.pack("<IIQQQQ", t, 0, start, 0, pages, 0xF).ljust(desc_size, b"\xa5")
                    for t, start, pages in descs)


def model(descs):
    out = []
    for t, start, pages in sorted(descs, key=lambda d: d[1]):
        if not pages:
            continue
        kind, end = E820.get(t, 2), start + pages * PAGE
        if out and out[-1][1] == start and out[-1][2] == kind:
            out[-1] = (out[-1][0], end, kind)
        else:
            out.append((start, end, kind))
    return out


def convert(L, descs, desc_size=48):
    bi = BootInfo()
    data = pack(descs, desc_size)
    rc = L.efi_memmap_convert(data, len(data), desc_size, ctypes.byref(bi))
    return rc, [(e.start, e.end, e.type) for e in bi.mmap[:bi.mmap_count]]


# A map of back-to-back descriptors (pages, type) from 0, then shuffled.
maps = st.lists(st.tuples(st.integers(0, 16), st.integers(0, 15)), max_size=120).flatmap(
    lambda runs: st.permutations([(t, sum(p for p, _ in runs[:i]) * PAGE, p)
                                  for i, (p, t) in enumerate(runs)]))


@settings(max_examples=300, deadline=None)
@given(maps)
def test_the_conversion_matches_the_rule(lib, descs):
    rc, got = convert(lib, descs)
    want = model(descs)
    if len(want) > MAX_ENTRIES:
        assert rc == -1
    else:
        assert rc == 0 and got == want


def test_ovmf_like_map_merges_what_is_ram_after_exit_boot_services(lib):
    descs = [(7, 0x100000, 0x706), (10, 0x806000, 2), (4, 0x808000, 0xF8), (7, 0x900000, 0x100),
             (1, 0xA00000, 0x10), (3, 0xA10000, 0x10), (5, 0xA20000, 1), (6, 0xA21000, 1),
             (0, 0xA22000, 1), (9, 0xA23000, 2), (11, 0xB0000000, 0x10000)]
    rc, got = convert(lib, descs[::-1], desc_size=40)
    assert rc == 0
    assert got == [(0x100000, 0x806000, 1), (0x806000, 0x808000, 4), (0x808000, 0xA20000, 1),
                   (0xA20000, 0xA23000, 2), (0xA23000, 0xA25000, 3),
                   (0xB0000000, 0xC0000000, 2)]


def test_a_descriptor_size_below_the_spec_is_refused(lib):
    data = pack([(7, 0, 1)], 40)
    assert lib.efi_memmap_convert(data, len(data), 32, ctypes.byref(BootInfo())) == -1
