"""`suspendos qemu suspend`: build the payload and the test host, boot the QEMU test machine,
let the payload write the image, and report what it did."""
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from ..build.payload import build_payload
from ..build.testhost import build_test_host
from ..diskguard import claim_disk
from ..errors import RunError, UsageError
from ..fileutil import check_output, input_size, open_input, write_atomic
from ..formats.common import SECTOR_SIZE
from ..formats.status import STATUS, SUCCESS
from ..target.qemu import DEFAULT_FRAMEBUFFER, TEST_HOST_AP_START_PAGE, qemu_target
from . import protocol
from .machine import (QemuMachine, check_can_run, cpu_args, debug_exit_value, disk_args,
                      machine_args, module_path)
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


def tsc_fields(handoff):
    """The guest's TSC rate and how it was obtained: "host", "pit", or "fallback" (an
    assumed 5 GHz: the guest's seconds and speeds are then not measurements)."""
    from ..formats.handoff import TSC_SOURCE
    source = TSC_SOURCE.name_of(handoff.tsc_source).lower()
    return {"tsc_hz": handoff.tsc_hz_used, "tsc_source": source,
            "guest_clock_trusted": source in ("host", "pit")}


def host_clock(clock, start, end, after=None, disk_bytes=0, minus=()):
    """Seconds between two protocol lines by the host's monotonic clock (serial latency,
    milliseconds, included): a measure that does not depend on the guest's TSC rate.
    `after`: a pause that ended after `start` (a RAM dump), not counted; `minus`: pauses
    in between, not counted either."""
    if start not in clock or end not in clock:
        return {"host_seconds": None, "host_disk_mb_per_s": None}
    t0 = max(clock[start], clock.get(after, 0.0))
    seconds = clock[end] - t0 - sum(clock.get("PAUSED " + w, 0.0) for w in minus)
    return {"host_seconds": round(seconds, 3),
            "host_disk_mb_per_s": _mb_per_s(disk_bytes, seconds)}


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
        **tsc_fields(handoff),
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


POWER_CUTS = ("mid-stream", "before-header", "in-header")
HEADER_HOLD = 2.0   # seconds the held header write waits before the cut (see power_cut_at)


async def power_cut_at(m, cut, key, fields):
    """SIGKILL QEMU at a deterministic point of the image write; True once it is dead.
    mid-stream:    at the first progress line between 0 and 100 %; the payload also waits
                   at its before-header pause, so the header cannot be written first.
    before-header: at that pause (the data written and flushed, the header not yet).
    in-header:     at that pause, a blkdebug breakpoint is set on the next write (the
                   header's), the payload is let go, and the kill comes while the write is
                   held (or, on a slow machine, before the payload issued it: the disk is the
                   same either way; QEMU writes a request with one pwritev, so a kill cannot
                   tear it — torn headers are the tests' host-side business)."""
    if cut == "mid-stream":
        hit = key == "PROGRESS" and len(fields) == 2 and 0 < int(fields[0]) < int(fields[1])
    else:
        hit = key == "PAUSE" and fields[:1] == ["before-header"]
    if not hit:
        return False
    if cut == "in-header":
        await m.execute("human-monitor-command",
                        {"command-line": 'qemu-io d0 "break write_aio header"'})
        await m.send_serial(b"g")
        await asyncio.sleep(HEADER_HOLD)
    await m.kill()
    return True


async def run_guest(args, target, memory, on_pause=None, progress=None, deadline_s=None,
                    before_cont=None, on_line=None, power_cut=None, stop_at_pause=True):
    """Boot the machine with `args`, follow the protocol until QEMU exits; returns
    (handoff or None, host @@RESULT fields, exit value, last error message, log tail).
    `on_line(key, fields, line)` sees every protocol line first; True means handled.
    `power_cut`: one of POWER_CUTS; QEMU is killed there (exit value "power-cut").
    `stop_at_pause`: QMP stop/cont around on_pause. QMP stop drains the disk's requests, so
    it never returns while blkdebug holds one: pass False where that can happen (the guest
    then spins at its pause, which writes no saved RAM)."""
    progress = progress or Progress(False)
    m = QemuMachine(args)
    m.clock = {}        # host monotonic time of each protocol line's first appearance
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
            m.clock.setdefault(" ".join([key, *fields[:1]]), time.monotonic())
            if power_cut and await power_cut_at(m, power_cut, key, fields):
                progress.done()
                return handoff, result, "power-cut", error, m
            if on_line and on_line(key, fields, line):
                continue
            if key == "FILL" and fields:
                progress.show("filling guest RAM", int(fields[0]))
            elif key == "PROGRESS" and len(fields) == 2:
                progress.show("writing image", int(fields[0]) * 100 // max(1, int(fields[1])))
            elif key == "PAUSE":
                paused = time.monotonic()
                if on_pause:
                    if stop_at_pause:
                        await m.execute("stop")
                    await on_pause(m, fields[0] if fields else "")
                    if stop_at_pause:
                        await m.execute("cont")
                where = fields[0] if fields else ""
                m.clock["PAUSE-END " + where] = time.monotonic()
                m.clock["PAUSED " + where] = time.monotonic() - paused
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


def check_ap_options(cpus, ap_deaf, ap_offline):
    """--ap-deaf / --ap-offline, checked before anything is built (the test host would only
    refuse them after the boot, qemu-boot/cmdline.c and smp.c). QEMU numbers the APIC ids
    of -smp N 0..N-1, the boot CPU 0."""
    if ap_offline and cpus == 1 and ap_deaf is None:
        raise UsageError("--ap-offline: the machine has no AP to hand in (give --cpus 2 or "
                         "more, or --ap-deaf ID for one no CPU has)")
    if ap_deaf is None:
        return
    from ..formats.smp import MAX_CPUS
    if ap_offline:
        if not cpus - 1 < ap_deaf <= 254 or cpus - 1 >= MAX_CPUS:
            raise UsageError(f"--ap-deaf: {ap_deaf} with --ap-offline must name an APIC id "
                             f"no CPU has, {cpus} to 254 (with at most {MAX_CPUS} APs)")
    elif not 1 <= ap_deaf <= cpus - 1:
        raise UsageError(f"--ap-deaf: {ap_deaf} is not an AP's APIC id (1 to {cpus - 1} with "
                         f"--cpus {cpus}; 0 is the boot CPU)" if cpus > 1 else
                         f"--ap-deaf: {ap_deaf}: --cpus 1 has no AP")


def qemu_suspend(memory, disk, seed=1, compress="none", ram_dump=None, inject=None,
                 show_progress=True, keep_blob=None, key=None, target=None, selftest=0,
                 mix=None, plugins=None, screenshot=None, framebuffer=DEFAULT_FRAMEBUFFER,
                 bus="ahci", sector_size=512, cpus=1, ap_deaf=None, raw_ceiling=False,
                 power_cut=None, host_tsc_hz=None, ap_offline=False, force=False):
    """Returns (summary dict, ok). `target`: use this description instead of the machine's
    own (to test what the payload does with a wrong one). `mix`: "Z,R,T,P", the test host's
    percentages of zero, random, text and pattern pages (default: the host's 25,25,25,25).
    `plugins`: approved packages (suspendos.plugins.package.approve). `framebuffer`: the
    VBE mode (w, h, bpp) or None; the test host sets the target's. `screenshot`: a PNG
    path for QMP screendump, taken at a pause after the plugins' last frame. `bus`,
    `sector_size`: the disk's controller and logical block size (suspendos.qemu.disks).
    `cpus`: QEMU -smp; the test host hands its APs in. `ap_deaf`: APIC id of an AP the test
    host hands in that never answers the payload (tests the payload's deadline).
    `raw_ceiling`: write no image; the payload streams a constant buffer through the same
    driver and extents and the summary's mb_per_s is the device's ceiling. `power_cut`:
    kill QEMU at one of POWER_CUTS (summary status "power-cut"). `host_tsc_hz`: the TSC rate
    the test host claims in the handoff block (default: none, the payload calibrates).
    `ap_offline`: the test host hands its APs in as the Linux module does, offline, and the
    target gets the host's AP start page (reserved.ap_start) for the payload to wake them
    from; `ap_deaf` then names an APIC id no CPU has. `force`: write to a block device even
    if it is in use or carries a signature (suspendos.diskguard)."""
    if power_cut not in (None, *POWER_CUTS):
        raise UsageError(f"power cut {power_cut!r}: one of {', '.join(POWER_CUTS)}")
    cpu_args(cpus)              # a bad --cpus is refused before the disk is made
    check_ap_options(cpus, ap_deaf, ap_offline)
    check_can_run(tempfile.gettempdir())    # no QEMU, or a TMPDIR it cannot load from: exit 2
    if mix is not None:
        from ..argparser import parse_number
        parts = mix.split(",")
        try:
            shares = [parse_number(p, "--mix", 0, 100, hex_ok=False) for p in parts]
        except UsageError:
            shares = []
        if len(shares) != 4 or sum(shares) != 100:
            raise UsageError(f"--mix: {mix!r} is not Z,R,T,P: four whole percentages summing to 100")
    disk = Path(disk)
    existing = os.path.lexists(disk)
    claim = claim_disk(disk, "--disk", force)      # held (O_EXCL) until QEMU is done
    disk_size = None
    if existing:                    # used as it is: a regular file or a block device
        with open_input(disk, "--disk", block_device=True) as f:
            disk_size = input_size(f)
        if disk_size % max(SECTOR_SIZE, sector_size):
            raise UsageError(f"--disk: {disk} is not a whole number of {sector_size}-byte "
                             f"sectors")
    else:
        check_output(disk, "--disk")
    if target is None:
        target = qemu_target(memory, disk_size, compress, framebuffer=framebuffer,
                             bus=bus, sector_size=sector_size, size_what=f"--disk: {disk}")
        if plugins:
            _make_room_for_plugins(target, plugins)
        if ap_offline:
            target.reserved.ap_start = TEST_HOST_AP_START_PAGE
            target.validate()
    elif compress != "none":
        target.options.compress = compress
        target.validate()
    from .disks import check_inject
    check_inject(inject, disk_size // target.disk.block_size if existing else
                 target.disk.sectors or max(e.lba + e.count for e in target.extents))
    with claim, tempfile.TemporaryDirectory(prefix="sos-suspend-") as tmp:
        tmp = Path(tmp)
        built = build_payload(target, key=key, selftest=selftest, plugins=plugins)
        (tmp / "payload.blob").write_bytes(built.blob)
        if keep_blob:
            write_atomic(keep_blob, built.blob)
        build_test_host(tmp / "host.elf")
        if not existing:
            sectors = target.disk.sectors or max(e.lba + e.count for e in target.extents)
            fd = os.open(disk, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                os.ftruncate(fd, sectors * target.disk.block_size)
            finally:
                os.close(fd)
        pause = {(True, False): " pause=before", (False, True): " pause=after",
                 (True, True): " pause=both"}.get((bool(ram_dump), bool(screenshot)), "")
        fb = target.framebuffer
        append = (f"seed={seed}" + (f" mix={mix}" if mix is not None else "") + pause
                  + (f" vbe={fb.width}x{fb.height}x{fb.bpp}" if fb else " vbe=off")
                  + (f" ap_deaf={ap_deaf}" if ap_deaf is not None else "")
                  + (" ap_offline" if ap_offline else "")
                  + (" raw_ceiling" if raw_ceiling else "")
                  + (" pause_header" if power_cut else "")
                  + (f" tsc_hz={host_tsc_hz}" if host_tsc_hz is not None else ""))
        if power_cut == "in-header" and not inject:
            inject = "blkdebug"          # the breakpoint needs blkdebug under the disk
        from .disks import scale_inject
        args = [*machine_args(memory, cpus),
                *disk_args(disk, scale_inject(inject, sector_size), bus, sector_size),
                "-kernel", str(tmp / "host.elf"), "-initrd", module_path(tmp / "payload.blob"),
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
            elif key == "NVME":                    # @@NVME hmb ... (drivers/nvme.c)
                seen.setdefault("disk_lines", []).append(line.strip())
            elif key == "VECTOR" and fields:       # @@VECTOR path=scalar|sse2|avx2 (payload)
                seen["vector_path"] = protocol.parse_fields(fields).get("path")
            elif key == "AVX" and fields:          # @@AVX on|off: the host's ymm canaries
                seen["host_avx"] = fields[0]
            return False

        handoff, result, exit_value, error, m = asyncio.run(
            run_guest(args, target, memory, on_pause, Progress(show_progress),
                      before_cont=stall_first_write if inject == "stall" else None,
                      on_line=on_line, power_cut=power_cut))
        if exit_value == "power-cut":
            return {"status": "power-cut", "where": power_cut, "target": target.name,
                    "message": f"QEMU killed (SIGKILL) {power_cut}"}, False
        if handoff is None:
            raise RunError(m.failure(f"the test host ended ({protocol.HOST_EXIT.get(exit_value, exit_value)}) "
                                     f"without reporting a handoff").args[0])
        summary = summarize(handoff, result, exit_value, error)
        summary.update(host_clock(m.clock, "PAYLOAD start", "PAYLOAD done",
                                  "PAUSE-END before-read", handoff.bytes_written,
                                  minus=("before-header", "before-return")))
        summary["target"] = target.name
        summary["cpus"] = cpus
        if raw_ceiling:
            summary["raw_ceiling"] = True      # no image: bytes_written / seconds = mb_per_s
        summary["host_ap_check"] = "passed" if result.get("aps", "ok") == "ok" else "failed"
        summary["cpu_log"] = seen.get("cpu_lines", [])
        summary["disk_log"] = seen.get("disk_lines", [])
        summary["vector_path"] = seen.get("vector_path")
        summary["host_avx"] = seen.get("host_avx")
        if "vbe" in seen:
            summary["framebuffer"] = seen["vbe"]
        if plugins:
            summary["plugins"] = seen["plugins"]
        if screenshot:
            summary["screenshot"] = None
            if shot.exists():
                write_atomic(screenshot, shot.read_bytes(), what="--screenshot")
                summary["screenshot"] = str(screenshot)
        ok = (handoff.status in SUCCESS and summary["host_memory_check"] == "passed"
              and summary["host_cpu_check"] == "passed"
              and summary["host_ap_check"] == "passed")
        return summary, ok
