"""The suspendos command line. Every failure ends as one line on stderr and a non-zero exit:
2 for bad input (nothing written), 1 for a run that failed."""
import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .errors import SuspendosError, UsageError
from .fileutil import write_atomic
from .sizes import parse_size


def _json_default(o):
    if isinstance(o, bytes):
        return o.hex()
    raise TypeError(type(o).__name__)


def emit_json(obj):
    print(json.dumps(obj, indent=2, default=_json_default))


# ---- target -------------------------------------------------------------------------------
def cmd_target_qemu(a):
    from .target.description import dumps
    from .target.qemu import qemu_target
    memory = parse_size(a.memory, "--memory")
    disk_size = parse_size(a.disk_size, "--disk-size") if a.disk_size else None
    from .plugins.cli import parse_fb_mode
    t = qemu_target(memory, disk_size, a.compress, framebuffer=parse_fb_mode(a.framebuffer))
    write_atomic(a.output, dumps(t).encode())
    print(f"wrote {a.output}: {t.name}, {t.saved_pages()} pages to save, disk "
          f"{t.disk.sectors} sectors, extents {[(e.lba, e.count) for e in t.extents]}")


def cmd_target_linux(a):
    from .target.description import dumps
    from .target.linux import linux_target
    t = linux_target(a.swap, a.sysroot, a.compress, with_framebuffer=not a.no_framebuffer)
    write_atomic(a.output, dumps(t).encode())
    print(f"wrote {a.output}: {t.name}, {t.saved_pages()} pages to save, reserved "
          f"{t.reserved.load_address:#x}+{t.reserved.size:#x}, AHCI {t.disk.pci} port "
          f"{t.disk.port}, extents {[(e.lba, e.count) for e in t.extents]}")


def cmd_target_check(a):
    from .target import load
    t = load(a.file)
    print(f"{a.file}: valid ({t.name}, {t.saved_pages()} pages to save, worst-case image "
          f"{t.worst_case_image()} bytes, extents hold {t.image_capacity()})")


# ---- build / inspect ----------------------------------------------------------------------
def cmd_build(a):
    from .build.payload import build_payload
    from .plugins.cli import approved_plugins
    from .target import load
    plugins = approved_plugins(a)       # refused packages: exit 2 before anything is built
    t = load(a.target)
    if a.compress:
        t.options.compress = a.compress
        t.validate()
    key = _key(a, "encrypt_key")
    result = build_payload(t, key=key, plugins=plugins)
    if a.format == "kexec-elf":
        from .build.kexec import kexec_elf
        result.blob = kexec_elf(result.blob)
    # A blob built with a key carries it: only its owner may read it.
    write_atomic(a.output, result.blob, mode=0o600 if key else 0o644)
    print(f"wrote {a.output}: {len(result.blob)} bytes, loads at {t.reserved.load_address:#x}")


def cmd_inspect(a):
    from .inspect import format_text, inspect_blob
    try:
        data = Path(a.payload).read_bytes()
    except OSError as e:
        raise UsageError(f"{a.payload}: cannot read ({e.strerror})")
    r = inspect_blob(data)
    emit_json(r) if a.json else print(format_text(r))


# ---- qemu ---------------------------------------------------------------------------------
def _parse_inject(spec):
    """write-error:LBA[,always] -> blkdebug inject-error rules; write-stall -> a blkdebug
    breakpoint that holds the first write forever."""
    if not spec:
        return None
    if spec == "write-stall":
        return "stall"
    kind, _, rest = spec.partition(":")
    parts = rest.split(",")
    if kind != "write-error" or not parts[0].isdigit() or any(p != "always" for p in parts[1:]):
        raise UsageError(f"--inject: {spec!r} is not write-error:LBA[,always] or write-stall")
    return [{"event": "write_aio", "errno": 5, "sector": int(parts[0]),
             "once": "always" not in parts[1:]}]


def _target_override(a):
    if not a.target:
        return None
    from .target import load
    return load(a.target)


def _selftest(name):
    from .formats.payload_info import SELFTEST
    return getattr(SELFTEST, name.upper().replace("-", "_")) if name else 0


def cmd_qemu_suspend(a):
    from .qemu.suspend import qemu_suspend
    memory = parse_size(a.memory, "--memory")
    from .target.qemu import check_memory
    check_memory(memory)
    from .plugins.cli import approved_plugins, parse_fb_mode
    plugins = approved_plugins(a)       # refused packages: exit 2 before the disk is made
    summary, ok = qemu_suspend(memory, a.disk, seed=a.seed, compress=a.compress,
                               ram_dump=a.ram_dump, inject=_parse_inject(a.inject),
                               show_progress=not a.quiet, key=_key(a, "encrypt_key"),
                               target=_target_override(a), selftest=_selftest(a.selftest),
                               plugins=plugins, screenshot=a.screenshot,
                               framebuffer=parse_fb_mode(a.framebuffer),
                               mix=a.mix)
    if a.json:
        emit_json(summary)
    else:
        s = summary
        print(f"status: {s['status']}" + (f" ({s['message']})" if s["message"] else ""))
        print(f"saved {s['pages_saved']} of {s['pages_total']} pages ({s['zero_pages']} zero), "
              f"wrote {s['bytes_written']} bytes in {s['seconds']} s ({s['mb_per_s']} MB/s)")
        print(f"host checks: memory {s['host_memory_check']}, CPU state {s['host_cpu_check']}")
        if s.get("plugins") is not None:
            print(f"plugins: {s['draw_seconds']} s in hooks, {s['draw_percent']}% of the run"
                  + (f"; screenshot {a.screenshot}" if a.screenshot else ""))
    if not ok:
        reason = summary["message"] or summary["status"]
        if summary["host_memory_check"] != "passed":
            reason += "; the host's memory changed"
        if summary["host_cpu_check"] != "passed":
            reason += "; the host's CPU state was not restored"
        print(f"suspendos: suspend failed: {reason}", file=sys.stderr)
        return 1
    return 0


def cmd_qemu_resume(a):
    from .qemu.resume import qemu_resume
    memory = parse_size(a.memory, "--memory")
    from .target.qemu import check_memory
    check_memory(memory)
    summary, ok = qemu_resume(memory, a.disk, key=_key(a), show_progress=not a.quiet)
    s = summary
    if a.json:
        emit_json(summary)
    elif "reason" not in s:
        print(f"status: {s['status']}" + (f" ({s['message']})" if s["message"] else ""))
        print(f"restored {s['pages_restored']} of {s['pages_total']} pages ({s['zero_pages']} "
              f"zero) from a {s['image_bytes']}-byte image in {s['seconds']} s "
              f"({s['mb_per_s']} MB/s; verify {s['verify_seconds']} s, restore "
              f"{s['restore_seconds']} s)")
        print(f"host checks: memory {s['host_memory_check']}, CPU state {s['host_cpu_check']}")
    if not ok:
        if "reason" in s:
            what = "refused" if s["status"] == "refused" else "failed"
            reason = f"{s['message']} [{s['reason']}]"
        else:
            what, reason = "failed", s["message"] or s["status"]
            if s["host_memory_check"] != "passed":
                reason += "; the host's memory did not come back"
            if s["host_cpu_check"] != "passed":
                reason += "; the host's CPU state did not come back"
        print(f"suspendos: resume {what}: {reason}", file=sys.stderr)
        return 1
    return 0


# ---- image --------------------------------------------------------------------------------
def _key(a, attr="key"):
    from .keys import read_key
    path = getattr(a, attr, None)
    return read_key(path, "--" + attr.replace("_", "-")) if path else None


def cmd_key_new(a):
    from .keys import new_key
    new_key(a.output)
    print(f"wrote {a.output}: a 32-byte key (mode 0600)")


def cmd_image_info(a):
    from .image.reader import open_image
    img = open_image(a.disk, lba=a.lba, key=_key(a))
    info = img.info()
    emit_json(info) if a.json else print(img.describe())


def cmd_image_verify(a):
    from .image.reader import open_image
    img = open_image(a.disk, lba=a.lba, key=_key(a))
    report = img.verify(ram=a.ram)
    print(report)


def cmd_image_extract(a):
    from .image.reader import open_image
    img = open_image(a.disk, lba=a.lba, key=_key(a))
    if not a.output and not a.elf:
        raise UsageError("image extract: give -o FILE and/or --elf FILE")
    if a.output:
        img.extract_raw(a.output)
        print(f"wrote {a.output}: {img.header.pages_total} pages at their physical addresses")
    if a.elf:
        img.extract_elf(a.elf)
        print(f"wrote {a.elf}: ELF core with {img.header.range_count} PT_LOAD segments")


def cmd_image_discard(a):
    from .target.linux import discard_image
    print(f"{a.area}: {discard_image(a.area, a.offset)}")


# ---- this Linux machine (suspendos/linuxhost) -------------------------------------------------
def _linux_host(a):
    from .linuxhost.host import Host
    return Host(sysroot=a.sysroot)


def cmd_hibernate(a):
    from .linuxhost.hibernate import Request, hibernate
    return hibernate(Request(swap=a.swap, compress=a.compress, prepare=a.prepare,
                             dry_run=a.dry_run, json=a.json, serial=a.serial), _linux_host(a))


def cmd_install_resume(a):
    from .linuxhost.install import InstallRequest, install_resume
    return install_resume(InstallRequest(swap=a.swap, no_grub=a.no_grub, boot_dir=a.boot_dir),
                          _linux_host(a))


def _port(text):
    import argparse
    try:
        v = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number")
    if not 0 <= v <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number")
    return v


def add_linux_host_parsers(sub):
    import argparse
    h = sub.add_parser("hibernate", help="hibernate this Linux machine (as root; docs/LINUX.md)")
    h.add_argument("--swap", help="the swap partition or file for the image (default: the only "
                   "one in /proc/swaps)")
    h.add_argument("--compress", choices=("none", "lz4"), default="none")
    h.add_argument("--prepare", action="store_true",
                   help="capture the target and build the blob and module (cached), then stop")
    h.add_argument("--dry-run", action="store_true",
                   help="print the plan and the target; touch nothing")
    h.add_argument("--json", action="store_true", help="one JSON line")
    h.add_argument("--serial", type=_port, default=0,
                   help="I/O port of a 16550 UART for the payload's log (default: none)")
    h.add_argument("--sysroot", help=argparse.SUPPRESS)     # tests: read /sys, /proc here
    h.set_defaults(func=cmd_hibernate)
    r = sub.add_parser("install-resume", help="install the resume loader, its GRUB entry and "
                       "the initramfs check that discards an image not resumed")
    r.add_argument("--swap", help="the swap partition or file (default: the only active one)")
    r.add_argument("--no-grub", action="store_true", help="no GRUB menu entry")
    r.add_argument("--boot-dir", default="/boot", help="where the resume loader goes")
    r.add_argument("--sysroot", help=argparse.SUPPRESS)
    r.set_defaults(func=cmd_install_resume)


def linux_host_main(argv):
    import argparse
    p = argparse.ArgumentParser(prog="suspendos")
    add_linux_host_parsers(p.add_subparsers(dest="command", required=True))
    a = p.parse_args(argv)
    return a.func(a) or 0


def cmd_bench_compress(argv):
    from .bench_compress import main as bench_main
    return bench_main(argv)


def parser():
    from .plugins.cli import add_parser as add_plugin_parser, add_plugin_options
    p = argparse.ArgumentParser(prog="suspendos", description=__doc__)
    p.add_argument("--version", action="version", version=f"suspendos {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("target", help="write or check a target description").add_subparsers(
        dest="what", required=True)
    tq = t.add_parser("qemu", help="describe the QEMU test machine")
    tq.add_argument("--memory", required=True, help="guest RAM, 64M to 8G")
    tq.add_argument("--disk-size", help="disk size (default: just enough for the worst case)")
    tq.add_argument("--compress", choices=("none", "lz4"), default="none")
    tq.add_argument("--framebuffer", default="800x600x32",
                    help="the Bochs VBE mode the test host sets: WxHxBPP (BPP 32, 24 or 16) "
                         "or none (default 800x600x32)")
    tq.add_argument("-o", "--output", required=True)
    tq.set_defaults(func=cmd_target_qemu)
    tl = t.add_parser("linux", help="describe this Linux system (as root; docs/LINUX.md)")
    tl.add_argument("--swap", help="the swap partition or file to hold the image (default: "
                    "the only one in /proc/swaps)")
    tl.add_argument("--sysroot", help="read a copy of /sys and /proc here instead of the live ones")
    tl.add_argument("--compress", choices=("none", "lz4"), default="none")
    tl.add_argument("--no-framebuffer", action="store_true", help="leave /dev/fb0 out")
    tl.add_argument("-o", "--output", required=True)
    tl.set_defaults(func=cmd_target_linux)
    tc = t.add_parser("check", help="validate a target description")
    tc.add_argument("file")
    tc.set_defaults(func=cmd_target_check)

    b = sub.add_parser("build", help="build a payload blob for a target")
    b.add_argument("--target", required=True)
    b.add_argument("-o", "--output", required=True)
    b.add_argument("--compress", choices=("none", "lz4"))
    add_plugin_options(b)
    b.add_argument("--encrypt-key", help="encrypt the image with this key (suspendos key new)")
    b.add_argument("--format", choices=("blob", "kexec-elf"), default="blob",
                   help="kexec-elf: an ELF for `kexec --load-preserve-context` (KEXEC_JUMP)")
    b.set_defaults(func=cmd_build)

    i = sub.add_parser("inspect", help="show a payload blob's layout")
    i.add_argument("payload")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_inspect)

    q = sub.add_parser("qemu", help="run the QEMU test machine").add_subparsers(
        dest="what", required=True)
    qs = q.add_parser("suspend", help="hibernate the QEMU test machine to a disk image")
    qs.add_argument("--memory", required=True)
    qs.add_argument("--disk", required=True)
    qs.add_argument("--seed", type=int, default=1)
    qs.add_argument("--mix", help="Z,R,T,P: percent of zero, random, text and pattern pages the "
                    "test host fills RAM with (default 25,25,25,25)")
    qs.add_argument("--compress", choices=("none", "lz4"), default="none")
    qs.add_argument("--ram-dump", help="write guest RAM (QMP pmemsave) here, offset = address")
    qs.add_argument("--inject", help="write-error:LBA[,always]: fail a disk write; write-stall: never complete one "
                    "(blkdebug)")
    qs.add_argument("--encrypt-key", help="encrypt the image with this key (suspendos key new)")
    qs.add_argument("--target", help="use this target description instead of the machine's "
                    "own (for testing what the payload does with a wrong one)")
    qs.add_argument("--selftest", choices=("write-saved-ram", "execute-data", "divide-error",
                                           "read-unmapped", "write-text"),
                    help="make the payload fault on purpose (proves page tables and IDT)")
    add_plugin_options(qs)
    qs.add_argument("--framebuffer", default="800x600x32",
                    help="the Bochs VBE mode the test host sets: WxHxBPP (BPP 32, 24 or 16) "
                         "or none (default 800x600x32)")
    qs.add_argument("--screenshot", metavar="FILE.png",
                    help="save the screen (QMP screendump) after the plugins' last frame")
    qs.add_argument("--json", action="store_true")
    qs.add_argument("--quiet", action="store_true", help="no progress on stderr")
    qs.set_defaults(func=cmd_qemu_suspend)
    qr = q.add_parser("resume", help="resume the QEMU test machine from a disk image")
    qr.add_argument("--memory", required=True)
    qr.add_argument("--disk", required=True)
    qr.add_argument("--key", help="the key of an encrypted image (suspendos key new)")
    qr.add_argument("--json", action="store_true")
    qr.add_argument("--quiet", action="store_true", help="no progress on stderr")
    qr.set_defaults(func=cmd_qemu_resume)
    # -- qemu linux: the real Debian guest (logic in suspendos/linuxvm/runner.py) --
    ql = q.add_parser("linux", help="hibernate a real Debian guest from the inside and resume it")
    ql.add_argument("--memory", default="1G")
    ql.add_argument("--cpus", type=int, default=1, help="vCPUs, 1 to 4")
    ql.add_argument("--disk-bus", choices=("ahci",), default="ahci")
    ql.add_argument("--swap", choices=("file", "partition"), default="file")
    ql.add_argument("--compress", choices=("none", "lz4"), default="lz4",
                    help="swsusp: lz4 means its default LZO, none hibernate=nocompress")
    ql.add_argument("--dirty-free", help="random data written and deleted first (default 40%% of RAM)")
    ql.add_argument("--hibernator", choices=("suspendos", "swsusp"), default="suspendos")
    ql.add_argument("--boot-normally", action="store_true",
                    help="boot normally instead of resuming: the stale image must be discarded")
    ql.add_argument("--workdir", help="keep the logs (and with --keep the disk) here")
    ql.add_argument("--keep", action="store_true", help="keep the run's disk overlay")
    ql.add_argument("--json", action="store_true")
    ql.set_defaults(func=lambda a: __import__("suspendos.linuxvm.runner",
                                              fromlist=["cmd"]).cmd(a))

    im = sub.add_parser("image", help="read an image from a disk").add_subparsers(
        dest="what", required=True)
    ii = im.add_parser("info")
    ii.add_argument("disk")
    ii.add_argument("--lba", type=int, help="the image header's LBA (default: look for it)")
    ii.add_argument("--json", action="store_true")
    ii.add_argument("--key", help="the key of an encrypted image (checks it)")
    ii.set_defaults(func=cmd_image_info)
    iv = im.add_parser("verify")
    iv.add_argument("disk")
    iv.add_argument("--lba", type=int, help="the image header's LBA (default: look for it)")
    iv.add_argument("--ram", help="a RAM dump (offset = address) to compare every page with")
    iv.add_argument("--key", help="the key of an encrypted image")
    iv.set_defaults(func=cmd_image_verify)
    ie = im.add_parser("extract")
    ie.add_argument("disk")
    ie.add_argument("--lba", type=int, help="the image header's LBA (default: look for it)")
    ie.add_argument("-o", "--output", help="raw memory file, offset = physical address")
    ie.add_argument("--elf", help="ELF core file, one PT_LOAD per range")
    ie.add_argument("--key", help="the key of an encrypted image")
    ie.set_defaults(func=cmd_image_extract)
    idc = im.add_parser("discard", help="drop the image on a swap area and make it swap again")
    idc.add_argument("area", help="the swap partition or file (or a disk image with --offset)")
    idc.add_argument("--offset", type=int, default=0, help="byte offset of the swap area in AREA")
    idc.set_defaults(func=cmd_image_discard)
    add_linux_host_parsers(sub)

    bn = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="what", required=True)
    bc = bn.add_parser("compress", add_help=False,
                       help="our LZ4 against liblz4 (suspendos bench compress --help)")
    bc.set_defaults(func=lambda a: cmd_bench_compress([]))
    add_plugin_parser(sub)
    k = sub.add_parser("key", help="encryption keys").add_subparsers(dest="what", required=True)
    kn = k.add_parser("new", help="write a new random 32-byte key")
    kn.add_argument("-o", "--output", required=True)
    kn.set_defaults(func=cmd_key_new)
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:2] == ["bench", "compress"]:     # its options are its own module's
            return cmd_bench_compress(argv[2:])
        if argv[:1] in (["hibernate"], ["install-resume"]):   # runs under the clock: none of
            return linux_host_main(argv)                      # the other commands' imports
        args = parser().parse_args(argv)
        return args.func(args) or 0
    except SuspendosError as e:
        print(f"suspendos: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("suspendos: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
