"""A hostile probe of every subcommand, as a table: each case is an argv run in a folder
holding a standard set of files (valid inputs, damaged ones, device-like nodes, odd names),
the exit status it must end with, and words its one stderr line must hold.

For every case: no traceback, no internal error, no raw control character (an ANSI escape
from a file name or a file) on stdout or stderr, a refusal (exit 2) is exactly one line,
and nothing in the folder changed except the files the case is meant to write. "W" means
the input was accepted and the work began (the build, boot or compile is replaced by a
stub that stops there), so the table needs no QEMU and compiles only the kit's one payload
blob. The few cases that
need a real process (closed stdout, stdin, non-UTF-8 names printed) run as subprocesses.
The cases of tests/test_cli_hostile.py are not repeated here."""
import hashlib
import io
import os
import shutil
import socket
import stat
import subprocess
import sys

import pytest
from PIL import Image

from conftest import ROOT
from suspendos.target import save
from suspendos.target.qemu import qemu_target

PCI = {"ahci": ("00:1f.2", 0xFEBD5000), "vga": ("00:01.0", 0xFD000000, 16 << 20)}
LINUX_SYSROOT = ROOT / "tests" / "data" / "linux-sysroot"
NL = "nl\nname.toml"                             # a newline in a file name
ESC = "\x1b[31mred.toml"                         # an ANSI escape in a file name
RAW = os.fsdecode(b"\xff\xfe.toml")              # not UTF-8 (as sys.argv carries it)
W = "W"                                          # accepted: the work began


# ---- the files every case finds in its folder ----------------------------------------------
def _png(w, h):
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 200, 30)).save(buf, "PNG")
    return buf.getvalue()


def _image_header(**fields):
    """A 4 KiB image header block with a correct checksum and `fields` set: damage a
    checksum cannot catch (the header says what a writer said)."""
    from suspendos.formats import image as fmt
    from suspendos.image.reader import header_checksum
    size = fmt.ImageHeader.sizeof()
    block = bytearray(fmt.IMAGE_MAGIC + bytes(fmt.HEADER_BLOCK - 8))
    h = fmt.ImageHeader.parse(bytes(block[:size]))
    h.update(dict(version=1, header_size=size, state=1, page_size=4096, chunk_pages=16,
                  range_count=1, extent_count=1, extents_offset=4096, ranges_offset=4112,
                  chunks_offset=8192, block_size=512))
    h.update(fields)
    block[:size] = fmt.ImageHeader.build(h)
    h.header_xxh64 = header_checksum(block)
    block[:size] = fmt.ImageHeader.build(h)
    return bytes(block)


def _swap_area(magic):
    page = bytearray(3 * 4096)
    page[4096 - 10:4096] = magic
    return bytes(page)


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """Built once: the standard folder's regular files (copied into each case's folder)."""
    from suspendos import cli
    d = tmp_path_factory.mktemp("probe-kit")
    t = d / "t.toml"
    save(qemu_target(64 << 20, pci=PCI), t)
    text = t.read_text()
    cwd = os.getcwd()
    os.chdir(d)
    try:
        for argv in (["key", "new", "-o", "k.key"], ["plugin", "keygen", "-o", "sk"],
                     ["build", "--target", "t.toml", "-o", "p.blob"]):
            assert cli.main(argv) == 0, argv
        (d / "logo.png").write_bytes(_png(16, 8))
        assert cli.main(["plugin", "pack", "--splash", "logo.png", "--key", "sk", "-o",
                         "theme.sop"]) == 0
        assert cli.main(["plugin", "pack", "--splash", "logo.png", "-o", "plain.sop"]) == 0
    finally:
        os.chdir(cwd)
    (d / "trust").mkdir()
    shutil.copy(d / "sk.pub", d / "trust" / "sk.pub")
    blob, sop = (d / "p.blob").read_bytes(), (d / "theme.sop").read_bytes()
    files = {
        "empty": b"", "garbage": bytes(range(256)) * 16, "zeros": bytes(8192),
        "copy.toml": text.encode(), "a,b c.toml": text.encode(), "-t.toml": text.encode(),
        # target descriptions a hand or a tool got wrong
        "dup.toml": (text + "\n[disk]\nport = 1\n").encode(),
        "dupkey.toml": text.replace('name = "', 'name = "x"\nname = "', 1).encode(),
        "strtype.toml": text.replace("sectors = 131072", 'sectors = "131072"').encode(),
        "floattype.toml": text.replace("sectors = 131072", "sectors = 131072.0").encode(),
        "booltype.toml": text.replace("port = 0", "port = true").encode(),
        "boolbpp.toml": text.replace("smaller_than_ram = false", "smaller_than_ram = 0")
        .encode(),
        "esc.toml": text.replace('name = "qemu-q35-64M"', 'name = "\\u001b[2Jpwned"').encode(),
        "uni.toml": text.replace('name = "qemu-q35-64M"', 'name = "\u30bf\u30fc\u30b2\u30c3'
                                 '\u30c8"').encode(),
        "latin1.toml": text.replace('name = "qemu-q35-64M"', 'name = "caf\xe9"')
        .encode("latin-1"),
        "bom.toml": b"\xef\xbb\xbf" + text.encode(),
        "nodisk.toml": text.split("[disk]")[0].encode() + b"[framebuffer]\n" +
        text.split("[framebuffer]")[1].encode(),
        "unknown.toml": text.replace("[options]", "[options]\ncompres = \"lz4\"").encode(),
        "emptyname.toml": text.replace('name = "qemu-q35-64M"', 'name = ""').encode(),
        "negchunk.toml": text.replace("chunk_pages = 0", "chunk_pages = -1").encode(),
        # payload blobs
        "trunc.blob": blob[:100], "half.blob": blob[:len(blob) // 2],
        "magic.blob": b"SOSBLOB\0" + bytes(4088),
        "flip.blob": blob[:40] + bytes([blob[40] ^ 0xFF]) + blob[41:],
        "long.blob": blob + bytes(4096),
        # images: the header block at LBA 0
        "img-trunc": _image_header()[:200],
        "img-badsum": bytes([*_image_header()[:100], 0xAA]) + _image_header()[101:] +
        bytes(8192),
        "img-v2": _image_header(version=2) + bytes(8192),
        "img-nochunk": _image_header(chunk_pages=0) + bytes(8192),
        "img-ranges": _image_header(range_count=0xFFFFFFFF, extent_count=0xFFFFFFFF) +
        bytes(8192),
        "img-enc": _image_header(encryption=0x7FFF) + bytes(8192),
        "img-bs": _image_header(block_size=1000) + bytes(8192),
        # swap areas for image discard
        "swap.plain": _swap_area(b"SWAPSPACE2"), "swap.sos": _swap_area(b"SOSIMAGE01"),
        "swap.short": _swap_area(b"SOSIMAGE01")[:6000],
        # plugin packages
        "trunc.sop": sop[:20], "half.sop": sop[:len(sop) // 2],
        "badsig.sop": sop[:-1] + bytes([sop[-1] ^ 1]), "long.sop": sop + b"junk",
        "magic.sop": b"SOSPLUG\0" + bytes(200),
        # pictures
        "trunc.png": _png(16, 8)[:30], "one.png": _png(1, 1),
        "fake.png": b"GIF89a" + bytes(20), "pic.bmp": b"",
        "text.pub": b"not a key\n",
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
    Image.new("RGB", (20, 10), (1, 2, 3)).save(d / "pic.bmp", "BMP")
    (d / "ro.sop").write_bytes(sop)
    (d / "ro.sop").chmod(0o444)
    (d / "swap.ro").write_bytes(_swap_area(b"SOSIMAGE01"))
    (d / "swap.ro").chmod(0o444)
    (d / "badtrust").mkdir()
    (d / "badtrust" / "x.pub").write_bytes(b"\x00" * 40)
    (d / "dir").mkdir()
    (d / "keepdir").mkdir()
    (d / "keepdir" / "disk.img").write_bytes(b"the user's own disk")
    (d / "keepdir" / "ram.bin").write_bytes(b"the user's own dump")
    return d


def populate(kit, work):
    """The case's folder: the kit's files, and the nodes a copy cannot make."""
    shutil.copytree(kit, work, symlinks=True)
    os.mkfifo(work / "fifo")
    s = socket.socket(socket.AF_UNIX)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        s.bind("sock")          # relative: a socket path is limited to 108 bytes
    finally:
        os.chdir(cwd)
        s.close()
    os.link(work / "t.toml", work / "hl.toml")
    (work / "sl.toml").symlink_to("t.toml")
    (work / "sl.png").symlink_to("logo.png")
    (work / "loop").symlink_to("loop")
    (work / "dangling").symlink_to("nowhere")
    (work / "ro.toml").write_bytes((work / "t.toml").read_bytes())
    (work / "ro.toml").chmod(0o444)
    for name in (NL, ESC, RAW):
        (work / name).write_bytes((work / "t.toml").read_bytes())
    os.truncate(_touch(work / "zeros1m"), 1 << 20)
    (work / "sparse20m").touch()
    os.truncate(work / "sparse20m", 20 << 20)


def sysroot(work, meminfo=None, swaps=None):
    """A copy of the synthetic Linux machine of tests/data/linux-sysroot at work/root."""
    r = work / "root"
    shutil.copytree(LINUX_SYSROOT, r, symlinks=True)
    (r / "proc/meminfo").write_text(meminfo or "MemTotal: 505000 kB\nMemFree: 300000 kB\n"
                                    "MemAvailable: 400000 kB\n")
    (r / "proc/cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu pae lm\n")
    (r / "proc/self").mkdir(parents=True)
    (r / "proc/self/mountinfo").write_text("22 1 8:2 / / rw,relatime shared:1 - ext4 "
                                           "/dev/sda2 rw\n")
    with open(r / "dev/sda1", "ab") as f:
        f.truncate(2 * 4096)
    if swaps is not None:
        (r / "proc/swaps").write_text(swaps)
    return r


def _variant(name, old, new):
    """A setup writing work/NAME: t.toml with OLD replaced by NEW (too big to copy into
    every case's folder)."""
    def make(work):
        text = (work / "t.toml").read_text()
        assert old in text
        (work / name).write_text(text.replace(old, new, 1))
    return make


SETUPS = {
    "hugearray": _variant("hugearray.toml", "extents = [",
                          "extents = [\n" + "    { lba = 0, count = 0 },\n" * 20000),
    "deep": _variant("deep.toml", "[reserved]", "x = " + "[" * 5000 + "]" * 5000 +
                     "\n[reserved]"),
    "bigname": _variant("bigname.toml", 'name = "qemu-q35-64M"', 'name = "' + "n" * 100000 +
                        '"'),
    "root": lambda w: sysroot(w),
    "root-badmeminfo": lambda w: sysroot(w, meminfo="MemTotal: lots kB\nMemFree: 1 kB\n"
                                         "MemAvailable: 1 kB\n"),
    "root-badswaps": lambda w: sysroot(w, swaps="Filename\tType\tSize\tUsed\tPriority\n"
                                       "/dev/sda1 partition big 0 -2\n"),
    "root-esccmdline": lambda w: (sysroot(w) / "proc/cmdline").write_text(
        "console=ttyS0 \x1b[2J memmap=2M$0x10000000\n"),
    "root-binaryiomem": lambda w: (sysroot(w) / "proc/iomem").write_bytes(bytes(range(256))),
    "root-noiomem": lambda w: (sysroot(w) / "proc/iomem").unlink(),
    "root-uefi": lambda w: (sysroot(w) / "sys/firmware/efi/efivars").mkdir(parents=True),
    "corpus": lambda w: (w / "c.bin").write_bytes(bytes(8192)),
    "plugin": lambda w: ((w / "pl").mkdir(), (w / "pl" / "pl.c").write_text("int x;\n")),
}


# ---- the cases -----------------------------------------------------------------------------
class Case:
    def __init__(self, ident, argv, rc, words=(), writes=(), setup=None):
        self.id, self.argv, self.rc = ident, list(argv), rc
        self.words, self.writes, self.setup = list(words), set(writes), setup


def C(*a, **k):
    return Case(*a, **k)


TQ = ["target", "qemu", "--memory", "64M"]
SUSP = ["qemu", "suspend", "--memory", "64M", "--disk", "new.img"]
RES = ["qemu", "resume", "--memory", "64M"]
HIB = ["hibernate", "--dry-run", "--sysroot", "root"]
INS = ["install-resume", "--sysroot", "root", "--boot-dir", "dir"]
UNI = ["uninstall-resume", "--sysroot", "root", "--boot-dir", "dir"]
PACK = ["plugin", "pack", "--splash", "logo.png"]

CASES = [
    # -- the top level ---------------------------------------------------------------------
    C("help", ["--help"], 0),
    C("help-then-junk", ["--help", "--frobnicate"], 0),
    C("version", ["--version"], 0),
    C("empty-command", [""], 2, ["''"]),
    C("help-as-command", ["help"], 2, ["help"]),
    C("upper-command", ["TARGET"], 2, ["TARGET"]),
    C("abbreviated-command", ["targ", "check", "t.toml"], 2, ["targ"]),
    C("option-before-command", ["--memory", "64M", "target", "qemu"], 2, ["64M"]),
    C("double-dash-command", ["--", "target", "check", "t.toml"], 2),
    C("target-alone", ["target"], 2, ["target"]),
    C("qemu-alone", ["qemu"], 2, ["qemu"]),
    C("plugin-alone", ["plugin"], 2, ["plugin"]),
    C("key-alone", ["key"], 2, ["key"]),
    C("key-old", ["key", "old"], 2, ["old"]),
    C("bench-alone", ["bench"], 2, ["bench"]),
    C("bench-decompress", ["bench", "decompress"], 2, ["decompress"]),
    C("image-bogus", ["image", "peek", "zeros"], 2, ["peek"]),
    C("esc-command", ["\x1b[2J"], 2),
    # -- target qemu -----------------------------------------------------------------------
    C("tq-lowercase-unit", TQ[:3] + ["64m", "-o", "out.toml"], 0, writes=["out.toml"]),
    C("tq-hex-memory", TQ[:3] + ["0x4000000", "-o", "out.toml"], 0, writes=["out.toml"]),
    C("tq-memory-twice", TQ + ["--memory", "1.5G", "-o", "out.toml"], 2, ["--memory"]),
    C("tq-memory-fraction", TQ[:3] + ["1.5G", "-o", "out.toml"], 2, ["--memory"]),
    C("tq-memory-empty", TQ[:3] + ["", "-o", "out.toml"], 2, ["--memory"]),
    C("tq-memory-zero", TQ[:3] + ["0", "-o", "out.toml"], 2, ["--memory"]),
    C("tq-memory-arabic-digits", TQ[:3] + ["\u0666\u0664M", "-o", "out.toml"], 2,
      ["--memory"]),
    C("tq-memory-superscript", TQ[:3] + ["\u00b2G", "-o", "out.toml"], 2, ["--memory"]),
    C("tq-memory-newline", TQ[:3] + ["64M\n", "-o", "out.toml"], 2, ["--memory"]),
    C("tq-memory-2p64", TQ[:3] + [str(2 ** 64), "-o", "out.toml"], 2, ["--memory"]),
    C("tq-memory-1e9", TQ[:3] + ["1e9", "-o", "out.toml"], 2, ["--memory"]),
    C("tq-memory-bare-0x", TQ[:3] + ["0x", "-o", "out.toml"], 2, ["--memory"]),
    C("tq-memory-negative", TQ[:3] + ["-64M", "-o", "out.toml"], 2, ["--memory"]),
    C("tq-memory-9G", TQ[:3] + ["9G", "-o", "out.toml"], 2, ["--memory"]),
    C("tq-disk-size-empty", TQ + ["--disk-size", "", "-o", "out.toml"], 2, ["--disk-size"]),
    C("tq-disk-size-1", TQ + ["--disk-size", "1", "-o", "out.toml"], 2, ["--disk-size"]),
    C("tq-disk-size-0", TQ + ["--disk-size", "0", "-o", "out.toml"], 2, ["--disk-size"]),
    C("tq-disk-size-2p64", TQ + ["--disk-size", str(2 ** 64), "-o", "out.toml"], 2,
      ["--disk-size"]),
    C("tq-disk-size-fraction", TQ + ["--disk-size", "1.5G", "-o", "out.toml"], 2,
      ["--disk-size"]),
    C("tq-framebuffer-empty", TQ + ["--framebuffer", "", "-o", "out.toml"], 2,
      ["--framebuffer"]),
    C("tq-framebuffer-superscript", TQ + ["--framebuffer", "\u00b200x600x32", "-o",
                                          "out.toml"], 2, ["--framebuffer"]),
    C("tq-framebuffer-fullwidth", TQ + ["--framebuffer", "\uff18\uff10\uff10x600x32", "-o",
                                        "out.toml"], 2, ["--framebuffer"]),
    C("tq-framebuffer-four-parts", TQ + ["--framebuffer", "800x600x32x1", "-o", "out.toml"],
      2, ["--framebuffer"]),
    C("tq-framebuffer-bpp8", TQ + ["--framebuffer", "800x600x8", "-o", "out.toml"], 2,
      ["--framebuffer"]),
    C("tq-compress-upper", TQ + ["--compress", "LZ4", "-o", "out.toml"], 2, ["--compress"]),
    C("tq-sector-size-1000", TQ + ["--sector-size", "1000", "-o", "out.toml"], 2,
      ["--sector-size"]),
    C("tq-nvme-4096-ahci", TQ + ["--sector-size", "4096", "-o", "out.toml"], 2,
      ["--sector-size"]),
    C("tq-no-output", TQ, 2, ["-o"]),
    C("tq-output-empty", TQ + ["-o", ""], 2, ["-o"]),
    C("tq-output-dev-full", TQ + ["-o", "/dev/full"], 2, ["-o", "/dev/full"]),
    C("tq-output-loop", TQ + ["-o", "loop"], 2, ["-o", "loop"]),
    C("tq-output-socket", TQ + ["-o", "sock"], 2, ["-o", "sock"]),
    C("tq-output-missing-folder-slash", TQ + ["-o", "newdir/"], 2, ["-o", "newdir"]),
    C("tq-output-dir-slash", TQ + ["-o", "dir/"], 2, ["-o", "dir"]),
    C("tq-output-comma-space", TQ + ["-o", "x,y z.toml"], 0, writes=["x,y z.toml"]),
    C("tq-output-leading-dash", TQ + ["-o=-new.toml"], 0, writes=["-new.toml"]),
    C("tq-output-dangling", TQ + ["-o", "dangling"], 0, writes=["nowhere"]),
    C("tq-output-escape", TQ + ["-o", "\x1b[2Jnew.toml"], 0, writes=["\x1b[2Jnew.toml"]),
    C("tq-output-newline-into-missing", TQ + ["-o", "nodir\n/x.toml"], 2, ["-o"]),
    C("tq-wrong-option", TQ + ["--seed", "1", "-o", "out.toml"], 2, ["--seed"]),
    # -- target linux (a synthetic sysroot) ------------------------------------------------
    C("tl-good", ["target", "linux", "--sysroot", "root", "--swap", "/dev/sda1", "-o",
                  "out.toml"], 0, writes=["out.toml"], setup="root"),
    C("tl-sysroot-missing", ["target", "linux", "--sysroot", "noroot", "--swap", "/dev/sda1",
                             "-o", "out.toml"], 2, ["noroot"]),
    C("tl-sysroot-empty-folder", ["target", "linux", "--sysroot", "dir", "--swap",
                                  "/dev/sda1", "-o", "out.toml"], 2),
    C("tl-sysroot-file", ["target", "linux", "--sysroot", "t.toml", "--swap", "/dev/sda1",
                          "-o", "out.toml"], 2, ["t.toml"]),
    C("tl-sysroot-fifo", ["target", "linux", "--sysroot", "fifo", "--swap", "/dev/sda1",
                          "-o", "out.toml"], 2),
    C("tl-swap-missing", ["target", "linux", "--sysroot", "root", "--swap", "/dev/sda9",
                          "-o", "out.toml"], 2, ["/dev/sda9"], setup="root"),
    C("tl-swap-empty", ["target", "linux", "--sysroot", "root", "--swap", "", "-o",
                        "out.toml"], 2, ["--swap"], setup="root"),
    C("tl-swap-escape", ["target", "linux", "--sysroot", "root", "--swap", "/dev/\x1b[2J",
                         "-o", "out.toml"], 2, setup="root"),
    C("tl-binary-iomem", ["target", "linux", "--sysroot", "root", "--swap", "/dev/sda1",
                          "-o", "out.toml"], 2, ["iomem"], setup="root-binaryiomem"),
    C("tl-no-iomem", ["target", "linux", "--sysroot", "root", "--swap", "/dev/sda1", "-o",
                      "out.toml"], 2, ["iomem"], setup="root-noiomem"),
    C("tl-escape-cmdline", ["target", "linux", "--sysroot", "root", "--swap", "/dev/sda1",
                            "-o", "out.toml"], 0, writes=["out.toml"], setup="root-esccmdline"),
    C("tl-wrong-option", ["target", "linux", "--memory", "64M", "-o", "out.toml"], 2,
      ["--memory"]),
    C("tl-compress-bad", ["target", "linux", "--compress", "gzip", "-o", "out.toml"], 2,
      ["--compress"]),
    # -- target check ----------------------------------------------------------------------
    C("tc-good", ["target", "check", "t.toml"], W),
    C("tc-hard-link", ["target", "check", "hl.toml"], W),
    C("tc-symlink", ["target", "check", "sl.toml"], W),
    C("tc-comma-space", ["target", "check", "a,b c.toml"], W),
    C("tc-leading-dash", ["target", "check", "--", "-t.toml"], W),
    C("tc-leading-dash-unguarded", ["target", "check", "-t.toml"], 2),
    C("tc-newline-name", ["target", "check", NL], W),
    C("tc-escape-name", ["target", "check", ESC], W),
    C("tc-missing-newline-name", ["target", "check", "no\nsuch.toml"], 2, ["'no\\nsuch.toml'"]),
    C("tc-missing-escape-name", ["target", "check", "\x1b[2Jno.toml"], 2),
    C("tc-loop", ["target", "check", "loop"], 2, ["loop"]),
    C("tc-dangling", ["target", "check", "dangling"], 2, ["dangling"]),
    C("tc-socket", ["target", "check", "sock"], 2, ["sock"]),
    C("tc-dev-null", ["target", "check", "/dev/null"], 2, ["/dev/null"]),
    C("tc-dev-full", ["target", "check", "/dev/full"], 2, ["/dev/full"]),
    C("tc-empty", ["target", "check", "empty"], 2, ["empty"]),
    C("tc-garbage", ["target", "check", "garbage"], 2, ["garbage"]),
    C("tc-sparse-20m", ["target", "check", "sparse20m"], 2, ["sparse20m"]),
    C("tc-duplicate-table", ["target", "check", "dup.toml"], 2, ["dup.toml"]),
    C("tc-duplicate-key", ["target", "check", "dupkey.toml"], 2, ["dupkey.toml"]),
    C("tc-string-for-int", ["target", "check", "strtype.toml"], 2, ["sectors"]),
    C("tc-float-for-int", ["target", "check", "floattype.toml"], 2, ["sectors"]),
    C("tc-bool-for-int", ["target", "check", "booltype.toml"], 2, ["port"]),
    C("tc-int-for-bool", ["target", "check", "boolbpp.toml"], 2, ["smaller_than_ram"]),
    C("tc-escape-in-name", ["target", "check", "esc.toml"], W),
    C("tc-unicode-name", ["target", "check", "uni.toml"], W),
    C("tc-latin1-file", ["target", "check", "latin1.toml"], 2, ["latin1.toml"]),
    C("tc-bom", ["target", "check", "bom.toml"], 2, ["bom.toml"]),
    C("tc-no-disk-table", ["target", "check", "nodisk.toml"], 2, ["disk"]),
    C("tc-misspelt-key", ["target", "check", "unknown.toml"], 2, ["compres"]),
    C("tc-empty-name", ["target", "check", "emptyname.toml"], 2, ["name"]),
    C("tc-huge-extent-array", ["target", "check", "hugearray.toml"], 2, ["extents"],
      setup="hugearray"),
    C("tc-deep-nesting", ["target", "check", "deep.toml"], 2, ["deep.toml"], setup="deep"),
    C("tc-negative-chunk", ["target", "check", "negchunk.toml"], 2, ["chunk_pages"]),
    C("tc-two-files", ["target", "check", "t.toml", "t.toml"], 2),
    C("tc-no-file", ["target", "check"], 2, ["FILE"]),
    C("tc-a-blob", ["target", "check", "p.blob"], 2, ["p.blob"]),
    C("tc-json", ["target", "check", "t.toml", "--json"], W),
    C("tc-raw-name", ["target", "check", RAW], W),
    # -- build (refused before the compiler) -----------------------------------------------
    C("b-good", ["build", "--target", "t.toml", "-o", "out.blob"], W),
    C("b-compress-upper", ["build", "--target", "t.toml", "-o", "o", "--compress", "LZ4"], 2,
      ["--compress"]),
    C("b-no-output", ["build", "--target", "t.toml"], 2, ["-o"]),
    C("b-format-bad", ["build", "--target", "t.toml", "-o", "o", "--format", "elf"], 2,
      ["--format"]),
    C("b-target-garbage", ["build", "--target", "garbage", "-o", "o"], 2, ["garbage"]),
    C("b-target-folder", ["build", "--target", "dir", "-o", "o"], 2, ["--target"]),
    C("b-target-twice", ["build", "--target", "t.toml", "--target", "garbage", "-o", "o"], 2,
      ["garbage"]),
    C("b-target-bool", ["build", "--target", "booltype.toml", "-o", "o"], 2, ["port"]),
    C("b-output-symlink-to-target", ["build", "--target", "t.toml", "-o", "sl.toml"], 2,
      ["-o", "--target"]),
    C("b-key-empty", ["build", "--target", "t.toml", "-o", "o", "--encrypt-key", "empty"], 2,
      ["--encrypt-key"]),
    C("b-key-garbage", ["build", "--target", "t.toml", "-o", "o", "--encrypt-key",
                        "garbage"], 2, ["--encrypt-key"]),
    C("b-key-folder", ["build", "--target", "t.toml", "-o", "o", "--encrypt-key", "dir"], 2,
      ["--encrypt-key"]),
    C("b-key-signing-key", ["build", "--target", "t.toml", "-o", "o", "--encrypt-key", "sk"],
      2, ["--encrypt-key"]),
    C("b-key-is-output", ["build", "--target", "t.toml", "-o", "k.key", "--encrypt-key",
                          "k.key"], 2, ["-o", "--encrypt-key"]),
    C("b-key-twice", ["build", "--target", "t.toml", "-o", "o", "--encrypt-key", "k.key",
                      "--encrypt-key", "missing"], 2, ["--encrypt-key"]),
    C("b-plugin-garbage", ["build", "--target", "t.toml", "-o", "o", "--plugin", "garbage"],
      2, ["garbage"]),
    C("b-plugin-unsigned", ["build", "--target", "t.toml", "-o", "o", "--plugin",
                            "plain.sop", "--trust", "trust"], 2, ["plain.sop"]),
    C("b-plugin-trust-missing", ["build", "--target", "t.toml", "-o", "o", "--plugin",
                                 "theme.sop", "--trust", "notrust"], 2, ["notrust"]),
    C("b-plugin-trust-file", ["build", "--target", "t.toml", "-o", "o", "--plugin",
                              "theme.sop", "--trust", "t.toml"], 2, ["--trust"]),
    C("b-plugin-bad-signature", ["build", "--target", "t.toml", "-o", "o", "--plugin",
                                 "badsig.sop", "--trust", "trust"], 2, ["badsig.sop"]),
    C("b-plugin-same-twice", ["build", "--target", "t.toml", "-o", "o", "--plugin",
                              "theme.sop", "--plugin", "theme.sop", "--trust", "trust"], 2,
      ["theme.sop", "second"]),
    C("b-plugin-is-output", ["build", "--target", "t.toml", "-o", "theme.sop", "--plugin",
                             "theme.sop", "--trust", "trust"], 2, ["-o", "--plugin"]),
    C("b-plugin-truncated", ["build", "--target", "t.toml", "-o", "o", "--plugin",
                             "trunc.sop", "--allow-unsigned"], 2, ["trunc.sop"]),
    C("b-wrong-option", ["build", "--target", "t.toml", "-o", "o", "--memory", "64M"], 2,
      ["--memory"]),
    C("b-output-dev-full", ["build", "--target", "t.toml", "-o", "/dev/full"], 2,
      ["/dev/full"]),
    # -- inspect ---------------------------------------------------------------------------
    C("i-good", ["inspect", "p.blob"], 0),
    C("i-good-json", ["inspect", "p.blob", "--json"], 0),
    C("i-empty", ["inspect", "empty"], 2, ["empty"]),
    C("i-garbage", ["inspect", "garbage"], 2, ["garbage"]),
    C("i-truncated", ["inspect", "trunc.blob"], 2, ["trunc.blob"]),
    C("i-half", ["inspect", "half.blob"], 2, ["half.blob"]),
    C("i-magic-only", ["inspect", "magic.blob"], 2, ["magic.blob"]),
    C("i-flipped", ["inspect", "flip.blob"], 2, ["flip.blob"]),
    C("i-trailing-bytes", ["inspect", "long.blob"], 2, ["long.blob"]),
    C("i-a-toml", ["inspect", "t.toml"], 2, ["t.toml"]),
    C("i-a-package", ["inspect", "theme.sop"], 2, ["theme.sop"]),
    C("i-loop", ["inspect", "loop"], 2, ["loop"]),
    C("i-socket", ["inspect", "sock"], 2, ["sock"]),
    C("i-dev-null", ["inspect", "/dev/null"], 2, ["/dev/null"]),
    C("i-two", ["inspect", "p.blob", "p.blob"], 2),
    C("i-sparse-20m", ["inspect", "sparse20m"], 2, ["sparse20m"]),
    # -- qemu suspend (refused before the build and the boot) ------------------------------
    C("qs-good", SUSP, W),
    C("qs-mix-three", SUSP + ["--mix", "25,25,50"], 2, ["--mix"]),
    C("qs-mix-101", SUSP + ["--mix", "25,25,25,26"], 2, ["--mix"]),
    C("qs-mix-empty", SUSP + ["--mix", ""], 2, ["--mix"]),
    C("qs-mix-negative", SUSP + ["--mix", "-1,51,25,25"], 2, ["--mix"]),
    C("qs-mix-all-zero", SUSP + ["--mix", "100,0,0,0"], W),
    C("qs-seed-hex", SUSP + ["--seed", "0x10"], W),
    C("qs-seed-arabic", SUSP + ["--seed", "\u0661\u0662"], 2, ["--seed"]),
    C("qs-seed-newline", SUSP + ["--seed", "12\n"], 2, ["--seed"]),
    C("qs-seed-bare-0x", SUSP + ["--seed", "0x"], 2, ["--seed"]),
    # int() takes "1_000"; a number the user types is digits only
    C("qs-seed-underscore", SUSP + ["--seed", "1_000"], 2, ["--seed", "1_000"]),
    C("qs-cpus-arabic", SUSP + ["--cpus", "\u0662"], 2, ["--cpus"]),
    C("qs-cpus-zero", SUSP + ["--cpus", "0"], 2, ["--cpus"]),
    C("qs-cpus-superscript", SUSP + ["--cpus", "\u00b2"], 2, ["--cpus"]),
    C("qs-memory-arabic", ["qemu", "suspend", "--memory", "\u0666\u0664M", "--disk",
                           "new.img"], 2, ["--memory"]),
    C("qs-memory-twice", SUSP + ["--memory", "128M"], W),
    C("qs-memory-32M", ["qemu", "suspend", "--memory", "32M", "--disk", "new.img"], 2,
      ["--memory"]),
    C("qs-disk-dev-null", ["qemu", "suspend", "--memory", "64M", "--disk", "/dev/null"], 2,
      ["--disk", "/dev/null"]),
    C("qs-disk-dev-zero", ["qemu", "suspend", "--memory", "64M", "--disk", "/dev/zero"], 2,
      ["--disk", "/dev/zero"]),
    C("qs-disk-dev-full", ["qemu", "suspend", "--memory", "64M", "--disk", "/dev/full"], 2,
      ["--disk", "/dev/full"]),
    C("qs-disk-missing-folder", ["qemu", "suspend", "--memory", "64M", "--disk",
                                 "nodir/x.img"], 2, ["--disk"]),
    C("qs-disk-loop", ["qemu", "suspend", "--memory", "64M", "--disk", "loop"], 2,
      ["--disk", "loop"]),
    C("qs-disk-socket", ["qemu", "suspend", "--memory", "64M", "--disk", "sock"], 2,
      ["--disk", "sock"]),
    C("qs-disk-a-toml", ["qemu", "suspend", "--memory", "64M", "--disk", "t.toml"], 2,
      ["--disk", "t.toml"]),
    C("qs-disk-too-small", ["qemu", "suspend", "--memory", "64M", "--disk", "zeros"], 2,
      ["--disk", "zeros"]),
    C("qs-disk-read-only", ["qemu", "suspend", "--memory", "64M", "--disk", "ro.img"], 2,
      ["--disk", "ro.img", "read-only"], setup="rodisk"),
    C("qs-disk-empty-name", ["qemu", "suspend", "--memory", "64M", "--disk", ""], 2,
      ["--disk"]),
    C("qs-disk-leading-dash", ["qemu", "suspend", "--memory", "64M", "--disk", "-x.img"], 2,
      ["--disk"]),
    C("qs-disk-newline-name", ["qemu", "suspend", "--memory", "64M", "--disk", "n\nl.img"],
      W),
    C("qs-ram-dump-dev-full", SUSP + ["--ram-dump", "/dev/full"], 2, ["--ram-dump"]),
    C("qs-ram-dump-is-disk", SUSP + ["--ram-dump", "new.img"], 2, ["--ram-dump"]),
    C("qs-ram-dump-is-key", SUSP + ["--ram-dump", "k.key", "--encrypt-key", "k.key"], 2,
      ["--ram-dump", "--encrypt-key"]),
    C("qs-screenshot-is-dump", SUSP + ["--ram-dump", "s.png", "--screenshot", "s.png"], 2,
      ["--screenshot"]),
    C("qs-screenshot-hard-link-of-target", SUSP + ["--target", "t.toml", "--screenshot",
                                                   "hl.toml"], 2, ["--screenshot"]),
    C("qs-target-garbage", SUSP + ["--target", "garbage"], 2, ["garbage"]),
    C("qs-target-bool", SUSP + ["--target", "booltype.toml"], 2, ["port"]),
    C("qs-inject-empty-lba", SUSP + ["--inject", "write-error:"], 2, ["--inject"]),
    C("qs-inject-read-error", SUSP + ["--inject", "read-error:5"], 2, ["--inject"]),
    C("qs-inject-arabic", SUSP + ["--inject", "write-error:\u0665"], 2, ["--inject"]),
    C("qs-selftest-bad", SUSP + ["--selftest", "nope"], 2, ["--selftest"]),
    C("qs-framebuffer-superscript", SUSP + ["--framebuffer", "\u00b200x600x32"], 2,
      ["--framebuffer"]),
    C("qs-framebuffer-tiny", SUSP + ["--framebuffer", "1x1x32"], 2, ["--framebuffer"]),
    C("qs-disk-bus-bad", SUSP + ["--disk-bus", "ide"], 2, ["--disk-bus"]),
    C("qs-sector-size-arabic", SUSP + ["--sector-size", "\u0665\u0661\u0662"], 2,
      ["--sector-size"]),
    C("qs-encrypt-key-fifo", SUSP + ["--encrypt-key", "fifo"], 2, ["--encrypt-key"]),
    C("qs-encrypt-key-empty", SUSP + ["--encrypt-key", "empty"], 2, ["--encrypt-key"]),
    C("qs-plugin-unsigned", SUSP + ["--plugin", "plain.sop", "--trust", "trust"], 2,
      ["plain.sop"]),
    C("qs-wrong-option-lba", SUSP + ["--lba", "5"], 2, ["--lba"]),
    C("qs-wrong-option-key", SUSP + ["--key", "k.key"], 2, ["--key"]),
    C("qs-ap-deaf-arabic", SUSP + ["--cpus", "3", "--ap-deaf", "\u0662"], 2, ["--ap-deaf"]),
    # -- qemu resume -----------------------------------------------------------------------
    C("qr-good", RES + ["--disk", "zeros1m"], W),
    C("qr-missing", RES + ["--disk", "missing.img"], 2, ["--disk", "missing.img"]),
    C("qr-folder", RES + ["--disk", "dir"], 2, ["--disk"]),
    C("qr-dev-null", RES + ["--disk", "/dev/null"], 2, ["--disk", "/dev/null"]),
    C("qr-loop", RES + ["--disk", "loop"], 2, ["--disk", "loop"]),
    C("qr-dangling", RES + ["--disk", "dangling"], 2, ["--disk", "dangling"]),
    C("qr-socket", RES + ["--disk", "sock"], 2, ["--disk", "sock"]),
    C("qr-not-sectors", RES + ["--disk", "t.toml"], 2, ["--disk", "sectors"]),
    C("qr-key-empty", RES + ["--disk", "zeros1m", "--key", "empty"], 2, ["--key"]),
    C("qr-key-folder", RES + ["--disk", "zeros1m", "--key", "dir"], 2, ["--key"]),
    C("qr-ram-dump-is-disk", RES + ["--disk", "zeros1m", "--ram-dump", "zeros1m"], 2,
      ["--ram-dump"]),
    C("qr-ram-dump-dev-full", RES + ["--disk", "zeros1m", "--ram-dump", "/dev/full"], 2,
      ["--ram-dump"]),
    C("qr-ram-dump-is-key", RES + ["--disk", "zeros1m", "--key", "k.key", "--ram-dump",
                                   "k.key"], 2, ["--ram-dump", "--key"]),
    C("qr-inject-bad", RES + ["--disk", "zeros1m", "--inject", "read-error:x"], 2,
      ["--inject"]),
    C("qr-inject-write", RES + ["--disk", "zeros1m", "--inject", "write-error:5"], 2,
      ["--inject"]),
    C("qr-cpus-zero", RES + ["--disk", "zeros1m", "--cpus", "0"], 2, ["--cpus"]),
    C("qr-cpus-arabic", RES + ["--disk", "zeros1m", "--cpus", "\u0661"], 2, ["--cpus"]),
    C("qr-memory-fraction", ["qemu", "resume", "--memory", "0.5G", "--disk", "zeros1m"], 2,
      ["--memory"]),
    C("qr-wrong-option-seed", RES + ["--disk", "zeros1m", "--seed", "1"], 2, ["--seed"]),
    C("qr-sector-size-4096-ahci", RES + ["--disk", "zeros1m", "--sector-size", "4096"], 2,
      ["--sector-size"]),
    # -- qemu kexec-jump and qemu linux ----------------------------------------------------
    C("qk-good", ["qemu", "kexec-jump", "--memory", "256M"], W),
    C("qk-memory-fraction", ["qemu", "kexec-jump", "--memory", "1.5G"], 2, ["--memory"]),
    C("qk-memory-empty", ["qemu", "kexec-jump", "--memory", ""], 2, ["--memory"]),
    C("qk-memory-arabic", ["qemu", "kexec-jump", "--memory", "\u0662\u0665\u0666M"], 2,
      ["--memory"]),
    C("qk-compress-bad", ["qemu", "kexec-jump", "--compress", "zstd"], 2, ["--compress"]),
    C("qk-flag-with-value", ["qemu", "kexec-jump", "--inject-write-error=1"], 2,
      ["--inject-write-error"]),
    C("qk-wrong-option", ["qemu", "kexec-jump", "--disk", "x.img"], 2, ["--disk"]),
    C("ql-good", ["qemu", "linux", "--memory", "1G"], W),
    C("ql-memory-arabic", ["qemu", "linux", "--memory", "\u0661G"], 2, ["--memory"]),
    C("ql-cpus-arabic", ["qemu", "linux", "--cpus", "\u0662"], 2, ["--cpus"]),
    C("ql-dirty-free-superscript", ["qemu", "linux", "--dirty-free", "\u00b2%"], 2,
      ["--dirty-free"]),
    C("ql-dirty-free-arabic", ["qemu", "linux", "--dirty-free", "\u0664\u0660%"], 2,
      ["--dirty-free"]),
    C("ql-dirty-free-100", ["qemu", "linux", "--dirty-free", "100%"], 2, ["--dirty-free"]),
    C("ql-dirty-free-fraction", ["qemu", "linux", "--dirty-free", "40.5%"], 2,
      ["--dirty-free"]),
    C("ql-dirty-free-empty", ["qemu", "linux", "--dirty-free", ""], 2, ["--dirty-free"]),
    C("ql-workdir-fifo", ["qemu", "linux", "--workdir", "fifo"], 2, ["--workdir"]),
    C("ql-workdir-dev-null", ["qemu", "linux", "--workdir", "/dev/null"], 2, ["--workdir"]),
    C("ql-workdir-loop", ["qemu", "linux", "--workdir", "loop"], 2, ["--workdir"]),
    C("ql-workdir-socket", ["qemu", "linux", "--workdir", "sock"], 2, ["--workdir"]),
    C("ql-wrong-option", ["qemu", "linux", "--disk", "x.img"], 2, ["--disk"]),
    # -- image info / verify / extract -----------------------------------------------------
    C("ii-empty", ["image", "info", "empty"], 2, ["empty"]),
    C("ii-garbage", ["image", "info", "garbage"], 2, ["garbage"]),
    C("ii-zeros", ["image", "info", "zeros"], 2, ["no image"]),
    C("ii-truncated-header", ["image", "info", "img-trunc", "--lba", "0"], 2, ["truncated"]),
    C("ii-bad-checksum", ["image", "info", "img-badsum", "--lba", "0"], 2, ["checksum"]),
    C("ii-version-2", ["image", "info", "img-v2", "--lba", "0"], 2, ["version"]),
    C("ii-chunk-pages-0", ["image", "info", "img-nochunk", "--lba", "0"], 2, ["chunk"]),
    C("ii-huge-tables", ["image", "info", "img-ranges", "--lba", "0"], 2, ["image"]),
    C("ii-unknown-encryption", ["image", "info", "img-enc", "--lba", "0"], 2),
    C("ii-block-size-1000", ["image", "info", "img-bs", "--lba", "0"], 2, ["block size"]),
    C("ii-dev-null", ["image", "info", "/dev/null"], 2, ["/dev/null"]),
    C("ii-dev-full", ["image", "info", "/dev/full"], 2, ["/dev/full"]),
    C("ii-socket", ["image", "info", "sock"], 2, ["sock"]),
    C("ii-loop", ["image", "info", "loop"], 2, ["loop"]),
    C("ii-lba-arabic", ["image", "info", "zeros", "--lba", "\u0661"], 2, ["--lba"]),
    C("ii-lba-newline", ["image", "info", "zeros", "--lba", "1\n"], 2, ["--lba"]),
    C("ii-lba-2p48", ["image", "info", "zeros", "--lba", str(2 ** 48)], 2, ["--lba"]),
    C("ii-lba-past-end", ["image", "info", "zeros", "--lba", "1000"], 2, ["LBA 1000"]),
    C("ii-key-empty", ["image", "info", "zeros", "--key", "empty"], 2, ["--key"]),
    C("ii-key-signing-key", ["image", "info", "zeros", "--key", "sk"], 2, ["--key"]),
    C("ii-two-disks", ["image", "info", "zeros", "zeros"], 2),
    C("ii-wrong-option", ["image", "info", "zeros", "--ram", "zeros"], 2, ["--ram"]),
    C("iv-garbage", ["image", "verify", "garbage"], 2, ["no image"]),
    C("iv-bad-checksum", ["image", "verify", "img-badsum", "--lba", "0"], 2, ["checksum"]),
    C("iv-ram-dev-zero", ["image", "verify", "zeros", "--ram", "/dev/zero"], 2),
    C("iv-ram-socket", ["image", "verify", "zeros", "--ram", "sock"], 2),
    C("iv-json", ["image", "verify", "zeros", "--json"], 2),
    C("ie-no-output", ["image", "extract", "zeros"], 2, ["-o"]),
    C("ie-garbage", ["image", "extract", "garbage", "-o", "out"], 2, ["no image"]),
    C("ie-output-dev-full", ["image", "extract", "zeros", "-o", "/dev/full"], 2, ["-o"]),
    C("ie-elf-symlink-to-disk", ["image", "extract", "t.toml", "--elf", "sl.toml"], 2,
      ["--elf"]),
    C("ie-output-equals-elf-hardlink", ["image", "extract", "zeros", "-o", "t.toml", "--elf",
                                        "hl.toml"], 2, ["--elf", "-o"]),
    C("ie-header-damaged", ["image", "extract", "img-v2", "--lba", "0", "-o", "out"], 2,
      ["version"]),
    # -- image discard (regular files only here) -------------------------------------------
    C("id-plain-swap", ["image", "discard", "swap.plain"], 0),
    C("id-image", ["image", "discard", "swap.sos"], 0, writes=["swap.sos"]),
    C("id-read-only", ["image", "discard", "swap.ro"], 2, ["swap.ro", "read-only"]),
    C("id-short", ["image", "discard", "swap.short"], 2, ["swap.short"]),
    C("id-zeros", ["image", "discard", "zeros"], 2, ["zeros"]),
    C("id-empty", ["image", "discard", "empty"], 2, ["empty"]),
    C("id-dev-null", ["image", "discard", "/dev/null"], 2, ["/dev/null"]),
    C("id-dev-zero", ["image", "discard", "/dev/zero"], 2, ["/dev/zero"]),
    C("id-dev-full", ["image", "discard", "/dev/full"], 2, ["/dev/full"]),
    C("id-fifo", ["image", "discard", "fifo"], 2, ["fifo"]),
    C("id-folder", ["image", "discard", "dir"], 2, ["dir"]),
    C("id-loop", ["image", "discard", "loop"], 2, ["loop"]),
    C("id-offset-past-end", ["image", "discard", "swap.sos", "--offset", "8192"], 2,
      ["--offset"]),
    C("id-offset-unaligned", ["image", "discard", "swap.sos", "--offset", "1"], 2,
      ["offset 1"]),
    C("id-offset-arabic", ["image", "discard", "swap.sos", "--offset", "\u0660"], 2,
      ["--offset"]),
    C("id-offset-2p64", ["image", "discard", "swap.sos", "--offset", str(2 ** 64)], 2,
      ["--offset"]),
    C("id-wrong-option", ["image", "discard", "swap.sos", "--lba", "0"], 2, ["--lba"]),
    C("id-two-areas", ["image", "discard", "swap.sos", "swap.plain"], 2),
    C("id-newline-name", ["image", "discard", NL], 2),
    # -- hibernate (always --dry-run, on a synthetic sysroot) ------------------------------
    C("h-good", HIB + ["--swap", "/dev/sda1"], 0, setup="root"),
    C("h-good-json", HIB + ["--swap", "/dev/sda1", "--json"], 0, setup="root"),
    C("h-sysroot-missing", ["hibernate", "--dry-run", "--sysroot", "noroot", "--swap",
                            "/dev/sda1"], 2, ["noroot"]),
    C("h-sysroot-file", ["hibernate", "--dry-run", "--sysroot", "t.toml", "--swap",
                         "/dev/sda1"], 2, ["t.toml"]),
    C("h-swap-missing", HIB + ["--swap", "/dev/sda9"], 2, ["/dev/sda9"], setup="root"),
    C("h-swap-empty", HIB + ["--swap", ""], 2, ["--swap"], setup="root"),
    C("h-serial-arabic", HIB + ["--swap", "/dev/sda1", "--serial", "\u0661"], 2,
      ["--serial"], setup="root"),
    C("h-serial-negative", HIB + ["--swap", "/dev/sda1", "--serial=-1"], 2, ["--serial"],
      setup="root"),
    C("h-serial-hex", HIB + ["--swap", "/dev/sda1", "--serial", "0x3f8"], 0, setup="root"),
    C("h-compress-upper", HIB + ["--swap", "/dev/sda1", "--compress", "LZ4"], 2,
      ["--compress"], setup="root"),
    C("h-bad-meminfo", HIB + ["--swap", "/dev/sda1"], 2, ["meminfo"],
      setup="root-badmeminfo"),
    C("h-bad-swaps", HIB + ["--swap", "/dev/sda1"], 2, ["swaps"], setup="root-badswaps"),
    C("h-binary-iomem", HIB + ["--swap", "/dev/sda1"], 2, ["iomem"],
      setup="root-binaryiomem"),
    C("h-wrong-option", HIB + ["--memory", "64M"], 2, ["--memory"], setup="root"),
    C("h-positional", HIB + ["now"], 2, ["now"], setup="root"),
    # -- install-resume (refusals only; --boot-dir in the case's folder) -------------------
    C("ir-good", INS + ["--swap", "/dev/sda1"], W, setup="root"),
    C("ir-sysroot-missing", ["install-resume", "--sysroot", "noroot", "--boot-dir", "dir",
                             "--swap", "/dev/sda1"], 2, ["noroot"]),
    C("ir-swap-missing", INS + ["--swap", "/dev/sda9"], 2, ["/dev/sda9"], setup="root"),
    C("ir-boot-dir-missing", ["install-resume", "--sysroot", "root", "--boot-dir", "noboot",
                              "--swap", "/dev/sda1"], 2, ["--boot-dir"], setup="root"),
    C("ir-boot-dir-file", ["install-resume", "--sysroot", "root", "--boot-dir", "t.toml",
                           "--swap", "/dev/sda1"], 2, ["--boot-dir"], setup="root"),
    C("ir-boot-dir-fifo", ["install-resume", "--sysroot", "root", "--boot-dir", "fifo",
                           "--swap", "/dev/sda1"], 2, ["--boot-dir"], setup="root"),
    C("ir-flag-with-value", INS + ["--swap", "/dev/sda1", "--no-grub=yes"], 2, ["--no-grub"],
      setup="root"),
    C("ir-wrong-option", INS + ["--swap", "/dev/sda1", "--dry-run"], 2, ["--dry-run"],
      setup="root"),
    C("ir-firmware-bad", INS + ["--swap", "/dev/sda1", "--firmware", "efi"], 2,
      ["--firmware"], setup="root"),
    C("ir-firmware-uefi-on-bios", INS + ["--swap", "/dev/sda1", "--firmware", "uefi"], 2,
      ["--firmware uefi"], setup="root"),
    C("ir-uefi-no-esp", INS + ["--swap", "/dev/sda1"], 2, ["EFI System Partition"],
      setup="root-uefi"),
    C("ir-firmware-bios-on-uefi", INS + ["--swap", "/dev/sda1", "--firmware", "bios"], W,
      setup="root-uefi"),
    # -- uninstall-resume (nothing installed in the sysroot) -------------------------------
    C("uir-nothing", UNI, 0, setup="root"),
    C("uir-sysroot-missing", ["uninstall-resume", "--sysroot", "noroot"], 2, ["noroot"]),
    C("uir-uefi-no-efivarfs", UNI, 2, ["efivarfs"], setup="root-uefi"),
    C("uir-wrong-option", UNI + ["--swap", "/dev/sda1"], 2, ["--swap"], setup="root"),
    C("uir-positional", UNI + ["now"], 2, ["now"], setup="root"),
    # -- demo (its runs replaced by a stub) ------------------------------------------------
    C("demo-good", ["demo", "--memory", "64M"], W),
    C("demo-help", ["demo", "--help"], 0),
    C("demo-seed-negative", ["demo", "--seed=-1"], 2, ["--seed"]),
    C("demo-seed-2p64", ["demo", "--seed", str(2 ** 64)], 2, ["--seed"]),
    C("demo-seed-arabic", ["demo", "--seed", "\u0661"], 2, ["--seed"]),
    C("demo-compress-bad", ["demo", "--compress", "zstd"], 2, ["--compress"]),
    C("demo-keep-file", ["demo", "--memory", "64M", "--keep", "t.toml"], 2, ["--keep"]),
    C("demo-keep-dev-null", ["demo", "--memory", "64M", "--keep", "/dev/null"], 2,
      ["--keep"]),
    C("demo-keep-loop", ["demo", "--memory", "64M", "--keep", "loop"], 2, ["--keep"]),
    C("demo-keep-holds-users-files", ["demo", "--memory", "64M", "--keep", "keepdir"], 2,
      ["--keep", "disk.img"]),
    C("demo-memory-twice", ["demo", "--memory", "64M", "--memory", "1T"], 2, ["--memory"]),
    C("demo-positional", ["demo", "now"], 2, ["now"]),
    # -- bench compress (refused before the driver is compiled) ----------------------------
    C("bc-good", ["bench", "compress", "--size", "4096"], W),
    C("bc-help", ["bench", "compress", "--help"], 0),
    C("bc-chunk-4095", ["bench", "compress", "--chunk", "4095"], 2, ["--chunk"]),
    C("bc-chunk-arabic", ["bench", "compress", "--chunk", "\u0664\u0660\u0669\u0666"], 2,
      ["--chunk"]),
    C("bc-reps-0", ["bench", "compress", "--reps", "0"], 2, ["--reps"]),
    C("bc-reps-1001", ["bench", "compress", "--reps", "1001"], 2, ["--reps"]),
    C("bc-seed-superscript", ["bench", "compress", "--seed", "\u00b2"], 2, ["--seed"]),
    C("bc-size-0x1000", ["bench", "compress", "--make-corpus", "c2.bin", "--size", "0x1000"],
      0, writes=["c2.bin"]),
    C("bc-only-zero", ["bench", "compress", "--make-corpus", "c2.bin", "--size", "4096",
                       "--only", "zero"], 0, writes=["c2.bin"]),
    C("bc-only-bad", ["bench", "compress", "--only", "ones"], 2, ["--only"]),
    C("bc-corpus-is-output", ["bench", "compress", "--corpus", "c.bin", "--make-corpus",
                              "c.bin", "--size", "4096"], 2, ["--make-corpus", "--corpus"],
      setup="corpus"),
    C("bc-make-corpus-empty", ["bench", "compress", "--make-corpus", "", "--size", "4096"], 2,
      ["--make-corpus"]),
    C("bc-make-corpus-dev-full", ["bench", "compress", "--make-corpus", "/dev/full",
                                  "--size", "4096"], 2, ["--make-corpus"]),
    C("bc-corpus-empty-name", ["bench", "compress", "--corpus", ""], 2, ["--corpus"]),
    C("bc-corpus-loop", ["bench", "compress", "--corpus", "loop"], 2, ["--corpus"]),
    C("bc-corpus-socket", ["bench", "compress", "--corpus", "sock"], 2, ["--corpus"]),
    C("bc-corpus-dangling", ["bench", "compress", "--corpus", "dangling"], 2, ["--corpus"]),
    C("bc-path-upper", ["bench", "compress", "--path", "AVX2"], 2, ["--path"]),
    C("bc-positional", ["bench", "compress", "extra"], 2, ["extra"]),
    C("bc-size-unaligned-hex", ["bench", "compress", "--size", "0x1001"], 2, ["--size"]),
    # -- plugin keygen / new / build -------------------------------------------------------
    C("pk-good", ["plugin", "keygen", "-o", "new"], 0, writes=["new", "new.pub"]),
    C("pk-existing-key", ["plugin", "keygen", "-o", "sk"], 2, ["sk"]),
    C("pk-existing-pub-only", ["plugin", "keygen", "-o", "text"], 2, ["text.pub"]),
    C("pk-empty", ["plugin", "keygen", "-o", ""], 2, ["-o"]),
    C("pk-loop", ["plugin", "keygen", "-o", "loop"], 2, ["loop"]),
    C("pk-dev-full", ["plugin", "keygen", "-o", "/dev/full"], 2, ["/dev/full"]),
    C("pk-output-via-dotdot-folder", ["plugin", "keygen", "-o", "trust/../dir"], 2, ["dir"]),
    C("pn-good", ["plugin", "new", "myplug"], 0, writes=["myplug"]),
    C("pn-empty", ["plugin", "new", ""], 2, ["name"]),
    C("pn-slash", ["plugin", "new", "../evil"], 2, ["evil"]),
    C("pn-space", ["plugin", "new", "a b"], 2, ["a b"]),
    C("pn-newline", ["plugin", "new", "abc\n"], 2, ["abc"]),
    C("pn-unicode", ["plugin", "new", "\u00e9t\u00e9"], 2),
    C("pn-exists", ["plugin", "new", "dir"], 2, ["dir"]),
    C("pn-dir-missing", ["plugin", "new", "x", "--dir", "nodir"], 2, ["--dir"]),
    C("pn-dir-fifo", ["plugin", "new", "x", "--dir", "fifo"], 2, ["--dir"]),
    C("pn-dir-loop", ["plugin", "new", "x", "--dir", "loop"], 2, ["--dir"]),
    C("pb-missing", ["plugin", "build", "nofolder"], 2, ["nofolder"]),
    C("pb-file", ["plugin", "build", "t.toml"], 2, ["t.toml"]),
    C("pb-empty-folder", ["plugin", "build", "dir"], 2, ["dir"]),
    C("pb-fifo", ["plugin", "build", "fifo"], 2, ["fifo"]),
    C("pb-loop", ["plugin", "build", "loop"], 2, ["loop"]),
    # -- plugin pack -----------------------------------------------------------------------
    C("pp-good", PACK + ["-o", "o.sop"], 0, writes=["o.sop"]),
    C("pp-bmp", ["plugin", "pack", "--splash", "pic.bmp", "-o", "o.sop"], 0, writes=["o.sop"]),
    C("pp-one-pixel", ["plugin", "pack", "--splash", "one.png", "-o", "o.sop"], 0,
      writes=["o.sop"]),
    C("pp-garbage", ["plugin", "pack", "--splash", "garbage", "-o", "o.sop"], 2,
      ["--splash"]),
    C("pp-empty", ["plugin", "pack", "--splash", "empty", "-o", "o.sop"], 2, ["--splash"]),
    C("pp-truncated-png", ["plugin", "pack", "--splash", "trunc.png", "-o", "o.sop"], 2,
      ["--splash"]),
    C("pp-fake-gif", ["plugin", "pack", "--splash", "fake.png", "-o", "o.sop"], 2,
      ["--splash"]),
    C("pp-a-toml", ["plugin", "pack", "--splash", "t.toml", "-o", "o.sop"], 2, ["--splash"]),
    C("pp-splash-fifo", ["plugin", "pack", "--splash", "fifo", "-o", "o.sop"], 2,
      ["--splash"]),
    C("pp-splash-socket", ["plugin", "pack", "--splash", "sock", "-o", "o.sop"], 2,
      ["--splash"]),
    C("pp-splash-is-output", PACK + ["-o", "logo.png"], 2, ["-o", "--splash"]),
    C("pp-splash-symlink-is-output", ["plugin", "pack", "--splash", "sl.png", "-o",
                                      "logo.png"], 2, ["-o", "--splash"]),
    C("pp-bar-color-name", PACK + ["--bar-color", "red", "-o", "o.sop"], 2, ["--bar-color"]),
    C("pp-bar-color-short", PACK + ["--bar-color", "fff", "-o", "o.sop"], 2, ["--bar-color"]),
    C("pp-bar-color-newline", PACK + ["--bar-color", "ffffff\n", "-o", "o.sop"], 2,
      ["--bar-color"]),
    C("pp-bar-color-fullwidth", PACK + ["--bar-color", "\uff11\uff12\uff13\uff14\uff15\uff16",
                                        "-o", "o.sop"], 2, ["--bar-color"]),
    C("pp-background-empty", PACK + ["--background", "", "-o", "o.sop"], 2,
      ["--background"]),
    C("pp-name-slash", PACK + ["--name", "a/b", "-o", "o.sop"], 2, ["--name"]),
    C("pp-name-empty", PACK + ["--name", "", "-o", "o.sop"], 2, ["--name"]),
    C("pp-name-newline", PACK + ["--name", "abc\n", "-o", "o.sop"], 2, ["--name"]),
    C("pp-name-escape", PACK + ["--name", "\x1b[2J", "-o", "o.sop"], 2, ["--name"]),
    C("pp-name-from-bad-output", PACK + ["-o", "Bad Name!.sop"], 2, ["--name"]),
    C("pp-key-empty", PACK + ["--key", "empty", "-o", "o.sop"], 2, ["--key"]),
    C("pp-key-encryption-key", PACK + ["--key", "k.key", "-o", "o.sop"], 2, ["--key"]),
    C("pp-key-public", PACK + ["--key", "sk.pub", "-o", "o.sop"], 2, ["--key"]),
    C("pp-key-fifo", PACK + ["--key", "fifo", "-o", "o.sop"], 2, ["--key"]),
    C("pp-key-is-output", PACK + ["--key", "sk", "-o", "sk"], 2, ["-o", "--key"]),
    C("pp-folder-and-splash", ["plugin", "pack", "dir", "--splash", "logo.png", "-o",
                               "o.sop"], 2, ["--splash"]),
    C("pp-no-output", PACK, 2, ["-o"]),
    C("pp-nothing", ["plugin", "pack", "-o", "o.sop"], 2, ["--splash"]),
    C("pp-folder-missing", ["plugin", "pack", "nofolder", "-o", "o.sop"], 2, ["nofolder"]),
    # -- plugin sign / verify / info / preview ---------------------------------------------
    C("ps-in-place", ["plugin", "sign", "plain.sop", "--key", "sk"], 0, writes=["plain.sop"]),
    C("ps-to-new", ["plugin", "sign", "plain.sop", "--key", "sk", "-o", "o.sop"], 0,
      writes=["o.sop"]),
    C("ps-read-only-in-place", ["plugin", "sign", "ro.sop", "--key", "sk"], 2, ["ro.sop"]),
    C("ps-garbage", ["plugin", "sign", "garbage", "--key", "sk", "-o", "o.sop"], 2,
      ["garbage"]),
    C("ps-truncated", ["plugin", "sign", "trunc.sop", "--key", "sk", "-o", "o.sop"], 2,
      ["trunc.sop"]),
    C("ps-trailing-junk", ["plugin", "sign", "long.sop", "--key", "sk", "-o", "o.sop"], 2,
      ["long.sop"]),
    C("ps-key-encryption-key", ["plugin", "sign", "theme.sop", "--key", "k.key", "-o",
                                "o.sop"], 2, ["--key"]),
    C("ps-key-public", ["plugin", "sign", "theme.sop", "--key", "sk.pub", "-o", "o.sop"], 2,
      ["--key"]),
    C("ps-key-missing", ["plugin", "sign", "theme.sop", "--key", "nokey", "-o", "o.sop"], 2,
      ["--key"]),
    C("ps-key-loop", ["plugin", "sign", "theme.sop", "--key", "loop", "-o", "o.sop"], 2,
      ["--key"]),
    C("ps-output-dev-full", ["plugin", "sign", "theme.sop", "--key", "sk", "-o",
                             "/dev/full"], 2, ["-o"]),
    C("ps-output-is-key", ["plugin", "sign", "theme.sop", "--key", "sk", "-o",
                                    "sk"], 2, ["-o", "--key"]),
    C("pv-good", ["plugin", "verify", "theme.sop", "--trust", "trust"], 0),
    C("pv-unsigned", ["plugin", "verify", "plain.sop", "--trust", "trust"], 2, ["plain.sop"]),
    C("pv-bad-signature", ["plugin", "verify", "badsig.sop", "--trust", "trust"], 2,
      ["signature"]),
    C("pv-trust-missing", ["plugin", "verify", "theme.sop", "--trust", "notrust"], 2,
      ["notrust"]),
    C("pv-trust-file", ["plugin", "verify", "theme.sop", "--trust", "t.toml"], 2,
      ["--trust"]),
    C("pv-trust-empty", ["plugin", "verify", "theme.sop", "--trust", "dir"], 2, ["dir"]),
    C("pv-trust-garbage-key", ["plugin", "verify", "theme.sop", "--trust", "badtrust"], 2,
      ["x.pub"]),
    C("pv-trust-fifo-key", ["plugin", "verify", "theme.sop", "--trust", "fifotrust"], 2,
      ["x.pub"], setup="fifotrust"),
    C("pv-garbage", ["plugin", "verify", "garbage", "--trust", "trust"], 2, ["garbage"]),
    C("pv-magic-only", ["plugin", "verify", "magic.sop", "--trust", "trust"], 2,
      ["magic.sop"]),
    C("pv-half", ["plugin", "verify", "half.sop", "--trust", "trust"], 2, ["half.sop"]),
    C("pi-good", ["plugin", "info", "theme.sop"], 0),
    C("pi-unsigned", ["plugin", "info", "plain.sop"], 0),
    C("pi-empty", ["plugin", "info", "empty"], 2, ["empty"]),
    C("pi-truncated", ["plugin", "info", "trunc.sop"], 2, ["trunc.sop"]),
    C("pi-trailing-junk", ["plugin", "info", "long.sop"], 2, ["long.sop"]),
    C("pi-a-blob", ["plugin", "info", "p.blob"], 2, ["p.blob"]),
    C("pi-socket", ["plugin", "info", "sock"], 2, ["sock"]),
    C("pi-dev-null", ["plugin", "info", "/dev/null"], 2, ["/dev/null"]),
    C("pi-escape-name", ["plugin", "info", "escname.sop"], 2, ["escname.sop"],
      setup="escpackage"),
    C("pw-good", ["plugin", "preview", "theme.sop", "-o", "o.png"], 0, writes=["o.png"]),
    C("pw-percent-fullwidth", ["plugin", "preview", "theme.sop", "--percent", "\uff15\uff10",
                               "-o", "o.png"], 2, ["--percent"]),
    C("pw-percent-hex", ["plugin", "preview", "theme.sop", "--percent", "0x10", "-o",
                         "o.png"], 2, ["--percent"]),
    C("pw-framebuffer-none", ["plugin", "preview", "theme.sop", "--framebuffer", "none",
                              "-o", "o.png"], 2, ["--framebuffer"]),
    C("pw-framebuffer-empty", ["plugin", "preview", "theme.sop", "--framebuffer", "", "-o",
                               "o.png"], 2, ["--framebuffer"]),
    C("pw-framebuffer-superscript", ["plugin", "preview", "theme.sop", "--framebuffer",
                                     "800x\u00b200x32", "-o", "o.png"], 2, ["--framebuffer"]),
    C("pw-output-is-package", ["plugin", "preview", "theme.sop", "-o", "theme.sop"], 2,
      ["-o"]),
    C("pw-garbage", ["plugin", "preview", "garbage", "-o", "o.png"], 2, ["garbage"]),
    C("pw-output-dev-full", ["plugin", "preview", "theme.sop", "-o", "/dev/full"], 2, ["-o"]),
    # -- key new ---------------------------------------------------------------------------
    C("kn-good", ["key", "new", "-o", "new.key"], 0, writes=["new.key"]),
    C("kn-existing", ["key", "new", "-o", "k.key"], 2, ["k.key"]),
    C("kn-dangling", ["key", "new", "-o", "dangling"], 2, ["dangling"]),
    C("kn-empty", ["key", "new", "-o", ""], 2, ["-o"]),
    C("kn-loop", ["key", "new", "-o", "loop"], 2, ["loop"]),
    C("kn-dev-full", ["key", "new", "-o", "/dev/full"], 2, ["/dev/full"]),
    C("kn-missing-folder", ["key", "new", "-o", "nodir/k"], 2, ["nodir"]),
    C("kn-escape-name", ["key", "new", "-o", "\x1b[2Jk"], 0, writes=["\x1b[2Jk"]),
    C("kn-newline-name", ["key", "new", "-o", "k\nk"], 0, writes=["k\nk"]),
    C("kn-output-twice", ["key", "new", "-o", "a.key", "-o", "b.key"], 0, writes=["b.key"]),
    C("kn-positional", ["key", "new", "x.key"], 2, ["-o"]),
]


def _touch(p):
    p.touch()
    return p


def _escpackage(work):
    """A package whose name holds an ANSI escape (written by hand, not by `plugin pack`)."""
    data = bytearray((work / "plain.sop").read_bytes())
    at = data.find(b"plain")
    assert at > 0
    data[at:at + 5] = b"\x1b[2J\x07"
    (work / "escname.sop").write_bytes(bytes(data))


SETUPS.update({
    "fifotrust": lambda w: ((w / "fifotrust").mkdir(), os.mkfifo(w / "fifotrust" / "x.pub")),
    "escpackage": _escpackage,
    "rodisk": lambda w: (os.truncate(_touch(w / "ro.img"), 128 << 20),
                         (w / "ro.img").chmod(0o444)),
})


# ---- running a case ------------------------------------------------------------------------
class Started(BaseException):       # past main's catch-all for bugs
    """The work a refusal must come before (a build, a compile, a boot) was reached."""


@pytest.fixture
def stubs(monkeypatch, tmp_path):
    """Every expensive or system-changing step raises Started; the QEMU PCI probe answers
    from the table above."""
    def started(*a, **k):
        raise Started()
    from suspendos import bench_compress, demo
    from suspendos.build import payload, resume as build_resume
    from suspendos.linuxhost import hibernate, module
    from suspendos.linuxvm import debian, kexec_jump
    from suspendos.qemu import probe, resume, suspend
    monkeypatch.setattr(probe, "probe_pci", lambda *a, **k: PCI)
    for mod, name in ((suspend, "build_payload"), (payload, "build_payload"),
                      (resume, "build_resume_loader"), (build_resume, "build_resume_loader"),
                      (debian, "build_guest"), (bench_compress, "build_driver"),
                      (kexec_jump, "kexec_jump"), (demo, "suspendos"),
                      (hibernate, "cached_blob"), (module, "cached_module"),
                      (module, "load")):
        monkeypatch.setattr(mod, name, started)
    monkeypatch.setenv("SOS_CACHE_DIR", str(tmp_path / "cache"))


def snapshot(folder):
    """Every entry under `folder`: its type, mode, size and (regular files) content."""
    out = {}
    for dirpath, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            digest = (st.st_ino, st.st_mtime_ns)      # a rewrite or a replacement shows
            if stat.S_ISREG(st.st_mode) and st.st_size <= 1 << 16:
                with open(p, "rb") as f:
                    digest += (hashlib.sha256(f.read()).hexdigest(),)
            out[os.path.relpath(p, folder)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(
                st.st_mode), st.st_size if not stat.S_ISDIR(st.st_mode) else 0, digest)
    return out


def run_in_process(argv, capsys):
    from suspendos import cli
    capsys.readouterr()
    try:
        rc = cli.main(argv)
    except Started:
        rc = W
    except SystemExit as e:                 # --help, --version
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out = capsys.readouterr()
    return rc, out.out, out.err


CONTROL = {chr(c) for c in range(32) if chr(c) not in "\n\t"} | {"\x7f"}


def check_output_streams(out, err, rc, words):
    for stream in (out, err):
        assert "Traceback" not in stream and "internal error" not in stream, stream
        raw = sorted(CONTROL & set(stream))
        assert not raw, f"raw control characters {raw!r} printed: {stream!r}"
    lines = [l for l in err.splitlines() if not l.startswith("suspendos: warning:")]
    if rc == 2:
        assert len(lines) == 1, err
        assert lines[0].startswith("suspendos") and "error" in lines[0], err
    elif rc in (0, W):
        assert not lines, err
    for w in words:
        assert w in err, (w, err)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_probe(case, kit, tmp_path, stubs, monkeypatch, capsys):
    work = tmp_path / "w"
    populate(kit, work)
    if case.setup:
        SETUPS[case.setup](work)
    monkeypatch.chdir(work)
    before = snapshot(work)
    rc, out, err = run_in_process(case.argv, capsys)
    assert rc == case.rc, (rc, out, err)
    check_output_streams(out, err, rc, case.words)
    after = snapshot(work)
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    allowed = {p for p in changed if any(p == w or p.startswith(w + os.sep)
                                         for w in case.writes)}
    assert changed == allowed, f"changed: {sorted(changed - allowed)}"


def test_the_table_has_unique_ids():
    ids = [c.id for c in CASES] + [c[0] for c in SUBPROCESS_CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 200


# ---- cases that need their own process: closed descriptors, bytes on the command line ------
def _sh(script, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cli = f"{sys.executable} -m suspendos.cli"
    return subprocess.run(["sh", "-c", script.replace("SOS", cli)], cwd=cwd, env=env,
                          capture_output=True, timeout=300)


SUBPROCESS_CASES = [
    # (id, shell script, exit status, words in stderr, files it writes)
    ("sub-check-stdout-closed", "SOS target check t.toml >&-", 0, [], []),
    ("sub-info-stdout-closed", "SOS plugin info theme.sop >&-", 0, [], []),
    ("sub-refusal-stdout-closed", "SOS image info garbage >&-", 2, ["no image"], []),
    ("sub-refusal-stderr-closed", "SOS image info garbage 2>&-", 2, [], []),
    ("sub-key-stdout-closed", "SOS key new -o new.key >&-", 0, [], ["new.key"]),
    ("sub-key-stdin-closed", "SOS key new -o new.key <&-", 0, [], ["new.key"]),
    ("sub-pack-stdout-closed", "SOS plugin pack --splash logo.png -o o.sop >&-", 0, [],
     ["o.sop"]),
    ("sub-splash-from-stdin-file", "SOS plugin pack --splash /dev/stdin -o o.sop < logo.png",
     0, [], ["o.sop"]),
    ("sub-splash-from-closed-stdin", "SOS plugin pack --splash /dev/stdin -o o.sop <&-", 2,
     ["--splash"], []),
    ("sub-splash-from-pipe", "cat logo.png | SOS plugin pack --splash /dev/stdin -o o.sop",
     2, ["--splash"], []),
    ("sub-extract-to-a-pipe", "SOS image extract zeros --elf /dev/stdout", 2,
     ["--elf"], []),
    ("sub-key-to-stdout-file", "SOS key new -o /dev/stdout > out.txt", 2, ["/dev/stdout"],
     ["out.txt"]),
    ("sub-raw-name-key", "SOS key new -o \"$(printf 'k\\377')\"", 0, [], ["k\udcff"]),
    ("sub-raw-name-corpus", "SOS bench compress --size 4096 --make-corpus \"$(printf 'c\\377')\"",
     0, [], ["c\udcff"]),
    # target check builds a payload, which the in-process table stubs (W): here it runs, and
    # prints names that are not UTF-8 or hold an escape (the file's, and one inside it)
    ("sub-check-prints-odd-names", "SOS target check \"$(printf '\\033[31mred.toml')\" && "
     "SOS target check \"$(printf '\\377\\376.toml')\" && SOS target check esc.toml", 0, [],
     []),
    ("sub-raw-name-refusal", "SOS target check \"$(printf 'no\\377such')\"", 2, ["no"], []),
    ("sub-raw-name-plugin-new", "SOS plugin new \"$(printf 'p\\377')\"", 2, [], []),
    ("sub-inspect-json-stdout-closed", "SOS inspect --json p.blob >&-", 0, [], []),
    # help and --version had argparse write them to stderr when stdout is closed
    ("sub-help-stdout-closed", "SOS --help >&-", 0, [], []),
    ("sub-version-stdout-closed", "SOS --version >&-", 0, [], []),
    ("sub-build-resume-help-stdout-closed", "SOS build-resume --help >&-", 0, [], []),
    ("sub-install-resume-help-stdout-closed", "SOS install-resume --help >&-", 0, [], []),
    ("sub-qemu-linux-help-stdout-closed", "SOS qemu linux --help >&-", 0, [], []),
    ("sub-help-to-a-closed-pipe", "SOS build-resume --help | head -c1", 0, [], []),
]


@pytest.mark.parametrize("ident, script, rc, words, writes", SUBPROCESS_CASES,
                         ids=[c[0] for c in SUBPROCESS_CASES])
def test_probe_process(ident, script, rc, words, writes, kit, tmp_path):
    work = tmp_path / "w"
    populate(kit, work)
    before = snapshot(work)
    p = _sh(script, work)
    out, err = (s.decode("utf-8", "backslashreplace") for s in (p.stdout, p.stderr))
    assert p.returncode == rc, (p.returncode, out, err)
    if "2>&-" in script:                # nowhere to say anything: only the status counts
        assert err == ""
    else:
        check_output_streams(out, err, rc, words)
    after = snapshot(work)
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    assert changed == set(writes), sorted(changed)
