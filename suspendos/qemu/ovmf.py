"""UEFI firmware for the test machine: Debian's OVMF (package ovmf) as two pflash drives.

The code volume is shared and read-only; the variable store is written by the firmware (boot
options, NvVars), so every run gets its own copy of the template.
"""
import shutil
from pathlib import Path

from ..errors import UsageError
from .machine import opt_value

OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"


def vars_copy(dest) -> Path:
    """A fresh copy of the variable store template at `dest`."""
    if not Path(OVMF_VARS).is_file():
        raise UsageError(f"{OVMF_VARS} is missing (Debian: apt-get install ovmf)")
    shutil.copyfile(OVMF_VARS, dest)
    return Path(dest)


def pflash_args(vars_copy_path, code=OVMF_CODE) -> list[str]:
    """-drive options for the firmware: unit 0 the code (read-only), unit 1 the per-run copy
    of the variable store (vars_copy)."""
    if not Path(code).is_file():
        raise UsageError(f"{code} is missing (Debian: apt-get install ovmf)")
    return ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={opt_value(code)}",
            "-drive", f"if=pflash,format=raw,unit=1,file={opt_value(vars_copy_path)}"]
