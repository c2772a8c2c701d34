"""builder/resume/efi/runtime_map.c, the loader's check of the firmware's runtime regions
against the target's efi_runtime list, built for the host: the list is the bytes the builder
puts in the loader (formats/efi_runtime.py), the firmware's map EFI_MEMORY_DESCRIPTORs
walked by the firmware's descriptor size (UEFI 2.10, 7.2)."""
import ctypes
import struct
import subprocess
from pathlib import Path

import pytest

from suspendos.build import toolchain
from suspendos.formats import efi_runtime as fmt

ROOT = Path(__file__).resolve().parent.parent
RT = 1 << 63
MATCH, BAD_MAP, NOT_CAPTURED, DIFFERS, NOT_FIRMWARE = range(5)   # enum efi_runtime_verdict
# OVMF-like: runtime code and data, the flash MMIO; boot services data and conventional
# memory around them without the RUNTIME bit.
FIRMWARE = [(4, 0x100000, 0x700, 0xF), (5, 0x7e00000, 0x20, RT | 0xF),
            (6, 0x7e20000, 0x40, RT | 0xF), (7, 0x7e60000, 0x100, 0xF),
            (11, 0xffc00000, 0x400, RT | 0x1)]
VIRT = 0xfffffffeff000000


class Mismatch(ctypes.Structure):
    _fields_ = [("verdict", ctypes.c_int), ("type", ctypes.c_uint32),
                ("start", ctypes.c_uint64), ("pages", ctypes.c_uint64),
                ("list_type", ctypes.c_uint32), ("list_start", ctypes.c_uint64),
                ("list_pages", ctypes.c_uint64), ("covered", ctypes.c_uint64)]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    work = tmp_path_factory.mktemp("hostbuild")
    so = work / "libruntime_map.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
                    f"-I{toolchain.abi_header_dir(work)}", f"-I{ROOT / 'builder/resume/efi'}",
                    str(ROOT / "builder/resume/efi/runtime_map.c"), "-o", str(so)], check=True)
    L = ctypes.CDLL(str(so))
    L.efi_runtime_compare.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint64,
                                      ctypes.c_uint64, ctypes.POINTER(Mismatch)]
    return L


def firmware_map(descs, desc_size=48):
    """Descriptors padded to desc_size, as firmware may (OVMF's is 48)."""
    return b"".join(struct.pack("<IIQQQQ", t, 0, start, 0, pages, attr).ljust(desc_size, b"\xa5")
                    for t, start, pages, attr in descs)


def captured(descs):
    """The runtime ones, as the kernel's runtime map has them, in the loader's list."""
    return [(t, s, VIRT - i * 0x100000, n, a) for i, (t, s, n, a) in enumerate(descs)
            if a & RT]


def compare(lib, entries, descs, desc_size=48):
    m = Mismatch()
    raw = firmware_map(descs, desc_size)
    v = lib.efi_runtime_compare(fmt.runtime_list(entries), raw, len(raw), desc_size,
                                ctypes.byref(m))
    assert v == m.verdict
    return m


@pytest.mark.parametrize("desc_size", [40, 48, 64])
def test_the_same_regions_match_whatever_the_descriptor_size(lib, desc_size):
    assert compare(lib, captured(FIRMWARE), FIRMWARE, desc_size).verdict == MATCH


def test_order_and_virtual_addresses_do_not_matter(lib):
    assert compare(lib, captured(FIRMWARE)[::-1], FIRMWARE).verdict == MATCH


def test_a_firmware_runtime_region_missing_from_the_list(lib):
    m = compare(lib, captured(FIRMWARE)[:-1], FIRMWARE)
    assert (m.verdict, m.type, m.start, m.pages) == (NOT_CAPTURED, 11, 0xffc00000, 0x400)


def test_an_empty_list_matches_only_a_firmware_without_runtime_regions(lib):
    assert compare(lib, [], FIRMWARE).verdict == NOT_CAPTURED
    plain = [d for d in FIRMWARE if not d[3] & RT]
    assert compare(lib, [], plain).verdict == MATCH


def test_same_start_other_size_or_type(lib):
    entries = captured(FIRMWARE)
    t, s, v, n, a = entries[1]
    m = compare(lib, entries[:1] + [(t, s, v, n - 1, a)] + entries[2:], FIRMWARE)
    assert (m.verdict, m.start, m.type, m.pages, m.list_type, m.list_start, m.list_pages) == \
        (DIFFERS, s, t, n, t, s, n - 1)
    m = compare(lib, entries[:1] + [(5, s, v, n, a)] + entries[2:], FIRMWARE)
    assert (m.verdict, m.type, m.list_type) == (DIFFERS, 6, 5)


def test_a_list_entry_overlapping_a_firmware_region_partly(lib):
    entries = captured(FIRMWARE)
    t, s, v, n, a = entries[1]
    m = compare(lib, entries[:1] + [(t, s + 0x1000, v, n - 1, a)] + entries[2:], FIRMWARE)
    assert (m.verdict, m.start, m.list_start) == (DIFFERS, s, s + 0x1000)


def test_a_list_entry_longer_than_the_firmware_regions_it_holds(lib):
    entries = captured(FIRMWARE)
    t, s, v, n, a = entries[1]
    m = compare(lib, entries[:1] + [(t, s, v, n + 1, a)] + entries[2:], FIRMWARE)
    assert (m.verdict, m.type, m.start, m.pages, m.covered) == (NOT_FIRMWARE, t, s, n + 1, n)


def test_an_entry_linux_merged_from_neighbours_of_one_type(lib):
    """arch/x86/platform/efi/efi.c, efi_merge_regions: neighbouring descriptors of one type
    and attribute become one before SetVirtualAddressMap, and so in the runtime map."""
    split = [(5, 0x7e00000, 0x8, RT | 0xF), (5, 0x7e08000, 0x18, RT | 0xF),
             (6, 0x7e20000, 0x40, RT | 0xF)]
    merged = [(5, 0x7e00000, VIRT, 0x20, RT | 0xF), (6, 0x7e20000, VIRT + 0x20000, 0x40, RT | 0xF)]
    assert compare(lib, merged, split).verdict == MATCH
    # a hole in the firmware's: the merged entry is not all the firmware's
    holed = [split[0], (5, 0x7e10000, 0x10, RT | 0xF), split[2]]
    m = compare(lib, merged, holed)
    assert (m.verdict, m.start, m.pages, m.covered) == (NOT_FIRMWARE, 0x7e00000, 0x20, 0x18)
    # one of another type inside it
    typed = [split[0], (6, 0x7e08000, 0x18, RT | 0xF), split[2]]
    m = compare(lib, merged, typed)
    assert (m.verdict, m.start, m.type, m.list_type) == (DIFFERS, 0x7e08000, 6, 5)


def test_a_list_region_the_firmware_does_not_have(lib):
    extra = captured(FIRMWARE) + [(6, 0x7f000000, VIRT + 0x1000000, 4, RT)]
    m = compare(lib, extra, FIRMWARE)
    assert (m.verdict, m.type, m.start, m.pages, m.covered) == (NOT_FIRMWARE, 6, 0x7f000000, 4, 0)


def test_a_list_region_without_runtime_in_the_firmware_map_is_not_the_firmwares(lib):
    # the firmware has the range, but not as a runtime region
    extra = captured(FIRMWARE) + [(6, 0x7e60000, VIRT + 0x1000000, 0x100, RT)]
    assert compare(lib, extra, FIRMWARE).verdict == NOT_FIRMWARE


@pytest.mark.parametrize("kept_type", [1, 2, 3, 4, 7])
def test_regions_the_kernel_kept_for_itself_are_not_asked_of_the_firmware(lib, kept_type):
    """Linux's efi_mem_reserve marks boot services memory it keeps (ESRT, ...) runtime; a
    fresh firmware's map shows that memory without the bit."""
    kept = captured(FIRMWARE) + [(kept_type, 0x100000, VIRT + 0x1000000, 1, RT)]
    assert compare(lib, kept, FIRMWARE).verdict == MATCH


def test_a_descriptor_size_below_version_1_is_refused(lib):
    assert compare(lib, captured(FIRMWARE), FIRMWARE, 48).verdict == MATCH
    m = Mismatch()
    raw = firmware_map(FIRMWARE, 48)
    assert lib.efi_runtime_compare(fmt.runtime_list(captured(FIRMWARE)), raw, len(raw), 32,
                                   ctypes.byref(m)) == BAD_MAP


def test_empty_pages_are_no_region(lib):
    assert compare(lib, captured(FIRMWARE), FIRMWARE + [(5, 0x9000000, 0, RT)]).verdict == MATCH
