"""UEFI machines: the resume loader as an EFI application on the EFI System Partition, its
boot entry, and BootNext, which arms that entry for one boot.

The entry is made with Debian's efibootmgr --create-only, so it is never in BootOrder
(UEFI 2.10 §3.1.1): the firmware starts the loader only on the boot after `suspendos
hibernate` set BootNext to it, and the boot manager deletes BootNext before it starts the
option (§3.1.2 Load Option Processing), so every later boot is the normal one. The boot
manager may also remove load options nothing references (§3.1.1): an entry outside BootOrder
can vanish, so `hibernate` checks it is still there. Its number (Boot####) is recorded in
/etc/suspendos/efi-boot.conf, beside the stale-image guard's resume.conf:

    SOS_EFI_BOOTNUM="0004"     the Boot#### entry, four hex digits
    SOS_EFI_ESP="/boot/efi"    where the ESP holding \\EFI\\suspendos\\resume.efi is mounted

Variables are read and written through efivarfs (Documentation/filesystems/efivarfs.rst):
a file per variable named NAME-VENDORGUID whose contents are the 4-byte attributes and then
the data.
"""
import errno
import fcntl
import os
import re
import shutil
import struct
import sys
import tempfile
from dataclasses import dataclass

from ..errors import UsageError
from . import guard

EFIVARS = "/sys/firmware/efi/efivars"
# EFI_GLOBAL_VARIABLE, the vendor of Boot####, BootOrder and BootNext (UEFI 2.10 §3.3).
GLOBAL_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
# The EFI System Partition's partition type GUID (UEFI 2.10 §5.3.3).
ESP_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
# Where the firmware finds the loader: a path on the ESP (UEFI 2.10 §13.3.1.3 directory
# structure: vendors keep their files under \EFI\<vendor>).
LOADER = "\\EFI\\suspendos\\resume.efi"
LABEL = "suspendos resume"
# BootNext's attributes: NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS, what §3.3's
# table gives the global boot variables (UEFI 2.10 §8.2.1 GetVariable, the attribute bits).
BOOT_NEXT_ATTRS = 0x1 | 0x2 | 0x4
CONF_NAME = "efi-boot.conf"
# ioctl(2) FS_IOC_GETFLAGS / FS_IOC_SETFLAGS and FS_IMMUTABLE_FL (linux/fs.h): efivarfs
# marks the files of variables it does not know as immutable (fs/efivarfs/inode.c).
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_IMMUTABLE_FL = 0x10


def is_uefi(host):
    """The kernel booted through UEFI: it made /sys/firmware/efi (Documentation/ABI/testing/
    sysfs-firmware-efi)."""
    return host.sys.exists("/sys/firmware/efi")


# ---- mounts: the ESP and efivarfs ----------------------------------------------------------
def mounts(host):
    """[(major:minor, mount point, filesystem type, source)] of /proc/self/mountinfo
    (Documentation/filesystems/proc.rst 3.5)."""
    out = []
    for line in host.read("/proc/self/mountinfo", "mounts").splitlines():
        left, sep, right = line.partition(" - ")
        w, r = left.split(), right.split()
        if sep and len(w) >= 5 and len(r) >= 2:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), w[4])
            out.append((w[2], point, r[0], r[1]))
    return out


def efivars(host):
    """The efivarfs directory; refused when efivarfs is not mounted there."""
    if not any(fs == "efivarfs" and point == EFIVARS for _, point, fs, _ in mounts(host)):
        raise UsageError(f"efivarfs is not mounted at {EFIVARS}: mount -t efivarfs efivarfs "
                         f"{EFIVARS}, then try again")
    return host.sys.path(EFIVARS)


def partition_type(host, name, majmin):
    """The GPT partition type GUID of /dev/NAME, lower case: udev's database (what blkid told
    it at boot), or blkid itself on a live system; None when neither says."""
    db = host.sys.path(f"/run/udev/data/b{majmin}")
    if db.is_file():
        for line in db.read_text(errors="replace").splitlines():
            if line.startswith("E:ID_PART_ENTRY_TYPE="):
                return line.split("=", 1)[1].strip().lower()
    if host.live and shutil.which("blkid"):
        rc, out = host.run(["blkid", "-p", "-o", "value", "-s", "PART_ENTRY_TYPE",
                            f"/dev/{name}"])
        if rc == 0 and out:
            return out.strip().lower()
    return None


@dataclass
class Esp:
    mount: str          # mount point, as the system sees it
    disk: str           # /dev/sda, /dev/nvme0n1, /dev/vda
    part: int           # its partition number there (efibootmgr --part)

    def loader(self, host):
        """The loader file on the ESP, as a path to open (inside the sysroot for tests)."""
        return host.sys.path(self.mount) / LOADER.replace("\\", "/").lstrip("/")

    def loader_shown(self):
        return self.mount.rstrip("/") + LOADER.replace("\\", "/")


def _partition(host, majmin):
    """(name, disk name, partition number) of a block device, or None for a whole disk."""
    real = host.sys.realpath(f"/sys/dev/block/{majmin}")
    if not host.sys.exists(f"{real}/partition"):
        return None
    n = host.read(f"{real}/partition", "ESP").strip()
    if not n.isdigit():
        raise UsageError(f"ESP: {real}/partition holds {n!r}, not a partition number")
    return os.path.basename(real), os.path.basename(os.path.dirname(real)), int(n)


def find_esp(host):
    """The mounted ESP: the vfat mount at /boot/efi (Debian's), else a vfat mount whose
    partition has the ESP's type GUID. Refused when none is mounted."""
    vfat = [(mm, point) for mm, point, fs, _ in mounts(host) if fs == "vfat"]
    ordered = sorted(vfat, key=lambda v: v[1] != "/boot/efi")
    for majmin, point in ordered:
        part = _partition(host, majmin)
        if part is None:
            continue
        name, disk, n = part
        if point == "/boot/efi" or partition_type(host, name, majmin) == ESP_TYPE:
            return Esp(point, f"/dev/{disk}", n)
    raise UsageError("no EFI System Partition is mounted (vfat at /boot/efi, or a partition of "
                     f"type {ESP_TYPE.upper()}): mount it (Debian: mount /boot/efi), then try "
                     "again")


# ---- variables through efivarfs ------------------------------------------------------------
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
    where = where or efivars(host)
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


def is_ours(entry):
    description, path = entry
    return description == LABEL and path.lower() == LOADER.lower()


def read_boot_next(host, where=None):
    """BootNext's UINT16 (UEFI 2.10 §3.1.1), or None when it is not set."""
    path = (where or efivars(host)) / var_name("BootNext")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(data) != 6:
        raise UsageError(f"{EFIVARS}/{path.name} holds {len(data)} bytes, not the attributes "
                         "and a UINT16")
    return struct.unpack("<IH", data)[1]


def write_boot_next(host, num, where=None):
    """BootNext = num: the attributes and the UINT16 in one write(), which efivarfs requires
    (it takes each write as one SetVariable call). No O_TRUNC: efivarfs replaces the whole
    variable on every write. Read back to be sure the firmware holds it."""
    path = (where or efivars(host)) / var_name("BootNext")
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
    path = (where or efivars(host)) / var_name("BootNext")
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


# ---- the boot entry: efibootmgr ------------------------------------------------------------
def create_argv(esp):
    """Debian's efibootmgr (17): a new Boot#### for the loader, not added to BootOrder."""
    return ["efibootmgr", "--create-only", "--disk", esp.disk, "--part", str(esp.part),
            "--loader", LOADER, "--label", LABEL]


def delete_argv(num):
    return ["efibootmgr", "--delete-bootnum", "--bootnum", f"{num:04X}"]


def need_efibootmgr():
    if not shutil.which("efibootmgr"):
        raise UsageError("efibootmgr not found: the resume loader's boot entry needs it "
                         "(apt install efibootmgr)")


def efibootmgr(host, argv):
    rc, why = host.run(argv)
    if rc:
        raise UsageError(f"{' '.join(argv[:2])} failed: {why.strip()[-300:]}")


# ---- what install-resume, hibernate and uninstall-resume do --------------------------------
def conf_path(host):
    return guard.conf_path(host).with_name(CONF_NAME)


def recorded(host):
    """(entry number, ESP mount point) from efi-boot.conf, or None when there is none (a BIOS
    install, or none)."""
    path = conf_path(host)
    if not path.exists():
        return None
    conf = guard.parse(path.read_text())
    num, esp = conf.get("SOS_EFI_BOOTNUM", ""), conf.get("SOS_EFI_ESP", "")
    if not re.fullmatch(r"[0-9A-Fa-f]{4}", num) or not esp.startswith("/"):
        raise UsageError(f"{path} is damaged (no SOS_EFI_BOOTNUM or SOS_EFI_ESP): run "
                         "suspendos install-resume again")
    return int(num, 16), esp


def render_conf(num, esp):
    return ("# written by suspendos install-resume: the boot entry suspendos hibernate arms "
            "with BootNext\n"
            f'SOS_EFI_BOOTNUM="{num:04X}"\nSOS_EFI_ESP="{esp.mount}"\n')


def write_loader(host, esp, data):
    """The loader onto the ESP: a temporary file beside it renamed over it, so a failure
    leaves the old one. No chmod: vfat has no modes (its mount options set them)."""
    path = esp.loader(host)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".sos-", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def install_entry(host, esp):
    """Create the boot entry for the loader already on `esp`, then delete the entries an
    earlier install made (so reinstalling replaces, never piles up). Returns (new number,
    [old numbers deleted])."""
    where = efivars(host)
    before = boot_entries(host, where)
    efibootmgr(host, create_argv(esp))
    after = boot_entries(host, where)
    new = [n for n in after if n not in before and is_ours(after[n])]
    if len(new) != 1:
        raise UsageError(f"efibootmgr --create-only made {len(new)} '{LABEL}' entries, not 1 "
                         "(see efibootmgr -v)")
    old = sorted(n for n, e in before.items() if is_ours(e))
    pending = read_boot_next(host, where)
    for n in old:
        efibootmgr(host, delete_argv(n))
        if pending == n:
            clear_boot_next(host, where)
    return new[0], old


def armed_entry(host):
    """The entry `hibernate` will set BootNext to, checked now (before anything is touched):
    None on a machine installed without it. Refused when it is gone or no longer ours."""
    rec = recorded(host)
    if rec is None:
        return None
    num = rec[0]
    if not is_uefi(host):
        raise UsageError(f"{conf_path(host)} names {boot_name(num)} but this boot is not "
                         "through UEFI: run suspendos install-resume again")
    entry = boot_entries(host).get(num)
    if entry is None or not is_ours(entry):
        raise UsageError(f"the boot entry {boot_name(num)} that install-resume made for the "
                         f"resume loader is {'gone' if entry is None else 'another one now'}"
                         ": nothing would resume the image; run suspendos install-resume "
                         "again")
    return num


def arm(host, num):
    write_boot_next(host, num)


def disarm(host, num):
    """After any return from the handoff: BootNext off again if it still names our entry (a
    resume already had the firmware delete it). True when it was cleared. It runs in the
    cleanup after the handoff, so a failure is a warning on stderr, never an exception that
    would hide what the handoff did."""
    try:
        where = efivars(host)
        if read_boot_next(host, where) == num:
            return clear_boot_next(host, where)
    except (OSError, UsageError) as e:
        print(f"suspendos: warning: BootNext could not be cleared ({e}): the next boot may "
              f"start {boot_name(num)}; clear it with efibootmgr --delete-bootnext",
              file=sys.stderr)
    return False


def install(host, target, esp):
    """install-resume on a UEFI machine: the EFI loader onto the ESP, its entry (replacing an
    earlier one) and efi-boot.conf. Returns what it did, one line each."""
    from ..build.resume import build_resume_loader
    from ..fileutil import write_atomic
    with tempfile.TemporaryDirectory(prefix="sos-efi-") as tmp:
        out = os.path.join(tmp, "resume.efi")
        build_resume_loader(target, out, fmt="efi")
        with open(out, "rb") as f:
            write_loader(host, esp, f.read())
    done = [f"resume loader {esp.loader_shown()} (EFI application, {esp.disk} partition "
            f"{esp.part})"]
    num, old = install_entry(host, esp)
    replaced = f", replacing {', '.join(boot_name(n) for n in old)}" if old else ""
    done.append(f"boot entry {boot_name(num)} '{LABEL}' (not in BootOrder: suspendos "
                f"hibernate arms it with BootNext{replaced})")
    path = conf_path(host)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, render_conf(num, esp).encode())
    done.append(f"{path} ({boot_name(num)})")
    return done
