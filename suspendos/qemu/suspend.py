"""`suspendos qemu suspend`: build the payload and the test host, boot the QEMU test machine,
let the payload write the image, and report what it did."""
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from ..build.payload import build_payload
from ..build.testhost import build_test_host
from ..errors import RunError, UsageError
from ..formats.common import SECTOR_SIZE
from ..formats.status import STATUS, SUCCESS
from ..target.qemu import DEFAULT_FRAMEBUFFER, qemu_target
from . import protocol
from .machine import QemuMachine, cpu_args, debug_exit_value, disk_args, machine_args
from .ramdump import dump_ram

GiB = 1 << 30
BASE_DEADLINE = 180.0        # seconds for boot, fill and write of a small machine
PER_GIB_DEADLINE = 150.0     # TCG fills, checksums and writes roughly a GiB a minute


class Progress:
    """Progress on stderr: one rewritten line on a terminal, a line per phase otherwise."""

    def __init__(self, enabled=True):
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.last = None

    def show(self, phase, percent):
        if not self.enabled:
            return
        text = f"{phase}: {percent:3d}%"
        if self.tty:
            sys.stderr.write("\r" + text.ljust(40))
            sys.stderr.flush()
        elif (phase, percent // 25) != self.last:
            sys.stderr.write(text + "\n")
        self.last = (phase, percent // 25)

    def done(self):
        if self.enabled and self.tty:
            sys.stderr.write("\r" + " " * 40 + "\r")


def _mb_per_s(nbytes, seconds):
    return round(nbytes / seconds / 1e6, 1) if seconds > 0 else None


def summarize(handoff, host_result, exit_value, message):
    seconds = ((handoff.tsc_end - handoff.tsc_start) / handoff.tsc_hz_used
               if handoff.tsc_hz_used and handoff.tsc_end > handoff.tsc_start else 0.0)
    r = {
        "status": STATUS.name_of(handoff.status),
        "status_code": handoff.status,
        "message": handoff.message.split(b"\0")[0].decode("utf-8", "replace") or message,
        "pages_total": handoff.pages_total,
        "pages_saved": handoff.pages_saved,
        "zero_pages": handoff.zero_pages,
        "bytes_written": handoff.bytes_written,
        "raw_bytes": handoff.raw_bytes,
        "chunks": handoff.chunks,
        "seconds": round(seconds, 4),
        "mb_per_s": _mb_per_s(handoff.bytes_written, seconds),
        "ram_mb_per_s": _mb_per_s(handoff.pages_saved * 4096, seconds),
        "host_exit": protocol.HOST_EXIT.get(exit_value, f"exit {exit_value}"),
        "host_memory_check": "passed" if host_result.get("changed_pages") == "0" else "failed",
        "host_cpu_check": "passed" if host_result.get("cpu") == "ok" else "failed",
        # time spent in plugin hooks (handoff.draw_tsc), and its share of the run
        "draw_seconds": round(handoff.draw_tsc / handoff.tsc_hz_used, 6)
        if handoff.tsc_hz_used else 0.0,
        "draw_percent": round(100 * handoff.draw_tsc / (handoff.tsc_end - handoff.tsc_start), 3)
        if handoff.tsc_end > handoff.tsc_start else 0.0,
    }
    hz = handoff.tsc_hz_used or 1
    # The boot CPU's time in the chunk loop: writing (issuing commands, waiting for the
    # disk) against preparing chunks or waiting for the other CPUs to.
    r.update(cpus_used=handoff.cpus_used, cpus_missing=handoff.cpus_missing,
             disk_seconds=round(handoff.disk_tsc / hz, 4),
             compute_seconds=round(handoff.compute_tsc / hz, 4))
    if handoff.status in (STATUS.CPU_FAULT, STATUS.PLUGIN_FAULT):
        r.update(fault_vector=handoff.fault_vector, fault_rip=handoff.fault_rip,
                 fault_address=handoff.fault_address, fault_cpu=handoff.fault_cpu)
    if handoff.failed_lba or handoff.status == STATUS.AHCI_TASKFILE_ERROR:
        r["failed_lba"] = handoff.failed_lba
    return r


CORE_FOOTPRINT = 512 * 1024         # the payload without plugins, tables included, generously
PLUGIN_OVERHEAD = 512 * 1024        # per plugin: code, stack, scratch, its page-table view


def _make_room_for_plugins(target, plugins):
    """Grow the QEMU target's reserved region, in whole MiB, when what the plugins may need
    (their packages, PLUGIN_OVERHEAD each) would not leave the payload and the writer's
    scratch their room. Small themes fit the default 2 MiB, so the region (and with it the
    saved memory ranges) stays what `qemu resume` expects; a large picture grows it."""
    from ..build.payload import PLUGIN_MIN_WRITER_SCRATCH
    need = (CORE_FOOTPRINT + PLUGIN_MIN_WRITER_SCRATCH
            + sum(len(a.package.signed_part) + PLUGIN_OVERHEAD for a in plugins))
    if need > target.reserved.size:
        target.reserved.size = -(-need // (1 << 20)) * (1 << 20)
        target.validate()


async def stall_first_write(machine):
    """blkdebug's breakpoint (through qemu-io on the drive) suspends the first write request
    for good: the payload's command never completes."""
    await machine.execute("human-monitor-command",
                          {"command-line": 'qemu-io d0 "break write_aio stall"'})


async def run_guest(args, target, memory, on_pause=None, progress=None, deadline_s=None,
                    before_cont=None, on_line=None):
    """Boot the machine with `args`, follow the protocol until QEMU exits; returns
    (handoff or None, host @@RESULT fields, exit value, last error message, log tail).
    `on_line(key, fields, line)` sees every protocol line first; True means handled."""
    progress = progress or Progress(False)
    m = QemuMachine(args)
    deadline = time.monotonic() + (deadline_s or BASE_DEADLINE + PER_GIB_DEADLINE * memory / GiB)
    handoff, result, error = None, {}, ""
    try:
        await m.start(before_cont)
        while True:
            try:
                line = await m.readline(deadline)
            except asyncio.TimeoutError:
                raise m.failure(f"the guest did not finish within {deadline_s or 'the deadline'}"
                                f" ({(deadline - time.monotonic()):.0f} s left)")
            if line is None:
                break
            msg = protocol.split(line)
            if not msg:
                continue
            key, fields = msg
            if on_line and on_line(key, fields, line):
                continue
            if key == "FILL" and fields:
                progress.show("filling guest RAM", int(fields[0]))
            elif key == "PROGRESS" and len(fields) == 2:
                progress.show("writing image", int(fields[0]) * 100 // max(1, int(fields[1])))
            elif key == "PAUSE":
                if on_pause:
                    await m.execute("stop")
                    await on_pause(m, fields[0] if fields else "")
                    await m.execute("cont")
                await m.send_serial(b"g")
            elif key == "HANDOFF" and fields:
                handoff = protocol.parse_handoff(fields[0])
            elif key == "RESULT":
                result = protocol.parse_fields(fields)
            elif key in ("ERROR", "EXCEPTION") and not error:
                error = line[len(key) + 3:]        # the host's own failure, free text
            elif key == "FAIL":
                error = " ".join(fields[1:])       # the payload's: status, then message
        code = await m.wait(deadline)
        progress.done()
        return handoff, result, debug_exit_value(code), error, m
    except BaseException:
        progress.done()
        raise
    finally:
        await m.stop()


def qemu_suspend(memory, disk, seed=1, compress="none", ram_dump=None, inject=None,
                 show_progress=True, keep_blob=None, key=None, target=None, selftest=0,
                 mix=None, plugins=None, screenshot=None, framebuffer=DEFAULT_FRAMEBUFFER,
                 cpus=1, ap_deaf=None, raw_ceiling=False):
    """Returns (summary dict, ok). `target`: use this description instead of the machine's
    own (to test what the payload does with a wrong one). `mix`: "Z,R,T,P", the test host's
    percentages of zero, random, text and pattern pages (default: the host's 25,25,25,25).
    `plugins`: approved packages (suspendos.plugins.package.approve). `framebuffer`: the
    VBE mode (w, h, bpp) or None; the test host sets the target's. `screenshot`: a PNG
    path for QMP screendump, taken at a pause after the plugins' last frame. `cpus`: QEMU
    -smp; the test host hands its APs in. `ap_deaf`: APIC id of an AP the test host hands
    in that never answers the payload (tests the payload's deadline). `raw_ceiling`: write
    no image; the payload streams a constant buffer through the same driver and extents and
    the summary's mb_per_s is the device's ceiling."""
    cpu_args(cpus)              # a bad --cpus is refused before the disk is made
    if mix is not None:
        parts = mix.split(",")
        if len(parts) != 4 or not all(p.isdigit() for p in parts) or sum(map(int, parts)) != 100:
            raise UsageError(f"--mix: {mix!r} is not Z,R,T,P: four whole percentages summing to 100")
    disk = Path(disk)
    existing = disk.exists()
    if existing and disk.stat().st_size % SECTOR_SIZE:
        raise UsageError(f"--disk: {disk} is not a whole number of 512-byte sectors")
    if target is None:
        target = qemu_target(memory, disk.stat().st_size if existing else None, compress,
                             framebuffer=framebuffer)
        if plugins:
            _make_room_for_plugins(target, plugins)
    elif compress != "none":
        target.options.compress = compress
        target.validate()
    with tempfile.TemporaryDirectory(prefix="sos-suspend-") as tmp:
        tmp = Path(tmp)
        built = build_payload(target, key=key, selftest=selftest, plugins=plugins)
        (tmp / "payload.blob").write_bytes(built.blob)
        if keep_blob:
            Path(keep_blob).write_bytes(built.blob)
        build_test_host(tmp / "host.elf")
        if not existing:
            sectors = target.disk.sectors or max(e.lba + e.count for e in target.extents)
            with open(disk, "wb") as f:
                f.truncate(sectors * SECTOR_SIZE)
        pause = {(True, False): " pause=before", (False, True): " pause=after",
                 (True, True): " pause=both"}.get((bool(ram_dump), bool(screenshot)), "")
        fb = target.framebuffer
        append = (f"seed={seed}" + (f" mix={mix}" if mix is not None else "") + pause
                  + (f" vbe={fb.width}x{fb.height}x{fb.bpp}" if fb else " vbe=off")
                  + (f" ap_deaf={ap_deaf}" if ap_deaf is not None else "")
                  + (" raw_ceiling" if raw_ceiling else ""))
        args = [*machine_args(memory, cpus), *disk_args(disk, inject),
                "-kernel", str(tmp / "host.elf"), "-initrd", str(tmp / "payload.blob"),
                "-append", append]
        ram_ranges = [(m.start, m.end) for m in target.memory if m.type == "ram"]

        shot = tmp / "screen.png"
        seen = {"plugins": {}}

        async def on_pause(machine, where):
            if ram_dump and where == "before-read":
                await dump_ram(machine, ram_ranges, ram_dump)
            if screenshot and where == "before-return":
                await machine.execute("screendump", {"filename": str(shot), "format": "png"})

        def on_line(key, fields, line):
            if key == "PLUGIN" and fields:         # @@PLUGIN <name> ready|declined...|refused...
                seen["plugins"][fields[0]] = " ".join(fields[1:])
            elif key == "VBE":
                seen["vbe"] = " ".join(fields)
            elif key in ("AP", "CPU"):             # the host's AP checks, the payload's CPUs
                seen.setdefault("cpu_lines", []).append(line.strip())
            return False

        handoff, result, exit_value, error, m = asyncio.run(
            run_guest(args, target, memory, on_pause, Progress(show_progress),
                      before_cont=stall_first_write if inject == "stall" else None,
                      on_line=on_line))
        if handoff is None:
            raise RunError(m.failure(f"the test host ended ({protocol.HOST_EXIT.get(exit_value, exit_value)}) "
                                     f"without reporting a handoff").args[0])
        summary = summarize(handoff, result, exit_value, error)
        summary["target"] = target.name
        summary["cpus"] = cpus
        if raw_ceiling:
            summary["raw_ceiling"] = True      # no image: bytes_written / seconds = mb_per_s
        summary["host_ap_check"] = "passed" if result.get("aps", "ok") == "ok" else "failed"
        summary["cpu_log"] = seen.get("cpu_lines", [])
        if "vbe" in seen:
            summary["framebuffer"] = seen["vbe"]
        if plugins:
            summary["plugins"] = seen["plugins"]
        if screenshot:
            summary["screenshot"] = None
            if shot.exists():
                from ..fileutil import write_atomic
                write_atomic(screenshot, shot.read_bytes())
                summary["screenshot"] = str(screenshot)
        ok = (handoff.status in SUCCESS and summary["host_memory_check"] == "passed"
              and summary["host_cpu_check"] == "passed"
              and summary["host_ap_check"] == "passed")
        return summary, ok
