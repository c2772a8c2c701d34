"""Ground truth: guest RAM as QEMU sees it (QMP pmemsave), in a file where offset = physical
address. Taken only while the guest waits at a pause point, so nothing can change it.

A failed dump leaves no file behind (neither the dump nor QEMU's part file), and a full file
system is named as such: QEMU's pmemsave reports only "An IO error has occurred"."""
import errno
import os
import tempfile

from qemu.qmp import ExecuteError

from ..errors import RunError

COPY_BLOCK = 64 << 20


def _on_disk(*paths):
    total = 0
    for p in paths:
        try:
            total += os.stat(p).st_blocks * 512
        except OSError:
            pass
    return total


def _no_space(out_path, *partial):
    from ..fileutil import show
    return RunError(f"--ram-dump: {show(out_path)}: no space left on the file system (ENOSPC) "
                    f"after {_on_disk(*partial)} bytes")


async def _pmemsave(machine, start, size, part, out_path, tmp_out):
    try:
        await machine.execute("pmemsave", {"val": start, "size": size, "filename": part})
    except ExecuteError as e:
        # QEMU's fwrite failed without an errno in its reply: the file system's free space
        # tells whether the rest of this range would have fitted.
        fs = os.statvfs(os.path.dirname(part))
        written = _on_disk(part)
        if fs.f_bavail * fs.f_frsize < size - written:
            raise _no_space(out_path, tmp_out, part) from None
        from ..fileutil import show
        raise RunError(f"--ram-dump: {show(out_path)}: QEMU could not write the dump "
                       f"({e})") from None


async def dump_ram(machine, ranges, out_path):
    """Dump every [start, end) range of guest-physical memory into out_path at its address."""
    from ..fileutil import check_output
    out_path = check_output(out_path, "--ram-dump")     # never replaces a device or a folder
    directory = os.path.dirname(out_path)
    fd, tmp_out = tempfile.mkstemp(dir=directory, prefix=".ramdump-")
    os.close(fd)
    part = tmp_out + ".part"
    try:
        with open(tmp_out, "r+b") as out:
            for start, end in ranges:
                await _pmemsave(machine, start, end - start, part, out_path, tmp_out)
                with open(part, "rb") as src:
                    out.seek(start)
                    while block := src.read(COPY_BLOCK):
                        out.write(block)
                os.unlink(part)
            out.truncate(max(e for _, e in ranges))
        os.replace(tmp_out, out_path)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise _no_space(out_path, tmp_out, part) from None
        raise
    finally:
        for leftover in (tmp_out, part):
            if os.path.exists(leftover):
                os.unlink(leftover)
