"""An image is used up only by a resume that returned into the host.

The resume loader marks the image resumed (builder/resume/image.c, image_mark_resumed) after
the restore and before its last pause and the return. A run that ends in between — the
RAM dump at that pause failing, SIGTERM, a deadline — never gave the host its machine back,
so the image still holds a machine nobody resumed: the header as it was before the run is
written back. Only a header whose sole change is that mark (state and checksum) is touched.
"""
import os

from ..errors import FormatError
from ..fileutil import input_size, open_input
from ..formats import image as fmt
from ..formats.common import SECTOR_SIZE
from ..image.reader import find_image

MARK_FIELDS = ("state", "header_xxh64")


def _header(disk):
    """(byte offset, header block) of the image on `disk`, or None where there is none."""
    try:
        with open_input(disk, "--disk", block_device=True) as f:
            offset = find_image(f, input_size(f)) * SECTOR_SIZE
            f.seek(offset)
            block = f.read(fmt.HEADER_BLOCK)
    except (FormatError, OSError):
        return None
    if len(block) < fmt.HEADER_BLOCK:
        return None
    return offset, block


def _state(block):
    return fmt.ImageHeader.parse(block[:fmt.ImageHeader.sizeof()]).state


def _unmarked(block):
    return fmt.zeroed(fmt.ImageHeader, block[:fmt.ImageHeader.sizeof()], MARK_FIELDS) + \
        block[fmt.ImageHeader.sizeof():]


class ResumeMark:
    """Taken before the loader boots; `keep_valid_unless(returned)` after QEMU is gone."""

    def __init__(self, disk):
        self.disk = disk
        found = _header(disk)
        self.before = found if found and _state(found[1]) == fmt.IMAGE_STATE.VALID else None

    def keep_valid_unless(self, returned):
        """Write the valid header back when the run did not return into the host but the
        loader had marked the image resumed. True when it did."""
        if returned or self.before is None:
            return False
        offset, block = self.before
        now = _header(self.disk)
        if not now or now[0] != offset or _state(now[1]) != fmt.IMAGE_STATE.RESUMED \
                or _unmarked(now[1]) != _unmarked(block):
            return False
        fd = os.open(self.disk, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.pwrite(fd, block, offset)
            os.fsync(fd)
        finally:
            os.close(fd)
        return True
