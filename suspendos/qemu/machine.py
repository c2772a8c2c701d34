"""One class owns a QEMU process: start, QMP, serial, stop. Every exit path stops QEMU, and
every failure carries the command line and the tail of the serial log.

The machine is q35 under TCG (KVM is not usable on our CI machines), with its built-in ICH9
AHCI, the standard VGA, isa-debug-exit and no network. QEMU starts paused (-S) so nothing the
guest prints is lost before the serial socket is connected.
"""
import asyncio
import os
import shlex
import shutil
import signal
import tempfile
import time

from qemu.qmp import QMPClient

from .. import interrupt
from ..errors import RunError, UsageError
from .blockerrors import BlockErrorWatcher, disk_files

MiB = 1 << 20
DEBUG_EXIT_PORT = 0xF4
CONNECT_DEADLINE = 20.0     # seconds for QEMU to open its sockets


def qemu_binary():
    path = shutil.which("qemu-system-x86_64")
    if not path:
        raise UsageError("qemu-system-x86_64 is not installed (Debian: apt-get install qemu-system-x86)")
    return path


def cpu_args(cpus):
    """-smp N with multi-threaded TCG (one host thread per vCPU, QEMU-NOTES); one CPU stays
    the plain machine."""
    from ..formats.smp import MAX_CPUS
    if not isinstance(cpus, int) or not 1 <= cpus <= MAX_CPUS + 1:
        raise UsageError(f"--cpus: {cpus!r} is not a CPU count from 1 to {MAX_CPUS + 1}")
    return ["-accel", "tcg"] if cpus == 1 else ["-accel", "tcg,thread=multi", "-smp", str(cpus)]


def machine_args(memory, cpus=1):
    """The device set of the test machine. PCI addresses depend on it: change it here only."""
    if memory % MiB:
        raise UsageError("--memory: must be a whole number of MiB")
    return [*cpu_args(cpus), "-cpu", "max", "-machine", "q35", "-m", f"{memory // MiB}M",
            "-vga", "std", "-display", "none", "-nic", "none", "-no-reboot",
            "-device", f"isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04"]


def opt_value(text):
    """A value inside a QEMU option list (`-chardev a=x,b=y`): a comma is doubled, so a path
    with commas cannot end the value and add options of its own (QEMU's qemu-options.hx,
    "comma")."""
    return os.fspath(text).replace(",", ",,")


def module_path(path):
    """A path for -initrd, which a multiboot kernel's loader splits at commas (doubled ones
    escape) and at the first space (the module's command line: hw/i386/multiboot.c)."""
    p = os.fspath(path)
    if any(ch in p for ch in " \n"):
        raise UsageError(f"{p}: QEMU cannot load a module from a path with a space or newline "
                         f"(set TMPDIR to another folder)")
    return opt_value(p)


def disk_args(path, inject=None, bus="ahci", sector_size=512):
    """The disk on AHCI port 0 (ide.0), or on an NVMe or virtio-blk controller (disks.py), as
    -blockdev JSON: the path is a JSON string, never parsed for options. A block device needs
    QEMU's host_device driver. `inject`: blkdebug inject-error rules, which QEMU 7.2 honours
    only when blkdebug sits between the raw format and the file, or "stall", "read-stall",
    "blkdebug": blkdebug with no rules (breakpoints are set through QMP once QEMU runs)."""
    import json
    import stat
    from .disks import device_args
    try:
        is_block = stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        is_block = False
    image = {"driver": "host_device" if is_block else "file", "filename": os.fspath(path)}
    if isinstance(inject, str):
        inject = []
    if inject is not None:
        image = {"driver": "blkdebug", "image": image}
        if inject:
            image["inject-error"] = inject
    node = {"driver": "raw", "node-name": "d0", "file": image}
    return ["-blockdev", json.dumps(node), *device_args(bus, sector_size)]


def debug_exit_value(returncode):
    """isa-debug-exit makes QEMU exit with (V << 1) | 1; anything else is not a guest exit."""
    if returncode is not None and returncode > 0 and returncode & 1:
        return returncode >> 1
    return None


def check_can_run(module_folder=None):
    """What would stop a run after its disk was made, refused before anything is written:
    no QEMU, or a temp folder QEMU cannot load a multiboot module from."""
    qemu_binary()
    if module_folder is not None:
        module_path(os.path.join(module_folder, "payload.blob"))


class QemuMachine:
    def __init__(self, args, log_path=None, name="suspendos"):
        binary = qemu_binary()          # before the folder: a missing QEMU leaves nothing
        self.workdir = tempfile.mkdtemp(prefix="sos-qemu-")
        self.qmp_path = os.path.join(self.workdir, "qmp.sock")
        self.serial_path = os.path.join(self.workdir, "serial.sock")
        self.log_path = log_path or os.path.join(self.workdir, "serial.log")
        self.cmd = [binary, *args, "-S",
                    "-chardev", f"socket,id=qmp,path={opt_value(self.qmp_path)},server=on,wait=off",
                    "-mon", "chardev=qmp,mode=control",
                    "-chardev", f"socket,id=ser0,path={opt_value(self.serial_path)},server=on,"
                    f"wait=off", "-serial", "chardev:ser0"]
        self.qmp = QMPClient(name)
        self.proc = None
        self.reader = self.writer = None
        self.tail = []
        self._log = None
        self.returncode = None
        self.disk_files = disk_files(args)
        self.watcher = None             # BlockErrorWatcher, from start() on

    @property
    def command_line(self):
        return shlex.join(self.cmd)

    async def start(self, before_cont=None):
        """Start QEMU paused, connect, `before_cont(self)`, run. A start that fails or is
        interrupted stops QEMU itself: `async with` never calls __aexit__ when __aenter__
        (which calls this) raised."""
        try:
            await self._start(before_cont)
        except BaseException:
            await self.stop()
            raise

    async def _start(self, before_cont):
        interrupt.guard_task(asyncio.current_task())
        self._log = open(self.log_path, "w")
        self.proc = await asyncio.create_subprocess_exec(
            *self.cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + CONNECT_DEADLINE
        await self._retry(lambda: self.qmp.connect(self.qmp_path), deadline, "QMP socket")
        self.watcher = BlockErrorWatcher(self.qmp, self.disk_files)
        self.reader, self.writer = await self._retry(
            lambda: asyncio.open_unix_connection(self.serial_path), deadline, "serial socket")
        if before_cont:
            await before_cont(self)
        await self.qmp.execute("cont")

    async def _retry(self, connect, deadline, what):
        while True:
            if self.proc.returncode is not None:
                out = (await self.proc.stdout.read()).decode("utf-8", "replace").strip()
                self.tail += ["[qemu] " + l for l in out.splitlines()[-10:]]
                raise self.failure(f"QEMU exited before opening its {what}")
            try:
                return await connect()
            except (OSError, ConnectionError, Exception) as e:  # qmp raises its own types
                if time.monotonic() > deadline:
                    raise self.failure(f"QEMU did not open its {what} within "
                                       f"{CONNECT_DEADLINE:.0f} s ({e})")
                await asyncio.sleep(0.05)

    async def readline(self, deadline):
        """The next serial line (str, without line end), or None at end of output."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise asyncio.TimeoutError
        raw = await self._guarded(self.reader.readline(), remaining)
        if not raw:
            return None
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        self._log.write(line + "\n")
        self._log.flush()
        self.tail = (self.tail + [line])[-40:]
        return line

    async def send_serial(self, data):
        self.writer.write(data)
        await self.writer.drain()

    async def execute(self, command, args=None):
        return await self.qmp.execute(command, args)

    async def wait(self, deadline):
        remaining = max(0.1, deadline - time.monotonic())
        self.returncode = await self._guarded(self.proc.wait(), remaining)
        out = await self.proc.stdout.read()
        if out.strip():
            self.tail += ["[qemu] " + l for l in out.decode("utf-8", "replace").splitlines()[-10:]]
        return self.returncode

    async def _guarded(self, awaitable, timeout):
        """`awaitable` within `timeout` seconds, unless the disk fails first: a guest QEMU
        paused on a full file system would otherwise sit out the whole deadline."""
        if self.watcher is None:
            return await asyncio.wait_for(awaitable, timeout)
        return await self.watcher.race(awaitable, timeout, self.failure)

    def _kill_group(self):
        """SIGKILL QEMU's process group (QEMU leads its own session), if it still runs."""
        if self.proc and self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def kill(self):
        """A power cut: SIGKILL, no QMP quit, nothing flushed by QEMU on the way out."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.returncode = await self.proc.wait()

    async def stop(self):
        """Always safe to call: quits QEMU however it is doing, and closes the sockets.
        After SIGTERM/SIGHUP, or when interrupted while quitting, QEMU is killed at once:
        asyncio may already have cancelled the QMP client's own tasks, and a QEMU that
        outlived us could go on using the disk (finish a resume nobody waits for)."""
        try:
            if self.proc and self.proc.returncode is None:
                if interrupt.received():
                    self._kill_group()
                else:
                    try:
                        await asyncio.wait_for(self.qmp.execute("quit"), 2)
                    except Exception:
                        pass
                try:
                    await asyncio.wait_for(self.proc.wait(), 5)
                except asyncio.TimeoutError:
                    self._kill_group()
                    await self.proc.wait()
        except BaseException:
            self._kill_group()
            raise
        finally:
            if self.watcher:
                self.watcher.close()
            if self.writer:
                self.writer.close()
            if self._log:
                self._log.close()
            shutil.rmtree(self.workdir, ignore_errors=True)
        try:
            await self.qmp.disconnect()
        except Exception:
            pass  # QEMU closes the socket when it quits: expected

    def failure(self, message):
        tail = "\n".join("    " + l for l in self.tail[-25:]) or "    (no serial output)"
        return RunError(f"{message}\n  command: {self.command_line}\n  serial (last lines):\n{tail}")
