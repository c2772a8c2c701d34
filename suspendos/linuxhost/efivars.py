"""UEFI variables through efivarfs (Documentation/filesystems/efivarfs.rst): a file per
variable, named NAME-VENDORGUID, whose contents are the variable's 4-byte attributes and then
its data; a write() is one SetVariable call, removing the file deletes the variable.

What suspendos needs of them: the Boot#### load options (to find its own entry) and BootNext
(UEFI 2.10 §3.1.1), which it sets for one boot and clears again.
"""
import errno
import fcntl
import os
import re
import struct

from ..errors import UsageError

EFIVARS = "/sys/firmware/efi/efivars"
# EFI_GLOBAL_VARIABLE, the vendor of Boot####, BootOrder and BootNext (UEFI 2.10 §3.3).
GLOBAL_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
# BootNext's attributes: NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS, what §3.3's
# table gives the global boot variables (UEFI 2.10 §8.2.1 GetVariable, the attribute bits).
BOOT_NEXT_ATTRS = 0x1 | 0x2 | 0x4
# ioctl(2) FS_IOC_GETFLAGS / FS_IOC_SETFLAGS and FS_IMMUTABLE_FL (linux/fs.h): efivarfs
# marks the files of variables it does not know as immutable (fs/efivarfs/inode.c).
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_IMMUTABLE_FL = 0x10


def folder(host):
    """The efivarfs directory; refused when efivarfs is not mounted there."""
    if not any(fs == "efivarfs" and point == EFIVARS for _, point, fs, _ in host.mounts()):
        raise UsageError(f"efivarfs is not mounted at {EFIVARS}: mount -t efivarfs efivarfs "
                         f"{EFIVARS}, then try again")
    return host.sys.path(EFIVARS)


def var_name(name):
    return f"{name}-{GLOBAL_GUID}"


def boot_name(num):
    """Boot#### with #### the number in four upper-case hex digits (UEFI 2.10 §3.1.1), as
    efibootmgr names it."""
    return f"Boot{num:04X}"


def parse_load_option(data):
    """(description, file path) of an EFI_LOAD_OPTION (UEFI 2.10 §3.1.3): UINT32 Attributes,
    UINT16 FilePathListLength, a NUL-terminated CHAR16 Description, then the device path,
    whose File Path media nodes (type 4, subtype 4: §10.3.5.4) hold the path on the volume.
    None when it is too short to be one."""
    if len(data) < 8:
        return None
    (path_len,) = struct.unpack_from("<H", data, 4)
    end = 6
    while end + 1 < len(data) and data[end:end + 2] != b"\0\0":
        end += 2
    description = data[6:end].decode("utf-16-le", "replace")
    paths, pos = [], end + 2
    stop = min(len(data), pos + path_len)
    while pos + 4 <= stop:
        kind, sub, length = struct.unpack_from("<BBH", data, pos)
        if length < 4:
            break
        if (kind, sub) == (4, 4):
            paths.append(data[pos + 4:pos + length].decode("utf-16-le", "replace")
                         .rstrip("\0"))
        if kind == 0x7F and sub == 0xFF:        # End of Entire Device Path (§10.3.1)
            break
        pos += length
    return description, "".join(paths)


def boot_entries(host, where=None):
    """{number: (description, file path)} of every Boot#### variable."""
    where = where or folder(host)
    out = {}
    for f in where.iterdir():
        m = re.fullmatch(r"Boot([0-9A-Fa-f]{4})-" + GLOBAL_GUID, f.name, re.IGNORECASE)
        if m:
            try:
                parsed = parse_load_option(f.read_bytes()[4:])
            except OSError:
                continue
            if parsed:
                out[int(m.group(1), 16)] = parsed
    return out


def read_boot_next(host, where=None):
    """BootNext's UINT16 (UEFI 2.10 §3.1.1), or None when it is not set."""
    path = (where or folder(host)) / var_name("BootNext")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(data) != 6:
        raise UsageError(f"{EFIVARS}/{path.name} holds {len(data)} bytes, not the attributes "
                         "and a UINT16: clear it with efibootmgr --delete-bootnext")
    return struct.unpack("<IH", data)[1]


def write_boot_next(host, num, where=None):
    """BootNext = num: the attributes and the UINT16 in one write(), which efivarfs requires
    (it takes each write as one SetVariable call). No O_TRUNC: efivarfs replaces the whole
    variable on every write. Read back to be sure the firmware holds it."""
    path = (where or folder(host)) / var_name("BootNext")
    data = struct.pack("<IH", BOOT_NEXT_ATTRS, num)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
    finally:
        os.close(fd)
    if written != len(data) or read_boot_next(host, where) != num:
        raise UsageError(f"BootNext: the firmware did not keep {boot_name(num)} (wrote "
                         f"{written} of {len(data)} bytes)")


def _mutable(path):
    """Clear FS_IMMUTABLE_FL, as `chattr -i` does, so the variable's file can be removed."""
    fd = os.open(path, os.O_RDONLY)
    try:
        flags = bytearray(struct.pack("i", 0))
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags)
        value = struct.unpack("i", flags)[0] & ~FS_IMMUTABLE_FL
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("i", value))
    finally:
        os.close(fd)


def clear_boot_next(host, where=None):
    """Delete BootNext (removing its efivarfs file deletes the variable). True when it was
    set."""
    path = (where or folder(host)) / var_name("BootNext")
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except PermissionError as e:
        if e.errno != errno.EPERM:
            raise
        _mutable(path)
        os.unlink(path)
    return True
