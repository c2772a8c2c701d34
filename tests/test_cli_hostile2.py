"""Hostile input, second part (issue 28, items 6-9): limits that agree between the writer
and the readers, messages that send the user the right way, one number parser, and no
symbolic link out of a plugin folder. Every refusal is one line, exit 2, nothing written."""
import os
import subprocess
import sys

import pytest
import xxhash
from PIL import Image

from conftest import ROOT, run_cli
from test_cli_hostile import PCI, Started, _edit, in_process, no_work, refused  # noqa: F401
from suspendos.target import save
from suspendos.target.qemu import qemu_target

MiB = 1 << 20


@pytest.fixture
def target(tmp_path):
    t = qemu_target(64 << 20, pci=PCI)
    save(t, tmp_path / "t.toml")
    return tmp_path / "t.toml"


# ---- 6. limits that agree ------------------------------------------------------------------
def test_pack_refuses_the_package_readers_would_refuse(tmp_path):
    """A 4096x4096 picture of noise (the documented largest splash) does not compress: the
    package would pass the 64 MiB every reader takes. Refused before anything is written."""
    from suspendos.plugins.package import MAX_PACKAGE
    noise = Image.frombytes("RGB", (4096, 4096), os.urandom(4096 * 4096 * 3))
    noise.save(tmp_path / "noise.png", compress_level=1)
    refused(run_cli("plugin", "pack", "--splash", tmp_path / "noise.png",
                    "-o", tmp_path / "n.sop"), "plugin pack", str(MAX_PACKAGE))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noise.png"]


def test_target_check_refuses_the_reserved_region_build_refuses(tmp_path):
    """512 KiB passes the description's own checks, but the payload's code, tables and
    scratch do not fit it: check lays the region out as build does."""
    target = tmp_path / "t.toml"
    save(qemu_target(64 << 20, 80 << 20, pci=PCI), target)     # room for the larger image
    _edit(target, "size = 2097152", "size = 524288")
    check = refused(run_cli("target", "check", target), "reserved.size", "too small")
    build = refused(run_cli("build", "--target", target, "-o", tmp_path / "p.blob"),
                    "reserved.size")
    assert check == build
    assert not (tmp_path / "p.blob").exists()


def test_inject_off_the_disk_is_refused_naming_its_size(tmp_path):
    """blkdebug never sees an access past the disk's end: the fault would never fire."""
    disk = tmp_path / "d.img"
    with open(disk, "wb") as f:
        f.truncate(64 * MiB)
    before = disk.stat()
    sectors = 64 * MiB // 512
    refused(run_cli("qemu", "resume", "--memory", "64M", "--disk", disk,
                    "--inject", f"read-error:{sectors}"), "--inject", f"{sectors} sectors")
    refused(run_cli("qemu", "suspend", "--memory", "64M", "--disk", disk,
                    "--inject", f"write-error:{sectors},always"), "--inject",
            f"{sectors} sectors")
    after = disk.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.img"]


def test_inspect_refuses_a_huge_file_from_its_size(tmp_path):
    """A sparse 4 GiB file: refused from fstat, so the process never holds the 1 GiB it
    would read first (its peak memory, from wait4, stays far below that)."""
    big = tmp_path / "big.blob"
    with open(big, "wb") as f:
        f.truncate(4 << 30)
    small = tmp_path / "small.blob"
    small.write_bytes(b"x")
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def inspect(path):
        p = subprocess.Popen([sys.executable, "-m", "suspendos.cli", "inspect", str(path)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        err = p.stderr.read()
        _, status, usage = os.wait4(p.pid, 0)
        return os.waitstatus_to_exitcode(status), err, usage.ru_maxrss

    # Compared with the same command on a 1-byte file: a forked child's peak counts the
    # parent's pages at the fork, which in a long pytest run are hundreds of MiB.
    code, err, peak = inspect(big)
    _, _, baseline = inspect(small)
    assert code == 2 and len(err.splitlines()) == 1 and "larger than" in err, err
    assert peak < baseline + 256 * 1024, (peak, baseline)      # KiB: not the 1 GiB read


# ---- 7. messages that send the user the right way -------------------------------------------
def _header_only_disk(path, encrypted):
    """A 64 MiB disk with a sound, valid image header where `qemu suspend` puts it (1 MiB):
    what the host reads before a resume boots."""
    from suspendos.formats import image as fmt
    from suspendos.formats.common import build, parse
    size = fmt.ImageHeader.sizeof()
    h = parse(fmt.ImageHeader, fmt.IMAGE_MAGIC + bytes(size - len(fmt.IMAGE_MAGIC)), "h")
    h.version, h.state, h.encryption = fmt.IMAGE_VERSION, fmt.IMAGE_STATE.VALID, int(encrypted)
    block = bytearray(build(fmt.ImageHeader, h, "h").ljust(fmt.HEADER_BLOCK, b"\0"))
    from suspendos.image.reader import header_checksum
    off = fmt.offset_of(fmt.ImageHeader, "header_xxh64")
    block[off:off + 8] = header_checksum(bytes(block)).to_bytes(8, "little")
    with open(path, "wb") as f:
        f.truncate(64 * MiB)
        f.seek(MiB)
        f.write(block)
    return xxhash.xxh64(path.read_bytes()).hexdigest()


def test_resume_of_an_encrypted_image_without_key_says_give_key(tmp_path, no_work, capsys):
    """Refused from the header on the host; QEMU (the target probe, the loader) never
    starts."""
    disk = tmp_path / "enc.img"
    digest = _header_only_disk(disk, encrypted=True)
    p = in_process(["qemu", "resume", "--memory", "64M", "--disk", disk], capsys)
    refused(p, "the image is encrypted: give --key FILE")
    assert xxhash.xxh64(disk.read_bytes()).hexdigest() == digest


def test_a_key_for_a_plain_image_is_refused_by_resume_too(tmp_path, no_work, capsys):
    disk = tmp_path / "plain.img"
    digest = _header_only_disk(disk, encrypted=False)
    assert in_process(["key", "new", "-o", tmp_path / "k"], capsys).returncode == 0
    p = in_process(["qemu", "resume", "--memory", "64M", "--disk", disk, "--key",
                    tmp_path / "k"], capsys)
    refused(p, "--key", "not encrypted")
    assert xxhash.xxh64(disk.read_bytes()).hexdigest() == digest


def test_an_out_of_order_memory_map_names_the_entry_in_the_file():
    from suspendos.errors import UsageError
    from suspendos.target.description import from_dict
    d = qemu_target(64 << 20, pci=PCI).to_dict()
    d["memory"].reverse()                   # the file lists the highest range first
    d["memory"][0]["type"] = "banana"
    with pytest.raises(UsageError, match=r"^memory\[0\]\.type"):
        from_dict(d)
    d["memory"][0]["type"] = "ram"
    d["memory"][1]["start"] = d["memory"][0]["start"] - 4096    # overlaps the one above it
    d["memory"][1]["end"] = d["memory"][0]["start"] + 4096
    with pytest.raises(UsageError, match=r"^memory\[0\]: .* overlaps memory\[1\]"):
        from_dict(d)


@pytest.mark.parametrize("argv", [[], ["target", "check"], ["qemu", "suspend", "--cpus", "x"],
                                  ["plugin", "preview", "x.sop", "--percent", "101"]])
def test_errors_name_the_program_once(argv, capsys):
    p = in_process(argv, capsys)
    refused(p)
    assert p.stderr.startswith("suspendos: error: ") and p.stderr.count("suspendos") == 1, \
        p.stderr


def test_an_openssh_private_key_signs(tmp_path):
    """What `ssh-keygen -t ed25519` writes: OpenSSH's own private key format."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    key = Ed25519PrivateKey.generate()
    (tmp_path / "id").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()))
    (tmp_path / "id").chmod(0o600)
    (tmp_path / "trust").mkdir()
    (tmp_path / "trust" / "id.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b" me\n")
    Image.new("RGB", (8, 8)).save(tmp_path / "l.png")
    run_cli("plugin", "pack", "--splash", tmp_path / "l.png", "--key", tmp_path / "id",
            "-o", tmp_path / "t.sop", check=True)
    out = run_cli("plugin", "verify", tmp_path / "t.sop", "--trust", tmp_path / "trust",
                  check=True).stdout
    assert "signature good" in out
    (tmp_path / "bad").write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\nnot base64\n"
                                   b"-----END OPENSSH PRIVATE KEY-----\n")
    refused(run_cli("plugin", "sign", tmp_path / "t.sop", "--key", tmp_path / "bad"),
            "--key", "OpenSSH private key")


def test_a_bad_signature_is_named_before_the_trust_folder(tmp_path):
    run_cli("plugin", "keygen", "-o", tmp_path / "key", check=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "l.png")
    run_cli("plugin", "pack", "--splash", tmp_path / "l.png", "--key", tmp_path / "key",
            "-o", tmp_path / "t.sop", check=True)
    data = bytearray((tmp_path / "t.sop").read_bytes())
    data[-1] ^= 1
    (tmp_path / "t.sop").write_bytes(data)
    for argv in (["plugin", "verify", tmp_path / "t.sop", "--trust", tmp_path / "none"],
                 ["build", "--target", "unused.toml", "--plugin", tmp_path / "t.sop",
                  "--trust", tmp_path / "none", "-o", tmp_path / "p.blob"]):
        err = refused(run_cli(*argv), "signature does not verify")
        assert "not a folder of trusted" not in err, err


# ---- 8. one number parser -----------------------------------------------------------------
NOT_NUMBERS = ["²", "٣", "１", "1\n", " 1", "1 ", "1_0", "+1", "-1", "0x", "", "1e3", "0b1"]


@pytest.mark.parametrize("text", NOT_NUMBERS)
def test_parse_number_takes_ascii_digits_only(text):
    from suspendos.argparser import parse_number
    from suspendos.errors import UsageError
    with pytest.raises(UsageError, match="^--n: "):
        parse_number(text, "--n")


def test_parse_number_reads_decimal_and_hex_within_bounds():
    from suspendos.argparser import parse_number
    from suspendos.errors import UsageError
    assert parse_number("4096", "x") == 4096 and parse_number("0x1F", "x") == 31
    assert parse_number("007", "x", hex_ok=False) == 7
    for text, kw in (("0x10", dict(hex_ok=False)), ("5", dict(low=6)), ("9", dict(high=8))):
        with pytest.raises(UsageError):
            parse_number(text, "x", **kw)


SUSPEND = ["qemu", "suspend", "--memory", "64M", "--disk", "new.img"]
RESUME = ["qemu", "resume", "--memory", "64M", "--disk", "d.img"]


def _number_cases(bad):
    return [
        (SUSPEND + ["--cpus", bad], "--cpus"), (RESUME + ["--cpus", bad], "--cpus"),
        (SUSPEND + ["--seed", bad], "--seed"), (SUSPEND + ["--ap-deaf", bad], "--ap-deaf"),
        (SUSPEND + ["--inject", f"write-error:{bad}"], "--inject"),
        (RESUME + ["--inject", f"read-error:{bad}"], "--inject"),
        (RESUME + ["--inject", f"ap-deaf:{bad}"], "--inject"),
        (SUSPEND + ["--mix", f"25,25,25,{bad}"], "--mix"),
        (SUSPEND + ["--sector-size", bad], "--sector-size"),
        (["qemu", "suspend", "--memory", f"{bad}M", "--disk", "new.img"], "--memory"),
        (["target", "qemu", "--memory", "64M", "--disk-size", f"{bad}G", "-o", "t.toml"],
         "--disk-size"),
        (SUSPEND + ["--framebuffer", f"800x600x{bad}"], "--framebuffer"),
        (["image", "info", "d.img", "--lba", bad], "--lba"),
        (["image", "discard", "d.img", "--offset", bad], "--offset"),
        (["qemu", "linux", "--cpus", bad], "--cpus"),
        (["qemu", "linux", "--dirty-free", f"{bad}%"], "--dirty-free"),
        (["plugin", "preview", "t.sop", "--percent", bad, "-o", "p.png"], "--percent"),
        (["hibernate", "--serial", bad], "--serial"),
    ]


@pytest.mark.parametrize("bad", ["²", "٣", "3\n"])
def test_every_number_option_refuses_other_digits(tmp_path, bad, no_work, monkeypatch, capsys):
    """`str.isdigit()` is true for "²" (int() then crashes) and int() reads "٣" as 3: every
    option is read by the one parser, so both are one line and exit 2, before any work."""
    monkeypatch.chdir(tmp_path)
    with open(tmp_path / "d.img", "wb") as f:
        f.truncate(64 * MiB)
    for argv, option in _number_cases(bad):
        p = in_process(argv, capsys)
        refused(p, option)
        assert sorted(x.name for x in tmp_path.iterdir()) == ["d.img"], argv


def test_names_that_are_not_utf8_are_printed_escaped(tmp_path):
    """The OS hands such a name over with surrogates, which print() cannot encode."""
    name = os.fsdecode(b"k\xff")
    for argv in (["key", "new", "-o", name], ["plugin", "keygen", "-o", name + "s"]):
        p = run_cli(*argv, cwd=tmp_path)
        assert p.returncode == 0 and "\\xff" in p.stdout and not p.stderr, (p.stdout, p.stderr)
    assert sorted(os.listdir(os.fsencode(tmp_path))) == [b"k\xff", b"k\xffs", b"k\xffs.pub"]


def test_control_characters_from_a_target_file_are_escaped(tmp_path, target):
    text = target.read_text()
    (tmp_path / "key.toml").write_text('"\\u001b[2J" = 1\n' + text)
    err = refused(run_cli("target", "check", tmp_path / "key.toml"), "unknown section")
    assert "\x1b" not in err and "\\x1b[2J" in err
    _edit(target, 'name = "', 'name = "\\u001b[31m')
    p = run_cli("target", "check", target)
    assert p.returncode == 0 and "\x1b" not in p.stdout and "\\x1b[31m" in p.stdout, p


def test_a_missing_plugin_names_its_option(tmp_path, target):
    refused(run_cli("build", "--target", target, "--plugin", tmp_path / "none.sop",
                    "-o", tmp_path / "p.blob"), "--plugin", "none.sop")


# ---- 9. no symbolic link in a plugin folder ------------------------------------------------
@pytest.mark.parametrize("link", ["assets.bin", "sdk", "extra.c"])
def test_pack_refuses_a_symlink_in_the_plugin_folder(tmp_path, link):
    """Packing someone's folder as root must not put /etc/shadow into a signed package, nor
    write the SDK through a link into another folder."""
    run_cli("plugin", "new", "demo", cwd=tmp_path, check=True)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "shadow").write_text("root:secret\n")
    path = tmp_path / "demo" / link
    if path.exists():
        import shutil
        shutil.rmtree(path)
    path.symlink_to(secret if link == "sdk" else secret / "shadow")
    refused(run_cli("plugin", "pack", "demo", "-o", "d.sop", cwd=tmp_path),
            f"demo/{link}", "symbolic link")
    assert not (tmp_path / "d.sop").exists() and not (tmp_path / "demo" / "build").exists()
    assert os.listdir(secret) == ["shadow"]


# ---- an empty file name is a name, not "no key" --------------------------------------------
@pytest.fixture
def no_build(monkeypatch, no_work):
    """`build` and `build-resume` too: a refusal must come before the payload or loader."""
    def started(*a, **k):
        raise Started()
    from suspendos.build import payload, resume
    monkeypatch.setattr(payload, "build_payload", started)
    monkeypatch.setattr(resume, "build_resume_loader", started)


@pytest.mark.parametrize("argv, option", [
    (["build", "--target", "t.toml", "-o", "p.blob", "--encrypt-key", ""], "--encrypt-key"),
    (["build-resume", "--target", "t.toml", "-o", "l.efi", "--format", "efi", "--key", ""],
     "--key"),
    (["qemu", "suspend", "--memory", "64M", "--disk", "d.img", "--encrypt-key", ""],
     "--encrypt-key"),
    (["qemu", "suspend", "--memory", "64M", "--disk", "d.img", "--target", ""], "--target"),
    (["qemu", "resume", "--memory", "64M", "--disk", "d.img", "--key", ""], "--key"),
    (["image", "info", "d.img", "--key", ""], "--key"),
    (["plugin", "pack", "--splash", "s.png", "-o", "s.sop", "--key", ""], "--key"),
    (["image", "verify", "d.img", "--ram", ""], "--ram"),
    (["build", "--target", "t.toml", "-o", "p.blob", "--trust", ""], "--trust"),
    (["plugin", "verify", "s.sop", "--trust", ""], "--trust"),
    (["target", "linux", "--sysroot", "", "-o", "l.toml"], "--sysroot"),
    (["qemu", "linux", "--workdir", ""], "--workdir"),
    (["target", "check", ""], "FILE"),
    (["inspect", ""], "PAYLOAD"),
])
def test_an_empty_key_or_target_name_is_refused(tmp_path, target, argv, option, no_build,
                                                 monkeypatch, capsys):
    """`--key ""` once built an unencrypted loader (and `--encrypt-key ""` an unencrypted
    payload, `plugin pack --key ""` an unsigned package, `--target ""` the default target,
    `--ram ""` a verify without the comparison, `--trust ""` trusted the keys in the current
    folder, `--sysroot ""` read the live system as a copy): "" was taken for "not given"."""
    monkeypatch.chdir(tmp_path)
    with open(tmp_path / "d.img", "wb") as f:
        f.truncate(64 * MiB)
    Image.new("RGB", (8, 8)).save(tmp_path / "s.png")
    before = sorted(x.name for x in tmp_path.iterdir())
    refused(in_process(argv, capsys), option)
    assert sorted(x.name for x in tmp_path.iterdir()) == before
