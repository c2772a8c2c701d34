"""`suspendos qemu resume`: build the resume loader for the machine `qemu suspend` hibernated
to this disk, boot it with QEMU's -kernel on the same machine, let it check and restore the
image and return into the test host, and report what the loader and the host said.

The loader speaks `@@RESUME ...` lines on serial (builder/resume/resume.h): the phases, and
at the end `refused <reason> <message>`, `failed <message>` or `fault ...`. After a return
the test host prints its usual lines (@@HOST back, @@HANDOFF, @@RESULT) and exits.
"""
import asyncio
import tempfile
from pathlib import Path

from ..build.resume import build_resume_loader
from ..errors import RunError, UsageError
from ..formats.common import SECTOR_SIZE
from ..formats.status import STATUS
from ..target.qemu import qemu_target
from . import protocol
from .machine import cpu_args, disk_args, machine_args
from .suspend import Progress, _mb_per_s, run_guest

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

    def __call__(self, key, fields, line):
        if key == "PROGRESS" and len(fields) == 2:
            self.progress.show(self.phase, int(fields[0]) * 100 // max(1, int(fields[1])))
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


def _target_for(memory, disk):
    """The target `qemu suspend` built for this disk. A disk too small for this machine's
    worst-case image (truncated, or from a smaller machine) gets the target of a fresh disk,
    which is what `qemu suspend` created: the loader then says what it finds."""
    size = disk.stat().st_size
    if size % SECTOR_SIZE:
        raise UsageError(f"--disk: {disk} is not a whole number of 512-byte sectors")
    try:
        return qemu_target(memory, size)
    except UsageError:
        return qemu_target(memory)


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
        "verify_seconds": round(log.times.get("verified", 0.0), 4),
        "restore_seconds": round(log.times.get("restored", 0.0), 4),
        "mb_per_s": _mb_per_s(image_bytes, seconds),
        "disk_mb_per_s": _mb_per_s(handoff.bytes_written, seconds),
        "ram_mb_per_s": _mb_per_s(handoff.pages_saved * PAGE, seconds),
        "host_exit": protocol.HOST_EXIT.get(exit_value, f"exit {exit_value}"),
        "host_memory_check": "passed" if result.get("changed_pages") == "0" else "failed",
        "host_cpu_check": "passed" if result.get("cpu") == "ok" else "failed",
    }


def qemu_resume(memory, disk, key=None, show_progress=True, cpus=1):
    """Returns (summary dict, ok). `cpus`: QEMU -smp; the resumed test host starts its APs
    again and checks they park."""
    cpu_args(cpus)
    disk = Path(disk)
    if not disk.is_file():
        raise UsageError(f"--disk: {disk} does not exist (suspend to it first)")
    target = _target_for(memory, disk)
    with tempfile.TemporaryDirectory(prefix="sos-resume-") as tmp:
        loader = Path(tmp) / "resume.elf"
        build_resume_loader(target, loader, key=key)
        args = [*machine_args(memory, cpus), *disk_args(disk), "-kernel", str(loader)]
        progress = Progress(show_progress)
        log = LoaderLog(progress)
        handoff, result, exit_value, error, m = asyncio.run(
            run_guest(args, target, memory, progress=progress, on_line=log))
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
                "ram": "untouched" if status == "refused" else "partly restored"}, False
    if handoff is None:
        raise RunError(m.failure(f"the resume loader ended without a verdict (QEMU exit "
                                 f"{m.returncode}, guest code {exit_value})").args[0])
    summary = summarize(handoff, result, exit_value, log)
    summary["target"] = target.name
    summary["cpus"] = cpus
    summary["cpus_used"] = handoff.cpus_used or 1
    summary["host_ap_check"] = "passed" if result.get("aps", "ok") == "ok" else "failed"
    if error:
        summary["host_error"] = error
    ok = (handoff.status == STATUS.RESUMED and summary["host_memory_check"] == "passed"
          and summary["host_cpu_check"] == "passed" and summary["host_ap_check"] == "passed")
    return summary, ok
