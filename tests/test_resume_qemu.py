"""Resume end to end under real QEMU: hibernate the test machine, boot the resume loader on a
fresh machine with the same disk, and let the test host, back from its handoff call with
'resumed', re-check every page against the checksums it recorded before suspending and its
CPU state; independently of the host, QMP pmemsave dumps before the suspend and before the
loader's return must agree on every saved page. Then the other half: an image is resumed once, and a damaged, truncated, foreign
or wrongly keyed image is refused with a clear message and a non-zero exit before the loader
writes a byte of RAM (the host never runs) or of the disk."""
import hashlib
import json
import shutil

import pytest

from ramcompare import differing_pages
from suspendos.formats import image as fmt
from suspendos.image.reader import open_image
from suspendos.sizes import parse_size
from suspendos.target.qemu import qemu_target


def _suspend(cli, disk, memory, *extra):
    p = cli("qemu", "suspend", "--memory", memory, "--disk", disk, "--json", "--quiet", *extra,
            timeout=600)
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["status"] == "written", s
    return s


def _resume(cli, disk, memory, *extra):
    p = cli("qemu", "resume", "--memory", memory, "--disk", disk, "--json", "--quiet", *extra,
            timeout=600)
    return p, json.loads(p.stdout)


def _digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def assert_refused(p, r, reason, words, disk=None, before=None):
    """Refused before touching anything: exit 1, one line on stderr naming the reason."""
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert r["status"] == "refused" and r["reason"] == reason, r
    assert r["ram"] == "untouched"
    line = p.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith("suspendos: resume refused:"), line
    assert words in line, line
    if disk is not None:
        assert _digest(disk) == before, "a refused resume changed the disk"


# 3 GiB puts 1 GiB above 4 GiB (q35); mostly zero pages there keep its fill and checksums
# within the time budget while every restore path still runs. Without zero pages, LZ4 chunks
# have contiguous data pages and are decoded straight into RAM (page 0 included).
CYCLES = [("64M", "none", None), ("64M", "lz4", None), ("64M", "lz4", "0,20,40,40"),
          ("256M", "none", None), ("256M", "lz4", None),
          ("3G", "none", "80,10,5,5"), ("3G", "lz4", "80,10,5,5")]


@pytest.mark.parametrize("memory, compress, mix", CYCLES)
def test_hibernate_resume_cycle(tmp_path, cli, qemu_pci, memory, compress, mix):
    disk, before, after = tmp_path / "disk.img", tmp_path / "before.raw", tmp_path / "after.raw"
    s = _suspend(cli, disk, memory, "--compress", compress, "--seed", "7",
                 "--ram-dump", before, *(["--mix", mix] if mix else []))
    assert open_image(disk).info()["state"] == "valid"

    p, r = _resume(cli, disk, memory, "--ram-dump", after)
    assert p.returncode == 0, p.stderr
    # The independent oracle: QMP pmemsave of every saved page when the payload started
    # (nothing it does changes saved RAM) against the same pages when the loader is about
    # to return (everything restored, nothing of the host run yet). No page is exempt: the
    # host's own changes (stack, its CPU snapshot, the UART) all come after this point.
    target = qemu_target(parse_size(memory, "--memory"), pci=qemu_pci)
    changed = differing_pages(before, after, target.saved_ranges())
    assert changed == [], f"{len(changed)} pages differ from the dump before the suspend, " \
                          f"first {[hex(a) for a in changed[:4]]}"
    before.unlink()
    after.unlink()
    assert r["status"] == "resumed", r
    assert r["host_exit"] == "ok"
    assert r["host_memory_check"] == "passed" and r["host_cpu_check"] == "passed", r
    assert r["pages_restored"] == r["pages_total"] == s["pages_saved"]
    assert r["zero_pages"] == s["zero_pages"]
    assert r["seconds"] > 0 and r["mb_per_s"] > 0
    assert r["verify_seconds"] > 0 and r["restore_seconds"] > 0
    assert r["tsc_source"] == "pit" and r["guest_clock_trusted"], r
    assert r["host_seconds"] > 0 and r["host_disk_mb_per_s"] > 0, r
    info = open_image(disk).info()
    assert info["state"] == "resumed"
    assert r["image_bytes"] == info["bytes_on_disk"]

    # One image, one resume (the refusal does not depend on the size: once is enough for 3G).
    if memory == "3G":
        return
    before = _digest(disk)
    p, r = _resume(cli, disk, memory)
    assert_refused(p, r, "already-resumed", "already resumed", disk, before)


def test_encrypted_cycle_and_wrong_key(tmp_path, cli):
    k1, k2, disk = tmp_path / "k1", tmp_path / "k2", tmp_path / "disk.img"
    for k in (k1, k2):
        assert cli("key", "new", "-o", k).returncode == 0
    _suspend(cli, disk, "64M", "--compress", "lz4", "--encrypt-key", k1)
    before = _digest(disk)
    p, r = _resume(cli, disk, "64M", "--key", k2)
    assert_refused(p, r, "wrong-key", "wrong key", disk, before)
    # Without a key the host reads the header and refuses before QEMU starts.
    p = cli("qemu", "resume", "--memory", "64M", "--disk", disk, "--quiet")
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1, p.stderr
    assert "the image is encrypted: give --key FILE" in p.stderr and _digest(disk) == before
    p, r = _resume(cli, disk, "64M", "--key", k1)
    assert p.returncode == 0, p.stderr
    assert r["status"] == "resumed" and r["host_memory_check"] == "passed", r
    assert r["host_cpu_check"] == "passed"
    assert r["vector_path"] == "avx2"      # the loader decrypted with the AVX2 keystream


# ---- damage: one pristine image per kind, copied for each case ---------------------------

@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    from tests.conftest import run_cli
    made = {}

    def get(memory, compress):
        if (memory, compress) not in made:
            d = tmp_path_factory.mktemp("pristine") / f"{memory}-{compress}.img"
            _suspend(run_cli, d, memory, "--compress", compress)
            made[memory, compress] = d
        return made[memory, compress]
    return get


def _copy(pristine_path, tmp_path):
    disk = tmp_path / "disk.img"
    shutil.copyfile(pristine_path, disk)
    return disk


def _flip(disk, image_offset, bit=0x10):
    """Flip one bit of image byte `image_offset` (the image starts at the first extent)."""
    lba = open_image(disk).lba
    with open(disk, "r+b") as f:
        f.seek(lba * 512 + image_offset)
        b = f.read(1)[0]
        f.seek(lba * 512 + image_offset)
        f.write(bytes([b ^ bit]))


def _chunks(img):
    """(index, image offset, header) of every chunk, walked as the format lays them out."""
    h, pos = img.header, img.header.chunks_offset
    for index in range(h.chunk_count):
        c = fmt.ChunkHeader.parse(img.read(pos, fmt.ChunkHeader.sizeof()))
        yield index, pos, c
        pos = fmt.align_up(pos + c.header_size + c.stored_size, fmt.CHUNK_ALIGN)


def _in_first_stored_chunk(img):
    index, pos, c = next(x for x in _chunks(img) if x[2].stored_size)
    return pos + c.header_size + c.stored_size // 2, f"chunk {index} "


def _in_last_chunk(img):
    index, pos, c = list(_chunks(img))[-1]
    return pos + c.header_size + c.stored_size - 1, f"chunk {index} "


DAMAGE = [   # (what, where: img -> (image offset, words the message must hold), reason)
    ("header", lambda img: (fmt.offset_of(fmt.ImageHeader, "pages_total"), "header checksum"),
     "header-damaged"),
    ("extent table", lambda img: (img.header.extents_offset, "tables checksum"),
     "tables-damaged"),
    ("range table", lambda img: (img.header.ranges_offset + 9, "tables checksum"),
     "tables-damaged"),
    ("chunk data", _in_first_stored_chunk, "chunk-damaged"),
    ("last chunk", _in_last_chunk, "chunk-damaged"),
]


@pytest.mark.parametrize("compress", ["none", "lz4"])
@pytest.mark.parametrize("what, where, reason", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_bit_flip_is_refused(tmp_path, cli, pristine, compress, what, where, reason):
    disk = _copy(pristine("64M", compress), tmp_path)
    offset, words = where(open_image(disk))
    _flip(disk, offset)
    before = _digest(disk)
    p, r = _resume(cli, disk, "64M")
    assert_refused(p, r, reason, words, disk, before)


def test_truncated_disk_is_refused(tmp_path, cli, pristine):
    disk = _copy(pristine("64M", "none"), tmp_path)
    img = open_image(disk)
    cut = (img.lba * 512 + img.header.data_end // 2) // 512 * 512
    with open(disk, "r+b") as f:
        f.truncate(cut)
    p, r = _resume(cli, disk, "64M")
    assert_refused(p, r, "truncated", "truncated disk")


def test_image_from_another_memory_size_is_refused(tmp_path, cli, pristine):
    disk = _copy(pristine("256M", "none"), tmp_path)
    before = _digest(disk)
    p, r = _resume(cli, disk, "64M")
    assert_refused(p, r, "other-machine", "another machine or memory size", disk, before)
    disk = _copy(pristine("64M", "none"), tmp_path)       # smaller disk than 256M wants
    before = _digest(disk)
    p, r = _resume(cli, disk, "256M")
    assert_refused(p, r, "other-machine", "another machine or memory size", disk, before)


def test_disk_without_image_is_refused(tmp_path, cli, pristine):
    disk = _copy(pristine("64M", "none"), tmp_path)
    lba = open_image(disk).lba
    with open(disk, "r+b") as f:          # what a failed suspend leaves: no header
        f.seek(lba * 512)
        f.write(bytes(4096))
    p, r = _resume(cli, disk, "64M")
    assert_refused(p, r, "no-image", "no image")


def test_ram_after_the_return_differs_only_in_the_hosts_own_pages(tmp_path, cli, qemu_pci):
    """The same oracle after the loader's return: the test host, back from its handoff call,
    pauses ("after-resume") and QMP pmemsave dumps every saved page again. Against the dump
    before the suspend, the only pages that may differ are the host's own data, bss and
    stacks, [host_rw_start, host_image_end) of qemu-boot/host.ld: its stack frames, the CPU
    snapshot it takes after the call, and its variables. Every other saved page, the whole
    filled RAM included, must be equal."""
    from elftools.elf.elffile import ELFFile

    from suspendos.build.testhost import build_test_host
    from suspendos.qemu.resume import qemu_resume
    disk, before, after = tmp_path / "disk.img", tmp_path / "before.raw", tmp_path / "after.raw"
    _suspend(cli, disk, "64M", "--compress", "lz4", "--ram-dump", before)
    r, ok = qemu_resume(64 << 20, disk, show_progress=False, host_ram_dump=after)
    assert ok and r["status"] == "resumed", r
    with open(build_test_host(tmp_path / "host.elf"), "rb") as f:
        symbols = {s.name: s["st_value"] for s in ELFFile(f).get_section_by_name(".symtab")
                   .iter_symbols() if s.name in ("host_rw_start", "host_image_end")}
    own = range(symbols["host_rw_start"], symbols["host_image_end"])
    target = qemu_target(64 << 20, pci=qemu_pci)
    changed = differing_pages(before, after, target.saved_ranges())
    assert changed, "the host's stack and CPU snapshot changed: an empty diff means no dump"
    foreign = [hex(a) for a in changed if a not in own]
    assert foreign == [], f"pages outside the host's own [{own.start:#x}, {own.stop:#x}) " \
                          f"differ: {foreign[:8]}"
