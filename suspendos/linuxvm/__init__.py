"""The Linux test VM: Debian's kernel with a busybox initramfs on the QEMU test machine.

What it needs comes from Debian through `apt-get download` (kernel image, busybox-static,
and for the module the headers and kbuild of the same ABI), cached and unpacked under
~/.cache/suspendos/linux (SOS_LINUX_CACHE overrides). The ABI is SOS_LINUX_ABI, else the one
already cached, else the one linux-image-amd64 depends on today (Debian moves it).

The initramfs is written here (newc cpio in Python; no cpio binary needed): busybox, the
AHCI driver stack from the kernel package, optionally suspendos.ko, and an /init script.
The disk is an MBR disk: partition 1 a swap area (header written here, as mkswap does),
partition 2 a small scratch partition the tests write through Linux.
"""
import gzip
import io
import os
import re
import stat
import struct
import subprocess
import uuid
from pathlib import Path

from ..cachelock import locked
from ..errors import UsageError

# The AHCI driver stack of Debian's 6.1 kernel, in load order (no modules.dep in the deb).
AHCI_MODULES = ["crypto/crct10dif_common", "crypto/crct10dif_generic", "lib/crc-t10dif",
                "lib/crc64", "crypto/crc64_rocksoft_generic", "lib/crc64-rocksoft",
                "block/t10-pi", "drivers/scsi/scsi_common", "drivers/scsi/scsi_mod",
                "drivers/ata/libata", "drivers/ata/libahci", "drivers/ata/ahci",
                "drivers/scsi/sd_mod"]
SECTOR = 512
PAGE = 4096
MiB = 1 << 20


def cache_dir():
    d = Path(os.environ.get("SOS_LINUX_CACHE", Path.home() / ".cache" / "suspendos" / "linux"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _order(c):
    """dpkg's weight of one character of a non-digit run: '~' before the end, letters before
    everything else (deb-version(7), "Sorting algorithm")."""
    if c == "~":
        return -1
    if c.isalpha():
        return ord(c)
    return ord(c) + 256 if c else 0


def compare_versions(a, b):
    """-1, 0 or 1 as Debian orders versions a and b (deb-version(7)): runs of digits compare
    as numbers, so 6.1.0-9 comes before 6.1.0-56."""
    def parts(v):
        epoch, _, rest = v.rpartition(":") if ":" in v else ("0", "", v)
        upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "0")
        return int(epoch or 0), upstream, revision

    def cmp_part(x, y):
        while x or y:
            nx = re.match(r"[^0-9]*", x).group()
            ny = re.match(r"[^0-9]*", y).group()
            for i in range(max(len(nx), len(ny))):
                cx, cy = _order(nx[i:i + 1]), _order(ny[i:i + 1])
                if cx != cy:
                    return -1 if cx < cy else 1
            x, y = x[len(nx):], y[len(ny):]
            dx = re.match(r"[0-9]*", x).group()
            dy = re.match(r"[0-9]*", y).group()
            if int(dx or 0) != int(dy or 0):
                return -1 if int(dx or 0) < int(dy or 0) else 1
            x, y = x[len(dx):], y[len(dy):]
        return 0
    ea, ua, ra = parts(a)
    eb, ub, rb = parts(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return cmp_part(ua, ub) or cmp_part(ra, rb)


def newest_deb(debs, version_of):
    """The .deb with the highest Debian version (version_of(path) -> version string)."""
    import functools
    return max(debs, key=functools.cmp_to_key(
        lambda x, y: compare_versions(version_of(x), version_of(y))))


def _deb_version(path):
    """The version field of a downloaded .deb's name, package_version_arch.deb (with the
    epoch's ':' as apt-get download writes it, %3a)."""
    return path.name.split("_")[1].replace("%3a", ":")


def kernel_abi(cache=None):
    if os.environ.get("SOS_LINUX_ABI"):
        return os.environ["SOS_LINUX_ABI"]
    cache = cache or cache_dir()
    found = list(cache.glob("linux-image-*-amd64_*.deb"))
    if found:
        def abi(p):     # 6.1.0-56 of linux-image-6.1.0-56-amd64_6.1.158-1_amd64.deb
            return re.match(r"linux-image-(.+)-amd64_", p.name).group(1)
        return abi(newest_deb(found, abi)) + "-amd64"
    try:
        out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise UsageError(f"cannot find Debian's kernel ABI (apt-cache depends linux-image-amd64: {e})")
    m = re.search(r"Depends: linux-image-(\d[\w.-]*-amd64)", out)
    if not m:
        raise UsageError("cannot find Debian's kernel ABI in `apt-cache depends linux-image-amd64`")
    return m.group(1)


def _deb(cache, package):
    """The newest cached .deb of `package`, downloaded when none is (apt-get writes it in
    place, hence the lock: no reader sees half a file)."""
    with locked(cache, "apt-get-download"):
        found = list(cache.glob(f"{package.replace('+', '%2b')}_*.deb")) or \
            list(cache.glob(f"{package}_*.deb"))
        if found:
            return newest_deb(found, _deb_version)
        r = subprocess.run(["apt-get", "download", package], cwd=cache, capture_output=True,
                           text=True)
        found = list(cache.glob(f"{package}_*.deb"))
        if r.returncode or not found:
            raise UsageError(f"apt-get download {package} failed: "
                             f"{(r.stderr or r.stdout).strip()[-300:]}")
        return newest_deb(found, _deb_version)


def _unpack(cache, package, into):
    deb = _deb(cache, package)
    stamp = into / f".{deb.name}.done"
    with locked(cache, "unpack"):
        if not stamp.exists():
            into.mkdir(parents=True, exist_ok=True)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], check=True)
            stamp.touch()


class Debian:
    """Paths into the unpacked Debian packages of one kernel ABI."""

    def __init__(self, headers=False):
        self.cache = cache_dir()
        self.abi = kernel_abi(self.cache)
        root = self.cache / f"root-{self.abi}"
        _unpack(self.cache, f"linux-image-{self.abi}", root)
        _unpack(self.cache, "busybox-static", root)
        self.root = root
        self.vmlinuz = root / "boot" / f"vmlinuz-{self.abi}"
        self.modules = root / "lib" / "modules" / self.abi / "kernel"
        self.busybox = root / "bin" / "busybox"
        self.headers = None
        if headers:
            flavour = self.abi.rsplit("-", 1)[0]
            major = ".".join(self.abi.split(".")[:2])
            for p in (f"linux-headers-{self.abi}", f"linux-headers-{flavour}-common",
                      f"linux-kbuild-{major}"):
                _unpack(self.cache, p, root)
            self.headers = root / "usr" / "src" / f"linux-headers-{self.abi}"
            mk = self.headers / "Makefile"     # Debian's points at /usr/src/...-common
            text = mk.read_text()
            fixed = re.sub(r"include /usr/src/", f"include {root}/usr/src/", text)
            if fixed != text:
                mk.write_text(fixed)
        for p in (self.vmlinuz, self.busybox):
            if not p.exists():
                raise UsageError(f"{p}: missing after unpacking the Debian packages")


def build_module(debian, out_dir=None):
    """kbuild linux/suspendos.c against the headers; returns the .ko path."""
    from ..linuxhost.module import kbuild
    return kbuild(debian.headers, Path(out_dir or debian.cache / f"module-{debian.abi}"))


# ---- initramfs (newc cpio) ---------------------------------------------------------------
class Cpio:
    def __init__(self):
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(self, name, mode, data=b"", nlink=1):
        name_b = name.encode() + b"\0"
        hdr = b"070701" + b"".join(b"%08X" % v for v in (
            self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name_b), 0))
        self.ino += 1
        self.buf.write(hdr + name_b)
        self.buf.write(b"\0" * (-(len(hdr) + len(name_b)) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def dir(self, name):
        self._entry(name, stat.S_IFDIR | 0o755, nlink=2)

    def file(self, name, data, mode=0o644):
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name, target):
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def finish(self):
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


def build_initrd(debian, init_script, out, extra=None, modules=AHCI_MODULES, dirs=()):
    """An initramfs: busybox (+ applet links), `modules` from debian.modules in /lib/modules,
    the directories `dirs`, `extra` {path in initrd: bytes}, and /init."""
    c = Cpio()
    for d in ("bin", "sbin", "proc", "sys", "dev", "mnt", "tmp", "lib", "lib/modules", *dirs):
        c.dir(d)
    c.file("bin/busybox", debian.busybox.read_bytes(), 0o755)
    applets = subprocess.run([str(debian.busybox), "--list"], capture_output=True,
                             text=True, check=True).stdout.split()
    for a in applets:
        if a != "busybox":
            c.symlink(f"bin/{a}", "busybox")
    for m in modules:
        ko = debian.modules / f"{m}.ko"
        if not ko.exists():
            raise UsageError(f"{ko}: not in the kernel package")
        c.file(f"lib/modules/{Path(m).name}.ko", ko.read_bytes())
    for name, data in (extra or {}).items():
        executable = name.endswith((".sh", "init")) or name.startswith(("bin/", "sbin/")) \
            or ".so" in name         # programs and shared objects (ld.so opens them to map)
        c.file(name, data, 0o755 if executable else 0o644)
    c.file("init", init_script.encode(), 0o755)
    Path(out).write_bytes(gzip.compress(c.finish(), 6))


def init_prelude(modules=AHCI_MODULES):
    """The start of every /init: mounts, `modules` loaded, /dev/sda1 waited for. Without
    modules (a kernel with the drivers built in) the console is opened here too, since such
    an initramfs has no /dev/console for the kernel to open before devtmpfs is mounted."""
    console = "" if modules else "exec </dev/console >/dev/console 2>&1\n"
    return r"""#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
%(console)sfor m in %(modules)s; do insmod /lib/modules/$m.ko || echo "@@ERROR insmod $m failed"; done
i=0; while [ ! -b /dev/sda1 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/sda1 ] || { echo "@@ERROR no /dev/sda1"; poweroff -f; }
""" % {"modules": " ".join(Path(m).name for m in modules), "console": console}


INIT_PRELUDE = init_prelude()


# ---- the disk ----------------------------------------------------------------------------
SWAP_SIGNATURE_OFFSET = PAGE - 10


def swap_header(size_bytes, label=b"sosswap"):
    """The first page of a version-1 swap area, as mkswap writes it (mm/swapfile.c,
    include/linux/swap.h union swap_header)."""
    page = bytearray(PAGE)
    last_page = size_bytes // PAGE - 1
    struct.pack_into("<III", page, 1024, 1, last_page, 0)
    page[1036:1052] = uuid.uuid4().bytes
    page[1052:1052 + len(label)] = label
    page[SWAP_SIGNATURE_OFFSET:] = b"SWAPSPACE2"
    return bytes(page)


def make_disk(path, swap_mib, scratch_mib=16):
    """MBR: p1 swap (type 0x82) from LBA 2048, p2 scratch (0x83); returns (p1, p2) as
    (first_lba, sectors)."""
    p1 = (2048, swap_mib * MiB // SECTOR)
    p2 = (p1[0] + p1[1], scratch_mib * MiB // SECTOR)
    total = p2[0] + p2[1] + 2048

    def ent(typ, start, size):
        return struct.pack("<B3sB3sII", 0, b"\xfe\xff\xff", typ, b"\xfe\xff\xff", start, size)
    mbr = bytearray(SECTOR)
    mbr[446:462] = ent(0x82, *p1)
    mbr[462:478] = ent(0x83, *p2)
    mbr[510:512] = b"\x55\xaa"
    with open(path, "wb") as f:
        f.truncate(total * SECTOR)
        f.write(mbr)
        f.seek(p1[0] * SECTOR)
        f.write(swap_header(p1[1] * SECTOR))
    return p1, p2
