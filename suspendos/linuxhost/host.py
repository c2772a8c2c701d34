"""The machine `suspendos hibernate` runs on: its files (live, or a sysroot copy for tests),
its kernel release, who runs it, and the caches. Everything else reads the system through
this, so the refusals can be tested against a synthetic sysroot."""
import os
import re
import subprocess
from pathlib import Path

from ..errors import UsageError
from ..target.linux import System

DEFAULT_CACHE = "/var/cache/suspendos"


def _count(text, what):
    """A kernel-written decimal count; anything else (a damaged copy) is refused."""
    if not (text.isascii() and text.isdigit()):
        raise UsageError(f"{what}: {text!r} is not a count")
    return int(text)


class Host:
    def __init__(self, sysroot=None, euid=None, release=None, cache_dir=None, etc_dir=None):
        self.sys = System(sysroot)
        self.sysroot = sysroot
        self.euid = os.geteuid() if euid is None else euid
        self.release = release or os.uname().release
        self.cache = Path(cache_dir or os.environ.get("SOS_CACHE_DIR", DEFAULT_CACHE))
        self.etc = Path(etc_dir or (self.sys.path("/etc") if sysroot else "/etc"))

    @property
    def live(self):
        return self.sys.live

    def read(self, path, what):
        return self.sys.read(path, what)

    def cmdline(self):
        return self.read("/proc/cmdline", "kernel command line").split()

    def meminfo(self):
        """/proc/meminfo in bytes."""
        out = {}
        for line in self.read("/proc/meminfo", "memory").splitlines():
            name, _, rest = line.partition(":")
            words = rest.split()
            if words:
                out[name] = _count(words[0], f"memory: /proc/meminfo {name}") * \
                    (1024 if words[1:] == ["kB"] else 1)
        for need in ("MemTotal", "MemFree", "MemAvailable"):
            if need not in out:
                raise UsageError(f"memory: /proc/meminfo has no {need}")
        return out

    def swaps(self):
        """[(name, type, size bytes, used bytes)] of /proc/swaps."""
        if not self.sys.exists("/proc/swaps"):
            return []
        out = []
        for line in self.read("/proc/swaps", "swap").splitlines()[1:]:
            w = line.split()
            if len(w) >= 4:
                what = f"swap: /proc/swaps {w[0]}"
                out.append((w[0].replace("\\040", " "), w[1], _count(w[2], what) * 1024,
                            _count(w[3], what) * 1024))
        return out

    def mounts(self):
        """[(major:minor, mount point, filesystem type, source)] of /proc/self/mountinfo
        (Documentation/filesystems/proc.rst 3.5; octal escapes such as \\040 undone)."""
        out = []
        for line in self.read("/proc/self/mountinfo", "mounts").splitlines():
            left, sep, right = line.partition(" - ")
            w, r = left.split(), right.split()
            if sep and len(w) >= 5 and len(r) >= 2:
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), w[4])
                out.append((w[2], point, r[0], r[1]))
        return out

    def cpu_flags(self):
        for line in self.read("/proc/cpuinfo", "cpu").splitlines():
            if line.startswith("flags"):
                return set(line.partition(":")[2].split())
        return set()

    def lockdown(self):
        """The kernel lockdown mode ("none", "integrity", "confidentiality")."""
        p = "/sys/kernel/security/lockdown"
        if not self.sys.exists(p):
            return "none"
        text = self.read(p, "lockdown")
        return text[text.find("[") + 1:text.find("]")] if "[" in text else "none"

    def kbuild_dir(self):
        return self.sys.path(f"/lib/modules/{self.release}/build")

    def cpus(self):
        """{cpu number: online?} from sysfs; CPUs without an `online` file cannot go offline."""
        base = self.sys.path("/sys/devices/system/cpu")
        out = {}
        for d in base.glob("cpu[0-9]*"):
            n = int(d.name[3:])
            f = d / "online"
            out[n] = f.read_text().strip() == "1" if f.exists() else True
        return out

    def online_cpus(self):
        return sum(self.cpus().values())

    def area(self, swap):
        """The swap partition or file as a path to open (inside the sysroot for tests)."""
        return swap if self.live else self.sys.path(swap)

    def run(self, cmd):
        """A system command (swapoff, swapon); (exit status, its stderr)."""
        r = subprocess.run(cmd, capture_output=True, text=True)
        return r.returncode, (r.stderr or r.stdout).strip()
