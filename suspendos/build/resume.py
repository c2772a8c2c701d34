"""Build the resume loader for a target: a multiboot kernel (elf32-i386, as QEMU's -kernel and
GRUB's multiboot command take it) linked to live only inside the target's reserved region,
or (format "efi") the same loader with its EFI entries inside a PE32+ EFI application
(build/efi.py) that copies it there.

It is compiled from builder/resume/ with the payload's own drivers and core pieces (stream,
XXH64, LZ4, ChaCha20-Poly1305, the ISR stubs) and qemu-boot's boot stub and multiboot
parser, then given what the payload gets: the same sos_payload_info (build/payload.py), the
memory and sector lists, an IDT generated from its ISR stubs (build/idt.py).

Reserved region layout (builder/resume/resume.h has the picture): boot stub, handoff page at
load_base + 0x1000 (blob.handoff, where the host reads its handoff block after the
return), code and data, the lists, bss (boot page tables and stack), then scratch to the end.
"""
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BuildError, UsageError
from ..formats import efi_runtime
from ..formats.common import PAGE_SIZE, align_up
from ..sources import source_dir
from . import efi, idt, toolchain, trampoline
from .payload import AHCI_DMA_SIZE, _elf_info, mcmodel, patch_payload_info, payload_info, \
    target_lists

HANDOFF_OFFSET = PAGE_SIZE       # blob.handoff = load_base + 0x1000, as for the payload
MIN_SCRATCH = AHCI_DMA_SIZE + 256 * 1024
FORMATS = ("multiboot", "efi")
# The EFI build's extra entries, kept from --gc-sections (builder/resume/efi/).
EFI_KEEP = "KEEP(*(.text.efi_entry))"


@dataclass
class LoaderBuild:
    elf: Path
    load_base: int
    handoff: int
    scratch_base: int
    scratch_size: int
    symbols: dict = field(default_factory=dict)


def loader_sources(kind="ahci", fmt="multiboot"):
    resume = source_dir("builder") / "resume"
    core = source_dir("builder") / "core"
    boot = source_dir("qemu-boot")
    entries = [resume / "efi" / n for n in ("entry.c", "entry64.S", "runtime.c", "runtime_map.c")
               ] if fmt == "efi" else []
    return ([*sorted(resume.glob("*.c")), *sorted(resume.glob("*.S")), *entries,
             boot / "boot.S", boot / "multiboot.c", core / "isr.S"]
            + [core / n for n in ("stream.c", "xxh64.c", "lz4.c", "chacha20poly1305.c",
                                  "vector.c")]
            + toolchain.driver_sources(kind)
            + [source_dir("drivers") / "apic.c", source_dir("drivers") / "ap_start.S"]
            + [source_dir("builder") / "lib" / "string.c"])


def loader_flags(mcmodel, serial_port):
    """The loader's compile flags beyond toolchain.FREESTANDING, from all a target changes
    in them: its code model ("small", "large") and serial port (payload_flags' twin)."""
    return [f"-mcmodel={mcmodel}", "-ffunction-sections", "-fdata-sections",
            "-DBOOT_MAIN=resume_main", f"-DRESUME_SERIAL_PORT={serial_port:#x}"]


def loader_includes(work):
    return [*toolchain.include_dirs(work), source_dir("builder") / "resume",
            source_dir("builder") / "resume" / "efi", source_dir("qemu-boot")]


def _lists_source(work, mem_list, sec_list, efi_runtime=None):
    """An assembly file that puts the two lists in .lists (the linker script keeps them), and
    in the EFI build the runtime list (formats/efi_runtime.py, builder/resume/efi/runtime.c)."""
    (work / "memory_list.bin").write_bytes(mem_list)
    (work / "sector_list.bin").write_bytes(sec_list)
    src = work / "resume_lists.S"
    text = ('\t.section .lists, "a"\n\t.balign 16\n'
            f'\t.globl sos_resume_memory_list\nsos_resume_memory_list:\n'
            f'\t.incbin "{work / "memory_list.bin"}"\n'
            f'\t.globl sos_resume_sector_list\nsos_resume_sector_list:\n'
            f'\t.incbin "{work / "sector_list.bin"}"\n')
    if efi_runtime is not None:
        (work / "efi_runtime.bin").write_bytes(efi_runtime)
        text += ('\t.balign 16\n\t.globl sos_resume_efi_runtime\nsos_resume_efi_runtime:\n'
                 f'\t.incbin "{work / "efi_runtime.bin"}"\n')
    src.write_text(text)
    return src


def efi_runtime_list(target):
    """The target's efi_runtime as the loader's EfiRuntimeList."""
    return efi_runtime.runtime_list([(r.type, r.phys, r.virt, r.pages, r.attribute)
                                     for r in target.efi_runtime],
                                    target.efi_runtime_services)


def build_resume_loader(target, out_path, key=None, workdir=None, fmt="multiboot"):
    """Compile, link and configure the loader for `target`; write it to `out_path` as a
    multiboot ELF or (fmt "efi") an EFI application."""
    if fmt not in FORMATS:
        raise UsageError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    target.validate()
    load, reserved_end = target.reserved_range
    # Both formats: the EFI application carries the same loader, whose boot stub
    # (qemu-boot/boot.S) is 32-bit code (the link fails on its relocations above 4 GiB).
    if reserved_end > 1 << 32:
        raise UsageError(f"reserved: the resume loader ({fmt}) must load below 4 GiB")
    with tempfile.TemporaryDirectory(prefix="sos-resume-") as tmp:
        work = Path(workdir or tmp)
        _, mem_list, sec_list = target_lists(target)
        resume = source_dir("builder") / "resume"
        flags = loader_flags(mcmodel(target), target.options.serial_port)
        lists_src = _lists_source(work, mem_list, sec_list,
                                  efi_runtime_list(target) if fmt == "efi" else None)
        objects = toolchain.compile_all([*loader_sources(target.disk.kind, fmt), lists_src],
                                        work, flags, includes=loader_includes(work))
        script = (resume / "resume.ld").read_text().replace("@LOAD_BASE@", hex(load)).replace(
            "@RESERVED_END@", hex(reserved_end)).replace(
            "@EFI_KEEP@", EFI_KEEP if fmt == "efi" else "")
        elf64 = work / "resume64.elf"
        try:
            toolchain.link(objects, script, elf64, work)
        except BuildError as e:     # resume.ld's ASSERT: code, data and lists past the end
            if "does not fit the reserved region" not in str(e):
                raise
            raise UsageError(f"reserved.size: {target.reserved.size:#x} is too small for the "
                             f"resume loader and its lists ({len(mem_list) + len(sec_list)} "
                             "bytes of memory and sector lists)") from None
        sections, sym = _elf_info(elf64)

        scratch_base = align_up(sym["sos_resume_end"], PAGE_SIZE)
        scratch_size = reserved_end - scratch_base
        if scratch_size < MIN_SCRATCH:
            raise UsageError(f"reserved.size: {target.reserved.size:#x} is too small for the "
                             f"resume loader (it needs at least "
                             f"{scratch_base - load + MIN_SCRATCH:#x})")
        if sym.get("resume_handoff") != load + HANDOFF_OFFSET:
            raise BuildError("resume loader: the handoff block is not at load_base + 0x1000")
        info = payload_info(
            target, key=key, memory_list=sym["sos_resume_memory_list"],
            sector_list=sym["sos_resume_sector_list"], pml4=sym["boot_pml4"],
            scratch_base=scratch_base, scratch_size=scratch_size,
            stack_top=sym["boot_stack_top"], trampoline_exit=0)
        data_addr, data_size, data = sections[".data"]
        data = patch_payload_info(data, data_addr, sym, info)
        gates = idt.build_idt(sym, trampoline.CODE_SELECTOR)    # boot.S's code selector too
        off = sym["sos_resume_idt"] - data_addr
        data = data[:off] + gates + data[off + len(gates):]
        patched = work / "data.bin"
        patched.write_bytes(data)
        if fmt == "efi":
            _efi(work, elf64, patched, sym, target, reserved_end, out_path)
        else:
            toolchain.run([toolchain.tool("objcopy"), "--update-section", f".data={patched}",
                           "-O", "elf32-i386", str(elf64), str(out_path)],
                          "configuring the resume loader")
    return LoaderBuild(elf=Path(out_path), load_base=load, handoff=load + HANDOFF_OFFSET,
                       scratch_base=scratch_base, scratch_size=scratch_size, symbols=sym)


def _efi(work, elf64, patched_data, sym, target, reserved_end, out_path):
    """The configured loader as a flat image from load_base, inside the EFI stage."""
    flat = work / "resume_flat.bin"
    toolchain.run([toolchain.tool("objcopy"), "--update-section", f".data={patched_data}",
                   "-O", "binary", str(elf64), str(flat)], "flattening the resume loader")
    load = sym["sos_resume_start"]
    image_bytes = flat.stat().st_size
    if load + image_bytes > sym["sos_resume_end"]:
        raise BuildError("resume loader: its flat image runs past sos_resume_end")
    loader = {"load_base": load, "reserved_end": reserved_end, "image_bytes": image_bytes,
              "zero_end": sym["sos_resume_end"], "check": sym["resume_efi_check"],
              "start": sym["resume_efi_start"]}
    efi.efi_application(flat, loader, target.options.serial_port, loader_includes(work), work,
                        out_path)
