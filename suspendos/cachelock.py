"""One builder at a time per cache entry.

The caches under ~/.cache/suspendos (Debian's packages, the kexec kernel, the Debian guest
and its layers) are filled by whichever process needs an entry first. Two processes that
need the same entry at once — two test workers, or a user's second terminal — would both
spend the build's minutes, and a reader could see a file another one is still writing
(`apt-get download` writes the .deb in place). The second caller waits on the entry's
lock instead, then finds the finished result.
"""
import contextlib
import fcntl
import os
from pathlib import Path


@contextlib.contextmanager
def locked(folder, name):
    """Hold an exclusive lock named `name` in `folder` (made if missing) for the block.
    flock: released by the kernel when the holder dies, so a killed build never leaves a
    stale lock behind."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"{name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
