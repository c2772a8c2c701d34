"""The one gate in front of every write to a disk the user named (`qemu suspend --disk`,
`qemu resume --disk`, `image discard AREA`).

A regular file (or a path that does not exist yet) passes untouched: a disk image is the
user's to overwrite. A block device is refused, as mkfs and wipefs refuse one, when
something is using it or it holds data someone may want:

- it, or one of its partitions, is mounted (/proc/self/mountinfo);
- it, or one of its partitions, has a holder: device mapper, md RAID, LVM (sysfs holders/);
- it, or one of its partitions, is active swap (/proc/swaps);
- another program holds it open exclusively (an O_EXCL open fails with EBUSY);
- it carries a signature: a file system, a partition table, swap, RAID, LUKS (wipefs
  --no-act, which reports every signature libblkid finds, with its offset).

`--force` is the only way past. The device passes with an O_EXCL file descriptor kept open
(a `Claim`) until the command is done, so nobody can mount it between the check and the
write. An O_EXCL open claims the device against other exclusive openers only (mount, swapon,
mkfs, md, dm): QEMU opens it without O_EXCL, so it can open it while we hold the claim.
"""
import errno
import json
import os
import re
import stat
import subprocess

from .errors import UsageError
from .fileutil import show


class Claim:
    """A context manager: holds a block device's O_EXCL descriptor (or nothing, for a file)
    until the `with` block ends."""

    def __init__(self, fd=None):
        self.fd = fd

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):       # a refusal raised between the claim and its `with`
        self.close()


def claim_disk(path, what, force=False, accept=(), root="/"):
    """A Claim on `path` if it may be written; UsageError (one line naming `what`, the
    device and the reason) if it is a block device in use or holding a signature.
    `accept`: signature types the command expects and may write over (wipefs's names,
    such as "swap"). `root`: where /proc and /sys are read (tests)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return Claim()               # missing or unreadable: the caller says why
    if not stat.S_ISBLK(st.st_mode):
        return Claim()
    if force:
        # forced past every check, but still claimed when nobody else holds it
        try:
            return Claim(_open_exclusive(path))
        except OSError:
            return Claim()
    reason = device_users(st.st_rdev, root)
    if reason is None:
        try:
            fd = _open_exclusive(path)
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise UsageError(f"{what}: {show(path)}: cannot open ({e.strerror})")
            reason = "is in use: another program holds it open exclusively"
        else:
            claim = Claim(fd)
            reason = signature_reason(path, accept)
            if reason is None:
                return claim
            claim.close()
    raise UsageError(f"{what}: {show(path)} is a block device that {reason}; refusing to "
                     f"write to it (--force writes anyway)")


def _open_exclusive(path):
    # O_EXCL without O_CREAT on a block device: fail with EBUSY if anyone (a mount, swapon,
    # md, dm, another mkfs) has claimed it, and claim it ourselves otherwise.
    return os.open(path, os.O_RDONLY | os.O_EXCL | os.O_CLOEXEC)


# ---- who uses the device: /sys and /proc --------------------------------------------------
def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def device_and_partitions(rdev, root="/"):
    """[(kernel name, "MAJ:MIN", sysfs folder)] for the device numbered `rdev` and each of
    its partitions (sysfs lists a disk's partitions as sub-folders holding a `partition`
    file)."""
    number = f"{os.major(rdev)}:{os.minor(rdev)}"
    folder = os.path.join(root, "sys/dev/block", number)
    real = os.path.realpath(folder)
    found = [(os.path.basename(real), number, folder)]
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return found
    for name in entries:
        sub = os.path.join(folder, name)
        if os.path.exists(os.path.join(sub, "partition")):
            found.append((name, _read(os.path.join(sub, "dev")).strip(), sub))
    return found


def _mounts(root):
    """(MAJ:MIN, mount point, source) of every mount, from mountinfo (proc(5))."""
    for line in _read(os.path.join(root, "proc/self/mountinfo")).splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        after = line.split(" - ", 1)[1].split()
        source = after[1] if len(after) > 1 else ""
        yield fields[2], _unescape(fields[4]), source


def _unescape(text):
    # mountinfo writes space, tab, newline and backslash in paths as \040 \011 \012 \134
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _kernel_name(dev_path):
    """The kernel's name for a /dev path (/dev/mapper/x is dm-0), or None."""
    if not dev_path.startswith("/dev/"):
        return None
    return os.path.basename(os.path.realpath(dev_path))


def device_users(rdev, root="/"):
    """Why the device numbered `rdev` must not be written, from /proc and /sys, or None.
    A mount is matched by number and, for file systems that report an anonymous number
    (btrfs), by the source device's name."""
    parts = device_and_partitions(rdev, root)
    whole = parts[0][0]

    def which(name):
        return "" if name == whole else f"has partition {name}, which "

    by_number = {number: name for name, number, _ in parts}
    by_name = {name for name, _, _ in parts}
    for number, point, source in _mounts(root):
        name = by_number.get(number) or (_kernel_name(source) if _kernel_name(source)
                                         in by_name else None)
        if name:
            return f"{which(name)}is mounted on {show(point)}"
    for name, _, folder in parts:
        try:
            holders = sorted(os.listdir(os.path.join(folder, "holders")))
        except OSError:
            holders = []
        if holders:
            return (f"{which(name)}is held by {', '.join(holders)} (device mapper, md RAID "
                    f"or LVM)")
    for line in _read(os.path.join(root, "proc/swaps")).splitlines()[1:]:
        fields = line.split()
        if fields and fields[1:2] == ["partition"]:
            name = _kernel_name(_unescape(fields[0]))
            if name in by_name:
                return f"{which(name)}is active swap"
    return None


# ---- what the device holds: libblkid through wipefs ----------------------------------------
def signature_reason(path, accept=()):
    """Why the device's contents must not be overwritten, or None: the signatures wipefs
    finds (libblkid's probes for file systems, partition tables, swap, RAID and LUKS),
    except those in `accept`."""
    try:
        p = subprocess.run(["wipefs", "--no-act", "--json", os.fspath(path)],
                           capture_output=True, text=True, timeout=60)
        found = json.loads(p.stdout or '{"signatures": []}')["signatures"] \
            if p.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError):
        found = None
    if found is None:
        return "could not be probed for signatures (wipefs --no-act failed)"
    kept = [s for s in found if s.get("type") not in accept]
    if not kept:
        return None
    listed = ", ".join(f"{s.get('type')} at byte {s.get('offset')}" for s in kept)
    return f"carries a signature ({listed})"
