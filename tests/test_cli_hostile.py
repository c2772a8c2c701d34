"""Hostile input across the command line: every refusal is one line on stderr, exit 2, and
nothing is written, replaced or destroyed. Device nodes, FIFOs, folders, commas and spaces
in paths, outputs that are inputs, numbers out of range, files that never end. Only the
tests that need a real image boot QEMU (one 64M suspend for the module)."""
import io
import json
import os
import stat
import struct
import subprocess
import sys
import zlib

import pytest
from PIL import Image

from conftest import ROOT, run_cli
from suspendos.target import save
from suspendos.target.qemu import qemu_target

# What `suspendos.qemu.probe` reports for the test machine; the fast tests need no QEMU.
PCI = {"ahci": ("00:1f.2", 0xFEBD5000), "vga": ("00:01.0", 0xFD000000, 16 << 20)}
LONG_NAME = "x" * 300


def refused(p, *words):
    """Exit 2 with one line on stderr (after any warnings), naming `words`."""
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = [l for l in p.stderr.splitlines() if not l.startswith("suspendos: warning:")]
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr
    for w in words:
        assert w in p.stderr, (w, p.stderr)
    return p.stderr


def in_process(argv, capsys):
    """`suspendos ARGV` through cli.main in this process (the refusals here come before any
    work, so a subprocess per case would only add its start-up time)."""
    from suspendos import cli
    capsys.readouterr()
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(argv, rc, out.out, out.err)


def listing(d):
    return sorted((p.name, p.stat().st_mode if p.exists() else None) for p in d.iterdir())


@pytest.fixture
def target(tmp_path):
    t = qemu_target(64 << 20, pci=PCI)
    save(t, tmp_path / "t.toml")
    return tmp_path / "t.toml"


@pytest.fixture
def fifo(tmp_path):
    p = tmp_path / "fifo"
    os.mkfifo(p)
    return p


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """A signing key, a small theme package signed with it, and a splash picture."""
    d = tmp_path_factory.mktemp("kit")
    run_cli("plugin", "keygen", "-o", d / "key", check=True)
    Image.new("RGB", (16, 8), (10, 200, 30)).save(d / "logo.png")
    run_cli("plugin", "pack", "--splash", d / "logo.png", "--key", d / "key",
            "-o", d / "theme.sop", check=True)
    return d


# ---- outputs: never replace what is not a regular file, refuse what cannot be written ------
def _output_commands(tmp, target, kit):
    """(name, argv with OUT where the output goes) for every command that writes a file."""
    return [
        ("target qemu", ["target", "qemu", "--memory", "64M", "-o", "OUT"]),
        ("build", ["build", "--target", target, "-o", "OUT"]),
        ("build-resume", ["build-resume", "--target", target, "-o", "OUT", "--format", "efi"]),
        ("key new", ["key", "new", "-o", "OUT"]),
        ("plugin keygen", ["plugin", "keygen", "-o", "OUT"]),
        ("plugin pack", ["plugin", "pack", "--splash", kit / "logo.png", "-o", "OUT"]),
        ("plugin sign", ["plugin", "sign", kit / "theme.sop", "--key", kit / "key", "-o", "OUT"]),
        ("plugin preview", ["plugin", "preview", kit / "theme.sop", "-o", "OUT"]),
        ("qemu suspend --disk", ["qemu", "suspend", "--memory", "64M", "--disk", "OUT"]),
        ("qemu suspend --ram-dump", ["qemu", "suspend", "--memory", "64M", "--disk",
                                     tmp / "new.img", "--ram-dump", "OUT"]),
        ("qemu suspend --screenshot", ["qemu", "suspend", "--memory", "64M", "--disk",
                                       tmp / "new.img", "--screenshot", "OUT"]),
        ("image extract -o", ["image", "extract", tmp / "any.img", "-o", "OUT"]),
        ("image extract --elf", ["image", "extract", tmp / "any.img", "--elf", "OUT"]),
        ("bench compress", ["bench", "compress", "--make-corpus", "OUT", "--size", "65536"]),
    ]


COMMANDS = ["target qemu", "build", "build-resume", "key new", "plugin keygen", "plugin pack", "plugin sign",
            "plugin preview", "qemu suspend --disk", "qemu suspend --ram-dump",
            "qemu suspend --screenshot", "image extract -o", "image extract --elf",
            "bench compress"]


@pytest.mark.parametrize("bad", ["missing folder", "folder", "long name", "fifo", "device",
                                 "read-only"])
@pytest.mark.parametrize("command", COMMANDS)
def test_a_bad_output_is_refused_and_nothing_is_written(tmp_path, target, kit, command, bad,
                                                        monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "any.img").write_bytes(bytes(1 << 20))
    out = {"missing folder": work / "nodir" / "x", "folder": work, "long name": work / LONG_NAME,
           "fifo": work / "f", "device": work / "null", "read-only": work / "ro"}[bad]
    if bad == "read-only":
        out.write_bytes(b"keep")
        out.chmod(0o444)
    if bad == "fifo":
        os.mkfifo(out)
    if bad == "device":
        if os.geteuid() != 0:       # mknod needs root: a FIFO is a node that is not a file too
            os.mkfifo(out)
        else:
            os.mknod(out, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    before = listing(work)
    argv = dict(_output_commands(tmp_path, target, kit))[command]
    monkeypatch.chdir(tmp_path)
    refused(in_process([out if a == "OUT" else a for a in argv], capsys))
    assert listing(work) == before
    if bad in ("fifo", "device"):
        assert not out.is_file() and not stat.S_ISREG(os.lstat(out).st_mode)
    if bad == "read-only":
        assert out.read_bytes() == b"keep"


def test_dev_null_stays_a_device(tmp_path):
    """As root, `-o /dev/null` once renamed a regular file over /dev/null."""
    st = os.stat("/dev/null")
    p = run_cli("key", "new", "-o", "/dev/null", cwd=tmp_path)
    refused(p, "/dev/null", "not a regular file")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and os.stat("/dev/null").st_rdev == st.st_rdev


def test_keygen_leaves_no_private_key_without_its_pub(tmp_path):
    name = "k" * 253                # KEY fits NAME_MAX, KEY.pub does not
    p = run_cli("plugin", "keygen", "-o", name, cwd=tmp_path)
    refused(p, "longer than")
    assert list(tmp_path.iterdir()) == []
    assert run_cli("plugin", "keygen", "-o", "k", cwd=tmp_path).returncode == 0


def test_plugin_new_into_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    refused(run_cli("plugin", "new", "x", "--dir", tmp_path / "f"), "--dir", "not a folder")


def test_a_symlinked_output_replaces_the_link_target(tmp_path):
    (tmp_path / "real.key").write_bytes(b"old")
    (tmp_path / "link").symlink_to("real.key")
    p = run_cli("bench", "compress", "--make-corpus", tmp_path / "link", "--size", "8192")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real.key").stat().st_size == 8192


def test_a_partial_file_of_the_same_name_is_left_alone(tmp_path):
    (tmp_path / "c.bin.partial").write_bytes(b"mine")
    assert run_cli("bench", "compress", "--make-corpus", tmp_path / "c.bin",
                   "--size", "8192").returncode == 0
    assert (tmp_path / "c.bin.partial").read_bytes() == b"mine"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ---- paths reach QEMU as paths, never as options -------------------------------------------
def test_disk_paths_with_commas_reach_qemu_as_one_file(tmp_path):
    """-blockdev JSON carries the path; QEMU's own answer (query-block) names the file."""
    import asyncio
    from suspendos.qemu.machine import QemuMachine, disk_args, machine_args
    disk = tmp_path / "victim.img,discard=unmap,file.locking=off x"
    disk.write_bytes(bytes(1 << 20))
    seen = {}

    async def run():
        m = QemuMachine([*machine_args(64 << 20), *disk_args(disk)])
        try:
            async def look(machine):
                seen["block"] = await machine.execute("query-named-block-nodes")
            await m.start(before_cont=look)
        finally:
            await m.stop()
    asyncio.run(run())
    files = [n["file"] for n in seen["block"] if n["drv"] == "file"]
    assert files == [str(disk)], seen["block"]
    node = json.loads(disk_args(disk)[1])
    assert node["file"]["filename"] == str(disk) and "discard" not in node


def test_option_values_double_their_commas():
    from suspendos.qemu.machine import module_path, opt_value
    assert opt_value("/tmp/a,b,,c") == "/tmp/a,,b,,,,c"
    assert module_path("/tmp/a,b") == "/tmp/a,,b"
    with pytest.raises(Exception, match="space"):
        module_path("/tmp/a b/payload.blob")


# ---- an output that is an input -------------------------------------------------------------
def test_output_equal_to_input_is_refused(tmp_path, target):
    disk = tmp_path / "d.img"
    disk.write_bytes(b"disk bytes" * 100)
    disk.chmod(0o444)
    link = tmp_path / "hard.toml"
    os.link(target, link)
    keep = {p: p.read_bytes() for p in (disk, target)}
    refused(run_cli("image", "extract", disk, "-o", disk), "-o", "input")
    refused(run_cli("image", "extract", disk, "-o", tmp_path / "x", "--elf", tmp_path / "x"),
            "--elf")
    refused(run_cli("build", "--target", target, "-o", target), "-o", "--target")
    refused(run_cli("build", "--target", target, "-o", link), "-o", "--target")
    refused(run_cli("qemu", "suspend", "--memory", "64M", "--disk", target, "--target", target),
            "--disk")
    refused(run_cli("plugin", "sign", target, "--key", target, "-o", target))
    assert {p: p.read_bytes() for p in keep} == keep


# ---- numbers, pipes, encodings, broken pipes ------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["image", "info", "d.img", "--lba=-1"],
    ["image", "info", "d.img", "--lba=18446744073709551616"],
    ["image", "verify", "d.img", "--lba", "x"],
    ["image", "discard", "d.img", "--offset", str(2 ** 64 + 1)],
    ["image", "discard", "d.img", "--offset", "-512"],
    ["bench", "compress", "--chunk", "0"],
    ["bench", "compress", "--size", str(2 ** 70)],
    ["qemu", "suspend", "--memory", "99999999999999999999G", "--disk", "d.img"],
    ["qemu", "suspend", "--memory", "64M", "--disk", "new.img", "--seed", "-1"],
    ["qemu", "suspend", "--memory", "64M", "--disk", "new.img", "--seed", str(2 ** 64)],
    ["target", "qemu", "--memory", "64M", "--disk-size", "-1", "-o", "t.toml"],
    ["plugin", "preview", "t.sop", "--percent", "101", "-o", "p.png"],
    [],
    ["image"],
    ["image", "info"],
    ["--frobnicate"],
    ["qemu", "suspend", "--memory", "64M"],
])
def test_usage_errors_are_one_line(tmp_path, argv, monkeypatch, capsys):
    (tmp_path / "d.img").write_bytes(bytes(8192))
    monkeypatch.chdir(tmp_path)
    refused(in_process(argv, capsys))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.img"]


def test_a_pipe_is_not_a_disk(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "suspendos.cli", "image", "info", "/dev/stdin"],
                       input=bytes(1 << 20), capture_output=True, env=env, timeout=60)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1, p.stderr
    assert b"not a regular file or a block device" in p.stderr


@pytest.mark.parametrize("argv", [
    ["target", "check", "FIFO"],
    ["image", "info", "FIFO"],
    ["image", "verify", "d.img", "--ram", "FIFO"],
    ["qemu", "resume", "--memory", "64M", "--disk", "FIFO"],
    ["qemu", "suspend", "--memory", "64M", "--disk", "FIFO"],
    ["plugin", "info", "FIFO"],
    ["plugin", "sign", "t.sop", "--key", "FIFO"],
    ["inspect", "FIFO"],
    ["bench", "compress", "--corpus", "FIFO"],
    ["build", "--target", "t.toml", "--encrypt-key", "FIFO", "-o", "b"],
    ["target", "check", "/dev/zero"],
    ["inspect", "/dev/zero"],
    ["plugin", "pack", "--splash", "/dev/zero", "-o", "x.sop"],
    ["target", "check", "."],
    ["image", "info", "."],
])
def test_fifos_and_endless_files_are_refused_at_once(tmp_path, fifo, target, argv):
    """A FIFO without a writer once hung every reader; /dev/zero was read until memory ran
    out."""
    (tmp_path / "d.img").write_bytes(bytes(8192))
    p = run_cli(*[{"FIFO": fifo}.get(a, a) for a in argv], cwd=tmp_path, timeout=60)
    refused(p)


def test_compiler_output_that_is_not_utf8(tmp_path):
    d = tmp_path / "latin"
    d.mkdir()
    (d / "latin.c").write_bytes(b'/* caf\xe9 */\nint f(void) { return "\xe9\xe8" + ; }\n')
    p = run_cli("plugin", "build", d)
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1, p.stderr
    assert "error" in p.stderr and "Traceback" not in p.stderr and "details:" in p.stderr


def test_a_closed_pipe_ends_quietly(tmp_path, target):
    assert run_cli("build", "--target", target, "-o", tmp_path / "p.blob").returncode == 0
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "suspendos.cli", "inspect", "--json", str(tmp_path / "p.blob")]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    p.stdout.close()                # `| head -0`: gone before the first line is written
    err = p.stderr.read()
    p.wait(timeout=60)
    assert b"Traceback" not in err and b"Error" not in err, err
    assert p.returncode == 1


def _png_header_only(w, h):
    """A PNG whose header claims w x h, followed by a tiny IDAT: decoding it would fail (or
    take w*h*3 bytes); the size must be refused from the header."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("size", [20000, 10000, 5000])
def test_a_huge_splash_is_refused_from_its_header(tmp_path, size):
    (tmp_path / "big.png").write_bytes(_png_header_only(size, size))
    refused(run_cli("plugin", "pack", "--splash", tmp_path / "big.png", "-o", tmp_path / "t.sop"),
            "--splash", f"at most 4096x4096" if size < 20000 else "larger than")
    assert not (tmp_path / "t.sop").exists()


# ---- target check and build: one validation -------------------------------------------------
def _edit(path, old, new):
    text = path.read_text()
    assert old in text, (old, text)
    path.write_text(text.replace(old, new, 1))


HIGH = '    { start = 4294705152, end = 4294967296, type = "reserved" },'
BAD_TARGETS = [
    ("extents past 2^48", lambda t: _edit(t, "sectors = 131072", "sectors = 0") or
     _edit(t, "lba = 2048", f"lba = {2 ** 64}"), "extents[0]"),
    ("RAM ending at 2^70", lambda t: _edit(
        t, HIGH, HIGH + f'\n    {{ start = 4294967296, end = {2 ** 70}, type = "ram" }},'),
     "memory"),
    ("ABAR in RAM", lambda t: _edit(t, "ahci_base = ", "ahci_base = 33554432 #"),
     "disk.ahci_base"),
    ("ABAR negative", lambda t: _edit(t, "ahci_base = ", "ahci_base = -4096 #"), "disk.ahci_base"),
    ("framebuffer in RAM", lambda t: _edit(t, "\naddress = ", "\naddress = 8388608 #"),
     "framebuffer"),
    ("framebuffer negative", lambda t: _edit(t, "\naddress = ", "\naddress = -8388608 #"),
     "framebuffer"),
    ("pci with signs", lambda t: _edit(t, 'pci = "00:1f.2"', 'pci = "+0:+1f.+2"'), "disk.pci"),
    ("bpp 16 with xrgb8888", lambda t: _edit(t, "bpp = 32", "bpp = 16"), "framebuffer.bpp"),
    ("lz4 chunks of 100 pages", lambda t: _edit(t, 'compress = "none"', 'compress = "lz4"') or
     _edit(t, "chunk_pages = 0", "chunk_pages = 100"), "options.chunk_pages"),
]


@pytest.mark.parametrize("name, edit, field", BAD_TARGETS, ids=[b[0] for b in BAD_TARGETS])
def test_target_check_refuses_what_build_refuses(tmp_path, target, name, edit, field):
    edit(target)
    check = refused(run_cli("target", "check", target), field)
    build = refused(run_cli("build", "--target", target, "-o", tmp_path / "p.blob"), field)
    assert check == build
    assert not (tmp_path / "p.blob").exists()


def test_a_small_reserved_region_names_reserved_size(tmp_path):
    """A large theme in the smallest region once ended in "mapping 'scratch': inverted
    range"."""
    target = tmp_path / "t.toml"
    save(qemu_target(64 << 20, 80 << 20, pci=PCI), target)     # room for the larger image
    _edit(target, "size = 2097152", "size = 524288")
    # Too small for the payload's own tables and scratch already: target check says so,
    # as build does (it lays the region out the same way).
    refused(run_cli("target", "check", target), "reserved.size", "too small")
    Image.effect_noise((1200, 900), 60).save(tmp_path / "big.png")
    run_cli("plugin", "pack", "--splash", tmp_path / "big.png", "-o", tmp_path / "big.sop",
            check=True)
    refused(run_cli("build", "--target", target, "--plugin", tmp_path / "big.sop",
                    "--allow-unsigned", "-o", tmp_path / "p.blob"), "reserved.size", "too small")
    assert not (tmp_path / "p.blob").exists()


# ---- keys, signatures, messages -------------------------------------------------------------
def test_private_keys_others_can_read_are_named(tmp_path, kit, target):
    (tmp_path / "key").write_bytes((kit / "key").read_bytes())
    (tmp_path / "key").chmod(0o644)
    p = run_cli("plugin", "sign", kit / "theme.sop", "--key", tmp_path / "key",
                "-o", tmp_path / "t.sop")
    assert p.returncode == 0 and "can be read by others" in p.stderr, p.stderr
    assert run_cli("key", "new", "-o", tmp_path / "enc.key").returncode == 0
    assert stat.S_IMODE((tmp_path / "enc.key").stat().st_mode) == 0o600
    (tmp_path / "enc.key").chmod(0o640)
    p = run_cli("build", "--target", target, "--encrypt-key", tmp_path / "enc.key",
                "-o", tmp_path / "p.blob")
    assert p.returncode == 0 and "can be read by others" in p.stderr, p.stderr
    assert stat.S_IMODE((tmp_path / "p.blob").stat().st_mode) == 0o600


def test_plugin_info_checks_the_signature_before_naming_a_signer(tmp_path, kit):
    data = bytearray((kit / "theme.sop").read_bytes())
    assert "signature valid" in run_cli("plugin", "info", kit / "theme.sop", check=True).stdout
    data[-1] ^= 1                                   # the signature's last byte
    (tmp_path / "t.sop").write_bytes(data)
    out = run_cli("plugin", "info", tmp_path / "t.sop", check=True).stdout
    assert "INVALID" in out and "signed by" not in out


def test_pack_with_a_missing_key_builds_nothing(tmp_path):
    assert run_cli("plugin", "new", "demo", cwd=tmp_path).returncode == 0
    refused(run_cli("plugin", "pack", "demo", "--key", "nokey", "-o", "d.sop", cwd=tmp_path),
            "--key")
    assert not (tmp_path / "demo" / "build").exists() and not (tmp_path / "d.sop").exists()


def test_run_errors_are_one_line_with_the_details_in_a_file(tmp_path, monkeypatch, capsys):
    from suspendos import cli
    from suspendos.errors import RunError
    from suspendos.qemu import probe

    def fail(*args, **kwargs):
        raise RunError("QEMU did not open its QMP socket\n  command: qemu ...\n  serial: x")
    monkeypatch.setattr(probe, "probe_pci", fail)
    assert cli.main(["target", "qemu", "--memory", "64M", "-o", str(tmp_path / "t.toml")]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "QMP socket" in err, err
    log = err.split("details: ")[1].rstrip(")\n")
    assert "serial: x" in open(log).read()
    os.unlink(log)


def test_suspend_onto_a_folder_names_the_disk(tmp_path):
    refused(run_cli("qemu", "suspend", "--memory", "64M", "--disk", tmp_path), "--disk",
            "folder")


def test_inspect_names_an_elf(tmp_path):
    (tmp_path / "k.elf").write_bytes(b"\x7fELF" + bytes(200))
    refused(run_cli("inspect", tmp_path / "k.elf"), "ELF")


# ---- with a real image (one 64M suspend) ----------------------------------------------------
@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """A real image on a disk whose name has commas and a space, written by a QEMU whose
    temporary files (QMP socket, serial socket, multiboot module) sit in a folder with a
    comma and a space in its name."""
    d = tmp_path_factory.mktemp("hostile")
    tmp = d / "tmp,dir"
    tmp.mkdir()
    disk = d / "victim.img,discard=unmap,file.locking=off"
    env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmp))
    p = subprocess.run([sys.executable, "-m", "suspendos.cli", "qemu", "suspend", "--memory",
                        "64M", "--disk", str(disk), "--ram-dump", str(d / "ram,dump"),
                        "--quiet", "--json"], env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    assert sorted(x.name for x in d.iterdir()) == sorted([disk.name, "ram,dump", "tmp,dir"])
    return d, disk


def test_the_image_landed_in_the_file_named(image):
    d, disk = image
    info = json.loads(run_cli("image", "info", disk, "--json", check=True).stdout)
    assert info["state"] == "valid"
    assert run_cli("image", "verify", disk, "--ram", d / "ram,dump", check=True)


def test_image_verify_ram_missing_folder_or_fifo(image, tmp_path, fifo):
    _, disk = image
    refused(run_cli("image", "verify", disk, "--ram", tmp_path / "missing"), "--ram")
    refused(run_cli("image", "verify", disk, "--ram", tmp_path), "--ram", "folder")
    refused(run_cli("image", "verify", disk, "--ram", fifo, timeout=60), "--ram")


def test_key_on_an_unencrypted_image_is_refused(image, tmp_path):
    _, disk = image
    assert run_cli("key", "new", "-o", tmp_path / "k").returncode == 0
    for cmd in (["info"], ["verify"], ["extract", "-o", tmp_path / "out"]):
        refused(run_cli("image", cmd[0], disk, "--key", tmp_path / "k", *cmd[1:]),
                "not encrypted")
    assert not (tmp_path / "out").exists()


def test_extract_writes_secrets_0600_and_leaves_nothing_on_failure(image, tmp_path):
    _, disk = image
    (tmp_path / "A.partial").write_bytes(b"someone's")
    refused(run_cli("image", "extract", disk, "-o", tmp_path / "A", "--elf",
                    tmp_path / "nodir" / "x"), "--elf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["A.partial"]
    p = run_cli("image", "extract", disk, "-o", tmp_path / "A", "--elf", tmp_path / "A.elf")
    assert p.returncode == 0, p.stderr
    for f in ("A", "A.elf"):
        assert stat.S_IMODE((tmp_path / f).stat().st_mode) == 0o600
    assert (tmp_path / "A.partial").read_bytes() == b"someone's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["A", "A.elf", "A.partial"]


# ---- the demo's own claim ----------------------------------------------------------------
def test_demo_accepts_only_an_already_resumed_refusal():
    """The demo once took any failure of the second resume as the refusal it must be."""
    from suspendos import demo

    def proc(rc, summary, err=""):
        return subprocess.CompletedProcess([], rc, json.dumps(summary) if summary else "", err)
    demo.check_second_resume(proc(1, {"status": "refused", "reason": "already-resumed"}))
    for bad in (proc(0, {"status": "resumed"}),
                proc(1, {"status": "refused", "reason": "header-damaged"}),
                proc(1, {"status": "loader-fault", "reason": "loader-fault"}),
                proc(1, None, "suspendos: error: internal error"),
                proc(2, None, "suspendos: error: --disk: no such file")):
        with pytest.raises(SystemExit):
            demo.check_second_resume(bad)


@pytest.mark.parametrize("args", [("qemu", "kexec-jump", "--memory", "99999999999G"),
                                  ("demo", "--memory", "1T"), ("demo", "--memory", "abc")])
def test_a_bad_memory_size_is_one_line_before_any_work(args, tmp_path):
    """kexec-jump once crashed in struct.pack, the demo reported its first step's failure."""
    p = run_cli(*args, cwd=tmp_path)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and "--memory" in p.stderr
    assert not any(tmp_path.iterdir())


# ---- today's options: refused before the guest, payload, loader or driver is built ---------
class Started(BaseException):     # past main's catch-all for bugs
    """The work a refusal must come before (a build, then a boot) was reached."""


@pytest.fixture
def no_work(monkeypatch):
    """Building the Debian guest, a payload, a resume loader or the benchmark driver raises
    Started: a refusal that comes after any of them fails its case."""
    def started(*a, **k):
        raise Started()
    from suspendos import bench_compress
    from suspendos.linuxvm import debian
    from suspendos.qemu import resume, suspend
    monkeypatch.setattr(debian, "build_guest", started)
    monkeypatch.setattr(suspend, "build_payload", started)
    monkeypatch.setattr(resume, "_target_for", started)
    monkeypatch.setattr(bench_compress, "build_driver", started)


SUSPEND = ["qemu", "suspend", "--memory", "64M", "--disk", "new.img"]
RESUME = ["qemu", "resume", "--memory", "64M", "--disk", "d.img"]


@pytest.mark.parametrize("argv, words", [
    (["qemu", "linux", "--cpus", "0"], ["--cpus"]),
    (["qemu", "linux", "--cpus", "99"], ["--cpus"]),
    (["qemu", "linux", "--cpus=-1"], ["--cpus"]),
    (["qemu", "linux", "--cpus", "1e9"], ["--cpus"]),
    (["qemu", "linux", "--memory", "garbage"], ["--memory"]),
    (["qemu", "linux", "--memory", "1T"], ["--memory"]),
    (["qemu", "linux", "--memory", "99999999999999999999G"], ["--memory"]),
    (["qemu", "linux", "--memory", "16K"], ["--memory"]),
    (["qemu", "linux", "--memory", "1.5G"], ["--memory"]),
    (["qemu", "linux", "--memory", "1G", "--dirty-free", "800M"], ["--dirty-free"]),
    (["qemu", "linux", "--dirty-free=-1"], ["--dirty-free"]),
    (["qemu", "linux", "--dirty-free", "40%%"], ["--dirty-free"]),
    (["qemu", "linux", "--dirty-free", "90%"], ["--dirty-free"]),
    (["qemu", "linux", "--dirty-free", "x%"], ["--dirty-free"]),
    (["qemu", "linux", "--disk-bus", "scsi"], ["--disk-bus"]),
    (["qemu", "linux", "--disk-bus", "NVME"], ["--disk-bus"]),
    (["qemu", "linux", "--swap", "zram"], ["--swap"]),
    (["qemu", "linux", "--iommu", "arm-smmu"], ["--iommu"]),
    (["qemu", "linux", "--firmware", "coreboot"], ["--firmware"]),
    (["qemu", "linux", "--firmware", "UEFI"], ["--firmware"]),
    (["qemu", "kexec-jump", "--iommu", "Intel"], ["--iommu"]),
    (["qemu", "linux", "--hibernator", "s2ram"], ["--hibernator"]),
    (["qemu", "linux", "--compress", "zstd"], ["--compress"]),
    (["qemu", "linux", "--compress", "lz4hc", "--hibernator", "swsusp", "--json"],
     ["--compress lz4hc"]),
    (["qemu", "linux", "--compress", "LZ4HC"], ["--compress"]),
    (["hibernate", "--compress", "lz4-hc"], ["--compress"]),
    (["qemu", "linux", "--workdir", "d.img"], ["--workdir"]),
    (["qemu", "linux", "--boot-normally", "--hibernator", "swsusp", "--json"],
     ["--boot-normally"]),
    (["qemu", "linux", "--workdir", "d.img/sub"], ["--workdir"]),
    (["qemu", "linux", "--workdir", ""], ["--workdir"]),
    (["qemu", "linux", "--firmware", "uefi", "--workdir", ""], ["--workdir"]),
    (["qemu", "linux", "--firmware", "uefi", "--workdir", "FIFO"], ["--workdir"]),
    (["qemu", "linux", "--firmware", "uefi", "--workdir", "/dev/null"], ["--workdir"]),
    (SUSPEND + ["--cpus", "1", "--ap-deaf", "1"], ["--ap-deaf"]),
    (SUSPEND + ["--cpus", "3", "--ap-deaf", "0"], ["--ap-deaf"]),
    (SUSPEND + ["--cpus", "3", "--ap-deaf=-1"], ["--ap-deaf"]),
    (SUSPEND + ["--cpus", "3", "--ap-deaf", str(2 ** 64)], ["--ap-deaf"]),
    (SUSPEND + ["--cpus", "3", "--ap-offline", "--ap-deaf", "2"], ["--ap-deaf"]),
    (SUSPEND + ["--cpus", "3", "--ap-offline", "--ap-deaf", "255"], ["--ap-deaf"]),
    (SUSPEND + ["--cpus", "1", "--ap-offline"], ["--ap-offline"]),
    (SUSPEND + ["--cpus", "34"], ["--cpus"]),
    (SUSPEND + ["--cpus", "1e9"], ["--cpus"]),
    (SUSPEND + ["--mix", "\u00b2,25,25,48"], ["--mix"]),
    (SUSPEND + ["--inject", "write-error:\u00b2"], ["--inject"]),
    (RESUME + ["--inject", "ap-deaf:2"], ["--inject", "--cpus 1"]),
    (RESUME + ["--cpus", "3", "--inject", "ap-deaf:0"], ["--inject"]),
    (RESUME + ["--cpus", "3", "--inject", "ap-fault:3"], ["--inject"]),
    (RESUME + ["--cpus", "3", "--inject", "ap-fault:-1"], ["--inject"]),
    (RESUME + ["--cpus", "3", "--inject", "ap-deaf:" + "9" * 20], ["--inject"]),
    (RESUME + ["--cpus", "3", "--inject", "ap-deaf"], ["--inject", "ap-deaf:ID"]),
    (RESUME + ["--cpus", "3", "--inject", "ap-deaf:\u00b2"], ["--inject"]),
    (RESUME + ["--inject", "read-error:\u00b2"], ["--inject"]),
    (RESUME + ["--cpus", "40"], ["--cpus"]),
    (["hibernate", "--bogus"], ["--bogus"]),
    (["hibernate", "--serial", "0x10000"], ["--serial"]),
    (["hibernate", "--compress", "zstd"], ["--compress"]),
    (["install-resume", "--bogus"], ["--bogus"]),
    (["install-resume", "--firmware", "efi"], ["--firmware"]),
    (["uninstall-resume", "--bogus"], ["--bogus"]),
    (["bench", "compress", "--path", "sse9"], ["--path"]),
    (["bench", "compress", "--make-corpus", "c.bin", "--size", "5000"], ["--size", "4096"]),
    (["bench", "compress", "--path"], ["--path"]),
    (["bench", "compress", "--corpus", "empty"], ["--corpus", "empty"]),
    (["bench", "compress", "--corpus", "."], ["--corpus"]),
    (["bench", "compress", "--corpus", "/dev/zero"], ["--corpus"]),
    (["bench", "compress", "--corpus", "FIFO"], ["--corpus"]),
])
def test_todays_options_are_refused_before_any_work(tmp_path, fifo, argv, words, no_work,
                                                     monkeypatch, capsys):
    """qemu linux once built the guest for --memory 1T, and --dirty-free 0 was refused; the
    test host refused a bad --ap-deaf only after the boot, and an --inject ap-deaf with no
    such AP let the run pass; "²" passed isdigit() into int(); hibernate's usage errors were
    argparse's usage text; an empty --corpus failed after the driver was compiled."""
    (tmp_path / "d.img").write_bytes(bytes(8192))
    (tmp_path / "empty").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    before = listing(tmp_path)
    refused(in_process([{"FIFO": fifo}.get(a, a) for a in argv], capsys), *words)
    assert listing(tmp_path) == before


@pytest.mark.parametrize("argv", [["qemu", "linux", "--firmware", "uefi"],
                                  ["qemu", "linux", "--firmware", "uefi", "--boot-normally"]])
@pytest.mark.parametrize("missing", ["CODE", "VARS"])
def test_qemu_linux_uefi_without_ovmf_is_refused_before_any_work(tmp_path, argv, missing,
                                                                  no_work, monkeypatch, capsys):
    """OVMF's files were looked for only after the guest and its resume layer were built."""
    from suspendos.qemu import ovmf
    monkeypatch.setattr(ovmf, missing, tmp_path / "OVMF_NONE.fd")
    monkeypatch.chdir(tmp_path)
    refused(in_process(argv, capsys), "OVMF_NONE.fd", "apt-get install ovmf")
    assert listing(tmp_path) == []


@pytest.mark.parametrize("argv", [
    ["qemu", "linux", "--firmware", "uefi"],
    ["qemu", "linux", "--dirty-free", "0"],
    ["qemu", "linux", "--dirty-free", "40%"],
    ["qemu", "linux", "--memory", "8G", "--cpus", "4", "--disk-bus", "nvme"],
    ["qemu", "linux", "--iommu", "intel", "--disk-bus", "nvme", "--cpus", "2"],
    ["qemu", "linux", "--boot-normally", "--swap", "partition", "--json"],
    SUSPEND + ["--cpus", "3", "--ap-deaf", "2"],
    SUSPEND + ["--cpus", "3", "--ap-offline", "--ap-deaf", "7"],
    SUSPEND + ["--cpus", "1", "--ap-offline", "--ap-deaf", "3"],
    RESUME + ["--cpus", "3", "--inject", "ap-fault:2"],
])
def test_what_the_checks_let_through_reaches_the_work(tmp_path, argv, no_work, monkeypatch,
                                                      capsys):
    """The other side of the refusals: the values the tests and benches use get past them."""
    (tmp_path / "d.img").write_bytes(bytes(8192))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Started):
        in_process(argv, capsys)


def test_avx2_on_a_cpu_without_it_is_refused_before_the_build(tmp_path, no_work, monkeypatch,
                                                              capsys):
    from suspendos import bench_compress
    assert isinstance(bench_compress.cpu_has_avx2(), bool)
    monkeypatch.setattr(bench_compress, "cpu_has_avx2", lambda: False)
    refused(in_process(["bench", "compress", "--path", "avx2"], capsys), "--path avx2", "AVX2")
    with pytest.raises(Started):       # scalar and auto need no AVX2
        in_process(["bench", "compress", "--path", "scalar", "--size", "4096"], capsys)


# ---- target linux: the AP start page (a second memmap=4K$ADDR) ------------------------------
LINUX_SYSROOT = ROOT / "tests" / "data" / "linux-sysroot"


@pytest.mark.parametrize("memmap, words", [
    ("memmap=4K$0x100000", ["keep exactly one"]),          # above 1 MiB: not a STARTUP page
    ("memmap=4K$0xa0000", ["0xa0000"]),                    # the VGA hole
    ("memmap=4K$0x8800", ["not page-aligned"]),
    ("memmap=4K$0x8000 memmap=4K$0x9000", ["keep exactly one"]),
    ("memmap=4K$0x8000 memmap=4K$0x8000", ["keep exactly one"]),
    ("memmap=4K$0x10000000", ["keep exactly one"]),        # on the main region
    ("memmap=4K$0", ["AP start page"]),                    # was dropped silently
    ("memmap=4K$0xff000", ["not RAM", "firmware"]),        # the BIOS area became RAM
    ("memmap=4K$junk", ["memmap=4K$junk"]),
    ("memmap=-4K$0x8000", ["memmap=-4K$0x8000"]),
    ("memmap=0$0x8000", ["memmap"]),
])
def test_a_bad_ap_start_memmap_is_refused(tmp_path, memmap, words, capsys):
    import shutil
    root = tmp_path / "root"
    shutil.copytree(LINUX_SYSROOT, root, symlinks=True)
    (root / "proc/cmdline").write_text(f"console=ttyS0 memmap=2M$0x10000000 {memmap}\n")
    iomem = (root / "proc/iomem").read_text().replace(   # what the kernel makes of 4K$0x8000
        "00001000-0009fbff : System RAM\n", "00001000-00007fff : System RAM\n"
        "00008000-00008fff : Reserved\n00009000-0009fbff : System RAM\n")
    (root / "proc/iomem").write_text(iomem)
    out = tmp_path / "t.toml"
    refused(in_process(["target", "linux", "--sysroot", root, "--swap", "/dev/sda1", "-o", out],
                       capsys), "reserved", *words)
    assert not out.exists()


@pytest.mark.parametrize("parent", ["file", "fifo", "none"])
def test_an_output_under_a_file_names_what_its_parent_is(tmp_path, target, parent, capsys):
    """-o F/x.efi with F a file once said "the folder F does not exist"."""
    p = tmp_path / "P"
    if parent == "file":
        p.write_bytes(b"mine")
    elif parent == "fifo":
        os.mkfifo(p)
    before = listing(tmp_path)
    err = refused(in_process(["build-resume", "--target", target, "-o", p / "x.efi",
                              "--format", "efi"], capsys), "-o", "P")
    assert ("does not exist" in err) == (parent == "none"), err
    assert ("is not a folder" in err) == (parent != "none"), err
    assert listing(tmp_path) == before
