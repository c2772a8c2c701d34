"""A disk that fails under QEMU fails the run at once, naming the file and the cause.

QEMU's default for a write that finds the host file system full (werror=enospc) is to pause
the guest and wait for someone to make room; nothing reaches the serial line, so the tool
would sit out its whole deadline and then blame the guest. QMP says what happened: a
BLOCK_IO_ERROR event (`nospace` true for ENOSPC, `action` "stop" when the guest was paused),
and the STOP that follows (query-status then reads "io-error"). Errors QEMU reports to the
guest (action "report": blkdebug's injected ones) are the guest's business, not a failure.
"""
import asyncio
import json
import os

from qemu.qmp.events import EventListener


def _file_of(node):
    """The host file under a -blockdev node (raw over blkdebug over file, or any nesting)."""
    while isinstance(node, dict):
        if "filename" in node:
            return node["filename"]
        node = node.get("file") or node.get("image")
    return None


def _drive_fields(value):
    """`-drive a=x,b=y` as a dict; a doubled comma is a comma inside a value."""
    fields = {}
    for part in value.replace(",,", "\0").split(","):
        key, _, val = part.partition("=")
        fields[key] = val.replace("\0", ",")
    return fields


def disk_files(args):
    """{QMP node name or drive id: (option label or None, host file)} of QEMU's disks. A
    -blockdev is `qemu suspend/resume --disk` (machine.disk_args); a -drive is a disk the
    tool made itself (the Linux guest's overlay)."""
    found = {}
    for opt, value in zip(args, args[1:]):
        if opt == "-blockdev" and value.startswith("{"):
            node = json.loads(value)
            path = _file_of(node)
            if path and node.get("node-name"):
                found[node["node-name"]] = ("--disk", path)
        elif opt == "-drive":
            fields = _drive_fields(value)
            if fields.get("file") and fields.get("id"):
                found[fields["id"]] = (None, fields["file"])
    return found


def describe(data, files):
    """One line for a BLOCK_IO_ERROR event's data."""
    label, path = files.get(data.get("node-name")) or files.get(data.get("device")) or \
        (None, data.get("node-name") or data.get("device") or "a disk")
    where = f"{label}: {path}" if label else f"disk {path}"
    if data.get("nospace"):
        try:
            on_disk = f" after {os.stat(path).st_blocks * 512} bytes"
        except OSError:
            on_disk = ""
        return f"{where}: no space left on the file system (ENOSPC){on_disk}"
    op = data.get("operation", "I/O")
    return f"{where}: QEMU paused the guest on a {op} error ({data.get('reason', 'no reason')})"


class BlockErrorWatcher:
    """Listens from QMP's connect on; `race` ends a wait as soon as a disk error paused the
    guest."""

    def __init__(self, qmp, files):
        self.qmp, self.files = qmp, files
        self.listener = EventListener(("BLOCK_IO_ERROR", "STOP"))
        qmp.register_listener(self.listener)
        self.error = asyncio.get_running_loop().create_future()   # its result: the line
        self.task = asyncio.create_task(self._watch())

    async def _watch(self):
        try:
            async for event in self.listener:
                line = await self._fatal(event)
                if line:
                    self.error.set_result(line)
                    return
        except Exception:
            return      # QMP went away: QEMU quit or was killed, nothing left to watch

    async def _fatal(self, event):
        data = event.get("data") or {}
        if event["event"] == "BLOCK_IO_ERROR":
            return describe(data, self.files) if data.get("action") == "stop" else None
        # A STOP is ours (a pause) unless QEMU says the guest stopped on an I/O error.
        status = await self.qmp.execute("query-status")
        if status.get("status") == "io-error":
            return "QEMU paused the guest on a disk I/O error"
        return None

    async def race(self, awaitable, timeout, failure):
        """`awaitable`'s result within `timeout` seconds (else asyncio.TimeoutError), or
        failure(line) raised once a disk error has paused the guest."""
        work = asyncio.ensure_future(awaitable)
        try:
            done, _ = await asyncio.wait({work, self.error}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            work.cancel()
            raise
        if work in done:
            return work.result()
        work.cancel()
        if self.error.done():
            raise failure(self.error.result())
        raise asyncio.TimeoutError

    def close(self):
        self.task.cancel()
        try:
            self.qmp.remove_listener(self.listener)
        except Exception:
            pass        # never registered, or the client already dropped it
