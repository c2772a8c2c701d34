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
