"""The kexec-jump test kernel: built from Debian's kernel source with CONFIG_KEXEC_JUMP.

Debian's stock kernels are built without KEXEC_JUMP, so this one is compiled here:
`apt-get download linux-source-6.12` (in Debian 12 itself: bookworm-security), `make
tinyconfig`, the options of kexec.config merged in, `make olddefconfig`, every option
checked, `make bzImage`.

Why 6.12 and not 6.1 (Debian 12's default kernel): on a preserve-context kexec, machine_kexec() loads an empty
GDT before calling relocate_kernel, and 6.1's return path (virtual_mapped in
arch/x86/kernel/relocate_kernel_64.S) goes back to restore_processor_state() with whatever
GDT the image left, whose first `loadsegment(ss, __KERNEL_DS)` then faults. Upstream fixed it
("x86/kexec: Restore GDT on return from ::preserve_context kexec", in 6.12.5 by Debian's
changelog): virtual_mapped reloads the GDT saved by save_processor_state. 6.12.117 has it.

The result is cached under ~/.cache/suspendos/kexec (SOS_KEXEC_CACHE overrides), keyed by
the source package's version and the fragment's hash: a cold cache builds it (minutes), a
warm one reuses bzImage. apt takes the newest 6.12 Debian has, so a Debian security update
means one new build. The unpacked source tree is removed after a build.
"""
import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from ..cachelock import locked
from ..errors import BuildError
from . import _deb

SOURCE_PACKAGE = "linux-source-6.12"
FRAGMENT = Path(__file__).with_name("kexec.config")


def cache_dir():
    d = Path(os.environ.get("SOS_KEXEC_CACHE", Path.home() / ".cache" / "suspendos" / "kexec"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def fragment_options(text=None):
    """{CONFIG_X: 'y'|'n'} from the fragment (comments and blank lines skipped)."""
    opts = {}
    for n, line in enumerate((text if text is not None else FRAGMENT.read_text()).splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"(CONFIG_\w+)=([yn])", line)
        if not m:
            raise BuildError(f"{FRAGMENT.name} line {n}: expected CONFIG_X=y or =n, got {line!r}")
        opts[m.group(1)] = m.group(2)
    return opts


def source_deb(cache):
    return _deb(cache, SOURCE_PACKAGE)


def _run(cmd, cwd, log):
    with open(log, "ab") as f:
        f.write(f"$ {' '.join(cmd)}\n".encode())
        f.flush()
        r = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode:
        tail = Path(log).read_text(errors="replace")[-3000:]
        raise BuildError(f"{' '.join(cmd)} failed (exit {r.returncode}); log {log}:\n{tail}")


def _check_config(config_text, opts):
    have = {}
    for line in config_text.splitlines():
        m = re.fullmatch(r"(CONFIG_\w+)=(.*)", line)
        if m:
            have[m.group(1)] = m.group(2)
        m = re.fullmatch(r"# (CONFIG_\w+) is not set", line)
        if m:
            have[m.group(1)] = "n"
    wrong = [f"{k}={v} (got {have.get(k, 'n')})" for k, v in opts.items() if have.get(k, "n") != v]
    if wrong:
        raise BuildError("the kernel config lost options of kexec.config: " + ", ".join(wrong))


class KexecKernel:
    """bzImage with KEXEC_JUMP; `ensure()` builds it when the cache does not hold it."""

    def __init__(self, cache=None):
        self.cache = Path(cache or cache_dir())
        self.deb = source_deb(self.cache)
        self.version = self.deb.name.split("_")[1]
        frag = FRAGMENT.read_bytes()
        self.options = fragment_options(frag.decode())
        self.key = f"{SOURCE_PACKAGE}-{self.version}-{hashlib.sha256(frag).hexdigest()[:12]}"
        self.dir = self.cache / self.key
        self.bzimage = self.dir / "bzImage"
        self.build_seconds = None       # set when ensure() built it

    def ensure(self, log=print):
        if self.bzimage.exists():
            return self.bzimage
        # one build at a time per key: a second caller waits, then finds the result
        with locked(self.cache, self.key):
            if self.bzimage.exists():
                return self.bzimage
            return self._build(log)

    def _build(self, log):
        t0 = time.monotonic()
        work = self.cache / f"build-{self.key}"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        blog = work.parent / f"build-{self.key}.log"
        blog.write_bytes(b"")
        log(f"kexec kernel: building {SOURCE_PACKAGE} {self.version} (log {blog})")
        _run(["dpkg-deb", "-x", str(self.deb), str(work / "deb")], work, blog)
        tars = list((work / "deb" / "usr" / "src").glob("linux-source-*.tar.xz"))
        if len(tars) != 1:
            raise BuildError(f"{self.deb.name}: expected one linux-source-*.tar.xz inside")
        _run(["tar", "-xJf", str(tars[0])], work, blog)
        tars[0].unlink()
        src = next(p for p in work.iterdir() if p.name.startswith("linux-source-"))
        _run(["make", "-s", "tinyconfig"], src, blog)
        with open(src / ".config", "a") as f:
            for k, v in self.options.items():
                f.write(f"{k}={v}\n" if v == "y" else f"# {k} is not set\n")
        _run(["make", "-s", "olddefconfig"], src, blog)
        config = (src / ".config").read_text()
        _check_config(config, self.options)
        _run(["make", f"-j{os.cpu_count() or 1}", "bzImage"], src, blog)
        image = src / "arch" / "x86" / "boot" / "bzImage"
        if not image.exists():
            raise BuildError(f"make bzImage left no {image}; log {blog}")
        tmp = self.cache / f"{self.key}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        shutil.copy(image, tmp / "bzImage")
        (tmp / "config").write_text(config)
        self.build_seconds = round(time.monotonic() - t0, 1)
        (tmp / "build-seconds").write_text(f"{self.build_seconds}\n")
        tmp.rename(self.dir)
        shutil.rmtree(work)
        log(f"kexec kernel: built in {self.build_seconds} s")
        return self.bzimage


if __name__ == "__main__":
    k = KexecKernel()
    print(k.ensure())
