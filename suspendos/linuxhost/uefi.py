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

The variables themselves are read and written through efivarfs (efivars.py).
"""
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass

from ..errors import UsageError
from . import efivars, guard

# The EFI System Partition's partition type GUID (UEFI 2.10 §5.3.3).
ESP_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
# Where the firmware finds the loader: a path on the ESP (UEFI 2.10 §13.3.1.3 directory
# structure: vendors keep their files under \EFI\<vendor>).
LOADER = "\\EFI\\suspendos\\resume.efi"
LABEL = "suspendos resume"
CONF_NAME = "efi-boot.conf"


def is_uefi(host):
    """The kernel booted through UEFI: it made /sys/firmware/efi (Documentation/ABI/testing/
    sysfs-firmware-efi)."""
    return host.sys.exists("/sys/firmware/efi")


# ---- the ESP -------------------------------------------------------------------------------
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
    # ASCII digits only (int() reads "\u0663" as 3), within the hard drive node's UINT32
    # PartitionNumber (UEFI 2.10 §10.3.5.1) that efibootmgr --part fills in.
    if not (n.isascii() and n.isdigit()) or int(n) > 0xFFFFFFFF:
        raise UsageError(f"ESP: {real}/partition holds {n!r}, not a partition number")
    return os.path.basename(real), os.path.basename(os.path.dirname(real)), int(n)


def find_esp(host):
    """The mounted ESP: the vfat mount at /boot/efi (Debian's), else a vfat mount whose
    partition has the ESP's type GUID. Refused when none is mounted."""
    vfat = [(mm, point) for mm, point, fs, _ in host.mounts() if fs == "vfat"]
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


def check_recordable(esp):
    """Refuse an ESP whose mount point efi-boot.conf cannot hold: one quoted value a line."""
    if '"' in esp.mount or not esp.mount.isprintable():
        raise UsageError(f"ESP: its mount point {esp.mount!r} cannot be recorded in "
                         f"{CONF_NAME} (a quote or control character in it): mount the ESP "
                         "elsewhere (Debian: /boot/efi), then try again")


def is_ours(entry):
    """An entry (description, file path) install-resume made: our label and loader."""
    description, path = entry
    return description == LABEL and path.lower() == LOADER.lower()


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
    from ..fileutil import read_input
    path = conf_path(host)
    if not os.path.lexists(path):
        return None
    # read_input: a folder or FIFO in its place is refused (a FIFO is never waited on)
    text = read_input(path, limit=1 << 16, kind=CONF_NAME).decode("utf-8", "replace")
    conf = guard.parse(text)
    num, esp = conf.get("SOS_EFI_BOOTNUM", ""), conf.get("SOS_EFI_ESP", "")
    # The ESP as install-resume wrote it: absolute, with no .. that climbs out of it.
    if not re.fullmatch(r"[0-9A-Fa-f]{4}", num) or not esp.startswith("/") or \
            os.path.normpath(esp) != esp or ".." in esp.split("/"):
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
    where = efivars.folder(host)
    before = efivars.boot_entries(host, where)
    efibootmgr(host, create_argv(esp))
    after = efivars.boot_entries(host, where)
    new = [n for n in after if n not in before and is_ours(after[n])]
    if len(new) != 1:
        raise UsageError(f"efibootmgr --create-only made {len(new)} '{LABEL}' entries, not 1 "
                         "(see efibootmgr -v)")
    old = sorted(n for n, e in before.items() if is_ours(e))
    pending = efivars.read_boot_next(host, where)
    for n in old:
        efibootmgr(host, delete_argv(n))
        if pending == n:
            efivars.clear_boot_next(host, where)
    return new[0], old


def armed_entry(host):
    """The entry `hibernate` will set BootNext to, checked now (before anything is touched):
    None on a machine installed without it. Refused when it is gone or no longer ours."""
    rec = recorded(host)
    if rec is None:
        return None
    num = rec[0]
    name = efivars.boot_name(num)
    if not is_uefi(host):
        raise UsageError(f"{conf_path(host)} names {name} but this boot is not through UEFI: "
                         "run suspendos install-resume again")
    entry = efivars.boot_entries(host).get(num)
    if entry is None or not is_ours(entry):
        raise UsageError(f"the boot entry {name} that install-resume made for the resume "
                         f"loader is {'gone' if entry is None else 'another one now'}: "
                         "nothing would resume the image; run suspendos install-resume again")
    return num


def arm(host, num):
    efivars.write_boot_next(host, num)


def disarm(host, num):
    """After any return from the handoff: BootNext off again if it still names our entry (a
    resume already had the firmware delete it). True when it was cleared. It runs in the
    cleanup after the handoff, so a failure is a warning on stderr, never an exception that
    would hide what the handoff did."""
    try:
        where = efivars.folder(host)
        if efivars.read_boot_next(host, where) == num:
            return efivars.clear_boot_next(host, where)
    except (OSError, UsageError) as e:
        print(f"suspendos: warning: BootNext could not be cleared ({e}): the next boot may "
              f"start {efivars.boot_name(num)}; clear it with efibootmgr --delete-bootnext",
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
    replaced = f", replacing {', '.join(efivars.boot_name(n) for n in old)}" if old else ""
    done.append(f"boot entry {efivars.boot_name(num)} '{LABEL}' (not in BootOrder: suspendos "
                f"hibernate arms it with BootNext{replaced})")
    path = conf_path(host)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, render_conf(num, esp).encode())
    done.append(f"{path} ({efivars.boot_name(num)})")
    return done
