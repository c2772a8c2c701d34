"""Build the QEMU test host (qemu-boot/): a 32-bit multiboot ELF that QEMU's -kernel loads."""
import tempfile
from pathlib import Path

from ..sources import source_dir
from . import toolchain


def build_test_host(out_path, workdir=None):
    """Compile and link qemu-boot/ into `out_path` (an elf32-i386 multiboot kernel)."""
    with tempfile.TemporaryDirectory(prefix="sos-host-") as tmp:
        work = Path(workdir or tmp)
        boot = source_dir("qemu-boot")
        drivers = source_dir("drivers")
        lib = source_dir("builder") / "lib"
        sources = [*sorted(boot.glob("*.S")), *sorted(boot.glob("*.c")),
                   drivers / "serial.c", drivers / "printf.c", drivers / "timer.c",
                   drivers / "apic.c", drivers / "ap_start.S",
                   lib / "string.c"]
        incs = [toolchain.abi_header_dir(work), drivers, lib, boot]
        objects = toolchain.compile_all(sources, work, ["-mcmodel=small"], includes=incs)
        elf64 = work / "host64.elf"
        toolchain.link(objects, (boot / "host.ld").read_text(), elf64, work)
        toolchain.run([toolchain.tool("objcopy"), "-O", "elf32-i386", str(elf64), str(out_path)],
                      "converting the test host to elf32-i386")
    return out_path
