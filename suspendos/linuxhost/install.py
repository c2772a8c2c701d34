"""`suspendos install-resume`: what a machine needs so that an image is either resumed or
discarded, never resumed late.

- /etc/suspendos/resume.conf: where the swap area's signature and the image header are
  (guard.py), read by the initramfs check and compared by `suspendos hibernate`;
- the initramfs-tools hook (initramfs/hook -> /etc/initramfs-tools/hooks/suspendos) and the
  check (initramfs/local-premount -> .../scripts/local-premount/suspendos), then
  update-initramfs -u;
- on a BIOS machine the resume loader (a multiboot kernel) in /boot, and unless --no-grub a
  GRUB menu entry that boots it (/etc/grub.d/42_suspendos, then update-grub);
- on a UEFI machine the loader as an EFI application on the ESP and its boot entry, outside
  BootOrder, which `suspendos hibernate` arms for one boot with BootNext (uefi.py).
"""
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..fileutil import write_atomic
from . import efivars, guard, uefi
from .hibernate import Request, capture, check_kernel, swap_path
from .host import Host

HERE = Path(__file__).resolve().parent / "initramfs"
LOADER_NAME = "suspendos-resume.elf"

GRUB_SCRIPT = """#!/bin/sh
# suspendos install-resume: a menu entry that resumes a suspendos image (docs/LINUX.md).
# Choose it only after a suspendos hibernate; a normal boot discards the image instead.
cat <<'EOF'
menuentry 'Resume from suspendos hibernation' --class suspendos {
	insmod part_msdos
	insmod part_gpt
	insmod ext2
	search --no-floppy --file --set=root %(loader)s
	multiboot %(loader)s
}
EOF
"""


HOOKS = (("hook", "initramfs-tools/hooks/suspendos"),
         ("local-premount", "initramfs-tools/scripts/local-premount/suspendos"))
GRUB_FILE = "grub.d/42_suspendos"


def check_files(paths, verb="install-resume writes", others=True):
    """Refuse, before anything is written or removed, a folder (and unless `others` is
    false a device, FIFO, socket) where one of the files install-resume writes and
    uninstall-resume removes belongs."""
    for p in paths:
        if os.path.isdir(p) and not os.path.islink(p):
            raise UsageError(f"{p}: is a folder, where {verb} a file: move it away, then "
                             "try again")
        if others and os.path.exists(p) and not os.path.isfile(p):
            raise UsageError(f"{p}: not a regular file, where {verb} a file (a device, FIFO "
                             "or socket is never replaced)")


@dataclass
class InstallRequest:
    swap: str = None
    no_grub: bool = False
    boot_dir: str = "/boot"
    firmware: str = "auto"


FIRMWARES = ("auto", "bios", "uefi")


def firmware(host, choice):
    """"bios" or "uefi": what this boot came through (auto), or what --firmware says."""
    if choice not in FIRMWARES:
        raise UsageError(f"--firmware: {choice!r} is not one of {', '.join(FIRMWARES)}")
    if choice == "auto":
        return "uefi" if uefi.is_uefi(host) else "bios"
    if choice == "uefi" and not uefi.is_uefi(host):
        raise UsageError("--firmware uefi: this machine did not boot through UEFI (no "
                         "/sys/firmware/efi)")
    return choice


def _boot_relative(host, boot):
    """The loader's path as GRUB sees it: relative to the filesystem holding /boot."""
    boot = Path(boot)
    if str(boot) == "/boot" and host.live:
        root_dev = os.stat("/").st_dev
        return "/boot/" + LOADER_NAME if os.stat("/boot").st_dev == root_dev else "/" + LOADER_NAME
    return "/" + LOADER_NAME


def check_boot_dir(boot_dir):
    if not boot_dir:        # Path("") is the current folder
        raise UsageError("--boot-dir: an empty folder name (the default is /boot)")


def install_resume(req, host=None):
    check_boot_dir(req.boot_dir)
    host = host or Host()
    check_kernel(host)
    target = capture(host, Request(swap=req.swap))
    swap = swap_path(host, Request(swap=req.swap))
    conf_text, values = guard.render(host, swap, target)
    etc = host.etc
    real_etc = str(etc) == "/etc"
    done = []
    fw = firmware(host, req.firmware)
    boot = Path(req.boot_dir)
    if real_etc and not shutil.which("update-initramfs"):     # refused before any write
        raise UsageError("update-initramfs not found: the stale-image check needs "
                         "initramfs-tools (apt install initramfs-tools)")
    conf = guard.conf_path(host)
    hooks = [etc / dst for _, dst in HOOKS]
    if fw == "uefi":                    # everything that can refuse, before any write
        esp = uefi.find_esp(host)
        uefi.check_recordable(esp)
        efivars.read_boot_next(host, efivars.folder(host))     # a damaged one is refused now
        uefi.need_efibootmgr()
        check_files([esp.loader(host), uefi.conf_path(host), conf, *hooks])
        done += uefi.install(host, target, esp)
    else:
        if not boot.is_dir():
            raise UsageError(f"--boot-dir: {boot} is not a directory")
        check_files([boot / LOADER_NAME, uefi.conf_path(host), conf, *hooks]
                    + ([] if req.no_grub else [etc / GRUB_FILE]))
        from ..build.resume import build_resume_loader
        build_resume_loader(target, boot / LOADER_NAME)
        done.append(f"resume loader {boot / LOADER_NAME}")
        efi_conf = uefi.conf_path(host)
        if efi_conf.exists():           # hibernate must no longer arm the UEFI entry
            efi_conf.unlink()
            done.append(f"no UEFI boot entry armed any more ({efi_conf} removed; "
                        "suspendos uninstall-resume deletes the entry)")

    conf.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(conf, conf_text.encode())
    done.append(f"{conf} (swap {swap}, devices {values['SOS_DEVICES']})")
    for src, dst in HOOKS:
        path = etc / dst
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, (HERE / src).read_bytes())
        path.chmod(0o755)
        done.append(str(path))
    if real_etc:
        r = subprocess.run(["update-initramfs", "-u", "-k", host.release],
                           capture_output=True, text=True)
        if r.returncode:
            raise UsageError(f"update-initramfs failed: {(r.stderr or r.stdout).strip()[-300:]}")
        done.append(f"update-initramfs -u -k {host.release}")
    else:
        done.append(f"update-initramfs not run ({etc} is not /etc)")

    if fw == "bios" and not req.no_grub:
        script = etc / GRUB_FILE
        script.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(script, (GRUB_SCRIPT % {"loader": _boot_relative(host, boot)}).encode())
        script.chmod(0o755)
        done.append(str(script))
        if real_etc:
            if not shutil.which("update-grub"):
                raise UsageError("update-grub not found: use --no-grub and boot "
                                 f"{boot / LOADER_NAME} with your boot loader's multiboot")
            r = subprocess.run(["update-grub"], capture_output=True, text=True)
            if r.returncode:
                raise UsageError(f"update-grub failed: {(r.stderr or r.stdout).strip()[-300:]}")
            done.append("update-grub")
    for line in done:
        print(f"installed: {line}")
    return 0
