"""`suspendos uninstall-resume`: take away what `suspendos install-resume` put on the machine,
one line per thing removed; run again it finds nothing and says so.

- UEFI: BootNext when it names our entry, every boot entry that is ours (label
  'suspendos resume' and loader \\EFI\\suspendos\\resume.efi: the recorded one and any an
  interrupted install left), the loader on the ESP, /etc/suspendos/efi-boot.conf;
- BIOS: the GRUB script (then update-grub) and the multiboot loader in --boot-dir;
- both: the initramfs hook and check (then update-initramfs -u) and resume.conf.

Everything that can refuse (not root, efibootmgr missing while there are entries to
delete) is checked before anything is removed.
"""
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from . import efivars, guard, uefi
from .host import Host
from .install import GRUB_FILE, HOOKS, LOADER_NAME, check_boot_dir, check_files

INITRAMFS_FILES = tuple(dst for _, dst in HOOKS)


@dataclass
class UninstallRequest:
    boot_dir: str = "/boot"


def _need(tool, why):
    if not shutil.which(tool):
        raise UsageError(f"{tool} not found: {why} needs it")


def _run(argv):
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode:
        raise UsageError(f"{' '.join(argv)} failed: {(r.stderr or r.stdout).strip()[-300:]}")


def _efi_plan(host):
    """(efivarfs folder or None, our entry numbers, the ESP or None). Reads only; refuses
    on a UEFI machine without efivarfs."""
    try:
        rec = uefi.recorded(host)
    except UsageError:                  # damaged: removed all the same
        rec = None
    where, ours = None, []
    if uefi.is_uefi(host):
        where = efivars.folder(host)
        ours = sorted(n for n, e in efivars.boot_entries(host, where).items() if uefi.is_ours(e))
    if rec:                             # its mount point is all it takes to find the loader
        return where, ours, uefi.Esp(rec[1], "", 0)
    try:
        return where, ours, uefi.find_esp(host) if where is not None else None
    except UsageError:                  # no ESP mounted: no loader of ours to find there
        return where, ours, None


def _efi(host, where, ours, esp):
    removed = []
    if where is not None:
        pending = efivars.read_boot_next(host, where)
        if pending in ours:
            efivars.clear_boot_next(host, where)
            removed.append(f"BootNext ({efivars.boot_name(pending)})")
        for n in ours:
            uefi.efibootmgr(host, uefi.delete_argv(n))
            removed.append(f"boot entry {efivars.boot_name(n)} '{uefi.LABEL}'")
    loader = esp.loader(host) if esp else None
    if loader is not None and loader.exists():
        loader.unlink()
        removed.append(f"resume loader {esp.loader_shown()}")
        try:
            loader.parent.rmdir()       # \EFI\suspendos, when nothing else is in it
        except OSError:
            pass
    conf = uefi.conf_path(host)
    if conf.exists():
        conf.unlink()
        removed.append(str(conf))
    return removed


def uninstall_resume(req, host=None):
    check_boot_dir(req.boot_dir)
    host = host or Host()
    if host.euid != 0:
        raise UsageError("uninstall-resume: run as root (it removes boot entries and files "
                         "in /etc and /boot)")
    etc = host.etc
    real_etc = str(etc) == "/etc"
    grub = etc / GRUB_FILE
    hooks = [etc / p for p in INITRAMFS_FILES if (etc / p).exists()]
    where, ours, esp = _efi_plan(host)
    check_files([*([esp.loader(host)] if esp else []), uefi.conf_path(host), grub,
                 Path(req.boot_dir) / LOADER_NAME, *hooks, guard.conf_path(host)],
                "uninstall-resume removes", others=False)
    if ours:
        uefi.need_efibootmgr()
    if real_etc and grub.exists():
        _need("update-grub", "taking the menu entry out of grub.cfg")
    if real_etc and hooks:
        _need("update-initramfs", "taking the stale-image check out of the initramfs")

    removed = _efi(host, where, ours, esp)
    if grub.exists():
        grub.unlink()
        removed.append(str(grub))
        if real_etc:
            _run(["update-grub"])
            removed.append("its menu entry from grub.cfg (update-grub)")
    elf = Path(req.boot_dir) / LOADER_NAME
    if elf.exists():
        elf.unlink()
        removed.append(f"resume loader {elf}")
    for path in hooks:
        path.unlink()
        removed.append(str(path))
    conf = guard.conf_path(host)
    if conf.exists():
        conf.unlink()
        removed.append(str(conf))
    try:
        conf.parent.rmdir()             # /etc/suspendos, when nothing else is in it
    except OSError:
        pass
    if hooks and real_etc:
        _run(["update-initramfs", "-u", "-k", host.release])
        removed.append(f"the check from the initramfs (update-initramfs -u -k {host.release})")

    for line in removed:
        print(f"removed: {line}")
    if not removed:
        print("nothing to remove: suspendos install-resume's files and boot entry are not "
              "there")
    return 0
