"""UEFI firmware for the test machines: Debian's OVMF (package `ovmf`) as two pflash chips,
its code read-only and a per-run copy of its variable store, so what one run writes (boot
entries, BootNext) never reaches another (QEMU-NOTES, UEFI; OVMF's README, "pflash")."""
import shutil
from pathlib import Path

from ..errors import UsageError
from .machine import opt_value

OVMF_DIR = Path("/usr/share/OVMF")
CODE = OVMF_DIR / "OVMF_CODE_4M.fd"
VARS = OVMF_DIR / "OVMF_VARS_4M.fd"


def check_installed():
    """Refuse, before anything is built, a machine without OVMF's two files."""
    for f in (CODE, VARS):
        if not Path(f).is_file():
            raise UsageError(f"{f} is missing (Debian: apt-get install ovmf)")


def vars_copy(dest, template=VARS):
    """A fresh copy of the variable store template at `dest` (replaced if there)."""
    if not Path(template).is_file():
        raise UsageError(f"{template} is missing (Debian: apt-get install ovmf)")
    dest = Path(dest)
    dest.unlink(missing_ok=True)
    shutil.copyfile(template, dest)
    return dest


def pflash_args(vars_path, code=CODE):
    """QEMU's arguments for OVMF with the variable store at `vars_path` (a copy: written)."""
    if not Path(code).is_file():
        raise UsageError(f"{code} is missing (Debian: apt-get install ovmf)")
    return ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={opt_value(code)}",
            "-drive", f"if=pflash,format=raw,unit=1,file={opt_value(vars_path)}"]
