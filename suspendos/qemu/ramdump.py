"""Ground truth: guest RAM as QEMU sees it (QMP pmemsave), in a file where offset = physical
address. Taken only while the guest waits at a pause point, so nothing can change it."""
import os
import tempfile

COPY_BLOCK = 64 << 20


async def dump_ram(machine, ranges, out_path):
    """Dump every [start, end) range of guest-physical memory into out_path at its address."""
    from ..fileutil import check_output
    out_path = check_output(out_path, "--ram-dump")     # never replaces a device or a folder
    directory = os.path.dirname(out_path)
    fd, tmp_out = tempfile.mkstemp(dir=directory, prefix=".ramdump-")
    os.close(fd)
    try:
        with open(tmp_out, "r+b") as out:
            for start, end in ranges:
                part = tmp_out + ".part"
                await machine.execute("pmemsave", {"val": start, "size": end - start,
                                                   "filename": part})
                with open(part, "rb") as src:
                    out.seek(start)
                    while block := src.read(COPY_BLOCK):
                        out.write(block)
                os.unlink(part)
            out.truncate(max(e for _, e in ranges))
        os.replace(tmp_out, out_path)
    finally:
        for leftover in (tmp_out, tmp_out + ".part"):
            if os.path.exists(leftover):
                os.unlink(leftover)
