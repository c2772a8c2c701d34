"""One boot of the Debian guest (suspendos/linuxvm/debian.py) under QEMU, driven through its
serial console: the host types a command line, the guest's shell runs it and ends with an
`@@RC<n> <status>` line. Every serial line is kept with the host clock (seconds since QEMU
was started), so phases can be timed from the host alone.

The machine is the project's test machine (machine_args: q35, ICH9 AHCI, TCG, -cpu max) with
`-smp N` and multi-threaded TCG, the guest's disk (a qcow2 overlay, or the raw disk itself
while provisioning) on AHCI port 0, or with `bus` "nvme" / "virtio" the same disk image as
namespace 1 of an NVMe controller / a virtio-blk device (qemu/disks.py); root= follows.
`iommu` "intel" / "amd" adds QEMU's emulated IOMMU and, on Debian's kernel, the command line
a distribution would give it (IOMMU_APPEND). `firmware` "bios" (SeaBIOS) gets the kernel from
QEMU (-kernel); "uefi" is OVMF with the run's own variable store, booting the disk's ESP:
GRUB, then the kernel and initrd from the root (esp.py).
"""
import asyncio
import re
import time

from ..errors import RunError
from ..qemu.machine import QemuMachine, machine_args
from ..qemu.disks import device_args
from .debian import base_append

BOOT_DEADLINE = 300.0     # s from QEMU start to the console's ready line (TCG, loaded host)


# The emulated IOMMU of `--iommu` (QEMU 7.2 on q35, QEMU-NOTES). It goes before the disk's
# -device: QEMU gives a PCI device its DMA address space when the device is created, so only
# devices created after the IOMMU are behind it. Intel's interrupt remapping off, as checked
# here (on would want -machine kernel-irqchip=split under KVM).
IOMMU_DEVICES = {"none": [], "intel": ["-device", "intel-iommu,intremap=off"],
                 "amd": ["-device", "amd-iommu"]}
# The guest's command line as a distribution sets it: Debian 12 turns Intel's IOMMU on only
# without an integrated GPU (CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF), so say it; strict
# invalidation as with iommu.strict=1 on hardened set-ups. AMD's is on wherever it exists.
IOMMU_APPEND = {"none": "", "intel": "intel_iommu=on iommu.strict=1", "amd": ""}


def iommu_args(iommu):
    if iommu not in IOMMU_DEVICES:
        raise ValueError(f"iommu: {iommu!r} is not one of {', '.join(IOMMU_DEVICES)}")
    return list(IOMMU_DEVICES[iommu])


def guest_args(memory, cpus, disk, kernel, initrd=None, append=None, bus="ahci", iommu="none"):
    """The machine with the guest's disk; `kernel` None: no -kernel (UEFI boots from the
    disk: uefi_args)."""
    args = machine_args(memory)
    i = args.index("-accel")
    # several vCPUs that really run in parallel: multi-threaded TCG (QEMU-NOTES)
    args[i:i + 2] = ["-accel", "tcg,thread=multi", "-smp", str(cpus)]
    args += iommu_args(iommu)
    fmt = "qcow2" if str(disk).endswith(".qcow2") else "raw"
    args += ["-drive", f"if=none,id=d0,file={disk},format={fmt},cache=writeback",
             *device_args(bus, 512, "d0")]
    if kernel is not None:
        args += ["-kernel", str(kernel)]
    if initrd:
        args += ["-initrd", str(initrd)]
    if append is not None:
        args += ["-append", append]
    return args


def uefi_args(vars_path, cmdline):
    """OVMF with the run's variable store; the kernel's command line for the guest's GRUB
    (esp.py). Firmware, GRUB and kernel all come from the disk, as on a real machine."""
    from ..qemu.ovmf import pflash_args
    from .esp import cmdline_smbios_args
    return [*pflash_args(vars_path), *cmdline_smbios_args(cmdline)]


class GuestVM:
    """A running boot of the guest. `kernel=None` boots Debian's kernel and initrd with
    BASE_APPEND (root= on `bus`) + `append`; any other kernel (the resume loader) is booted
    alone."""

    def __init__(self, guest, disk, memory, cpus, log_path=None, append="", kernel=None,
                 initrd=None, bus="ahci", iommu="none", firmware="bios", vars_path=None):
        if firmware == "uefi":
            if kernel is not None or initrd is not None:
                raise RunError("a UEFI guest boots what its disk holds: no kernel or initrd "
                               "can be handed to it")
            cmdline = f"{base_append(bus)} {IOMMU_APPEND[iommu]} {append}".strip()
            args = guest_args(memory, cpus, disk, None, bus=bus, iommu=iommu) + \
                uefi_args(vars_path, cmdline)
        elif kernel is None:
            args = guest_args(memory, cpus, disk, guest.vmlinuz, initrd or guest.initrd,
                              f"{base_append(bus)} {IOMMU_APPEND[iommu]} {append}".strip(),
                              bus=bus, iommu=iommu)
        else:
            args = guest_args(memory, cpus, disk, kernel, bus=bus, iommu=iommu)
        self.m = QemuMachine(args, log_path=log_path)
        self.lines = []           # (host seconds since start, line)
        self.t0 = None
        self.seq = 0

    async def __aenter__(self):
        self.t0 = time.monotonic()
        await self.m.start()
        return self

    async def __aexit__(self, *exc):
        await self.m.stop()

    def now(self):
        return time.monotonic() - self.t0

    async def expect(self, pattern, timeout):
        """The first new line matching `pattern` as (host time, match); None if QEMU ended."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = await self.m.readline(deadline)
            except asyncio.TimeoutError:
                raise self.m.failure(f"no line matching {pattern!r} within {timeout:.0f} s")
            if line is None:
                return None
            t = self.now()
            self.lines.append((t, line))
            mt = rx.search(line)
            if mt:
                return t, mt

    async def ready(self, timeout=BOOT_DEADLINE):
        r = await self.expect(r"^@@GUEST ready", timeout)
        if not r:
            raise self.m.failure("the guest ended before its console was ready")
        await self.install_scripts()
        return r[0]

    async def install_scripts(self):
        """Write the runner's scripts (guest.RUNTIME_FILES) into the guest over the console."""
        import base64
        from .guest import RUNTIME_FILES
        for path, (mode, text) in RUNTIME_FILES.items():
            b64 = base64.encodebytes(text.encode()).decode()
            await self.run(f"base64 -d > {path} <<'SOSEOF'\n{b64}SOSEOF\n"
                           f"chmod {mode:o} {path}", 60)

    async def send(self, text):
        await self.m.send_serial(text.encode())

    async def run(self, command, timeout=120, check=True):
        """Run one shell command line; returns its output (kernel log lines left out)."""
        self.seq += 1
        tag = f"@@RC{self.seq}"
        start = len(self.lines)
        await self.send(f"{{ {command.strip()} ; }} 2>&1; echo {tag} $?\n")
        r = await self.expect(rf"^{tag} (\d+)", timeout)
        if not r:
            raise self.m.failure(f"the guest ended while running: {command}")
        out = "\n".join(l for _, l in self.lines[start:-1] if not _kernel_line(l))
        if check and r[1].group(1) != "0":
            raise RunError(f"in the guest, `{command}` exited {r[1].group(1)}:\n{out[-2000:]}")
        return out

    async def poweroff(self, timeout=180):
        # as `systemctl poweroff` does without logind (minbase has no D-Bus): the orderly
        # shutdown through the manager's private socket
        await self.send("systemctl start poweroff.target --job-mode=replace-irreversibly "
                        "--no-block\n")
        return await self.wait_exit(timeout)

    async def wait_exit(self, timeout):
        """Read (and keep) lines until QEMU exits; returns its exit code."""
        while await self.expect(r"(?!)", timeout) is not None:
            pass
        try:
            return await self.m.wait(time.monotonic() + 30)
        except asyncio.TimeoutError:
            raise self.m.failure("QEMU did not exit after its serial output ended")


def _kernel_line(line):
    return bool(re.match(r"^\[\s*\d+\.\d+\]", line))
