"""`suspendos qemu resume`: build the resume loader for the machine `qemu suspend` hibernated
to this disk, boot it with QEMU's -kernel on the same machine, let it check and restore the
image and return into the test host, and report what the loader and the host said.

The loader speaks `@@RESUME ...` lines on serial (builder/resume/resume.h): the phases, and
at the end `refused <reason> <message>`, `failed <message>` or `fault ...`. After a return
the test host prints its usual lines (@@HOST back, @@HANDOFF, @@RESULT) and exits.
"""
import asyncio
import os
import tempfile
from pathlib import Path

from ..argparser import parse_number
from ..build.resume import build_resume_loader
from ..diskguard import claim_disk
from ..errors import RunError, UsageError
from ..fileutil import input_size, open_input
from ..formats.common import SECTOR_SIZE
from ..formats.status import STATUS
from ..target.qemu import IMAGE_FIRST_LBA, qemu_target
from . import protocol
from .machine import cpu_args, disk_args, machine_args
from .ramdump import dump_ram
from .resumemark import ResumeMark
from .suspend import Progress, _mb_per_s, host_clock, run_guest, tsc_fields

PAGE = 4096
# The loader's isa-debug-exit values (builder/resume/resume.h).
EXIT_REFUSED, EXIT_RESTORE_FAILED, EXIT_FAULT = 0x20, 0x3E, 0x3F


class LoaderLog:
    """Follows the loader's @@RESUME and @@PROGRESS lines."""

    PHASES = {"verifying": "verifying image", "restoring": "restoring RAM"}

    def __init__(self, progress):
        self.progress = progress
        self.phase = "reading image"
        self.outcome = None          # ("refused", reason, message) / ("failed", message) / ...
        self.times = {}
        self.cpu_lines = []          # the loader's @@CPUS / @@CPU lines: APs used, left out
        self.disk_lines = []         # the disk driver's: @@NVME hmb ... (drivers/nvme.c)
        self.vector_path = None      # @@VECTOR path=scalar|sse2|avx2 (the loader's choice)
        self.returned = False        # the loader went back into the host: the image is used

    def __call__(self, key, fields, line):
        if key in ("HOST", "HANDOFF", "RESULT") or fields[:1] == ["returning"]:
            self.returned = True
        if key in ("CPU", "CPUS"):
            self.cpu_lines.append(line.strip())
            return True
        if key == "NVME":
            self.disk_lines.append(line.strip())
            return True
        if key == "PROGRESS" and len(fields) == 2:
            self.progress.show(self.phase, int(fields[0]) * 100 // max(1, int(fields[1])))
            return True
        if key == "VECTOR" and fields:
            self.vector_path = protocol.parse_fields(fields).get("path")
            return True
        if key != "RESUME" or not fields:
            return False
        word, rest = fields[0], line.split(None, 2)[2] if len(fields) > 1 else ""
        if word in self.PHASES:
            self.phase = self.PHASES[word]
        elif word in ("verified", "restored"):
            values = protocol.parse_fields(fields[1:])
            self.times[word] = int(values.get("us", 0)) / 1e6
        elif word == "refused":
            reason, _, message = rest.partition(" ")
            self.outcome = ("refused", reason, message)
        elif word == "failed":
            self.outcome = ("restore-failed", "restore-failed", rest)
        elif word == "fault":
            self.outcome = ("loader-fault", "loader-fault", rest)
        return True


def _target_for(memory, disk, bus="ahci", sector_size=512):
    """The target `qemu suspend` built for this disk. A disk too small for this machine's
    worst-case image (truncated, or from a smaller machine) gets the target of a fresh disk,
    which is what `qemu suspend` created: the loader then says what it finds."""
    with open_input(disk, "--disk", block_device=True) as f:
        size = input_size(f)
    if size % max(SECTOR_SIZE, sector_size):
        raise UsageError(f"--disk: {disk} is not a whole number of {sector_size}-byte sectors")
    from .probe import probe_pci
    pci = probe_pci(memory, bus, sector_size)
    try:
        return qemu_target(memory, size, pci=pci, bus=bus, sector_size=sector_size)
    except UsageError:
        return qemu_target(memory, pci=pci, bus=bus, sector_size=sector_size)


def _check_before_boot(disk, key, inject, sector_size):
    """What the host can tell from the disk alone is refused before QEMU starts: an
    --inject LBA off the disk (it would never fire), a missing --key for an encrypted image
    and a --key for a plain one (the loader would say "wrong key", or ignore the key)."""
    from ..image.reader import check_key_given
    from .disks import check_inject
    with open_input(disk, "--disk", block_device=True) as f:
        check_inject(inject, input_size(f) // sector_size)
    check_key_given(disk, key, IMAGE_FIRST_LBA)     # where `qemu suspend` puts the header


def summarize(handoff, result, exit_value, log):
    seconds = ((handoff.tsc_end - handoff.tsc_start) / handoff.tsc_hz_used
               if handoff.tsc_hz_used and handoff.tsc_end > handoff.tsc_start else 0.0)
    image_bytes = handoff.detail         # the loader's handoff: detail = image size in bytes
    return {
        "status": STATUS.name_of(handoff.status),
        "status_code": handoff.status,
        "message": handoff.message.split(b"\0")[0].decode("utf-8", "replace"),
        "pages_total": handoff.pages_total,
        "pages_restored": handoff.pages_saved,
        "zero_pages": handoff.zero_pages,
        "image_bytes": image_bytes,
        "bytes_read": handoff.bytes_written,     # both passes, header and tables included
        "chunks": handoff.chunks,
        "seconds": round(seconds, 4),
        **tsc_fields(handoff),
        "verify_seconds": round(log.times.get("verified", 0.0), 4),
        "restore_seconds": round(log.times.get("restored", 0.0), 4),
        "mb_per_s": _mb_per_s(image_bytes, seconds),
        "disk_mb_per_s": _mb_per_s(handoff.bytes_written, seconds),
        "ram_mb_per_s": _mb_per_s(handoff.pages_saved * PAGE, seconds),
        "host_exit": protocol.HOST_EXIT.get(exit_value, f"exit {exit_value}"),
        "host_memory_check": "passed" if result.get("changed_pages") == "0" else "failed",
        "host_cpu_check": "passed" if result.get("cpu") == "ok" else "failed",
    }


def parse_inject(spec):
    """`qemu resume --inject`: read-error:LBA[,always] -> a blkdebug rule that fails the read
    covering LBA (once, or every time); read-stall -> the first read never completes;
    ap-deaf:ID / ap-fault:ID -> the loader's word ap-deaf=ID / ap-fault=ID (that AP starts
    but never answers / takes a #GP in its first job)."""
    if not spec:
        return None
    if spec == "read-stall":
        return spec
    if spec.startswith(("ap-deaf:", "ap-fault:")):   # the loader's AP with this APIC id
        kind, _, apic = spec.partition(":")         # never answers / faults in its job
        try:
            return f"{kind}={parse_number(apic, kind, 0, 0xFF, hex_ok=False)}"
        except UsageError:
            raise UsageError(f"--inject: {spec!r}: {kind} takes an APIC id ({kind}:2)")
    kind, _, rest = spec.partition(":")
    parts = rest.split(",")
    if kind != "read-error" or any(p != "always" for p in parts[1:]):
        raise UsageError(f"--inject: {spec!r} is not read-error:LBA[,always], read-stall, "
                         "ap-deaf:ID or ap-fault:ID")
    sector = parse_number(parts[0], f"--inject: {kind}: the LBA", 0, (1 << 48) - 1)
    return [{"event": "read_aio", "errno": 5, "sector": sector,
             "once": "always" not in parts[1:]}]


def _check_ap_inject(inject, cpus):
    """ap-deaf=ID / ap-fault=ID must name one of the machine's APs (QEMU's -smp N: APIC ids
    0..N-1, 0 the boot CPU); any other id would make the run pass without the fault."""
    if isinstance(inject, str) and inject.startswith(("ap-deaf=", "ap-fault=")):
        kind, _, apic = inject.partition("=")
        if not 1 <= int(apic) <= cpus - 1:
            raise UsageError(f"--inject: {kind}:{apic} is not an AP's APIC id (1 to {cpus - 1} "
                             f"with --cpus {cpus}; 0 is the boot CPU)" if cpus > 1 else
                             f"--inject: {kind}:{apic}: --cpus 1 has no AP")


async def stall_first_read(machine):
    """blkdebug's breakpoint holds the first read request for good (the header's)."""
    await machine.execute("human-monitor-command",
                          {"command-line": 'qemu-io d0 "break read_aio stall"'})


def qemu_resume(memory, disk, key=None, show_progress=True, bus="ahci", sector_size=512,
                on_release=None, cpus=1, inject=None, ram_dump=None, on_pause=None,
                host_ram_dump=None, force=False):
    """Returns (summary dict, ok). `bus`, `sector_size`: as `qemu suspend` was given.
    `on_release(machine)`: an async hook run (guest stopped) once the loader has given the
    disk back and before it returns into the host (the loader's pause=after-release).
    `cpus`: QEMU -smp; the resumed test host starts its APs again and checks they park.
    `inject`: blkdebug inject-error rules, or "read-stall" (the first read never completes).
    `ram_dump`: the saved RAM (QMP pmemsave, offset = address) at the loader's last pause,
    every page restored and nothing run yet: what the host gets back. `on_pause(machine,
    where)`: a coroutine called at the loader's pause points (builder/resume/pause.c).
    `host_ram_dump`: the saved RAM once the test host is back from its handoff call, at its
    "after-resume" pause (it pauses there when the suspend took a RAM dump:
    qemu-boot/pause.c). `force`: use a block device even if it is in use or carries a
    signature (suspendos.diskguard)."""
    cpu_args(cpus)              # a bad --cpus is refused before anything runs
    _check_ap_inject(inject, cpus)
    disk = Path(disk)
    if not os.path.lexists(disk):
        raise UsageError(f"--disk: {disk} does not exist (suspend to it first)")
    claim = claim_disk(disk, "--disk", force)      # held (O_EXCL) until QEMU is done
    _check_before_boot(disk, key, inject, sector_size)
    target = _target_for(memory, disk, bus, sector_size)
    ram_ranges = target.saved_ranges()

    async def pause(machine, where):
        if ram_dump and where == "restored":
            await dump_ram(machine, ram_ranges, ram_dump)
        if host_ram_dump and where == "after-resume":
            await dump_ram(machine, ram_ranges, host_ram_dump)
        if on_release and where == "after-release":
            await on_release(machine)
        if on_pause:
            await on_pause(machine, where)

    deaf = inject if isinstance(inject, str) and inject.startswith(("ap-deaf=", "ap-fault=")) \
        else None
    if deaf:
        inject = None
    with claim, tempfile.TemporaryDirectory(prefix="sos-resume-") as tmp:
        loader = Path(tmp) / "resume.elf"
        build_resume_loader(target, loader, key=key)
        from .disks import scale_inject
        args = [*machine_args(memory, cpus),
                *disk_args(disk, scale_inject(inject, sector_size), bus, sector_size),
                "-kernel", str(loader)]
        words = (["pause"] if (ram_dump or on_pause) else []) + \
            (["pause=after-release"] if on_release else []) + ([deaf] if deaf else [])
        if words:
            args += ["-append", " ".join(words)]
        progress = Progress(show_progress)
        log = LoaderLog(progress)
        mark = ResumeMark(disk)
        try:
            handoff, result, exit_value, error, m = asyncio.run(
                run_guest(args, target, memory, progress=progress, on_line=log,
                          on_pause=pause if (ram_dump or on_pause or host_ram_dump or on_release)
                          else None,
                          # QMP stop would hang on a read blkdebug holds: the guest spins at
                          # its pauses instead, except for on_release, which stops and
                          # restarts it
                          stop_at_pause=on_release is not None and inject is None,
                          before_cont=stall_first_read if inject == "read-stall" else None))
        finally:                 # QEMU is gone here, whatever ended the run
            mark.keep_valid_unless(log.returned)
    outcome = log.outcome
    if not outcome and exit_value is not None and EXIT_REFUSED < exit_value <= EXIT_FAULT:
        status = {EXIT_RESTORE_FAILED: "restore-failed", EXIT_FAULT: "loader-fault"}.get(
            exit_value, "refused")
        outcome = (status, f"code {exit_value - EXIT_REFUSED}", "(the loader's serial line "
                   "was lost)")
    if outcome:
        status, reason, message = outcome
        return {"status": status, "reason": reason, "message": message,
                "loader_exit": exit_value, "target": target.name,
                "ram": "untouched" if status == "refused" or "ram=untouched" in message
                else "partly restored",
                "cpu_log": log.cpu_lines}, False
    if handoff is None:
        raise RunError(m.failure(f"the resume loader ended without a verdict (QEMU exit "
                                 f"{m.returncode}, guest code {exit_value})").args[0])
    summary = summarize(handoff, result, exit_value, log)
    summary.update(host_clock(m.clock, "RESUME verifying", "RESUME returning",
                              disk_bytes=handoff.bytes_written,
                              minus=("verified", "restored")))
    summary["target"] = target.name
    summary["cpus"] = cpus
    summary["cpus_used"] = handoff.cpus_used or 1
    summary["cpus_missing"] = handoff.cpus_missing
    # the boot CPU in the two passes: reading the image, and the rest (checking, decoding,
    # writing pages, waiting for the APs)
    hz = handoff.tsc_hz_used or 1
    summary["disk_seconds"] = round(handoff.disk_tsc / hz, 4)
    summary["compute_seconds"] = round(handoff.compute_tsc / hz, 4)
    summary["cpu_log"] = log.cpu_lines
    summary["disk_log"] = log.disk_lines
    summary["vector_path"] = log.vector_path
    summary["host_ap_check"] = "passed" if result.get("aps", "ok") == "ok" else "failed"
    if error:
        summary["host_error"] = error
    ok = (handoff.status == STATUS.RESUMED and summary["host_memory_check"] == "passed"
          and summary["host_cpu_check"] == "passed" and summary["host_ap_check"] == "passed")
    return summary, ok
