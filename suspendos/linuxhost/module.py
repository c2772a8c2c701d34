"""suspendos.ko for the running kernel: built from the module sources the package ships
(linux/ in a checkout, suspendos_c/linux when installed) with the kernel's own kbuild
(`make -C /lib/modules/RELEASE/build M=DIR`), cached per kernel release and source hash,
and loaded (again, when a different build is loaded)."""
import hashlib
import shutil
import subprocess
from pathlib import Path

from ..errors import BuildError, UsageError
from ..sources import source_dir

MODULE_FILES = ("suspendos.c", "suspendos_linux.h", "Kbuild")


def abi_header():
    """suspendos_abi.h for kernel code: the generated header with <linux/types.h>."""
    from ..formats import cheader
    text = cheader.generate() + "\n"
    return text.replace("#include <stdint.h>", "#include <linux/types.h>").encode()


def _cache_key(release):
    """What the module is built from: its sources and the format declarations the ABI
    header is generated from (hashed without generating it: this runs under the clock)."""
    from .. import __version__
    h = hashlib.sha256(f"{__version__}\0{release}\0".encode())
    src = source_dir("linux")
    formats = Path(__file__).resolve().parent.parent / "formats"
    for p in [src / f for f in MODULE_FILES] + sorted(formats.glob("*.py")):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def sources():
    """{name: bytes} of everything kbuild compiles."""
    src = source_dir("linux")
    out = {f: (src / f).read_bytes() for f in MODULE_FILES}
    out["suspendos_abi.h"] = abi_header()
    return out


def kbuild(kdir, work, files=None):
    """Build suspendos.ko in `work` against the kernel build tree `kdir`; returns its path."""
    work = Path(work).resolve()          # kbuild wants an absolute M=
    work.mkdir(parents=True, exist_ok=True)
    for name, data in (files or sources()).items():
        if not (work / name).exists() or (work / name).read_bytes() != data:
            (work / name).write_bytes(data)
    r = subprocess.run(["make", "-C", str(kdir), f"M={work}", "modules"],
                       capture_output=True, text=True)
    ko = work / "suspendos.ko"
    if r.returncode or not ko.exists():
        raise BuildError(f"kbuild of suspendos.ko failed:\n{(r.stdout + r.stderr)[-3000:]}")
    return ko


def cached_module(host):
    """The module for the running kernel, built once per release and source hash."""
    kdir = host.kbuild_dir()
    if not (kdir / "Makefile").exists():
        raise UsageError(f"module: no kernel build tree at /lib/modules/{host.release}/build "
                         f"(apt install linux-headers-{host.release})")
    if not shutil.which("make") or not shutil.which("gcc"):
        raise UsageError("module: make and gcc are needed to build suspendos.ko "
                         "(apt install build-essential)")
    work = host.cache / f"module-{host.release}-{_cache_key(host.release)}"
    ko = work / "suspendos.ko"
    if ko.exists():
        return ko
    return kbuild(kdir, work)


def srcversion(ko):
    r = subprocess.run(["modinfo", "-F", "srcversion", str(ko)], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def load(host, ko):
    """insmod the module; a loaded build with another srcversion is removed first.
    Returns what was done ("loaded", "already loaded", "reloaded")."""
    loaded = host.sys.path("/sys/module/suspendos")
    done = "loaded"
    if loaded.exists():
        have = (loaded / "srcversion").read_text().strip() if (loaded / "srcversion").exists() \
            else None
        if have and have == srcversion(ko):
            return "already loaded"
        r = subprocess.run(["rmmod", "suspendos"], capture_output=True, text=True)
        if r.returncode:
            raise UsageError(f"module: another suspendos.ko is loaded and rmmod failed: "
                             f"{r.stderr.strip()}")
        done = "reloaded"
    r = subprocess.run(["insmod", str(ko)], capture_output=True, text=True)
    if r.returncode:
        raise UsageError(f"module: insmod {ko} failed: {r.stderr.strip()} (dmesg says why)")
    return done
