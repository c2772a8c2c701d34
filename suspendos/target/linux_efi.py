"""The EFI runtime map of a live Linux system (docs/LINUX.md, docs/RESUME.md "The EFI
loader"): /sys/firmware/efi/runtime-map/N/{type,phys_addr,virt_addr,num_pages,attribute},
one directory a descriptor, which Linux shows with CONFIG_EFI_RUNTIME_MAP
(drivers/firmware/efi/runtime-map.c; the map kexec hands the next kernel), and
/sys/firmware/efi/runtime, the runtime services table. These are the regions x86-64 Linux
mapped at fixed virtual addresses and gave SetVirtualAddressMap (UEFI 2.10, 8.4) at boot;
the EFI resume loader gives a fresh firmware the same map.

No runtime map (a BIOS machine, or a kernel without CONFIG_EFI_RUNTIME_MAP) is an empty
list. The checks on the values (alignment, overlap, EFI_MEMORY_RUNTIME, canonical virtual
addresses) are the target description's.
"""
from ..errors import UsageError
from .description import EfiRuntime

RUNTIME_MAP = "/sys/firmware/efi/runtime-map"
# The physical address of the EFI_RUNTIME_SERVICES table (UEFI 2.10, 4.5) Linux calls
# through, shown for kexec next to the runtime map (drivers/firmware/efi/efi.c).
RUNTIME_TABLE = "/sys/firmware/efi/runtime"
# The five files a descriptor directory holds, and the EfiRuntime field each fills; the
# kernel prints each in hexadecimal with 0x.
FILES = {"type": "type", "phys_addr": "phys", "virt_addr": "virt", "num_pages": "pages",
         "attribute": "attribute"}


def runtime_map(sysmap):
    """[EfiRuntime] in the kernel's order (the directory numbers), or []."""
    if not sysmap.exists(RUNTIME_MAP):
        return []
    dirs = [p.name for p in sysmap.path(RUNTIME_MAP).iterdir()]
    if not all(d.isdigit() for d in dirs):
        bad = next(d for d in dirs if not d.isdigit())
        raise UsageError(f"efi_runtime: {RUNTIME_MAP}/{bad} is not a descriptor number")
    return [_entry(sysmap, f"{RUNTIME_MAP}/{d}", f"efi_runtime[{i}]")
            for i, d in enumerate(sorted(dirs, key=int))]


def runtime_services(sysmap):
    """The runtime services table's physical address, or 0 without a runtime map (the table
    alone would be checked against nothing) or without the file."""
    if not sysmap.exists(RUNTIME_MAP) or not sysmap.exists(RUNTIME_TABLE):
        return 0
    return _hex(sysmap.read(RUNTIME_TABLE, "efi_runtime_services").strip(), RUNTIME_TABLE,
                "efi_runtime_services")


def _hex(text, path, where):
    try:
        if not text.lower().startswith("0x"):
            raise ValueError(text)
        return int(text, 16)
    except ValueError:
        raise UsageError(f"{where}: {path} holds {text[:40]!r}, not a hexadecimal number")


def _entry(sysmap, rel, where):
    values = {}
    for name, field in FILES.items():
        text = sysmap.read(f"{rel}/{name}", where).strip()
        values[field] = _hex(text, f"{rel}/{name}", f"{where}.{field}")
    return EfiRuntime(**values)
