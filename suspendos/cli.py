"""The suspendos command line. Every failure ends as one line on stderr and a non-zero exit:
2 for bad input (nothing written), 1 for a run that failed."""
import json
import os
import sys

from . import __version__
from .argparser import Parser, bounded_int, byte_offset, cpu_count, lba
from .errors import SuspendosError, UsageError
from .fileutil import (check_distinct, check_output, check_writable_in_place, read_input, show,
                       write_atomic)
from .qemu import disks
from .sizes import parse_size
from .target.description import COMPRESSIONS


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
    # `is not None`: --disk-size "" is refused, not taken for "not given".
    disk_size = parse_size(a.disk_size, "--disk-size") if a.disk_size is not None else None
    from .plugins.cli import parse_fb_mode
    t = qemu_target(memory, disk_size, a.compress, framebuffer=parse_fb_mode(a.framebuffer),
                    bus=a.disk_bus, sector_size=a.sector_size)
    write_atomic(a.output, dumps(t).encode(), what="-o")
    print(f"wrote {show(a.output)}: {t.name}, {t.saved_pages()} pages to save, disk "
          f"{t.disk.sectors} sectors, extents {[(e.lba, e.count) for e in t.extents]}")


def cmd_target_linux(a):
    from .target.description import dumps
    from .target.linux import linux_target
    t = linux_target(a.swap, a.sysroot, a.compress, with_framebuffer=not a.no_framebuffer)
    write_atomic(a.output, dumps(t).encode(), what="-o")
    print(f"wrote {show(a.output)}: {t.name}, {t.saved_pages()} pages to save, reserved "
          f"{t.reserved.load_address:#x}+{t.reserved.size:#x}, AHCI {t.disk.pci} port "
          f"{t.disk.port}, extents {[(e.lba, e.count) for e in t.extents]}")


def cmd_target_check(a):
    """Valid means `build` takes it: the same checks, then the same layout of the reserved
    region (a payload is built and thrown away; only that shows what its code leaves for
    the tables and scratch)."""
    from .build.payload import build_payload
    from .target import load
    t = load(a.file)
    build_payload(t)
    if a.json:
        return emit_json({"file": a.file, "valid": True, "name": t.name,
                          "pages_to_save": t.saved_pages(),
                          "worst_case_image_bytes": t.worst_case_image(),
                          "image_capacity_bytes": t.image_capacity()})
    print(f"{show(a.file)}: valid ({show(t.name)}, {t.saved_pages()} pages to save, worst-case "
          f"image {t.worst_case_image()} bytes, extents hold {t.image_capacity()}; a payload "
          f"fits its reserved region)")


# ---- build / inspect ----------------------------------------------------------------------
MAX_BLOB = 1 << 30      # far larger than any reserved region a payload fits in


def cmd_build(a):
    from .build.payload import build_payload
    from .plugins.cli import approved_plugins
    from .target import load
    plugins = approved_plugins(a)       # refused packages: exit 2 before anything is built
    t = load(a.target, "--target")
    if a.compress:
        t.options.compress = a.compress
        t.validate()
    key = _key(a, "encrypt_key")
    result = build_payload(t, key=key, plugins=plugins)
    kexec_hint = ""
    if a.format == "kexec-elf":
        from .build.kexec import kexec_elf, kexec_mem_range
        lo, hi = kexec_mem_range(result.blob)
        kexec_hint = (f"\nload it with: kexec --load-preserve-context --mem-min={lo:#x} "
                      f"--mem-max={hi:#x} --type=elf-x86_64 --args-none {show(a.output)}")
        result.blob = kexec_elf(result.blob, serial_port=t.options.serial_port)
    # A blob built with a key carries it: only its owner may read it.
    write_atomic(a.output, result.blob, mode=0o600 if key else 0o644, what="-o")
    print(f"wrote {show(a.output)}: {len(result.blob)} bytes, loads at {t.reserved.load_address:#x}"
          + kexec_hint)


def cmd_inspect(a):
    from .inspect import format_text, inspect_blob
    from .errors import FormatError
    data = read_input(a.payload, limit=MAX_BLOB, kind="payload blob")
    try:
        r = inspect_blob(data)
    except FormatError as e:
        raise FormatError(f"{show(a.payload)}: {e}")
    emit_json(r) if a.json else print(format_text(r))


def cmd_build_resume(a):
    import tempfile
    from pathlib import Path
    from .build.resume import build_resume_loader
    from .target import load
    t = load(a.target, "--target")
    key = _key(a)
    with tempfile.TemporaryDirectory(prefix="sos-build-resume-") as tmp:
        out = Path(tmp) / "loader"
        build_resume_loader(t, out, key=key, fmt=a.format)
        data = out.read_bytes()
    # A loader built with a key carries it: only its owner may read it.
    write_atomic(a.output, data, mode=0o600 if key else 0o644, what="-o")
    what = ("an EFI application (copy it to the ESP, as EFI/BOOT/BOOTX64.EFI or a boot "
            "entry of its own)" if a.format == "efi" else "a multiboot kernel")
    print(f"wrote {show(a.output)}: {len(data)} bytes, {what}; the loader lives at "
          f"{t.reserved.load_address:#x}")


# ---- qemu ---------------------------------------------------------------------------------
def cmd_qemu_linux(a):
    """`qemu linux` (suspendos/linuxvm/runner.py), after what its run would meet only once
    the guest is built: OVMF not installed (--workdir "" is refused by _check_paths)."""
    if a.firmware == "uefi":
        from .qemu.ovmf import check_installed
        check_installed()
    from .linuxvm.runner import cmd
    return cmd(a)


def _parse_inject(spec):
    """write-error:LBA[,always] -> blkdebug inject-error rules; write-stall -> a blkdebug
    breakpoint that holds the first write forever."""
    if not spec:
        return None
    if spec == "write-stall":
        return "stall"
    from .argparser import parse_number
    kind, _, rest = spec.partition(":")
    parts = rest.split(",")
    if kind != "write-error" or any(p != "always" for p in parts[1:]):
        raise UsageError(f"--inject: {spec!r} is not write-error:LBA[,always] or write-stall")
    sector = parse_number(parts[0], f"--inject: {kind}: the LBA", 0, (1 << 48) - 1)
    # The disk's size is known only once the disk is: qemu_suspend checks the LBA is on it.
    return [{"event": "write_aio", "errno": 5, "sector": sector,
             "once": "always" not in parts[1:]}]


def _target_override(a):
    if a.target is None:        # --target "" is refused by load(), not taken for "not given"
        return None
    from .target import load
    return load(a.target, "--target")


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
                               mix=a.mix, bus=a.disk_bus, sector_size=a.sector_size,
                               cpus=a.cpus, ap_deaf=a.ap_deaf, raw_ceiling=a.raw_ceiling,
                               ap_offline=a.ap_offline, force=a.force)
    return _finish_run(a, "suspend", summary, ok, lambda s: [
        f"saved {s['pages_saved']} of {s['pages_total']} pages ({s['zero_pages']} zero), "
        f"wrote {s['bytes_written']} bytes in {s['seconds']} s ({s['mb_per_s']} MB/s)"],
        plugin_line=True)


def cmd_qemu_kexec_jump(a):
    from .linuxvm.kexec_jump import kexec_jump
    memory = parse_size(a.memory, "--memory")
    from .target.qemu import check_memory
    check_memory(memory)
    s = kexec_jump(memory, a.compress, inject_error=a.inject_write_error,
                   log=lambda m: print(m, file=sys.stderr), iommu=a.iommu)
    if a.json:
        emit_json(s)
    else:
        print(f"status: {s['status']}, md5 match: {s['md5_match']}; kernel {s['kernel']} "
              f"(built {s['kernel_build_seconds']} s); total {s['total_seconds']} s")
    return 0 if s["status"] == "resumed" and s["md5_match"] else 1


def cmd_qemu_resume(a):
    from .qemu.resume import qemu_resume
    memory = parse_size(a.memory, "--memory")
    from .target.qemu import check_memory
    check_memory(memory)
    from .qemu.resume import parse_inject
    summary, ok = qemu_resume(memory, a.disk, key=_key(a), show_progress=not a.quiet,
                              bus=a.disk_bus, sector_size=a.sector_size, cpus=a.cpus,
                              inject=parse_inject(a.inject), ram_dump=a.ram_dump,
                              force=a.force)
    return _finish_run(a, "resume", summary, ok, lambda s: [
        f"restored {s['pages_restored']} of {s['pages_total']} pages ({s['zero_pages']} "
        f"zero) from a {s['image_bytes']}-byte image in {s['seconds']} s "
        f"({s['mb_per_s']} MB/s; verify {s['verify_seconds']} s, restore "
        f"{s['restore_seconds']} s)"])


# What a failed run says about the host's checks, by command.
_HOST_CHECK_WORDS = {
    "suspend": ("the host's memory changed", "the host's CPU state was not restored"),
    "resume": ("the host's memory did not come back", "the host's CPU state did not come back"),
}


def _finish_run(a, kind, s, ok, summary_lines, plugin_line=False):
    """Print a `qemu suspend` / `qemu resume` summary (JSON, or text lines) and, when the run
    failed or was refused, one line on stderr. Returns the exit status."""
    if a.json:
        emit_json(s)
    elif "reason" not in s:
        print(f"status: {s['status']}" + (f" ({s['message']})" if s["message"] else ""))
        for line in summary_lines(s):
            print(line)
        print(f"host checks: memory {s['host_memory_check']}, CPU state {s['host_cpu_check']}")
        if plugin_line and s.get("plugins") is not None:
            print(f"plugins: {s['draw_seconds']} s in hooks, {s['draw_percent']}% of the run"
                  + (f"; screenshot {a.screenshot}" if a.screenshot else ""))
    if ok:
        return 0
    if "reason" in s:
        what = "refused" if s["status"] == "refused" else "failed"
        reason = f"{s['message']} [{s['reason']}]"
    else:
        what, reason = "failed", s["message"] or s["status"]
        memory_words, cpu_words = _HOST_CHECK_WORDS[kind]
        if s["host_memory_check"] != "passed":
            reason += "; " + memory_words
        if s["host_cpu_check"] != "passed":
            reason += "; " + cpu_words
    print(f"suspendos: {kind} {what}: {reason}", file=sys.stderr)
    return 1


# ---- image --------------------------------------------------------------------------------
def _key(a, attr="key"):
    from .keys import read_key
    path = getattr(a, attr, None)
    # `is not None`: --key "" was given (and is refused), not taken for "no key".
    return read_key(path, "--" + attr.replace("_", "-")) if path is not None else None


def cmd_key_new(a):
    from .keys import new_key
    new_key(a.output)
    print(f"wrote {show(a.output)}: a 32-byte key (mode 0600)")


def cmd_image_info(a):
    from .image.reader import open_image
    img = open_image(a.disk, lba=a.lba, key=_key(a))
    info = img.info()
    emit_json(info) if a.json else print(img.describe())


def cmd_image_verify(a):
    from .image.reader import open_image
    img = open_image(a.disk, lba=a.lba, key=_key(a))
    facts = img.verify_facts(ram=a.ram)
    emit_json(facts) if a.json else print(img.verify_text(facts))


def cmd_image_extract(a):
    import contextlib
    from .fileutil import atomic_output
    from .image.reader import open_image
    if not a.output and not a.elf:
        raise UsageError("image extract: give -o FILE and/or --elf FILE")
    img = open_image(a.disk, lba=a.lba, key=_key(a))
    wanted = [(opt, path, write) for opt, path, write in (
        ("-o", a.output, img.write_raw), ("--elf", a.elf, img.write_elf)) if path]
    # Memory holds secrets: 0600. Both files appear together, or neither does.
    with contextlib.ExitStack() as stack:
        for opt, path, write in wanted:
            write(stack.enter_context(atomic_output(path, 0o600, opt)))
    if a.output:
        print(f"wrote {show(a.output)}: {img.header.pages_total} pages at their physical addresses")
    if a.elf:
        print(f"wrote {show(a.elf)}: ELF core with {img.header.range_count} PT_LOAD segments")


def cmd_image_discard(a):
    from .diskguard import claim_disk
    from .target.linux import discard_image
    # A swap signature is what AREA should carry (a plain one is left alone: "no image").
    # The guard stays here, not in discard_image: `hibernate` calls that on the area it has
    # just swapped off and marked itself, and the initramfs check uses dd, not this command.
    with claim_disk(a.area, "AREA", a.force, accept=("swap",)):
        print(f"{show(a.area)}: {discard_image(a.area, a.offset)}")


# ---- this Linux machine (suspendos/linuxhost) -------------------------------------------------
def _linux_host(a):
    from .linuxhost.host import Host
    return Host(sysroot=a.sysroot)


def cmd_hibernate(a):
    from .linuxhost.hibernate import Request, hibernate
    return hibernate(Request(swap=a.swap, compress=a.compress, prepare=a.prepare,
                             dry_run=a.dry_run, json=a.json, serial=a.serial,
                             keep_caches=a.keep_caches,
                             pause_before_write=a.pause_before_write), _linux_host(a))


def cmd_install_resume(a):
    from .linuxhost.install import InstallRequest, install_resume
    return install_resume(InstallRequest(swap=a.swap, no_grub=a.no_grub, boot_dir=a.boot_dir,
                                         firmware=a.firmware), _linux_host(a))


def cmd_uninstall_resume(a):
    from .linuxhost.uninstall import UninstallRequest, uninstall_resume
    return uninstall_resume(UninstallRequest(boot_dir=a.boot_dir), _linux_host(a))


def _port(text):
    return bounded_int(0, 0xFFFF, "a port number")(text)


def add_linux_host_parsers(sub):
    import argparse
    from . import helptext
    h = sub.add_parser("hibernate", help="hibernate this Linux machine (as root; docs/LINUX.md)")
    h.add_argument("--swap", metavar="FILE|DEV", help="the swap partition or swap file for the "
                   "image (default: the only one in /proc/swaps)")
    h.add_argument("--compress", choices=COMPRESSIONS, default="none",
                   help=helptext.compress("none"))
    h.add_argument("--prepare", action="store_true",
                   help="capture the target and build the blob and module (cached), then stop")
    h.add_argument("--dry-run", action="store_true",
                   help="print the plan and the target; touch nothing")
    h.add_argument("--json", action="store_true", help="one JSON line")
    h.add_argument("--serial", type=_port, default=0, metavar="PORT",
                   help="I/O port of a 16550 UART for the payload's log: 0 to 0xffff, decimal "
                        "or 0x... (default 0: no log)")
    h.add_argument("--keep-caches", action="store_true",
                   help="do not drop clean page cache and slab first (they are then saved)")
    h.add_argument("--sysroot", help=argparse.SUPPRESS)     # tests: read /sys, /proc here
    # tests: the payload waits on --serial before it opens the disk (runner.py snapshots it)
    h.add_argument("--pause-before-write", action="store_true", help=argparse.SUPPRESS)
    h.set_defaults(func=cmd_hibernate)
    r = sub.add_parser("install-resume", help="install the resume loader (BIOS: with a GRUB "
                       "entry; UEFI: with a boot entry hibernate arms) and the initramfs check "
                       "that discards an image not resumed")
    r.add_argument("--swap", metavar="FILE|DEV", help="the swap partition or swap file "
                   "(default: the only active one)")
    r.add_argument("--firmware", choices=("auto", "bios", "uefi"), default="auto",
                   help="bios: a multiboot loader in --boot-dir and a GRUB entry; uefi: an EFI "
                        "loader on the ESP and a boot entry hibernate arms with BootNext "
                        "(default auto: what this machine booted through)")
    r.add_argument("--no-grub", action="store_true", help="no GRUB menu entry (bios)")
    r.add_argument("--boot-dir", default="/boot", metavar="DIR",
                   help="the folder the multiboot resume loader goes in (default /boot)")
    r.add_argument("--sysroot", help=argparse.SUPPRESS)
    r.set_defaults(func=cmd_install_resume)
    u = sub.add_parser("uninstall-resume", help="remove what install-resume installed: boot "
                       "entry, loaders, GRUB entry, initramfs check")
    u.add_argument("--boot-dir", default="/boot", metavar="DIR",
                   help="the folder install-resume put the multiboot loader in (default /boot)")
    u.add_argument("--sysroot", help=argparse.SUPPRESS)
    u.set_defaults(func=cmd_uninstall_resume)


def linux_host_main(argv):
    p = Parser(prog="suspendos")        # usage errors: one line, exit 2, as everywhere
    add_linux_host_parsers(p.add_subparsers(dest="command", required=True))
    a = p.parse_args(argv)
    return a.func(a) or 0


def cmd_bench_compress(argv):
    from .bench_compress import main as bench_main
    return bench_main(argv)


def _key_option(p):
    from .helptext import KEY
    p.add_argument("--key", metavar="FILE", help=KEY)
    return p


def _encrypt_key_option(p):
    from .helptext import ENCRYPT_KEY
    p.add_argument("--encrypt-key", metavar="FILE", help=ENCRYPT_KEY)
    return p


def _force_option(p):
    p.add_argument("--force", action="store_true", help="write to a block device even if it "
                   "is mounted, held open, or carries a signature")
    return p


def _image_options(p):
    """DISK, --lba and --key: what every `image` subcommand reads an image with."""
    p.add_argument("disk", metavar="DISK", help="the disk that holds the image: a disk image "
                   "file or a block device")
    p.add_argument("--lba", type=lba, help="the sector of the image header, 0 to 2^48-1 "
                   "(default: look for it)")
    return _key_option(p)


# What the tool does, for `suspendos --help` and the man page; the exit statuses follow it.
DESCRIPTION = ("Hibernation as a small freestanding module: suspendos builds a payload that "
               "writes a machine's RAM to disk as a checksummed, optionally compressed and "
               "encrypted image, and a loader that brings the machine back from it. It "
               "describes the target machine, builds the payload, runs both on a QEMU test "
               "machine or this Linux machine, and reads, checks and extracts the images.")
EPILOG = ("Every failure ends as one line on stderr. Exit status: 0 done, 1 a run failed, "
          "2 bad input (nothing was written).")


def parser():
    from . import helptext
    from .formats.smp import MAX_CPUS
    from .plugins.cli import FB_MODE_HELP, add_parser as add_plugin_parser, add_plugin_options
    p = Parser(prog="suspendos", description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("--version", action="version", version=f"suspendos {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("target", help="write or check a target description").add_subparsers(
        dest="what", required=True)
    tq = t.add_parser("qemu", help="describe the QEMU test machine")
    tq.add_argument("--memory", required=True, metavar="SIZE", help=helptext.QEMU_MEMORY)
    tq.add_argument("--disk-size", metavar="SIZE", help=f"the disk's size: {helptext.SIZE}, a "
                    "multiple of --sector-size (default: just enough for the worst-case image)")
    tq.add_argument("--compress", choices=COMPRESSIONS, default="none",
                    help=helptext.compress("none"))
    tq.add_argument("--framebuffer", default="800x600x32", metavar="WxHxBPP|none",
                    help=FB_MODE_HELP)
    tq.add_argument("-o", "--output", required=True, metavar="FILE",
                    help="the target description to write (TOML)")
    disks.add_arguments(tq)
    tq.set_defaults(func=cmd_target_qemu)
    tl = t.add_parser("linux", help="describe this Linux system (as root; docs/LINUX.md)")
    tl.add_argument("--swap", metavar="FILE|DEV", help="the swap partition or swap file to "
                    "hold the image (default: the only one in /proc/swaps)")
    tl.add_argument("--sysroot", metavar="DIR",
                    help="read a copy of /sys and /proc here instead of the live ones")
    tl.add_argument("--compress", choices=COMPRESSIONS, default="none",
                    help=helptext.compress("none"))
    tl.add_argument("--no-framebuffer", action="store_true", help="leave /dev/fb0 out")
    tl.add_argument("-o", "--output", required=True, metavar="FILE",
                    help="the target description to write (TOML)")
    tl.set_defaults(func=cmd_target_linux)
    tc = t.add_parser("check", help="validate a target description")
    tc.add_argument("file", metavar="FILE", help="the target description (TOML) to check")
    tc.add_argument("--json", action="store_true", help=helptext.JSON)
    tc.set_defaults(func=cmd_target_check)

    b = sub.add_parser("build", help="build a payload blob for a target")
    b.add_argument("--target", required=True, metavar="FILE",
                   help="the target description (TOML; suspendos target ...)")
    b.add_argument("-o", "--output", required=True, metavar="PAYLOAD",
                   help="the payload file to write")
    b.add_argument("--compress", choices=COMPRESSIONS, help=helptext.compress(None))
    add_plugin_options(b)
    _encrypt_key_option(b)
    b.add_argument("--format", choices=("blob", "kexec-elf"), default="blob",
                   help="blob: the bare payload (default); kexec-elf: an ELF for `kexec "
                        "--load-preserve-context` (KEXEC_JUMP)")
    b.set_defaults(func=cmd_build)

    i = sub.add_parser("inspect", help="show a payload blob's layout")
    i.add_argument("payload", metavar="PAYLOAD", help="the payload blob (suspendos build)")
    i.add_argument("--json", action="store_true", help=helptext.JSON)
    i.set_defaults(func=cmd_inspect)

    br = sub.add_parser("build-resume", help="build the resume loader for a target (docs/RESUME.md)")
    br.add_argument("--target", required=True, metavar="FILE",
                    help="the target description (TOML) the image was written for")
    br.add_argument("-o", "--output", required=True, metavar="LOADER",
                    help="the loader file to write")
    _key_option(br)
    br.add_argument("--format", choices=("multiboot", "efi"), default="multiboot",
                    help="multiboot: an ELF for QEMU's -kernel or GRUB's multiboot (default); "
                         "efi: a PE32+ EFI application that goes back to the firmware when "
                         "there is nothing to resume")
    br.set_defaults(func=cmd_build_resume)

    q = sub.add_parser("qemu", help="run the QEMU test machine").add_subparsers(
        dest="what", required=True)
    qs = q.add_parser("suspend", help="hibernate the QEMU test machine to a disk image")
    qs.add_argument("--memory", required=True, metavar="SIZE", help=helptext.QEMU_MEMORY)
    qs.add_argument("--disk", required=True, metavar="FILE",
                    help="the disk image file (made if missing, just large enough) or block "
                         "device the image is written to")
    qs.add_argument("--seed", type=bounded_int(0, (1 << 64) - 1, "a seed"), default=1,
                    metavar="N", help="seed of the random data the test host fills RAM with, "
                    "0 to 2^64-1 (default 1)")
    qs.add_argument("--mix", metavar="Z,R,T,P",
                    help="percent of zero, random, text and pattern pages the test host fills "
                         "RAM with: four whole numbers summing to 100 (default 25,25,25,25)")
    qs.add_argument("--compress", choices=COMPRESSIONS, default="none",
                    help=helptext.compress("none"))
    qs.add_argument("--ram-dump", metavar="FILE", help="write guest RAM (QMP pmemsave) here, "
                    "offset = physical address, as the payload starts reading it")
    qs.add_argument("--inject", metavar="SPEC",
                    help="write-error:LBA[,always]: fail the disk write covering LBA (a sector "
                         "of the disk, 0 to its last), once or every time; write-stall: never "
                         "complete the first write (blkdebug)")
    _encrypt_key_option(qs)
    qs.add_argument("--target", metavar="FILE", help="use this target description instead of "
                    "the machine's own (for testing what the payload does with a wrong one)")
    selftests = ("write-saved-ram", "execute-data", "divide-error", "read-unmapped",
                 "write-text", "ap-write-saved-ram")
    qs.add_argument("--selftest", choices=selftests, metavar="FAULT",
                    help="make the payload fault on purpose (proves page tables and IDT): "
                         + helptext.one_of(selftests))
    add_plugin_options(qs)
    qs.add_argument("--framebuffer", default="800x600x32", metavar="WxHxBPP|none",
                    help=FB_MODE_HELP)
    qs.add_argument("--screenshot", metavar="FILE.png",
                    help="save the screen (QMP screendump) after the plugins' last frame")
    qs.add_argument("--json", action="store_true", help=helptext.JSON)
    qs.add_argument("--quiet", action="store_true", help=helptext.QUIET)
    disks.add_arguments(qs)
    qs.add_argument("--cpus", type=cpu_count, default=1, metavar="N",
                    help=f"CPUs of the test machine, 1 to {MAX_CPUS + 1} (-smp N, "
                         "multi-threaded TCG; default 1); the test host hands its APs to the "
                         "payload")
    qs.add_argument("--raw-ceiling", action="store_true",
                    help="write no image: stream a constant buffer through the same driver and "
                         "extents and report the device's mb_per_s")
    qs.add_argument("--ap-deaf", type=bounded_int(0, 0xFF, "an APIC id"), metavar="APIC_ID",
                    help="test: the test host hands in this AP, but it never answers; "
                         f"{helptext.APIC_ID}: 1 to N-1, or with --ap-offline one no CPU has, "
                         "N to 254")
    qs.add_argument("--ap-offline", action="store_true",
                    help="test: the test host hands its APs in offline, as the Linux module "
                         "does; the payload wakes them from an AP start page")
    _force_option(qs).set_defaults(func=cmd_qemu_suspend, writes=("disk",))
    qr = q.add_parser("resume", help="resume the QEMU test machine from a disk image")
    qr.add_argument("--memory", required=True, metavar="SIZE",
                    help=helptext.QEMU_MEMORY + "; the same as at suspend")
    qr.add_argument("--disk", required=True, metavar="FILE",
                    help="the disk image file or block device `qemu suspend` wrote the image to")
    _key_option(qr)
    qr.add_argument("--ram-dump", metavar="FILE", help="write the restored RAM (QMP pmemsave, "
                    "saved ranges, offset = physical address) here, taken before the loader "
                    "returns")
    qr.add_argument("--inject", metavar="SPEC",
                    help="read-error:LBA[,always]: fail the disk read covering LBA (a sector of "
                         "the disk), once or every time; read-stall: never complete one "
                         "(blkdebug); ap-deaf:ID / ap-fault:ID: the loader's AP with that "
                         "APIC id (1 to --cpus minus 1) never answers / faults")
    qr.add_argument("--json", action="store_true", help=helptext.JSON)
    qr.add_argument("--quiet", action="store_true", help=helptext.QUIET)
    disks.add_arguments(qr)
    qr.add_argument("--cpus", type=cpu_count, default=1, metavar="N",
                    help=f"CPUs of the test machine, 1 to {MAX_CPUS + 1} (-smp N, "
                         "multi-threaded TCG; default 1)")
    _force_option(qr).set_defaults(func=cmd_qemu_resume, writes=("disk",))
    qk = q.add_parser("kexec-jump", help="hibernate Linux through kexec --load-preserve-context "
                      "and resume it (a kernel built from Debian's source, cached)")
    qk.add_argument("--memory", default="256M", metavar="SIZE",
                    help=helptext.QEMU_MEMORY + " (default 256M)")
    qk.add_argument("--compress", choices=COMPRESSIONS, default="lz4",
                    help=helptext.compress("lz4"))
    qk.add_argument("--inject-write-error", action="store_true",
                    help="fail one write inside the extents first (blkdebug), then jump again")
    qk.add_argument("--iommu", choices=("none", "intel", "amd"), default="none",
                    help="QEMU's IOMMU on the machine: none, intel or amd (default none; "
                         "docs/LINUX.md)")
    qk.add_argument("--json", action="store_true", help=helptext.JSON)
    qk.set_defaults(func=cmd_qemu_kexec_jump)
    # -- qemu linux: the real Debian guest (logic in suspendos/linuxvm/runner.py) --
    ql = q.add_parser("linux", help="hibernate a real Debian guest from the inside and resume it")
    ql.add_argument("--memory", default="1G", metavar="SIZE",
                    help="guest RAM: a size with a K, M or G suffix, a whole number of MiB, "
                         "512M to 8G (default 1G)")
    ql.add_argument("--cpus", type=bounded_int(1, 4, "a CPU count"), default=1,
                    metavar="N", help="vCPUs, 1 to 4 (default 1)")
    ql.add_argument("--disk-bus", choices=("ahci", "nvme", "virtio"), default="ahci",
                    help="the controller of the guest's disk (root and swap): ahci, nvme or "
                         "virtio (default ahci)")
    ql.add_argument("--iommu", choices=("none", "intel", "amd"), default="none",
                    help="QEMU's IOMMU, translating the guest's DMA: none, intel or amd "
                         "(default none; docs/LINUX.md)")
    ql.add_argument("--firmware", choices=("bios", "uefi"), default="bios",
                    help="the machine's firmware: bios (SeaBIOS; QEMU hands over the kernel) "
                         "or uefi (OVMF, booting GRUB from the disk's ESP; default bios)")
    ql.add_argument("--swap", choices=("file", "partition"), default="file",
                    help="where the guest swaps and hibernates to: a swap file or a swap "
                         "partition (default file)")
    ql.add_argument("--compress", choices=COMPRESSIONS, default="lz4",
                    help=helptext.compress("lz4") + "; for swsusp lz4 means its default LZO "
                         "and none hibernate=nocompress (lz4hc is ours only)")
    ql.add_argument("--dirty-free", metavar="SIZE|N%",
                    help="random data written and deleted first: a size (" + helptext.SIZE
                         + "), 0, or a percentage of --memory; 0 to 3/4 of --memory "
                         "(default 40%%)")
    ql.add_argument("--hibernator", choices=("suspendos", "swsusp"), default="suspendos",
                    help="who writes the image: suspendos (this module, default) or swsusp "
                         "(the kernel's own hibernation, for comparison)")
    ql.add_argument("--boot-normally", action="store_true",
                    help="boot normally instead of resuming: the stale image must be discarded")
    ql.add_argument("--workdir", metavar="DIR",
                    help="keep the logs (and with --keep the disk) here")
    ql.add_argument("--keep", action="store_true", help="keep the run's disk overlay")
    ql.add_argument("--json", action="store_true", help=helptext.JSON)
    ql.set_defaults(func=cmd_qemu_linux)

    im = sub.add_parser("image", help="read an image from a disk").add_subparsers(
        dest="what", required=True)
    ii = _image_options(im.add_parser("info", help="show an image's header: memory ranges, "
                                      "pages, size on disk, compression, extents, state"))
    ii.add_argument("--json", action="store_true", help=helptext.JSON)
    ii.set_defaults(func=cmd_image_info)
    iv = _image_options(im.add_parser("verify", help="check every checksum of an image and, "
                                      "with --ram, every page against a RAM dump"))
    iv.add_argument("--ram", metavar="FILE",
                    help="a RAM dump (offset = physical address) to compare every page with")
    iv.add_argument("--json", action="store_true", help=helptext.JSON)
    iv.set_defaults(func=cmd_image_verify)
    ie = _image_options(im.add_parser("extract", help="write an image's memory out as a raw "
                                      "file and/or an ELF core that gdb opens"))
    ie.add_argument("-o", "--output", metavar="FILE",
                    help="raw memory file, offset = physical address (mode 0600)")
    ie.add_argument("--elf", metavar="FILE",
                    help="ELF core file, one PT_LOAD per range (mode 0600)")
    ie.set_defaults(func=cmd_image_extract)
    idc = im.add_parser("discard", help="drop the image on a swap area and make it swap again")
    idc.add_argument("area", metavar="AREA",
                     help="the swap partition or swap file (or a disk image with --offset)")
    idc.add_argument("--offset", type=byte_offset, default=0, metavar="BYTES",
                     help="where the swap area starts in AREA, in bytes, 0 to 2^57-1 "
                          "(default 0)")
    _force_option(idc).set_defaults(func=cmd_image_discard, writes=("area",))
    add_linux_host_parsers(sub)

    from .demo import add_arguments as add_demo_arguments
    add_demo_arguments(sub.add_parser(
        "demo", help="the main job: hibernate a QEMU machine, check every page, resume it"))
    bn = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="what", required=True)
    from .bench_compress import add_arguments as add_bench_compress_arguments
    bc = bn.add_parser("compress", help="our LZ4 against liblz4")
    add_bench_compress_arguments(bc)
    bc.set_defaults(func=lambda a: cmd_bench_compress([]))
    add_plugin_parser(sub)
    k = sub.add_parser("key", help="encryption keys").add_subparsers(dest="what", required=True)
    kn = k.add_parser("new", help="write a new random 32-byte key")
    kn.add_argument("-o", "--output", required=True, metavar="FILE",
                    help="the key file to write (mode 0600)")
    kn.set_defaults(func=cmd_key_new)
    from .completion import SHELLS, cmd_completion
    c = sub.add_parser("completion", help="print the shell completion script for suspendos")
    c.add_argument("shell", choices=SHELLS, help="the shell: " + helptext.one_of(SHELLS))
    c.set_defaults(func=cmd_completion)
    return p


# Options and positionals that name files, by dest: what _check_paths compares. A command
# that writes one of its inputs in place lists its dest in `writes` (set_defaults).
INPUT_PATHS = {"target": "--target", "file": "FILE", "payload": "PAYLOAD", "disk": "--disk",
               "key": "--key", "encrypt_key": "--encrypt-key", "ram": "--ram",
               "plugin": "--plugin", "package": "PACKAGE", "splash": "--splash",
               "area": "AREA"}
OUTPUT_PATHS = {"output": "-o", "elf": "--elf", "ram_dump": "--ram-dump",
                "screenshot": "--screenshot"}
# Folders given by name: like every path above, "" names nothing (not "the default").
FOLDER_PATHS = {"trust": "--trust", "sysroot": "--sysroot", "workdir": "--workdir"}


def _paths(a, table):
    out = []
    for dest, opt in table.items():
        value = getattr(a, dest, None)
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str):
                out.append((opt, v))
    return out


def _check_paths(a):
    """Before any work: every output can be written, and none is an input."""
    outputs = _paths(a, OUTPUT_PATHS)
    inputs = _paths(a, INPUT_PATHS)
    for kind, given in (("file", inputs), ("folder", _paths(a, FOLDER_PATHS))):
        for opt, path in given:     # Path("") is the current folder; `if path:` "not given"
            if path == "":
                raise UsageError(f"{opt}: an empty {kind} name")
    written = outputs + [(INPUT_PATHS[d], getattr(a, d)) for d in getattr(a, "writes", ())
                         if getattr(a, d, None)]
    check_distinct([i for i in inputs if i not in written], written)
    for opt, path in outputs:
        check_output(path, opt)
    for dest in getattr(a, "writes", ()):
        if getattr(a, dest, None):
            check_writable_in_place(getattr(a, dest), INPUT_PATHS[dest])


def _report(message, exit_code, argv=()):
    """One line on stderr. A longer message (a compiler's output, QEMU's command line and
    serial log) goes to a file the line names. An argument with a newline in it (a path) is
    quoted wherever the message repeats it, so it cannot break the line."""
    message = str(message)
    for arg in argv:
        if not arg.isprintable() and arg in message:
            message = message.replace(arg, repr(arg))
    first, _, rest = message.partition("\n")
    if rest.strip():
        import tempfile
        fd, log = tempfile.mkstemp(prefix="suspendos-error-", suffix=".log")
        with os.fdopen(fd, "w") as f:
            f.write(str(message) + "\n")
        first += f" (details: {log})"
    print(f"suspendos: error: {first}", file=sys.stderr)
    return exit_code


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    from asyncio import CancelledError
    from .interrupt import Terminated, install, signal_received
    install()                   # SIGTERM/SIGHUP: the same teardown as Ctrl-C
    try:
        if argv[:2] == ["bench", "compress"]:     # its options are its own module's
            return cmd_bench_compress(argv[2:])
        if argv[:1] == ["demo"]:                  # the main job (suspendos/demo.py)
            from .demo import main as demo_main
            return demo_main(argv[1:])
        if argv[:1] in (["hibernate"], ["install-resume"], ["uninstall-resume"]):
            return linux_host_main(argv)    # hibernate runs under the clock: none of the
                                            # other commands' imports
        args = parser().parse_args(argv)
        _check_paths(args)
        return args.func(args) or 0
    except SuspendosError as e:
        return _report(e, e.exit_code, argv)
    except BrokenPipeError:
        # The reader went away (`| head`): what it wanted it has; say nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (KeyboardInterrupt, CancelledError) as e:
        # SIGTERM/SIGHUP raise Terminated, or cancel the asyncio task driving QEMU
        term = e if isinstance(e, Terminated) else signal_received()
        if term:
            print(f"suspendos: terminated ({term.name})", file=sys.stderr)
            return term.exit_status
        if isinstance(e, CancelledError):
            raise
        print("suspendos: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        return _report(f"{where}{e.strerror or e}", 1, argv)
    except Exception as e:        # a bug: still one line, the traceback in the details file
        import traceback
        return _report(f"internal error: {type(e).__name__}: {e} (please report it)\n"
                       + traceback.format_exc(), 1)


if __name__ == "__main__":
    sys.exit(main())
