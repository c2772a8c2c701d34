"""gcc and ld for freestanding x86-64 code: one place for the flags, every failure reported
with the command and the compiler's own words."""
import functools
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from ..errors import BuildError
from ..formats import cheader
from ..sources import source_dir
from . import objcache

# No red zone (exceptions push onto the current stack), general registers only (the host's
# vector state is the host's: only the few functions that carry their own target attribute
# use xmm/ymm, after builder/core/vector.c has saved it), no stack protector or PIC
# (nothing sets them up).
FREESTANDING = ["-ffreestanding", "-nostdlib", "-mno-red-zone", "-fno-stack-protector",
                "-mgeneral-regs-only", "-fno-pic", "-fno-pie", "-fno-asynchronous-unwind-tables",
                "-O2", "-g0", "-Wall", "-Wextra", "-Werror=implicit-function-declaration",
                "-std=gnu11"]
# Seconds for one compile or link. On a host a file takes a second; `suspendos hibernate
# --prepare` also compiles inside the Debian guest under TCG on one vCPU, where a clean-clone
# run on a loaded machine saw chacha20poly1305.c pass 120 s (the install-resume layer build).
COMPILE_TIMEOUT = 600


@functools.lru_cache(maxsize=None)
def compiler_include_dir():
    """gcc's own headers (stdint.h, stddef.h, immintrin.h, ...), the only ones freestanding
    code may include: the build adds -nostdinc so a C library header fails here too, not
    only on a machine without libc6-dev (a minimal Debian that builds kernel modules)."""
    p = subprocess.run([tool("gcc"), "-print-file-name=include"], capture_output=True,
                       text=True, timeout=COMPILE_TIMEOUT)
    path = p.stdout.strip()
    if p.returncode or not Path(path, "stddef.h").is_file():
        raise BuildError(f"gcc does not name its own include folder (got {path!r})")
    return path


def tool(name):
    path = shutil.which(name)
    if not path:
        raise BuildError(f"{name} is not installed (Debian: apt-get install build-essential)")
    return path


# Seconds a tool's process group has to end on SIGTERM before it is killed.
TERM_GRACE = 5.0


def _run_group(cmd, cwd):
    """Run `cmd` in a process group of its own and, on any way out but its own exit (a
    timeout, Ctrl-C, SIGTERM taking the Ctrl-C path), end the whole group: gcc is a driver
    whose cc1 and as run on after the driver alone is killed, as subprocess.run would do,
    still writing into the build's folder (tests/test_signals_qemu.py saw a cc1 outlive the
    build)."""
    # errors="replace": a source file in another encoding makes gcc quote non-UTF-8 bytes
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace", start_new_session=True)
    try:
        out, err = proc.communicate(timeout=COMPILE_TIMEOUT)
    except BaseException:
        _end_group(proc)
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _end_group(proc):
    """SIGTERM first (gcc removes its temporary files on it), SIGKILL after TERM_GRACE; then
    wait, within a deadline, until no member is left, so nothing of it outlives the caller's
    cleanup. poll() reaps the leader; its orphaned children are reaped by init."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + TERM_GRACE
        while time.monotonic() < deadline:
            proc.poll()
            if not _group_alive(proc.pid):
                break
            time.sleep(0.02)
        else:
            continue
        break
    for stream in (proc.stdout, proc.stderr):
        stream.close()


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def run(cmd, what, cwd=None):
    try:
        p = _run_group(cmd, cwd)
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what}: timed out after {COMPILE_TIMEOUT} s: {' '.join(map(str, cmd))}")
    if p.returncode:
        out = (p.stderr or p.stdout).strip().splitlines()
        first = next((l for l in out if "error" in l), out[-1] if out else f"exit {p.returncode}")
        raise BuildError(f"{what} failed: {first.strip()}\n  command: {' '.join(map(str, cmd))}\n"
                         + "\n".join(out[-30:]))
    return p


def abi_header_dir(workdir):
    """Generate suspendos_abi.h from the construct declarations into workdir/include."""
    inc = Path(workdir) / "include"
    inc.mkdir(parents=True, exist_ok=True)
    cheader.write(inc / "suspendos_abi.h")
    return inc


def include_dirs(workdir):
    return [abi_header_dir(workdir), source_dir("drivers"), source_dir("builder") / "lib",
            source_dir("builder") / "core"]


# Code that runs once per run or per disk command, not per byte: built for size, so the blob
# stays within 64 KiB (tests/test_build.py, at 256 MiB; larger machines add page tables,
# about 7 KiB more at 3 GiB). The hot loops (LZ4, ChaCha20-Poly1305, XXH64, the chunk
# writer) stay -O2.
COLD_SOURCES = {("core", "main"), ("core", "smp"), ("core", "raw_ceiling"), ("core", "fault"),
                ("core", "plugin_host"), ("drivers", "printf"), ("drivers", "ahci"),
                ("drivers", "ahci_disk"), ("core", "vector"), ("drivers", "apic"),
                ("core", "ap_wake"), ("core", "stream"), ("drivers", "nvme"),
                ("drivers", "virtio_blk"), ("drivers", "disk_queue"), ("drivers", "pci"),
                ("drivers", "timer"), ("drivers", "serial"), ("drivers", "iommu")}


def compile_all(sources, workdir, extra_flags=(), includes=None):
    """Compile C and assembly sources to objects in workdir/obj; returns the object paths.
    An object the cache holds (objcache.py: same compiler, flags and sources) is copied
    from it instead of compiled."""
    gcc = tool("gcc")               # a missing compiler is reported as such, cache or not
    obj_dir = Path(workdir) / "obj"
    obj_dir.mkdir(parents=True, exist_ok=True)
    incs = includes if includes is not None else include_dirs(workdir)
    flags = [*FREESTANDING, "-nostdinc", "-isystem", compiler_include_dir(), *extra_flags,
             *[f"-I{i}" for i in incs]]
    objects = []
    for src in sources:
        src = Path(src)
        obj = obj_dir / f"{src.parent.name}_{src.stem}.o"
        size = ["-Os"] if (src.parent.name, src.stem) in COLD_SOURCES else []
        # -pipe: cc1 hands as its assembly through a pipe, no temporary file in TMPDIR
        cmd = [gcc, "-pipe", *flags, *size, "-c", str(src), "-o", str(obj)]
        objcache.compile_cached(cmd, src, obj, Path(workdir) / "include",
                                lambda: run(cmd, f"compiling {src.name}"))
        objects.append(obj)
    return objects


def link(objects, script_text, out, workdir):
    script = Path(workdir) / (Path(out).stem + ".ld")
    script.write_text(script_text)
    run([tool("ld"), "-T", str(script), "-nostdlib", "-static", "-z", "max-page-size=4096",
         "-z", "noexecstack", "--no-warn-rwx-segments", "--gc-sections", *map(str, objects), "-o", str(out)],
        f"linking {Path(out).name}")
    return out


# The driver files each [disk] kind links (drivers/disk.h): only the one the target needs.
DISK_DRIVERS = {"ahci": ("ahci.c", "ahci_disk.c"), "nvme": ("nvme.c", "disk_queue.c"),
                "virtio-blk": ("virtio_blk.c", "disk_queue.c")}


def driver_sources(kind="ahci"):
    drivers = source_dir("drivers")
    return [drivers / n for n in ("serial.c", "printf.c", "pci.c", "timer.c", "iommu.c",
                                  *DISK_DRIVERS[kind])]


def payload_sources(kind="ahci"):
    core = source_dir("builder") / "core"
    lib = source_dir("builder") / "lib"
    drivers = source_dir("drivers")     # apic.c, ap_start.S: waking offline CPUs (Linux)
    return ([*sorted(core.glob("*.c")), *sorted(core.glob("*.S"))]
            + driver_sources(kind) + [drivers / "apic.c", drivers / "ap_start.S",
                                      lib / "string.c"])
