"""builder/resume/efi/runtime.c on the host, around a fake firmware: the check's refusals
as the loader prints them, and the SetVirtualAddressMap call after a restore (UEFI 2.10,
8.4) with the target's list as VirtualMap. The firmware side is a table with the runtime
services signature and an ms_abi function in the SetVirtualAddressMap slot that records what
it was given; the loader's kprintf, refuse() and its two globals are the harness's."""
import ctypes
import struct
import subprocess
from pathlib import Path

import pytest

from suspendos.build import toolchain
from suspendos.formats import efi_runtime as fmt

ROOT = Path(__file__).resolve().parent.parent
RT = 1 << 63
EFI_DEVICE_ERROR = RT | 7
REFUSE_EFI_RUNTIME_MAP = 19            # builder/resume/resume.h
ENTRIES = [(5, 0x7e00000, 0xfffffffeffe00000, 0x20, RT | 0xF),
           (6, 0x7e20000, 0xfffffffeffdc0000, 0x40, RT | 0xF),
           (11, 0xffc00000, 0xfffffffeff9c0000, 0x400, RT | 0x1)]
TABLE = 0x7e20018

HARNESS = r'''
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "runtime.h"
#include "resume.h"

struct sos_efi_entry resume_efi;
struct sos_efi_runtime_list sos_resume_efi_runtime;
static char out[16384];
static size_t used;
static jmp_buf refused;
static int reason;

int kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    return vsnprintf(buf, size, fmt, ap);
}
int ksnprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}
void kprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + used, sizeof out - used, fmt, ap);
    va_end(ap);
    if (n > 0)
        used += (size_t)n < sizeof out - used ? (size_t)n : sizeof out - used - 1;
}
void refuse(enum resume_reason why, const char *fmt, ...)
{
    va_list ap;
    kprintf("@@RESUME refused %d ", (int)why);
    va_start(ap, fmt);
    used += vsnprintf(out + used, sizeof out - used, fmt, ap);
    va_end(ap);
    kprintf("\n");
    reason = why;
    longjmp(refused, 1);
}

/* The fake firmware: 4.5's table up to SetVirtualAddressMap. */
static struct {
    uint64_t signature;
    uint32_t revision, header_size, crc32, reserved;
    void *get_time, *set_time, *get_wakeup_time, *set_wakeup_time;
    void *set_virtual_address_map;
} table;
uint64_t got_size, got_descriptor_size, calls;
uint32_t got_version;
void *got_map;
static uint64_t answer;

static __attribute__((ms_abi)) uint64_t fake_svam(uint64_t size, uint64_t dsize, uint32_t version,
                                                  void *map)
{
    got_size = size;
    got_descriptor_size = dsize;
    got_version = version;
    got_map = map;
    calls++;
    return answer;
}

void harness_list(const void *bytes, size_t n)
{
    memcpy(&sos_resume_efi_runtime, bytes, n);
}
const char *harness_output(void)
{
    return out;
}
void *harness_list_entries(void)
{
    return sos_resume_efi_runtime.entries;
}

/* 0 or the refusal's reason. */
int harness_check(const void *map, uint64_t size, uint64_t dsize, uint64_t rt)
{
    struct sos_efi_entry e = { 0 };
    used = 0;
    out[0] = 0;
    e.efi_map = (uint64_t)(uintptr_t)map;
    e.efi_map_size = size;
    e.efi_descriptor_size = dsize;
    e.runtime_services = rt;
    if (setjmp(refused))
        return reason;
    efi_runtime_check(&e);
    return 0;
}

/* `valid`: the table's signature right; `status`: what SetVirtualAddressMap returns. The
 * handoff block's message into `message`. */
void harness_set_virtual(int valid, uint64_t status, int present, char *message)
{
    static struct sos_handoff h;
    memset(&h, 0, sizeof h);
    used = 0;
    out[0] = 0;
    calls = 0;
    answer = status;
    table.signature = valid ? 0x56524553544e5552ull : 0;
    table.set_virtual_address_map = (void *)fake_svam;
    resume_efi.runtime_services = present ? (uint64_t)(uintptr_t)&table : 0;
    efi_runtime_set_virtual(&h);
    memcpy(message, h.message, sizeof h.message);
}
'''


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    work = tmp_path_factory.mktemp("hostbuild")
    (work / "harness.c").write_text(HARNESS)
    so = work / "libruntime.so"
    efi = ROOT / "builder/resume/efi"
    # -fno-builtin: the loader's printf.h declares kprintf, not the host's printf family
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
                    f"-I{toolchain.abi_header_dir(work)}", f"-I{efi}",
                    f"-I{ROOT / 'builder/resume'}", f"-I{ROOT / 'drivers'}",
                    f"-I{ROOT / 'qemu-boot'}", str(work / "harness.c"), str(efi / "runtime.c"),
                    str(efi / "runtime_map.c"), "-o", str(so)], check=True)
    L = ctypes.CDLL(str(so))
    L.harness_output.restype = ctypes.c_char_p
    L.harness_list_entries.restype = ctypes.c_void_p
    L.harness_check.argtypes = [ctypes.c_char_p, ctypes.c_uint64, ctypes.c_uint64,
                                ctypes.c_uint64]
    L.harness_set_virtual.argtypes = [ctypes.c_int, ctypes.c_uint64, ctypes.c_int,
                                      ctypes.c_char_p]
    return L


def _load(lib, entries, table=0):
    raw = fmt.runtime_list(entries, table)
    lib.harness_list(raw, len(raw))


def _firmware(entries, desc_size=48):
    return b"".join(struct.pack("<IIQQQQ", t, 0, p, 0, n, a).ljust(desc_size, b"\0")
                    for t, p, _, n, a in entries)


def _set_virtual(lib, valid=True, status=0, present=True):
    message = ctypes.create_string_buffer(64)
    lib.harness_set_virtual(int(valid), status, int(present), message)
    return lib.harness_output().decode(), message.value.decode()


def test_set_virtual_address_map_gets_the_list_as_its_virtual_map(lib):
    _load(lib, ENTRIES, TABLE)
    out, message = _set_virtual(lib)
    assert ctypes.c_uint64.in_dll(lib, "calls").value == 1
    size = fmt.EfiRuntimeEntry.sizeof()
    assert ctypes.c_uint64.in_dll(lib, "got_descriptor_size").value == size == 40
    assert ctypes.c_uint64.in_dll(lib, "got_size").value == 3 * size
    assert ctypes.c_uint32.in_dll(lib, "got_version").value == fmt.DESCRIPTOR_VERSION
    got_map = ctypes.c_void_p.in_dll(lib, "got_map").value
    assert got_map == lib.harness_list_entries()
    # what the firmware reads there: version 1 descriptors, VirtualStart = the kernel's
    descs = ctypes.string_at(got_map, 3 * size)
    assert [struct.unpack_from("<IIQQQQ", descs, i * size) for i in range(3)] == \
        [(t, 0, p, v, n, a) for t, p, v, n, a in ENTRIES]
    assert out == "@@EFI set-virtual-address-map status=0x0 (3 regions)\n"
    assert message == ""


def test_a_failure_is_said_on_serial_and_in_the_handoff_message_and_the_resume_goes_on(lib):
    _load(lib, ENTRIES, TABLE)
    out, message = _set_virtual(lib, status=EFI_DEVICE_ERROR)
    assert out == f"@@EFI set-virtual-address-map status={EFI_DEVICE_ERROR:#x} (3 regions)\n"
    assert message == f"efi set-virtual-address-map status={EFI_DEVICE_ERROR:#x}"


@pytest.mark.parametrize("valid, present", [(False, True), (True, False)])
def test_no_runtime_services_table_is_not_called(lib, valid, present):
    _load(lib, ENTRIES, TABLE)
    out, message = _set_virtual(lib, valid=valid, present=present)
    assert ctypes.c_uint64.in_dll(lib, "calls").value == 0
    assert out.startswith("@@EFI set-virtual-address-map status=0x8000000000000003: no "
                          "runtime services table at ")
    assert message == "efi set-virtual-address-map status=0x8000000000000003"


def test_an_empty_list_is_not_handed_over(lib):
    _load(lib, [])
    out, message = _set_virtual(lib)
    assert ctypes.c_uint64.in_dll(lib, "calls").value == 0
    assert out == "@@EFI set-virtual-address-map skipped: no runtime regions\n"
    assert message == ""


def test_the_check_passes_and_prints_the_firmwares_regions(lib):
    _load(lib, ENTRIES, TABLE)
    fw = _firmware(ENTRIES)
    assert lib.harness_check(fw, len(fw), 48, TABLE) == 0
    out = lib.harness_output().decode().splitlines()
    assert out == [f"@@EFI runtime-region type={t} start={p:#x} pages={n} attribute={a:#x}"
                   for t, p, _, n, a in ENTRIES] + \
        [f"@@EFI runtime-services {TABLE:#x}", "@@EFI runtime regions: 3, as the target's "
         "efi_runtime"]


@pytest.mark.parametrize("firmware, table, message", [
    (ENTRIES[:2], TABLE, "the target's efi_runtime region type 11 at 0xffc00000 (1024 pages) "
                         "is not the firmware's: its runtime regions of that type cover 0 of "
                         "them"),
    (ENTRIES + [(6, 0x9000000, 0, 1, RT)], TABLE,
     "firmware runtime region type 6 at 0x9000000 (1 pages) is not in the target's "
     "efi_runtime (3 entries)"),
    (ENTRIES, TABLE + 0x1000, f"the firmware's runtime services table is at "
                              f"{TABLE + 0x1000:#x}, the target's efi_runtime_services at "
                              f"{TABLE:#x}"),
])
def test_the_check_refuses_naming_the_region(lib, firmware, table, message):
    _load(lib, ENTRIES, TABLE)
    fw = _firmware(firmware)
    assert lib.harness_check(fw, len(fw), 48, table) == REFUSE_EFI_RUNTIME_MAP
    refused = lib.harness_output().decode().splitlines()[-1]
    assert refused == f"@@RESUME refused {REFUSE_EFI_RUNTIME_MAP} {message}"


def test_a_target_without_the_table_does_not_check_it(lib):
    _load(lib, ENTRIES, 0)
    fw = _firmware(ENTRIES)
    assert lib.harness_check(fw, len(fw), 48, TABLE + 0x1000) == 0
