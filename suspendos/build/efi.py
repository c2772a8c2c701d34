"""The resume loader as a PE32+ EFI application (UEFI 2.10, 2.1.2; subsystem 10, x86-64).

The firmware starts the EFI stage (builder/efi/): compiled position-independent and linked by
GNU ld's PE emulation (i386pep) with base relocations, so the firmware may load it anywhere.
It carries the loader, already linked and configured for the target's reserved region
(build/resume.py), as a flat image in its .sosldr section, with where it goes and its two
entries (builder/resume/efi/efi_entry.h, struct sos_efi_loader) in .rodata.
"""
from pathlib import Path

from ..sources import source_dir
from . import toolchain

EFI_SUBSYSTEM_APPLICATION = 10
# The PE's preferred base: above any RAM, so the firmware always relocates the stage into
# memory it picks (UEFI 2.10, 7.4.1 LoadImage) and the stage never sits at an address a
# target could choose for its reserved region by chance of the default.
IMAGE_BASE = 0x7F0000000000
# Position-independent, without the payload's fixed-address flags; SysV inside the stage,
# Microsoft x64 only at the firmware calls (efi.h EFIAPI).
STAGE_FLAGS = ["-fpie", "-fno-ident", "-fno-jump-tables"]


def stage_sources():
    efi = source_dir("builder") / "efi"
    drivers = source_dir("drivers")
    return [*sorted(efi.glob("*.c")), drivers / "serial.c", drivers / "printf.c",
            drivers / "timer.c",
            source_dir("builder") / "lib" / "string.c"]


def _loader_source(work, flat, loader):
    """The loader's flat image and its sos_efi_loader record, as assembly for the stage. The
    record's first field is the image's address: the PE's base relocation (firmware that
    loads a PE elsewhere than its base expects a .reloc section)."""
    src = work / "efi_loader.S"
    fields = ", ".join(hex(loader[k]) for k in ("load_base", "reserved_end", "image_bytes",
                                                "zero_end", "check", "start"))
    src.write_text(
        '\t.section .sosldr, "a"\n\t.balign 16\n'
        '\t.globl sos_efi_loader_image\nsos_efi_loader_image:\n'
        f'\t.incbin "{flat}"\n'
        '\t.section .rodata\n\t.balign 8\n'
        '\t.globl sos_efi_loader\nsos_efi_loader:\n'
        f'\t.quad sos_efi_loader_image, {fields}\n')
    return src


def efi_application(flat, loader, serial_port, includes, work, out):
    """Link the stage around `flat` (the loader's bytes from loader['load_base']) into the
    EFI application `out`. `loader`: the sos_efi_loader fields by name."""
    work = Path(work) / "efi"
    work.mkdir(parents=True, exist_ok=True)
    flags = [*STAGE_FLAGS, f"-DRESUME_SERIAL_PORT={serial_port:#x}"]
    objects = toolchain.compile_all(
        [*stage_sources(), _loader_source(work, flat, loader)], work, flags,
        includes=[*includes, source_dir("builder") / "efi",
                  source_dir("builder") / "resume" / "efi"])
    toolchain.run([toolchain.tool("ld"), "-m", "i386pep", "--subsystem",
                   str(EFI_SUBSYSTEM_APPLICATION), "-e", "efi_main",
                   "--image-base", hex(IMAGE_BASE), "--enable-reloc-section", "--dynamicbase",
                   "-nostdlib", "-s", *map(str, objects), "-o", str(out)],
                  "linking the EFI application")
    return Path(out)
