"""A real Debian 12 guest built from Debian's packages: systemd, udev, ext4 root, a swap file
made with fallocate + mkswap, Debian's kernel and its headers, gcc, and in a venv
(/opt/suspendos, `suspendos` on root's PATH) the suspendos that runs here: the wheel of the
tree under test, or, for an installed suspendos, its own files rebuilt as a wheel
(selfwheel.py).

Three cached layers under ~/.cache/suspendos/debian (SOS_DEBIAN_CACHE overrides), each keyed
by a hash of its inputs so a change rebuilds only what depends on it:

  base-KEY/root.tar    mmdebstrap --variant=minbase of PACKAGES + the kernel ABI (~70 s)
  wheels-KEY/          the wheels of suspendos's dependencies (pip wheel), keyed by the
                       list its wheel declares
  guest-KEY/           the tar unpacked, the venv installed, suspendos.ko built and the
                       object cache warmed inside it (chroot), the guest's config files
                       written, then a GPT disk whose partition 1 is the root made by
                       `mkfs.ext4 -d` (nothing mounted), partition 2 a swap partition
                       (mkswap) and partition 3 the EFI system partition with Debian's
                       GRUB (esp.py: UEFI machines boot from it, BIOS ones get the
                       kernel from QEMU); vmlinuz and initrd.img copied out of /boot; then one
                       provisioning boot makes /swapfile the
                       distribution way (fallocate + mkswap, in the guest: mkfs.ext4 -d
                       would copy a file of zeros as holes), writes it out once (dd: what
                       `suspendos hibernate` asks of fallocated swap files) and records its
                       resume_offset and extents.

SOS_DEBIAN_GUEST=DIR uses a built guest directory as it is (while developing the runner,
whose own changes would otherwise rebuild the guest). Runs never write to the cached disk: each gets a qcow2 overlay (`overlay()`), so it starts
from the same clean system without copying gigabytes. Building needs root (chroot, device
nodes in the tree); CI runs as root.
"""
import asyncio
import email.parser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from ..cachelock import locked
from ..errors import BuildError, UsageError
from . import kernel_abi
from .esp import GRUB_MODULES, grub_cfg, make_esp
from .guest import GUEST_FILES

SUITE = "bookworm"
PACKAGES = ["systemd-sysv", "udev", "kmod", "e2fsprogs", "util-linux", "procps", "python3",
            "python3-venv", "initramfs-tools", "gcc", "make", "binutils",
            # UEFI: Debian's GRUB for the ESP, the tools to see and set boot entries, the
            # ESP's fsck
            "grub-efi-amd64-bin", "efibootmgr", "dosfstools"]
MiB = 1 << 20
SECTOR = 512
ROOT_START_LBA = 2048                  # partition 1 (root, ext4) at 1 MiB
ROOT_MIB = 3584
SWAP_PART_MIB = 1024                   # partition 2 (swap partition variant)
SWAP_FILE_MIB = 1024                   # /swapfile on the root
ESP_MIB = 64                           # partition 3 (the EFI system partition, FAT32)
ESP_LABEL = "SOSESP"
ROOT_DEV, SWAP_PART_DEV, SWAP_FILE = "/dev/sda1", "/dev/sda2", "/swapfile"
# What every boot of the guest gets on its kernel command line, whichever hibernator runs:
# the region suspendos needs kept from Linux, 4-level paging, the same log level.
RESERVED = "2M$0x10000000"
AP_START = "4K$0x8000"                 # the page where the payload starts the other CPUs
BASE_APPEND = (f"root={ROOT_DEV} console=ttyS0,115200 memmap={RESERVED} memmap={AP_START} "
               "no5lvl loglevel=7")
# The same disk image on each bus of `qemu linux --disk-bus` (only QEMU's -device differs):
# Linux names the partitions by bus, so root= (and swsusp's resume=) follow the bus, while
# fstab finds the root by its label.
PARTITIONS = {"ahci": (ROOT_DEV, SWAP_PART_DEV), "nvme": ("/dev/nvme0n1p1", "/dev/nvme0n1p2"),
              "virtio": ("/dev/vda1", "/dev/vda2")}
ROOT_LABEL = "sosroot"


def root_dev(bus="ahci"):
    return PARTITIONS[bus][0]


def swap_part_dev(bus="ahci"):
    return PARTITIONS[bus][1]


# What GRUB on the ESP boots when the machine does not say (esp.py): the root by label.
UEFI_DEFAULT_CMDLINE = BASE_APPEND.replace(f"root={ROOT_DEV}", f"root=LABEL={ROOT_LABEL}")


def base_append(bus="ahci"):
    """BASE_APPEND with root= naming the root partition on `bus`."""
    return BASE_APPEND.replace(f"root={ROOT_DEV}", f"root={root_dev(bus)}")
BUILD_LOG = "build.log"


def cache_root():
    d = Path(os.environ.get("SOS_DEBIAN_CACHE",
                            Path.home() / ".cache" / "suspendos" / "debian"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _key(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _run(cmd, what, log=None, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if log:
        with open(log, "a") as f:
            f.write(f"$ {' '.join(map(str, cmd))}\n{r.stdout}{r.stderr}\n")
    if r.returncode:
        raise BuildError(f"{what} failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-2000:]}")
    return r.stdout


def _publish(tmp, final):
    """Move a finished build directory into place (another process may have won the race)."""
    try:
        os.rename(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


# ---- layer 1: the Debian base ------------------------------------------------------------
def base_tar(abi, log=print):
    pkgs = PACKAGES + [f"linux-image-{abi}", f"linux-headers-{abi}"]
    d = cache_root() / f"base-{_key(SUITE, *sorted(pkgs))}"
    with locked(cache_root(), d.name):
        if (d / "root.tar").exists():
            return d / "root.tar"
        return _build_base(d, pkgs, log)


def _build_base(d, pkgs, log):
    if not shutil.which("mmdebstrap"):
        raise UsageError("mmdebstrap is not installed (Debian: apt-get install mmdebstrap)")
    tmp = Path(tempfile.mkdtemp(prefix=d.name + ".", dir=d.parent))
    log(f"debian: mmdebstrap {SUITE} minbase + {len(pkgs)} packages (about a minute)")
    t0 = time.monotonic()
    # MODULES=dep cannot see the guest's hardware from a chroot; `most` is Debian's default.
    _run(["mmdebstrap", "--variant=minbase", f"--include={','.join(pkgs)}",
          SUITE, str(tmp / "root.tar")], "mmdebstrap", tmp / BUILD_LOG)
    (tmp / "inputs.json").write_text(json.dumps(
        {"suite": SUITE, "packages": pkgs, "seconds": round(time.monotonic() - t0, 1)}))
    return _publish(tmp, d) / "root.tar"


# ---- layer 2: wheels ---------------------------------------------------------------------
def wheel_digest(path):
    """A hash of what a wheel installs for the guest to run: each package and data file's
    name where it lands (NAME-VERSION.data/SCHEME/PATH read as SCHEME, PATH) and its bytes.
    Not of the zip (it holds mtimes), nor of the .dist-info: its metadata differs between
    the wheel pip builds from the tree and the one rebuilt from an installed copy
    (selfwheel.py) while the files are the same, and the guest should be the same too."""
    h = hashlib.sha256()
    with zipfile.ZipFile(path) as z:
        for where, name in sorted(_installed_names(z)):
            data = z.read(name)
            h.update(f"{where}\0{len(data)}\0".encode() + data)
    return h.hexdigest()[:16]


def _installed_names(z):
    """("SCHEME\0PATH", name in the zip) of each file a wheel installs, its .dist-info's
    left out; the files at the wheel's root are "root" (site-packages, PEP 427)."""
    for name in z.namelist():
        top, _, rest = name.partition("/")
        if name.endswith("/") or top.endswith(".dist-info"):
            continue
        if top.endswith(".data") and rest:
            scheme, _, path = rest.partition("/")
            yield f"{scheme}\0{path}", name
        else:
            yield f"root\0{name}", name


def build_wheels(work, log=print):
    """The suspendos wheel the guest gets and its dependencies' wheels (cached by the
    dependency list). From a source tree, the tree's wheel (the changes under test
    included); from an installed suspendos, its own files rebuilt as a wheel (selfwheel.py).
    Returns (dir with all wheels, digest of the suspendos wheel, key of the dependencies)."""
    repo = Path(__file__).resolve().parents[2]
    out = Path(work) / "wheels"
    out.mkdir(parents=True, exist_ok=True)
    if (repo / "setup.cfg").exists():
        wheel = checkout_wheel(repo, out)
    else:
        from .selfwheel import build_wheel
        wheel = build_wheel(out)
    # The list the wheel itself declares, so a tree and an installed copy key it alike
    reqs = wheel_requirements(wheel)
    deps = cache_root() / f"wheels-{_key(sys.version_info[:2], *reqs)}"
    if not deps.exists():
        log("debian: pip wheel of the dependencies for the guest")
        tmp = Path(tempfile.mkdtemp(prefix=deps.name + ".", dir=deps.parent))
        _run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(tmp), *reqs],
             "pip wheel (dependencies)")
        _publish(tmp, deps)
    for w in deps.glob("*.whl"):
        shutil.copy(w, out / w.name)
    return out, wheel_digest(wheel), deps.name


def checkout_wheel(repo, out):
    """pip wheel of the tree at `repo`, from a clean copy of it; returns the wheel's path."""
    with tempfile.TemporaryDirectory(prefix="sos-src-") as src:
        _clean_copy(repo, Path(src))
        _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), src],
             "pip wheel suspendos")
    return sorted(Path(out).glob("suspendos-*.whl"))[-1]


def _clean_copy(repo, dest):
    """The tree's source files without its build products: setuptools reuses ./build/lib,
    where a file since deleted from the tree would live on in the wheel. In a git checkout
    the files git tracks or would track; elsewhere the tree minus the usual build folders."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                                 "--exclude-standard"], cwd=repo, capture_output=True,
                                check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        shutil.copytree(repo, dest, dirs_exist_ok=True, symlinks=True,
                        ignore=shutil.ignore_patterns("build", ".venv", ".git", "*.egg-info",
                                                      "__pycache__", ".pytest_cache"))
        return
    for name in filter(None, listed.split(b"\0")):
        rel = os.fsdecode(name)
        if not (repo / rel).is_file():
            continue                # deleted in the work tree, still in the index
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / rel, dest / rel)


def wheel_requirements(wheel):
    """The Requires-Dist of a wheel's METADATA that its extras do not add (setup.cfg
    install_requires), spelled one way: setuptools once wrote `name (>=1)`, now `name>=1`."""
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist()
                    if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(z.read(name).decode())
    out = []
    for r in meta.get_all("Requires-Dist") or ():
        spec, sep, marker = r.partition(";")
        if re.search(r"\bextra\s*==", marker):
            continue
        out.append(re.sub(r"[\s()]", "", spec) + (f"; {marker.strip()}" if sep else ""))
    return out


# ---- layer 3: the guest disk -------------------------------------------------------------
class Guest:
    """A built, provisioned guest: its disk (never written by runs), kernel, initrd and what
    the provisioning boot found."""

    def __init__(self, d):
        self.dir = Path(d)
        self.disk = self.dir / "disk.raw"
        self.vmlinuz = self.dir / "vmlinuz"
        self.initrd = self.dir / "initrd.img"
        info = json.loads((self.dir / "guest.json").read_text())
        self.info = info
        self.abi = info["abi"]
        self.swapfile_offset = info.get("swapfile_resume_offset")

    def overlay(self, path):
        """A qcow2 overlay on the cached disk for one run (copy-on-write, starts clean)."""
        path = Path(path)
        path.unlink(missing_ok=True)
        _run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(self.disk),
              str(path)], "qemu-img create")
        return path


# GPT partition types (UEFI 2.10, 5.3.3) and fixed GUIDs, so that the same inputs make the
# same disk: Linux data, Linux swap, EFI system partition.
GPT_TYPES = {"root": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
             "swap": "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
             "esp": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"}
DISK_GUID = "50534F53-0000-4000-8000-000000000000"


def _gpt(path, parts, log):
    """A GPT (with its protective MBR) on the disk image at `path`: (name, start, sectors)
    in order, so partition N is the Nth (p1 root, p2 swap, p3 ESP, on every bus)."""
    lines = ["label: gpt", f"label-id: {DISK_GUID}", "unit: sectors"]
    for i, (name, start, size) in enumerate(parts, 1):
        lines.append(f"start={start}, size={size}, type={GPT_TYPES[name]}, name={name}, "
                     f"uuid={DISK_GUID[:-2]}{i:02X}")
    _run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(path)], "sfdisk", log,
         input="\n".join(lines) + "\n")


def _configure(root, abi):
    """The guest's own files: fstab, hostname, machine-id, the console unit and scripts."""
    (root / "etc/hostname").write_text("sosguest\n")
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 sosguest\n")
    (root / "etc/machine-id").write_text(hashlib.md5(abi.encode()).hexdigest() + "\n")
    (root / "etc/fstab").write_text(
        "# <file system> <mount point> <type> <options> <dump> <pass>\n"
        f"LABEL={ROOT_LABEL} / ext4 errors=remount-ro 0 1\n"
        f"LABEL={ESP_LABEL} /boot/efi vfat umask=0077,nofail 0 1\n"
        f"{SWAP_FILE} none swap sw,nofail 0 0\n")
    for rel, (mode, text) in GUEST_FILES.items():
        p = root / rel.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        p.chmod(mode)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "sos-console.service"
    if not link.is_symlink():
        link.symlink_to("/etc/systemd/system/sos-console.service")
    # the console is ours: no login prompt competing for ttyS0
    # and no periodic jobs that would only make boots slower and timings noisier
    for unit in ("serial-getty@ttyS0.service", "getty@tty1.service", "e2scrub_reap.service",
                 "e2scrub_all.timer", "fstrim.timer", "apt-daily.timer",
                 "apt-daily-upgrade.timer", "dpkg-db-backup.timer"):
        m = root / "etc/systemd/system" / unit
        if not m.is_symlink():
            m.symlink_to("/dev/null")


def _guest_files_digest():
    h = hashlib.sha256()
    for rel, (mode, text) in sorted(GUEST_FILES.items()):
        h.update(f"{rel}\0{mode}\0{text}\0".encode())
    return h.hexdigest()[:16]


def build_guest(abi=None, log=print):
    """The cached guest for this tree (built when missing). Returns a Guest."""
    if os.geteuid() != 0:
        raise UsageError("building the Debian guest needs root (chroot and device nodes)")
    for tool in ("mkfs.ext4", "qemu-img", "mkswap", "tar"):
        if not shutil.which(tool):
            raise UsageError(f"{tool} is not installed (scripts/setup.sh installs it)")
    if os.environ.get("SOS_DEBIAN_GUEST"):     # development: reuse a built guest as is
        return Guest(os.environ["SOS_DEBIAN_GUEST"])
    abi = abi or kernel_abi()
    t0 = time.monotonic()
    tar = base_tar(abi, log)
    with tempfile.TemporaryDirectory(prefix="sos-guest-") as work:
        work = Path(work)
        wheels, wheel_digest, deps = build_wheels(work, log)
        d = _guest_dir(tar, wheel_digest, deps)
        with locked(cache_root(), d.name):
            if (d / "guest.json").exists():
                return Guest(d)
            return _build_guest(d, tar, wheels, wheel_digest, deps, abi, work, t0, log)


def guest_dir(abi=None, log=print):
    """The folder build_guest() uses for this suspendos, whether the guest is built or not
    (the base layer and the wheels, its key's inputs, are built when missing): a tree and an
    installed copy of the same files find the same one."""
    tar = base_tar(abi or kernel_abi(), log)
    with tempfile.TemporaryDirectory(prefix="sos-guest-") as work:
        _, wheel_digest, deps = build_wheels(Path(work), log)
    return _guest_dir(tar, wheel_digest, deps)


def _guest_dir(tar, wheel_digest, deps):
    # deps (wheels-KEY): the digest leaves out METADATA, so the dependency list counts here
    return cache_root() / "guest-{}".format(_key(
        tar.parent.name, wheel_digest, deps, _guest_files_digest(), ROOT_MIB, SWAP_PART_MIB,
        SWAP_FILE_MIB, BASE_APPEND, "gpt", ESP_MIB, _esp_digest()))


def _esp_digest():
    """What the ESP is made from (esp.py's GRUB modules and config)."""
    return _key(*GRUB_MODULES, grub_cfg("ABI", ROOT_LABEL, UEFI_DEFAULT_CMDLINE))


def _build_guest(d, tar, wheels, wheel_digest, deps, abi, work, t0, log):
    log(f"debian: building guest {d.name} (kernel {abi}, suspendos {wheel_digest})")
    tmp = Path(tempfile.mkdtemp(prefix=d.name + ".", dir=d.parent))
    try:
        _assemble(tar, wheels, abi, work, tmp)
        info = {"abi": abi, "base": tar.parent.name, "wheel": wheel_digest, "wheels": deps,
                "append": BASE_APPEND, "root_mib": ROOT_MIB, "swap_part_mib": SWAP_PART_MIB,
                "swap_file_mib": SWAP_FILE_MIB, "esp_mib": ESP_MIB,
                "assemble_seconds": round(time.monotonic() - t0, 1)}
        (tmp / "guest.json").write_text(json.dumps(info))
        t1 = time.monotonic()
        info.update(asyncio.run(_provision(Guest(tmp), tmp)))
        info["provision_seconds"] = round(time.monotonic() - t1, 1)
        (tmp / "guest.json").write_text(json.dumps(info, indent=1))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"debian: guest ready in {time.monotonic() - t0:.0f} s")
    return Guest(_publish(tmp, d))


# What the guest's console gives the commands it runs (guest.py CONSOLE).
GUEST_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "HOME": "/root"}

PREBUILD_MODULE = """
import sys
from suspendos.linuxhost import host, module
print(module.cached_module(host.Host(release=sys.argv[1])))
"""


def _assemble(tar, wheels, abi, work, out):
    root = work / "root"
    root.mkdir()
    blog = out / BUILD_LOG
    _run(["tar", "-xf", str(tar), "-C", str(root), "--numeric-owner"], "tar -x", blog)
    # the suspendos venv, from wheels only (the guest has no network, neither has the chroot)
    shutil.copytree(wheels, root / "tmp/wheels")
    _run(["chroot", str(root), "python3", "-m", "venv", "/opt/suspendos"], "venv", blog)
    _run(["chroot", str(root), "/opt/suspendos/bin/pip", "install", "-q", "--no-index",
          "--find-links", "/tmp/wheels", "suspendos"], "pip install (guest)", blog)
    shutil.rmtree(root / "tmp/wheels")
    os.symlink("/opt/suspendos/bin/suspendos", root / "usr/local/sbin/suspendos")
    # suspendos.ko for the guest's kernel, built once here (in the guest's own tree, with its
    # headers and gcc) into the cache `suspendos hibernate` looks in, as it would build it
    _run(["chroot", str(root), "/opt/suspendos/bin/python", "-c", PREBUILD_MODULE, abi],
         "kbuild suspendos.ko (guest)", blog)
    # the payload's and resume loader's objects, compiled once here (natively: ~15 s, where
    # each `suspendos hibernate --prepare` and `install-resume` in the guest would compile
    # them under TCG) into the object cache root's commands in the guest use: the same
    # gcc, sources and paths, so the same keys (suspendos/build/objcache.py). The
    # environment is the guest console's (guest.py CONSOLE), nothing of the host's.
    _run(["chroot", str(root), "/opt/suspendos/bin/python", "-m", "suspendos.build.objcache",
          "--warm"], "object cache warm-up (guest)", blog, env=GUEST_ENV)
    _configure(root, abi)
    for name, dst in ((f"vmlinuz-{abi}", "vmlinuz"), (f"initrd.img-{abi}", "initrd.img")):
        shutil.copy(root / "boot" / name, out / dst)
    (root / "boot/efi").mkdir(exist_ok=True)
    esp_image = make_esp(root, work / "esp.img", ESP_MIB, ESP_LABEL,
                         grub_cfg(abi, ROOT_LABEL, UEFI_DEFAULT_CMDLINE))
    # the disk: GPT, p1 = ext4 root filled from the tree, p2 = swap partition, p3 = the ESP
    # (last, so that the BIOS boots' partitions keep their numbers and places)
    disk = out / "disk.raw"
    root_sectors = ROOT_MIB * MiB // SECTOR
    swap_start = ROOT_START_LBA + root_sectors
    swap_sectors = SWAP_PART_MIB * MiB // SECTOR
    esp_start = swap_start + swap_sectors
    esp_sectors = ESP_MIB * MiB // SECTOR
    with open(disk, "wb") as f:
        f.truncate((esp_start + esp_sectors + 2048) * SECTOR)    # room for the backup GPT
    _gpt(disk, [("root", ROOT_START_LBA, root_sectors), ("swap", swap_start, swap_sectors),
                ("esp", esp_start, esp_sectors)], blog)
    with open(esp_image, "rb") as s, open(disk, "r+b") as f:
        f.seek(esp_start * SECTOR)
        shutil.copyfileobj(s, f, 1 << 20)
    _run(["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-E",
          f"offset={ROOT_START_LBA * SECTOR}", "-d", str(root), str(disk),
          f"{ROOT_MIB * 1024}k"], "mkfs.ext4 -d", blog)
    swap = work / "swap.part"
    with open(swap, "wb") as f:
        f.truncate(swap_sectors * SECTOR)
    _run(["mkswap", "-L", "sosswap", str(swap)], "mkswap", blog)
    with open(swap, "rb") as s, open(disk, "r+b") as f:
        f.seek(swap_start * SECTOR)
        f.write(s.read(4096))


async def _provision(guest, tmp):
    """First boot: make /swapfile (fallocate + mkswap, as Debian's wiki says), note its
    resume_offset (the physical block of its first page, from filefrag), power off."""
    from .realvm import GuestVM
    async with GuestVM(guest, guest.disk, memory=512 * MiB, cpus=1,
                       log_path=tmp / "provision.log") as vm:
        await vm.ready()
        await vm.run(f"fallocate -l {SWAP_FILE_MIB}M {SWAP_FILE} && chmod 600 {SWAP_FILE} && "
                     f"mkswap -L sosswapfile {SWAP_FILE} >/dev/null && swapon {SWAP_FILE} && "
                     f"swapoff {SWAP_FILE}", timeout=300)
        # fallocate leaves the blocks unwritten; `suspendos hibernate` refuses those (a read
        # through ext4 gives zeros whatever the disk holds) and names this fix: write the
        # file out once. Both hibernators then use the same, fully written swap file.
        await vm.run(f"dd if=/dev/zero of={SWAP_FILE} bs=1M count={SWAP_FILE_MIB} "
                     f"conv=notrunc,fsync status=none && mkswap -L sosswapfile {SWAP_FILE} "
                     f">/dev/null && swapon {SWAP_FILE} && swapoff {SWAP_FILE}", timeout=900)
        off = await vm.run("sos-swapfile-offset " + SWAP_FILE, timeout=60)
        frag = await vm.run("filefrag -v " + SWAP_FILE, timeout=60)
        await vm.poweroff()
    # the file's extents on the partition, in 4 KiB blocks: (physical start, length)
    extents = [(int(m.group(1)), int(m.group(2))) for m in re.finditer(
        r"^\s*\d+:\s+\d+\.\.\s*\d+:\s+(\d+)\.\.\s*\d+:\s+(\d+):", frag, re.M)]
    return {"swapfile_resume_offset": int(re.findall(r"\d+", off)[-1]),
            "swapfile_extents": extents}


def main(argv=None):
    """python -m suspendos.linuxvm.debian: build (or find) the guest and print where it is."""
    t0 = time.monotonic()
    g = build_guest()
    print(json.dumps({"dir": str(g.dir), "seconds": round(time.monotonic() - t0, 1),
                      **g.info}, indent=1))


if __name__ == "__main__":
    main()
