"""The resume loader built as an EFI application (`build-resume --format efi`), read back by
an independent PE parser (lief): a PE32+ image for x86-64 with the EFI application subsystem
(UEFI 2.10, 2.1.2), its entry in .text, and a base relocation for the one absolute address
it holds, the loader image it carries, which is the multiboot build's own code."""
import struct

import lief

MULTIBOOT_MAGIC = 0x1BADB002


def _build(tmp_path, cli, fmt):
    target, out = tmp_path / "t.toml", tmp_path / f"loader.{fmt}"
    p = cli("target", "qemu", "--memory", "256M", "--framebuffer", "none", "-o", target)
    assert p.returncode == 0, p.stderr
    p = cli("build-resume", "--target", target, "-o", out, "--format", fmt)
    assert p.returncode == 0, p.stderr
    return out


def test_the_efi_resume_loader_is_a_pe32plus_efi_application(tmp_path, cli):
    pe = lief.PE.parse(str(_build(tmp_path, cli, "efi")))
    assert pe is not None
    assert pe.header.machine == lief.PE.Header.MACHINE_TYPES.AMD64
    assert pe.optional_header.magic == lief.PE.PE_TYPE.PE32_PLUS
    assert pe.optional_header.subsystem == lief.PE.OptionalHeader.SUBSYSTEM.EFI_APPLICATION
    text = pe.get_section(".text")
    entry = pe.optional_header.addressof_entrypoint
    assert text.virtual_address <= entry < text.virtual_address + text.virtual_size

    # Linked at a base no firmware hands out: it must carry its relocations, and the one
    # absolute address (the record's pointer to the carried loader) must be one of them.
    assert pe.has_relocations
    fixups = [r.virtual_address + e.position for r in pe.relocations for e in r.entries
              if e.type == lief.PE.RelocationEntry.BASE_TYPES.DIR64]
    assert len(fixups) == 1
    loader = pe.get_section(".sosldr")
    base = pe.optional_header.imagebase
    (pointer,) = struct.unpack("<Q", bytes(pe.get_content_from_virtual_address(fixups[0], 8)))
    assert pointer == base + loader.virtual_address
    # The carried image starts at the loader's link address: its multiboot header first.
    assert struct.unpack_from("<I", bytes(loader.content))[0] == MULTIBOOT_MAGIC


def test_the_multiboot_format_stays_the_default(tmp_path, cli):
    target, out = tmp_path / "t.toml", tmp_path / "loader"
    assert cli("target", "qemu", "--memory", "256M", "--framebuffer", "none", "-o",
               target).returncode == 0
    p = cli("build-resume", "--target", target, "-o", out)
    assert p.returncode == 0, p.stderr
    assert "a multiboot kernel" in p.stdout
    head = out.read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and head[4] == 1 and struct.unpack_from("<H", head, 18)[0] == 3


def test_a_loader_built_with_a_key_is_readable_by_its_owner_only(tmp_path, cli):
    target, key, out = tmp_path / "t.toml", tmp_path / "k", tmp_path / "BOOTX64.EFI"
    assert cli("target", "qemu", "--memory", "256M", "--framebuffer", "none", "-o",
               target).returncode == 0
    assert cli("key", "new", "-o", key).returncode == 0
    p = cli("build-resume", "--target", target, "--key", key, "-o", out, "--format", "efi")
    assert p.returncode == 0, p.stderr
    assert out.stat().st_mode & 0o777 == 0o600


RUNTIME = [{"type": 5, "phys": 0x7e00000, "virt": 0xfffffffeffe00000, "pages": 0x20,
            "attribute": (1 << 63) | 0xF},
           {"type": 11, "phys": 0xffc00000, "virt": 0xfffffffeffa00000, "pages": 0x400,
            "attribute": (1 << 63) | 1}]


def _loader_with_runtime_map(tmp_path, cli, fmt):
    import tomllib
    import tomli_w
    from suspendos.build.resume import build_resume_loader
    from suspendos.target import load
    path = tmp_path / "t.toml"
    assert cli("target", "qemu", "--memory", "256M", "--framebuffer", "none", "-o",
               path).returncode == 0
    t = tomllib.loads(path.read_text())
    t["efi_runtime"] = RUNTIME
    path.write_text(tomli_w.dumps(t))
    work = tmp_path / f"work-{fmt}"
    work.mkdir()
    return build_resume_loader(load(path), tmp_path / f"loader.{fmt}", workdir=work, fmt=fmt), work


def test_the_efi_loader_carries_the_runtime_map_and_calls_set_virtual_address_map(tmp_path, cli):
    """The target's efi_runtime is in the carried loader as formats/efi_runtime.py lays it
    out, and the EFI build links the SetVirtualAddressMap call: an indirect call through the
    runtime services table's slot at offset 0x38 (UEFI 2.10, 4.5: header, then GetTime,
    SetTime, GetWakeupTime, SetWakeupTime, SetVirtualAddressMap)."""
    import subprocess
    from suspendos.build import toolchain
    from suspendos.formats import efi_runtime
    build, work = _loader_with_runtime_map(tmp_path, cli, "efi")
    sym = build.symbols
    flat = bytes(lief.PE.parse(str(build.elf)).get_section(".sosldr").content)
    at = sym["sos_resume_efi_runtime"] - build.load_base
    want = efi_runtime.runtime_list([(r["type"], r["phys"], r["virt"], r["pages"],
                                      r["attribute"]) for r in RUNTIME])
    assert flat[at:at + len(want)] == want
    dis = subprocess.run([toolchain.tool("objdump"), "-d", "--no-show-raw-insn",
                          "--disassemble=efi_runtime_set_virtual", str(work / "resume64.elf")],
                         capture_output=True, text=True, check=True).stdout
    assert "efi_runtime_set_virtual" in dis and "call   *0x38(%" in dis, dis
    for name in ("efi_runtime_check", "resume_before_return", "resume_efi_main"):
        assert name in sym


def test_the_multiboot_loader_has_no_runtime_map(tmp_path, cli):
    build, _ = _loader_with_runtime_map(tmp_path, cli, "multiboot")
    assert "sos_resume_efi_runtime" not in build.symbols
    assert "efi_runtime_set_virtual" not in build.symbols


def test_a_reserved_region_above_4_gib_is_refused_for_both_formats(tmp_path, cli):
    """The loader's boot stub is 32-bit code: the EFI build once went on to the link, which
    failed on relocation overflows (exit 1, a details file) instead of naming the field."""
    target = tmp_path / "t.toml"
    assert cli("target", "qemu", "--memory", "256M", "--framebuffer", "none", "-o",
               target).returncode == 0
    text = target.read_text()
    high = "{ start = 0x100000000, end = 0x110000000, type = \"ram\" },\n]\nextents"
    text = text.replace("]\nextents", high, 1).replace("load_address = 16777216",
                                                      "load_address = 0x100000000")
    text = text.replace("count = 524288", "count = 2000000").replace("sectors = 528384",
                                                                    "sectors = 0")
    target.write_text(text)
    for fmt in ("efi", "multiboot"):
        p = cli("build-resume", "--target", target, "-o", tmp_path / "l", "--format", fmt)
        assert p.returncode == 2 and len(p.stderr.splitlines()) == 1, (fmt, p.stderr)
        assert "reserved" in p.stderr and "below 4 GiB" in p.stderr and "details" not in p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["t.toml"]


def test_a_loader_that_does_not_fit_its_reserved_region_is_refused(tmp_path, cli):
    """A long memory map in the smallest reserved region: the link's ASSERT failed (exit 1,
    a details file) instead of a refusal that names reserved.size."""
    target = tmp_path / "t.toml"
    assert cli("target", "qemu", "--memory", "256M", "--framebuffer", "none", "-o",
               target).returncode == 0
    ranges = "".join(f'{{ start = {0x20000000 + i * 8192}, end = {0x20000000 + i * 8192 + 4096}'
                     ', type = "ram" },' for i in range(20000))
    text = target.read_text().replace("memory = [", "memory = [" + ranges, 1)
    text = text.replace("size = 2097152", "size = 0x80000").replace(
        "smaller_than_ram = false", "smaller_than_ram = true")
    target.write_text(text)
    for fmt in ("efi", "multiboot"):
        p = cli("build-resume", "--target", target, "-o", tmp_path / "l", "--format", fmt)
        assert p.returncode == 2 and len(p.stderr.splitlines()) == 1, (fmt, p.stderr)
        assert "reserved.size" in p.stderr and "details" not in p.stderr, p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["t.toml"]
