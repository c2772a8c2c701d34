"""The host-side image tools on real images: info, verify (naming the damaged place),
extract to a raw file and to an ELF core that gdb and lief read, encrypted images."""
import json
import shutil
import struct
import subprocess

import lief
import pytest

from suspendos.formats import image as fmt
from suspendos.image.reader import open_image


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Real images from a 64M machine: uncompressed, LZ4, LZ4 + encryption."""
    from conftest import run_cli
    d = tmp_path_factory.mktemp("images")
    run_cli("key", "new", "-o", d / "key", check=True)
    run_cli("key", "new", "-o", d / "other.key", check=True)
    out = {}
    for name, extra in (("raw", []), ("lz4", ["--compress", "lz4"]),
                        ("enc", ["--compress", "lz4", "--encrypt-key", d / "key"])):
        run_cli("qemu", "suspend", "--memory", "64M", "--disk", d / f"{name}.img", "--ram-dump",
                d / f"{name}.ram", "--quiet", *extra, check=True, timeout=300)
        out[name] = d / f"{name}.img"
    out["dir"] = d
    return out


def damaged(images, name, tmp_path, where):
    """A copy of an image with one byte flipped at an image byte offset."""
    src = open_image(images[name])
    disk_off, _ = src._map(where(src))
    copy = tmp_path / f"{name}-damaged.img"
    shutil.copyfile(images[name], copy)
    with open(copy, "r+b") as f:
        f.seek(disk_off)
        b = f.read(1)
        f.seek(disk_off)
        f.write(bytes([b[0] ^ 0x10]))
    return copy


def test_info_json(images, cli):
    info = json.loads(cli("image", "info", images["lz4"], "--json", check=True).stdout)
    assert info["compression"] == "lz4" and info["state"] == "valid"
    assert info["extents"][0][0] == 2048
    assert all(e > s for s, e in info["ranges"])
    assert info["bytes_on_disk"] < info["pages"] * 4096


@pytest.mark.parametrize("name", ["raw", "lz4"])
def test_verify_against_the_dump(images, cli, name):
    p = cli("image", "verify", images[name], "--ram", images["dir"] / f"{name}.ram", check=True)
    assert "every page equals" in p.stdout


def test_verify_json_has_the_facts_the_text_says(images, cli):
    """`image verify --json`: the numbers the text line prints, and whether the pages were
    read (an encrypted image without its key: checksums only)."""
    ram = images["dir"] / "lz4.ram"
    text = cli("image", "verify", images["lz4"], "--ram", ram, check=True).stdout
    facts = json.loads(cli("image", "verify", images["lz4"], "--ram", ram, "--json",
                           check=True).stdout)
    info = open_image(images["lz4"]).info()
    assert facts == {"ok": True, "chunks": info["chunks"], "pages": info["pages"],
                     "pages_free": info["pages_free"], "contents_checked": True,
                     "ram": str(ram)}
    assert text.startswith(f"ok: {facts['chunks']} chunks, {facts['pages']} pages")
    enc = json.loads(cli("image", "verify", images["enc"], "--json", check=True).stdout)
    assert enc["ok"] and not enc["contents_checked"] and enc["pages"] is None
    assert enc["chunks"] == open_image(images["enc"]).info()["chunks"]


@pytest.mark.parametrize("name", ["raw", "lz4", "enc"])
def test_flipped_chunk_byte_is_named(images, cli, tmp_path, name):
    # A byte in the middle of chunk 3's stored data.
    img = open_image(images[name], key=(images["dir"] / "key").read_bytes()
                     if name == "enc" else None)      # a key on a clear image is refused
    pos = img.header.chunks_offset
    for c, _ in img.chunks(check_data=False):
        if c.index == 3:
            break
        pos = -(-(pos + c.header_size + c.stored_size) // fmt.CHUNK_ALIGN) * fmt.CHUNK_ALIGN
    target = pos + c.header_size + c.stored_size // 2
    bad = damaged(images, name, tmp_path, lambda _: target)
    args = ["--key", images["dir"] / "key"] if name == "enc" else []
    p = cli("image", "verify", bad, *args)
    assert p.returncode == 2
    assert "chunk 3" in p.stderr and "physical 0x" in p.stderr, p.stderr


def test_flipped_header_byte_is_named(images, cli, tmp_path):
    bad = damaged(images, "lz4", tmp_path, lambda img: 100)
    p = cli("image", "verify", bad)
    assert p.returncode == 2 and "image header" in p.stderr, p.stderr


def test_flipped_table_byte_is_named(images, cli, tmp_path):
    bad = damaged(images, "raw", tmp_path, lambda img: img.header.ranges_offset + 3)
    p = cli("image", "info", bad)
    assert p.returncode == 2 and "tables" in p.stderr, p.stderr


def test_encrypted_image_needs_the_right_key(images, cli):
    d = images["dir"]
    assert "without --key" in cli("image", "verify", images["enc"], check=True).stdout
    p = cli("image", "verify", images["enc"], "--key", d / "other.key")
    assert p.returncode == 2 and "wrong key" in p.stderr
    p = cli("image", "extract", images["enc"], "-o", d / "x.bin")
    assert p.returncode == 2 and "--key" in p.stderr
    p = cli("image", "verify", images["enc"], "--key", d / "key", "--ram", d / "enc.ram",
            check=True)
    assert "every page equals" in p.stdout
    assert b"SOSIMAGE" in open(images["enc"], "rb").read(2048 * 512 + 8)
    key = (d / "key").read_bytes()
    assert key not in open(images["enc"], "rb").read(), "the key must never reach the disk"


def test_extract_raw_and_elf_core(images, cli, tmp_path):
    raw, core = tmp_path / "mem.bin", tmp_path / "core.elf"
    cli("image", "extract", images["lz4"], "-o", raw, "--elf", core, check=True)
    info = open_image(images["lz4"]).info()
    binary = lief.parse(str(core))
    loads = [s for s in binary.segments if s.type == lief.ELF.Segment.TYPE.LOAD]
    assert [(s.physical_address, s.physical_address + s.physical_size) for s in loads] == \
        [tuple(r) for r in info["ranges"]]
    # gdb reads memory by physical address and the registers saved at the handoff.
    addr = info["ranges"][-1][0] + 0x3000
    with open(raw, "rb") as f:
        f.seek(addr)
        want = struct.unpack("<2Q", f.read(16))
    out = subprocess.run(["gdb", "-batch", "-nx", "-ex", f"core-file {core}",
                          "-ex", f"x/2gx {addr:#x}", "-ex", "info registers rip"],
                         capture_output=True, text=True, timeout=60).stdout
    got = [int(w, 16) for w in out.split(f"{addr:#x}:")[1].split()[:2]]
    assert tuple(got) == want
    assert f"{info['context']['rip']:#x}" in out
