"""The Debian guest's EFI system partition: Debian's GRUB for x86_64-efi as the removable-media
boot file EFI/BOOT/BOOTX64.EFI (UEFI 2.10, 3.5.1.1: what firmware starts from a disk with no
boot entry for it), made by the guest's own grub-mkimage from the guest's own modules (the
grub-efi-amd64-bin package), and its grub.cfg beside it. Made with mkfs.vfat and mtools on a
file: nothing is mounted.

The kernel's command line: a real machine keeps it in grub.cfg. The test machines boot the
same disk with a different line per run (root= follows the disk's bus, swsusp's resume=, the
IOMMU's options), so grub.cfg takes the line from SMBIOS when the machine has one there: the
first OEM string (type 11, SMBIOS 3.6 section 7.12), which QEMU sets with
`-smbios type=11,value=...` (cmdline_smbios_args). GRUB's `smbios --get-string N` reads the
string whose number is in byte N of the structure; byte 4 of type 11 is its string count,
so with exactly one string it names string 1. Without it (any other machine) the line
written here is used.
"""
import subprocess
from pathlib import Path

from ..qemu.machine import opt_value

# What GRUB needs with no module folder on the ESP: GPT, FAT and ext4, finding the root by
# label, the config and its commands, Linux's boot protocol and the screen (GOP).
GRUB_MODULES = ["part_gpt", "fat", "ext2", "normal", "configfile", "search", "search_label",
                "smbios", "echo", "test", "linux", "efi_gop", "all_video", "boot"]
BOOT_FILE = "EFI/BOOT/BOOTX64.EFI"
PREFIX = "/EFI/BOOT"
GRUB_MARK = "@@GRUB start"        # the first line GRUB's config prints (boot timings)


def grub_cfg(abi, root_label, default_cmdline):
    """GRUB's config: the guest's kernel and initrd from the root found by label."""
    quoted = default_cmdline.replace("'", "")          # single quotes: `$` stays literal
    return "\n".join([
        "set timeout=0",
        f"echo '{GRUB_MARK}'",
        f"search --no-floppy --label {root_label} --set=root",
        f"set sos_cmdline='{quoted}'",
        "smbios --type 11 --get-string 4 --set sos_cmdline",
        f"linux /boot/vmlinuz-{abi} $sos_cmdline",
        f"initrd /boot/initrd.img-{abi}",
        "boot", ""])


def cmdline_smbios_args(cmdline):
    """QEMU's arguments that give grub.cfg the kernel's command line (one OEM string)."""
    return ["-smbios", f"type=11,value={opt_value(cmdline)}"]


def _run(cmd, what):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        from ..errors import BuildError
        raise BuildError(f"{what} failed ({r.returncode}): {(r.stderr or r.stdout)[-2000:]}")
    return r.stdout


def make_esp(root, out, mib, label, cfg):
    """The ESP as a FAT32 file system image at `out` of `mib` MiB: GRUB made in the guest's
    tree `root` (chroot), and `cfg` as its grub.cfg."""
    root, out = Path(root), Path(out)
    image = root / "tmp/BOOTX64.EFI"
    _run(["chroot", str(root), "grub-mkimage", "-O", "x86_64-efi", "-p", PREFIX,
          "-o", "/tmp/BOOTX64.EFI", *GRUB_MODULES], "grub-mkimage (guest)")
    cfg_file = root / "tmp/grub.cfg"
    cfg_file.write_text(cfg)
    out.unlink(missing_ok=True)
    _run(["mkfs.vfat", "-F", "32", "-n", label, "-C", str(out), str(mib * 1024)], "mkfs.vfat")
    _run(["mmd", "-i", str(out), "::/EFI", "::/EFI/BOOT"], "mmd")
    _run(["mcopy", "-i", str(out), str(image), f"::/{BOOT_FILE}"], "mcopy BOOTX64.EFI")
    _run(["mcopy", "-i", str(out), str(cfg_file), f"::{PREFIX}/grub.cfg"], "mcopy grub.cfg")
    image.unlink()
    cfg_file.unlink()
    return out
