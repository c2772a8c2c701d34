"""A cached layer on the Debian guest with `suspendos install-resume` done: what a machine
looks like after its owner installed the stale-image guard once, as a real user does once,
not before every hibernation.

`install-resume` must run on the machine it is for: the resume loader and the guard's
configuration are built from the target the guest captures (its firmware memory map, its
disk, the swap area's extents), which a chroot on the host cannot see. So the layer is made
by one boot of the guest, on a qcow2 overlay of the cached disk, at the memory size of the
runs that use it (the target holds the memory map; it holds no CPU count):

    swapoff -a; swapon AREA
    suspendos install-resume --firmware bios --no-grub --swap AREA   (uefi: --firmware uefi)
                                                     loader in /boot, /etc/suspendos/
                                                     resume.conf, the initramfs hook and
                                                     check, update-initramfs -u
    suspendos hibernate --swap AREA --compress C --prepare
                                                     the blob in /var/cache/suspendos (what
                                                     the first `suspendos hibernate` would
                                                     build anyway)

then a clean power-off, and the rebuilt initrd read back from the ext4 root (debugfs,
nothing mounted) for the runs' -initrd. Cached under the guest's cache root as
resume-KEY/ (disk.qcow2 backed by the guest's disk.raw, initrd.img, layer.json), keyed by
the guest directory (which is keyed by the suspendos wheel, so a change to install-resume
rebuilds it), the memory size, the swap area, the compression and the machine (firmware,
disk bus, IOMMU: a uefi layer is made by a UEFI boot and keeps its variable store,
efivars.fd, which runs copy). Runs put their own overlay on disk.qcow2 and never write to it. The guard itself is still checked on every
run: `suspendos hibernate` refuses when resume.conf no longer matches the target, and the
normal boot must find the image discarded by the installed check.
"""
import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ..cachelock import locked
from ..errors import BuildError
from . import debian

MiB = 1 << 20
INSTALL_DEADLINE = 3600.0    # s for install-resume in the guest (gcc + update-initramfs, TCG;
                             # more than 1800 s at a load average of 15 on 2 cores)
PREPARE_DEADLINE = 1200.0    # s for `suspendos hibernate --prepare` (the blob, TCG)


class ResumeLayer:
    def __init__(self, d):
        self.dir = Path(d)
        self.disk = self.dir / "disk.qcow2"
        self.initrd = self.dir / "initrd.img"
        self.vars = self.dir / "efivars.fd"           # uefi: the machine's variable store
        self.info = json.loads((self.dir / "layer.json").read_text())

    def overlay(self, path):
        """A qcow2 overlay on the layer for one run (the layer stays as built)."""
        path = Path(path)
        path.unlink(missing_ok=True)
        debian._run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                     str(self.disk), str(path)], "qemu-img create")
        return path


def resume_layer(guest, memory, area, compress, log=print, firmware="bios", bus="ahci",
                 iommu="none", cpus=1):
    """The cached layer for this guest, memory size, swap area, compression and machine
    (install-resume records the machine it ran on: the firmware's memory map, the disk's
    controller and the IOMMU in front of it; a layer made on another is refused, as on a
    real machine). The CPU count too: OVMF's memory map depends on it (per-CPU data)."""
    # the defaults add nothing to the key: layers made before these existed stay valid
    machine = [] if (firmware, bus, iommu, cpus) == ("bios", "ahci", "none", 1) else \
        [firmware, bus, iommu, cpus]
    key = debian._key(guest.dir.name, memory, area, compress, *machine)
    d = guest.dir.parent / f"resume-{key}"
    with locked(d.parent, d.name):
        if (d / "layer.json").exists():
            return ResumeLayer(d)
        return _build(d, guest, memory, area, compress, log, firmware, bus, iommu, cpus)


def _build(d, guest, memory, area, compress, log, firmware, bus, iommu, cpus):
    log(f"debian: building {d.name}: install-resume in the guest ({memory // MiB} MiB, "
        f"{area}; gcc and update-initramfs under TCG: minutes)")
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=d.name + ".", dir=d.parent))
    try:
        disk = tmp / "disk.qcow2"
        debian._run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                     str(guest.disk), str(disk)], "qemu-img create")
        fw = {"firmware": firmware, "vars_path": None, "bus": bus, "iommu": iommu}
        if firmware == "uefi":       # kept with the layer: runs start from a copy of it
            from ..qemu.ovmf import vars_copy
            fw["vars_path"] = vars_copy(tmp / "efivars.fd")
        info = asyncio.run(_install(guest, disk, memory, area, compress, tmp, fw, cpus))
        _initrd_from_disk(disk, guest.abi, tmp / "initrd.img", tmp)
        info.update(guest=guest.dir.name, memory_mib=memory // MiB, area=area,
                    compress=compress, firmware=firmware, bus=bus, iommu=iommu, cpus=cpus,
                    seconds=round(time.monotonic() - t0, 1))
        (tmp / "layer.json").write_text(json.dumps(info, indent=1))
    except BaseException:
        _keep_log(tmp / "install.log", d.parent / f"{d.name}.failed.log", log)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"debian: {d.name} ready in {time.monotonic() - t0:.0f} s")
    return ResumeLayer(debian._publish(tmp, d))


def _keep_log(log_file, kept, log):
    """The guest's console of a failed build outlives the build's folder: it is what says why."""
    if log_file.exists():
        shutil.copyfile(log_file, kept)
        log(f"debian: the install-resume boot's console is kept in {kept}")


async def _install(guest, disk, memory, area, compress, tmp, fw, cpus):
    """One boot of the guest: install-resume, the blob prepared, a clean power-off. Each
    step's host seconds go into layer.json, so a slow cold build shows where it went."""
    from .realvm import GuestVM
    seconds = {}
    async with GuestVM(guest, disk, memory, cpus=cpus, log_path=tmp / "install.log",
                       **fw) as vm:
        t = time.monotonic()
        await vm.ready()
        seconds["boot"] = time.monotonic() - t
        await vm.run(f"swapoff -a; swapon {area}", 120)
        t = time.monotonic()
        # the machine's own way: on UEFI the EFI loader on the ESP and its boot entry
        # (hibernate arms it with BootNext); on BIOS the multiboot loader, which the runs
        # hand to QEMU as -kernel, so no GRUB entry
        how = "--firmware uefi" if fw["firmware"] == "uefi" else "--firmware bios --no-grub"
        out = await vm.run(f"suspendos install-resume {how} --swap {area}", INSTALL_DEADLINE)
        seconds["install_resume"] = time.monotonic() - t
        installed = [l for l in out.splitlines() if l.startswith("installed")]
        t = time.monotonic()
        out = await vm.run(f"suspendos hibernate --swap {area} --compress {compress} "
                           "--prepare --json", PREPARE_DEADLINE)
        seconds["prepare"] = time.monotonic() - t
        prepared = json.loads(out[out.index("{"):])
        t = time.monotonic()
        code = await vm.poweroff()
        seconds["poweroff"] = time.monotonic() - t
    if code:
        raise BuildError(f"the install-resume boot ended with QEMU exit {code} "
                         "(its console is kept beside the layer, as .failed.log)")
    return {"installed": installed, "blob": prepared.get("blob"),
            "step_seconds": {k: round(v, 1) for k, v in seconds.items()}}


def _initrd_from_disk(disk, abi, out, tmp):
    """/boot/initrd.img-ABI as update-initramfs left it, read from the ext4 root."""
    raw = tmp / "disk.raw"
    debian._run(["qemu-img", "convert", "-O", "raw", str(disk), str(raw)], "qemu-img convert")
    name = f"/boot/initrd.img-{abi}"
    try:
        p = subprocess.run(["debugfs", "-R", f"dump {name} {out}",
                            f"{raw}?offset={debian.ROOT_START_LBA * 512}"],
                           capture_output=True, text=True)
    finally:
        raw.unlink(missing_ok=True)
    if p.returncode or not out.exists() or not out.stat().st_size:
        raise BuildError(f"debugfs could not read {name}: {p.stderr.strip()[-300:]}")
