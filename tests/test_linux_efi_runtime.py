"""`target linux` reads the kernel's EFI runtime map (/sys/firmware/efi/runtime-map) into
the target description's efi_runtime list, from synthetic entries added to the snapshot
sysroot (tests/data/linux-sysroot, captured on a SeaBIOS machine: no runtime map there)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from suspendos.errors import UsageError
from suspendos.formats import efi_runtime as fmt
from suspendos.target import load
from suspendos.target.description import EfiRuntime
from suspendos.target.linux import linux_target

SYSROOT = Path(__file__).parent / "data" / "linux-sysroot"
RUNTIME = 1 << 63
# As Linux x86-64 shows OVMF's: runtime code and data top-down from its EFI_VA_START
# (-4 GiB), the flash MMIO with it.
ENTRIES = [
    (5, 0x1ffe0000, 0xfffffffeffe00000, 0x10, RUNTIME | 0xF),
    (6, 0x1fff0000, 0xfffffffeffdf0000, 0x8, RUNTIME | 0xF),
    (11, 0xffc00000, 0xfffffffeff800000, 0x400, RUNTIME | 0x1),
]


TABLE = 0x1fff3018        # the runtime services table, in the runtime data region


def _root(tmp_path, entries=ENTRIES, raw=None, table=f"{TABLE:#x}"):
    """The snapshot with a runtime map of `entries`; `raw` {(n, file): text} overrides;
    `table`: /sys/firmware/efi/runtime's text (None: no such file)."""
    root = tmp_path / "root"
    shutil.copytree(SYSROOT, root, symlinks=True)
    base = root / "sys/firmware/efi/runtime-map"
    base.mkdir(parents=True)
    if table is not None:
        (base.parent / "runtime").write_text(table + "\n")
    for n, (t, p, v, pages, a) in enumerate(entries):
        d = base / str(n)
        d.mkdir()
        # the kernel's formats: type "0x%x", the others "0x%llx"
        for name, value in (("type", t), ("phys_addr", p), ("virt_addr", v),
                            ("num_pages", pages), ("attribute", a)):
            (d / name).write_text(raw.get((n, name), f"{value:#x}") + "\n" if raw
                                  else f"{value:#x}\n")
    return root


def _target(root):
    return linux_target(swap="/dev/sda1", sysroot=root)


def test_no_runtime_map_is_an_empty_list():
    t = linux_target(swap="/dev/sda1", sysroot=SYSROOT)
    assert t.efi_runtime == []
    assert "efi_runtime" not in t.to_dict()


def test_the_runtime_map_is_captured_and_survives_the_toml(tmp_path):
    out = tmp_path / "t.toml"
    r = subprocess.run([sys.executable, "-m", "suspendos.cli", "target", "linux", "--sysroot",
                        str(_root(tmp_path)), "--swap", "/dev/sda1", "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = load(out).efi_runtime
    assert got == [EfiRuntime(*e) for e in ENTRIES]
    assert load(out).efi_runtime_services == TABLE
    # and the loader's list carries them as EFI memory descriptors, the rest zero
    raw = fmt.runtime_list([(e.type, e.phys, e.virt, e.pages, e.attribute) for e in got], TABLE)
    parsed = fmt.EfiRuntimeList.parse(raw)
    assert parsed.count == 3 and len(raw) == fmt.EfiRuntimeList.sizeof()
    assert parsed.runtime_services == TABLE
    assert [(d.type, d.physical_start, d.virtual_start, d.number_of_pages, d.attribute)
            for d in parsed.entries[:3]] == ENTRIES
    assert all(d.number_of_pages == 0 for d in parsed.entries[3:])


@pytest.mark.parametrize("raw, message", [
    ({(1, "phys_addr"): "1fff0000"}, "efi_runtime[1].phys: "),
    ({(0, "num_pages"): "0xzz"}, "efi_runtime[0].pages: "),
    ({(2, "attribute"): ""}, "efi_runtime[2].attribute: "),
])
def test_a_value_that_is_not_hexadecimal_is_refused(tmp_path, raw, message):
    with pytest.raises(UsageError, match=r"^" + message.replace("[", r"\[").replace("]", r"\]")
                       + ".*not a hexadecimal number"):
        _target(_root(tmp_path, raw=raw))


@pytest.mark.parametrize("entries, message", [
    ([ENTRIES[0], (6, 0x1ffef000, 0xfffffffeffdf0000, 8, RUNTIME)], r"efi_runtime\[1\]: .*overlaps efi_runtime\[0\]"),
    ([(5, 0x1ffe0000, 0xfffffffeffe00000, 0x10, 0xF)], r"efi_runtime\[0\].attribute: .*EFI_MEMORY_RUNTIME"),
    ([(5, 0x1ffe0800, 0xfffffffeffe00000, 0x10, RUNTIME)], r"efi_runtime\[0\]: .*page-aligned"),
    ([(5, 0x1ffe0000, 0xfffffffeffe00000, 0, RUNTIME)], r"efi_runtime\[0\]: .*page-aligned"),
    ([(5, 0x1ffe0000, 0x0000900000000000, 0x10, RUNTIME)], r"efi_runtime\[0\].virt: .*canonical"),
    ([(5, 0x1ffe0000, 0x00007ffffffff000, 0x10, RUNTIME)], r"efi_runtime\[0\].virt: .*canonical"),
    ([(5, 0x1ffe0000, 0xfffffffeffe00800, 0x10, RUNTIME)], r"efi_runtime\[0\].virt: .*canonical"),
    ([(1 << 32, 0x1ffe0000, 0xfffffffeffe00000, 0x10, RUNTIME)], r"efi_runtime\[0\].type: "),
    ([(5, 0x1000 * (2 * i), 0xffffffff00000000 + 0x2000 * i, 1, RUNTIME)
      for i in range(fmt.MAX_ENTRIES + 1)], r"efi_runtime: 129 entries, more than .* \(128\)"),
])
def test_a_bad_runtime_map_is_refused_naming_the_field(tmp_path, entries, message):
    with pytest.raises(UsageError, match=message):
        _target(_root(tmp_path, entries))


def test_the_bound_itself_is_taken(tmp_path):
    entries = [(5, 0x1000 * (2 * i), 0xffffffff00000000 + 0x2000 * i, 1, RUNTIME)
               for i in range(fmt.MAX_ENTRIES)]
    assert len(_target(_root(tmp_path, entries, table=None)).efi_runtime) == fmt.MAX_ENTRIES


def test_a_runtime_map_entry_that_is_not_a_number_is_refused(tmp_path):
    root = _root(tmp_path)
    (root / "sys/firmware/efi/runtime-map/extra").mkdir()
    with pytest.raises(UsageError, match="efi_runtime: .*extra is not a descriptor number"):
        _target(root)


def test_without_the_runtime_file_the_table_is_not_checked(tmp_path):
    t = _target(_root(tmp_path, table=None))
    assert len(t.efi_runtime) == 3 and t.efi_runtime_services == 0
    assert "efi_runtime_services" not in t.to_dict()


@pytest.mark.parametrize("table, message", [
    ("1fff3018", r"efi_runtime_services: .*not a hexadecimal number"),
    ("0x7000000", r"efi_runtime_services: 0x7000000 is not inside an efi_runtime region"),
])
def test_a_bad_runtime_services_address_is_refused(tmp_path, table, message):
    with pytest.raises(UsageError, match=message):
        _target(_root(tmp_path, table=table))


def test_the_guard_ignores_memory_the_kernel_kept_but_not_the_firmwares(tmp_path):
    """install-resume's SOS_MACHINE (guard.machine_digest): a boot-services block the kernel
    kept (efi_mem_reserve) moved between two boots of one OVMF machine; that is not another
    machine. A runtime region that moved is."""
    from suspendos.linuxhost.guard import machine_digest
    kept = (4, 0x1e52a000, 0xfffffffefec2a000, 6, RUNTIME | 0xF)
    moved_kept = (4, 0x1e5e4000, 0xfffffffefece4000, 6, RUNTIME | 0xF)
    a = _target(_root(tmp_path / "a", ENTRIES + [kept]))
    b = _target(_root(tmp_path / "b", ENTRIES + [moved_kept]))
    assert a.efi_runtime != b.efi_runtime
    assert machine_digest(a) == machine_digest(b)
    code_moved = [(5, 0x1ffd0000, 0xfffffffeffe00000, 0x10, RUNTIME | 0xF)] + ENTRIES[1:]
    c = _target(_root(tmp_path / "c", code_moved + [kept]))
    assert machine_digest(c) != machine_digest(a)
