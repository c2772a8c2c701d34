"""`suspendos qemu linux`: hibernate the real Debian guest from the inside and bring it back.

One run, on a qcow2 overlay of the cached guest (suspendos/linuxvm/debian.py):

1. hibernate boot: Debian's kernel + initrd; the chosen swap area is the only one active; the
   working set (a tmpfs with known content and its md5s, a process that keeps a counter in
   its memory, a file written to the ext4 root); free memory dirtied (SIZE of random data in
   a file, the file deleted); then the hibernator runs from the guest's shell:
   * swsusp: the kernel's own, `echo disk > /sys/power/state` with /sys/power/disk =
     shutdown (S5, as ours), resume= (and resume_offset= for the swap file, from filefrag)
     on the command line; LZO unless `--compress none` (then `hibernate=nocompress`);
   * suspendos: `suspendos hibernate` (the package's command, in the guest's venv). Its
     payload waits after `@@PAYLOAD start`, before it opens the disk, while the runner puts
     a fresh qcow2 layer on the disk (QMP); after QEMU's exit that layer must hold nothing
     outside the swap area (untouched.py: outside_swap_written_bytes = 0).
   hibernate_seconds: host clock from the guest's line just before the command to QEMU's
   exit, less the runner's pause.
2. resume boot: swsusp: the same kernel and command line (its initramfs resumes); suspendos:
   the resume loader as -kernel. resume_seconds: host clock from QEMU's start to the first
   line the resumed userspace prints. Then the checks (md5s with the page cache dropped, the
   counter process, CPUs), and a clean `systemctl poweroff`.
   `--boot-normally`: this boot is a normal boot instead, and must find the image discarded
   (and the raw disk must hold a valid image before it and none after it).
   Ours then runs on a cached layer of the guest with `suspendos install-resume` done once
   (resume_layer.py), booted with the initrd install-resume rebuilt.
3. e2fsck -fn of the root, on the host, on the disk after QEMU exited (the overlay converted
   to raw; cheaper than a third boot, and nothing is mounted).

Every boot gets the same base command line (debian.BASE_APPEND: memmap=, no5lvl, loglevel).
`--firmware uefi`: every boot of the run starts in OVMF, which starts GRUB from the disk's
ESP, which boots the disk's kernel and initrd (esp.py, realvm.uefi_args); both boots share
the run's variable store. boot_seconds (and second_boot_seconds for a normal second boot)
times each stage from power-on.
`--iommu intel|amd`: every boot of the run has QEMU's IOMMU (realvm.IOMMU_DEVICES), Debian's
kernel the command line a distribution gives it; before hibernating, the guest says whether
its IOMMU translated the disk controller's DMA (iommu_translating_before, iommu_guest).
"""
import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ..errors import RunError, UsageError
from . import debian
from . import untouched
from .esp import GRUB_MARK
from .realvm import IOMMU_DEVICES, GuestVM

MiB = 1 << 20
PAGE = 4096
MAX_MEMORY = 8 << 30         # the test machine's ceiling (suspendos.target.qemu.MAX_MEMORY)
HIBERNATE_DEADLINE = 900.0   # s from the hibernate command to QEMU's exit (TCG, loaded host)
RESUME_DEADLINE = 600.0      # s from QEMU's start to the resumed userspace's first line
# bios: SeaBIOS, QEMU hands over the kernel (or the resume loader); uefi: OVMF with a
# variable store of the run's own (both boots share it), GRUB from the disk's ESP (esp.py)
FIRMWARES = ("bios", "uefi")


def _log(msg):
    import sys
    print(f"qemu linux: {msg}", file=sys.stderr, flush=True)


class Scenario:
    def __init__(self, memory, cpus, swap="file", compress="lz4", dirty_free=None,
                 hibernator="suspendos", boot_normally=False, disk_bus="ahci", workdir=None,
                 keep=False, log=_log, keep_caches=False, iommu="none", firmware="bios"):
        if not 1 <= cpus <= 4:
            raise UsageError("--cpus: 1 to 4")
        if not 512 * MiB <= memory <= MAX_MEMORY or memory % MiB:
            raise UsageError("--memory: a whole number of MiB from 512M to 8G")
        if disk_bus not in debian.PARTITIONS:
            raise UsageError("--disk-bus: ahci, nvme or virtio")
        self.disk_bus = disk_bus      # root and swap on that disk (debian.PARTITIONS)
        if iommu not in IOMMU_DEVICES:
            raise UsageError("--iommu: none, intel or amd")
        self.iommu = iommu            # QEMU's emulated IOMMU, on every boot of the run
        if firmware not in FIRMWARES:
            raise UsageError("--firmware: bios or uefi")
        self.firmware = firmware      # every boot of the run (FIRMWARES)
        if swap not in ("file", "partition"):
            raise UsageError("--swap: file or partition")
        if hibernator not in ("suspendos", "swsusp"):
            raise UsageError("--hibernator: suspendos or swsusp")
        if boot_normally and hibernator != "suspendos":    # the check is our initramfs hook's
            raise UsageError("--boot-normally: only with --hibernator suspendos (swsusp leaves "
                             "its image for the next boot; nothing would discard it)")
        if hibernator == "swsusp" and compress == "lz4hc":
            raise UsageError("--compress lz4hc: only with --hibernator suspendos (swsusp "
                             "compresses with LZO for lz4, or not at all for none)")
        self.memory, self.cpus, self.swap, self.compress = memory, cpus, swap, compress
        self.dirty = dirty_free if dirty_free is not None else memory * 2 // 5
        if self.dirty < 0 or self.dirty > memory * 3 // 4:
            raise UsageError("--dirty-free: between 0 and 3/4 of --memory")
        self.hibernator, self.boot_normally = hibernator, boot_normally
        self.keep_caches = keep_caches     # ours: `suspendos hibernate --keep-caches`
        self.log = log
        self.keep = keep
        self.own_work = not workdir        # a temporary folder: removed after a passing run
        if workdir:                        # refused before the guest is built or booted
            _check_workdir(Path(workdir))
        self.work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="sos-qlinux-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.result = {"hibernator": hibernator, "cpus": cpus, "memory_mib": memory // MiB,
                       "swap": swap, "compress": compress, "dirty_free_mib": self.dirty // MiB,
                       "disk_bus": disk_bus, "iommu": iommu, "firmware": firmware}

    # ---- what each hibernator needs on the command line ----------------------------------
    def swap_area(self):
        return debian.SWAP_FILE if self.swap == "file" else debian.swap_part_dev(self.disk_bus)

    def append(self, guest):
        if self.hibernator != "swsusp":
            return ""
        extra = []
        if self.swap == "file":
            extra += [f"resume={debian.root_dev(self.disk_bus)}",
                      f"resume_offset={guest.swapfile_offset}"]
        else:
            extra += [f"resume={debian.swap_part_dev(self.disk_bus)}"]
        if self.compress == "none":
            extra.append("hibernate=nocompress")
        return " ".join(extra)

    def _firmware_args(self):
        return {"firmware": self.firmware, "vars_path": self.vars}

    # ---- the run -------------------------------------------------------------------------
    def run(self):
        try:
            return self._run()
        except (KeyboardInterrupt, asyncio.CancelledError):    # Ctrl-C, SIGTERM, SIGHUP:
            # QEMU is stopped by now (GuestVM's exit); nobody asked for these logs
            if self.own_work:
                shutil.rmtree(self.work, ignore_errors=True)
            raise

    def _run(self):
        t0 = time.monotonic()
        guest = debian.build_guest(log=self.log)
        self.guest = guest
        self.result["guest"] = guest.dir.name
        self.layer = None
        if self.hibernator == "suspendos" and (self.boot_normally or self.firmware == "uefi"):
            # the stale-image guard installed once, as its owner would (resume_layer.py); on
            # UEFI also the EFI loader on the ESP and its boot entry, which hibernate arms
            from .resume_layer import resume_layer
            self.layer = resume_layer(guest, self.memory, self.swap_area(), self.compress,
                                      log=self.log, firmware=self.firmware,
                                      bus=self.disk_bus, iommu=self.iommu,
                                      cpus=self.cpus if self.firmware == "uefi" else 1)
            self.result["resume_layer"] = self.layer.dir.name
            self.result["install_resume"] = self.layer.info["installed"]
        self.disk = (self.layer or guest).overlay(self.work / "disk.qcow2")
        self.vars = None
        if self.firmware == "uefi":
            from ..qemu.ovmf import vars_copy
            self.vars = vars_copy(self.work / "efivars.fd",
                                  **({"template": self.layer.vars} if self.layer else {}))
        if self.hibernator == "suspendos":
            # the layer every write of the payload lands in (untouched.py), made before QEMU
            # holds the disk's lock; QMP puts it on top at the payload's pause
            self.top = untouched.make_top_layer(self.disk, self.work / "top.qcow2")
        try:
            asyncio.run(self._hibernate_boot())
            asyncio.run(self._second_boot())
            self._fsck_and_measure()
        except RunError as e:
            raise RunError(f"{e}\n  serial logs: {self.work}") from None
        finally:
            self.result["run_seconds"] = round(time.monotonic() - t0, 1)
            if not self.keep:
                for f in ("disk.qcow2", "top.qcow2", "disk.raw", "efivars.fd"):
                    (self.work / f).unlink(missing_ok=True)
        r = self.result
        ok = (r.get("status") == "resumed" and r.get("md5_match") and r.get("process_continued")
              and r.get("fsck") == "clean" and r.get("cpus_online") == self.cpus)
        if self.hibernator == "suspendos":     # the payload used every CPU of the guest
            ok = ok and r.get("cpus_used") == self.cpus
        if self.boot_normally:
            ok = r.get("stale_image") == "discarded" and r.get("fsck") == "clean"
        if self.hibernator == "suspendos":     # and wrote inside the swap area only
            ok = ok and r.get("outside_swap_written_bytes") == 0
        if self.firmware == "uefi":            # and the firmware still answers the kernel
            ok = ok and r.get("efi_runtime") == "ok"
        if ok and self.own_work and not self.keep:
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            r["logs"] = str(self.work)
        return r, bool(ok)

    async def _hibernate_boot(self):
        g, r = self.guest, self.result
        async with GuestVM(g, self.disk, self.memory, self.cpus, self.work / "hibernate.log",
                           append=self.append(g), bus=self.disk_bus, iommu=self.iommu,
                           **self._firmware_args()) as vm:
            ready = await vm.ready()
            r["boot_seconds"] = boot_seconds(vm.lines, ready)
            await self._iommu_before(vm)
            area = self.swap_area()
            await vm.run(f"swapoff -a; swapon {area} && cat /proc/swaps", 120)
            out = await vm.run("sos-workset", 300)
            r["workset"] = _line(out, "@@WORKSET")
            if self.dirty:
                out = await vm.run(f"sos-dirty {self.dirty // MiB}", 600)
                r["dirty"] = _line(out, "@@DIRTY")
            if self.hibernator == "swsusp":
                await self._swsusp_prepare(vm)
                cmd = "echo disk > /sys/power/state"
            else:
                cmd = await self._ours_prepare(vm)
            # the line just before the command, then the command, then the first line back
            await vm.send(f"sync; echo @@HIBERNATE-GO; {cmd}; echo \"@@BACK rc=$?\"\n")
            go = await vm.expect(r"^@@HIBERNATE-GO", 300)
            if not go:
                raise RunError("the guest ended before hibernating")
            held = 0.0
            if self.hibernator == "suspendos":
                held = await self._snapshot_at_pause(vm)
            back = await vm.expect(r"^@@BACK|^\{.*\"status\"", HIBERNATE_DEADLINE)
            if back:
                raise RunError(f"the hibernator returned without powering off: {back[1].string}"
                               f" (see {self.work / 'hibernate.log'})")
            code = await vm.wait_exit(60)
            # the snapshot's pause is the runner's, not the hibernator's: left out
            r["hibernate_seconds"] = round(vm.now() - go[0] - held, 2)
            r["hibernate_exit_code"] = code
            r["hibernate_phases"] = _phases(vm.lines, go[0], self.hibernator, held)
            r.update(_payload_cpus(vm.lines, go[0]))
        if self.hibernator == "suspendos":
            self._check_untouched()

    async def _snapshot_at_pause(self, vm):
        """At the payload's pause (after `@@PAYLOAD start`, before it opens the disk): the
        top layer goes on the disk, then the payload is let go. Returns the host seconds the
        payload was held."""
        p = await vm.expect(r"^@@PAUSE before-read|^@@BACK|^\{.*\"status\"",
                            HIBERNATE_DEADLINE)
        if not p or not p[1].string.startswith("@@PAUSE"):
            said = f": {p[1].string[:300]}" if p else " (QEMU ended)"
            raise RunError("the payload did not pause before writing, so no snapshot could "
                           f"be taken{said} (see {self.work / 'hibernate.log'})")
        t0 = time.monotonic()
        await untouched.snapshot(vm.m, self.top)
        self.below, self.disk = self.disk, self.top    # the resume boots on the whole chain
        await vm.send("g")
        held = time.monotonic() - t0
        self.result["snapshot_at"] = "@@PAUSE before-read (after @@PAYLOAD start)"
        self.result["snapshot_pause_seconds"] = round(held, 2)
        return held

    def _area_ranges(self):
        start = (debian.ROOT_START_LBA + debian.ROOT_MIB * MiB // 512) * 512
        return untouched.area_ranges(self.guest.info, self.swap, debian.ROOT_START_LBA * 512,
                                     start, debian.SWAP_PART_MIB * MiB)

    def _check_untouched(self):
        """Everything the payload wrote lies inside the swap area (untouched.py); with
        --boot-normally, also the image it left there, read from the raw disk."""
        self.result.update(untouched.check_top_layer(self.top, self.below,
                                                     self._area_ranges()))
        if self.boot_normally:
            self.result["image_after_hibernate"] = self._image_on_disk(self._raw())

    async def _iommu_before(self, vm):
        """What the guest's kernel says of its IOMMU before anything hibernates: translating
        means units in /sys/class/iommu, translated default domains ("Default domain type:
        Translated" in dmesg, which a kernel without any IOMMU logs too) and the disk
        controller's group of type DMA or DMA-FQ (identity would pass addresses through)."""
        part = debian.root_dev(self.disk_bus).rsplit("/", 1)[-1]
        info = json.loads(_line(await vm.run(f"sos-iommu {part}", 60), "@@IOMMU")
                          .split(" ", 1)[1])
        self.result["iommu_guest"] = info
        self.result["iommu_translating_before"] = bool(
            info["units"] and info["default_domain"] == "Translated"
            and info["disk_group_type"] in ("DMA", "DMA-FQ"))

    async def _swsusp_prepare(self, vm):
        want = f"resume={debian.root_dev(self.disk_bus)}" if self.swap == "file" else \
            f"resume={debian.swap_part_dev(self.disk_bus)}"
        out = await vm.run("echo shutdown > /sys/power/disk; cat /sys/power/resume "
                           "/sys/power/resume_offset /sys/power/disk; cat /proc/cmdline")
        if want not in out:
            raise RunError(f"swsusp: {want} missing from the guest's command line:\n{out}")
        dev = out.split()[0]
        if dev in ("0:0", ""):
            raise RunError(f"swsusp: the kernel has no resume device:\n{out}")
        self.result["swsusp_resume"] = " ".join(out.split()[:2])

    async def _ours_prepare(self, vm):
        """`suspendos hibernate --prepare` (blob and module built and cached in the guest,
        outside the timed window), then the plan's target, for which the resume loader is
        built here. Returns the command the guest runs."""
        swap = f"--swap {self.swap_area()} --compress {self.compress}"
        t0 = vm.now()
        out = await vm.run(f"suspendos hibernate {swap} --prepare --json", 1200)
        self.result["prepare_seconds"] = round(vm.now() - t0, 2)   # the blob: built or cached
        prep = json.loads(out[out.index("{"):])
        plan = await vm.run(f"suspendos hibernate {swap} --dry-run --json", 300)
        self.plan = json.loads(plan[plan.index("{"):])
        self.result["plan_notes"] = self.plan.get("notes")
        if prep.get("target_toml") != self.plan["target_toml"]:
            raise RunError("the guest's target changed between --prepare and --dry-run")
        if self.firmware == "uefi":      # the guest's own loader, from its ESP (BootNext)
            from ..target import loads
            target = loads(self.plan["target_toml"])
        else:
            target = self._build_loader(self.plan["target_toml"])
        self.result["target_disk"] = target.disk.kind      # the driver the payload links
        keep = " --keep-caches" if self.keep_caches else ""
        # it waits at its pause for the runner's snapshot of the disk (_snapshot_at_pause)
        return f"suspendos hibernate {swap} --serial 0x3f8 --json{keep} --pause-before-write"

    def _build_loader(self, toml):
        """The resume loader for the target the guest printed, booted with -kernel."""
        from ..build.resume import build_resume_loader
        from ..qemu.machine import DEBUG_EXIT_PORT
        from ..target import loads
        target = loads(toml)
        target.options.debug_exit_port = DEBUG_EXIT_PORT     # loader refusals end QEMU
        self.loader = self.work / "resume.elf"
        build_resume_loader(target, self.loader)
        return target

    async def _second_boot(self):
        g, r = self.guest, self.result
        initrd = None
        if self.boot_normally:
            kernel, append = None, ""
            if self.hibernator == "suspendos":
                initrd = self.layer.initrd      # the one install-resume rebuilt
        elif self.hibernator == "swsusp":
            kernel, append = None, self.append(g)
        else:       # (UEFI: the firmware starts the loader on the ESP: no -kernel)
            kernel, append = getattr(self, "loader", None), ""
        if self.firmware == "uefi":      # the ESP's GRUB boots the disk's own kernel, initrd
            kernel = initrd = None
            if self.boot_normally:
                # hibernate armed the EFI loader with BootNext: this boot is one on a
                # firmware that ignores BootNext (docs/LINUX.md), the variable store as
                # install-resume left it
                from ..qemu.ovmf import vars_copy
                vars_copy(self.vars, template=self.layer.vars)
                r["boot_next"] = "ignored (the store as before the hibernation)"
        async with GuestVM(g, self.disk, self.memory, self.cpus, self.work / "resume.log",
                           append=append, kernel=kernel, initrd=initrd,
                           bus=self.disk_bus, iommu=self.iommu,
                           **self._firmware_args()) as vm:
            if self.boot_normally:
                await self._normal_boot_checks(vm)
            else:
                # (UEFI: a loader that refuses goes back to the firmware, which boots Linux)
                back = await vm.expect(r"^@@BACK|^\{.*\"status\"|@@EFI back-to-firmware|"
                                       r"^@@GUEST ready", RESUME_DEADLINE)
                if not back or not re.match(r"@@BACK|\{", back[1].string):
                    said = f": {back[1].string[:200]}" if back else ""
                    raise RunError(f"the guest did not come back{said} "
                                   f"(see {self.work / 'resume.log'})")
                r["resume_seconds"] = round(back[0], 2)
                r["resume_phases"] = _resume_phases(vm.lines, self.hibernator)
                if back[1].string.startswith("{"):
                    ours = json.loads(back[1].string)
                    r["hibernate_report"] = ours
                    r["status"] = ours.get("status")
                    for k in ("pages_saved", "free_pages_skipped", "bytes_written",
                              "caches_dropped_pages"):
                        if k in ours:
                            r[k] = ours[k]
                    await vm.expect(r"^@@BACK", 120)
                else:
                    rc = re.search(r"rc=(\d+)", back[1].string).group(1)
                    r["status"] = "resumed" if rc == "0" else f"failed rc={rc}"
                    r.update(_swsusp_counts(vm.lines))
                out = await vm.run("sos-check", 300)
                r.update(json.loads(_line(out, "@@CHECK").split(" ", 1)[1]))
                await self._efi_check(vm)
            r["poweroff_exit_code"] = await vm.poweroff()

    async def _normal_boot_checks(self, vm):
        """A normal boot after a hibernation: the initramfs check must have discarded the
        image before the root was mounted, and the area must be swap again."""
        r = self.result
        r["second_boot_seconds"] = boot_seconds(vm.lines, await vm.ready())
        area = self.swap_area()
        out = await vm.run(f"dd if={area} bs=1 skip=4086 count=10 2>/dev/null; echo; "
                           f"swapon --show=NAME --noheadings", 120)
        sig = out.splitlines()[0].strip() if out else ""
        said = [l for _, l in vm.lines if "suspendos: discarded" in l]
        r["swap_signature_after_boot"] = sig
        r["stale_image_message"] = said[0] if said else None
        r["swap_active_after_boot"] = area in out.splitlines()[1:] if self.swap == "file" \
            else None
        # (with the image read from the raw disk before and after this boot: _fsck_and_measure)
        r["stale_image"] = "discarded" if sig == "SWAPSPACE2" and said else \
            ("present" if sig == "SOSIMAGE01" else f"unclear ({sig!r})")
        out = await vm.run("sos-check", 300)
        check = json.loads(_line(out, "@@CHECK").split(" ", 1)[1])
        r["cpus_online"] = check["cpus_online"]
        await self._efi_check(vm)

    async def _efi_check(self, vm):
        """UEFI: the firmware's runtime services answer the kernel after this boot (guest.py
        EFI_CHECK): efi_runtime "ok", or what failed."""
        if self.firmware != "uefi":
            return
        out = await vm.run("sos-efi-check", 120, check=False)
        said = _line(out, "@@EFI").split(" ", 1)[1]
        self.result["efi_runtime"] = "ok" if said.startswith("ok") else said
        self.result["efi_runtime_detail"] = said

    def _raw(self):
        """The run's disk as a raw file (the overlay flattened), for tools that read ext4."""
        raw = self.work / "disk.raw"
        raw.unlink(missing_ok=True)
        subprocess.run(["qemu-img", "convert", "-O", "raw", str(self.disk), str(raw)],
                       check=True, capture_output=True)
        return raw

    # ---- after QEMU: fsck on the host, bytes on the swap area ----------------------------
    def _fsck_and_measure(self):
        r = self.result
        raw = self._raw()
        fs = f"{raw}?offset={debian.ROOT_START_LBA * 512}"
        p = subprocess.run(["e2fsck", "-fn", fs], capture_output=True, text=True)
        r["fsck"] = "clean" if p.returncode == 0 else f"errors (e2fsck exit {p.returncode})"
        r["fsck_where"] = "host, e2fsck -fn on the disk after QEMU exited"
        if p.returncode:
            r["fsck_output"] = (p.stdout + p.stderr)[-1500:]
        r["bytes_on_disk"] = self._swap_bytes(raw)
        if self.boot_normally:
            self._stale_image_on_disk(raw)

    def _image_on_disk(self, raw):
        """Our image header at swap page 1 of the area, on the raw disk (untouched.py)."""
        return untouched.image_on_disk(raw, untouched.area_offset(self._area_ranges(), PAGE))

    def _stale_image_on_disk(self, raw):
        """"discarded" holds only if the raw disk had a valid image after the hibernate boot
        and has none after the normal boot."""
        r = self.result
        before = r.get("image_after_hibernate")
        after = r["image_after_normal_boot"] = self._image_on_disk(raw)
        if r.get("stale_image") == "discarded" and not (
                before and before["state"] == "valid" and after is None):
            r["stale_image"] = (f"unclear (image on the raw disk: after the hibernate boot "
                                f"{before and before['state']}, after the normal boot "
                                f"{after and after['state']})")

    def _swap_bytes(self, raw):
        """Non-zero 4 KiB pages of the swap area after the header page (the disk starts
        zeroed, so this is what the hibernator wrote), in bytes."""
        runs = self._area_ranges()
        zero = bytes(PAGE)
        total, skip = 0, PAGE          # the swap header page is not the image
        with open(raw, "rb") as f:
            for off, length in runs:
                f.seek(off)
                left = length
                while left:
                    chunk = f.read(min(left, 4 * MiB))
                    if not chunk:
                        break
                    left -= len(chunk)
                    for i in range(0, len(chunk), PAGE):
                        if skip:
                            skip -= PAGE
                            continue
                        if chunk[i:i + PAGE] != zero:
                            total += PAGE
        return total


def _line(out, tag):
    for l in out.splitlines():
        if l.startswith(tag):
            return l
    raise RunError(f"no {tag} line in the guest's output:\n{out[-1500:]}")


# Serial lines that mark swsusp's phases (kernel/power/hibernate.c, swap.c, 6.1)
SWSUSP_HIB = [("freeze", r"Freezing user space processes|Syncing filesystems"),
              ("preallocate", r"PM: hibernation: Preallocating"),
              ("snapshot", r"PM: hibernation: Creating image"),
              ("write", r"PM: Using \d+ thread|PM: Compressing and saving|PM: Saving image data"),
              ("poweroff", r"PM: Image saving done|reboot: Power down")]
SWSUSP_RES = [("kernel", r"Linux version"),
              ("read", r"PM: Loading and decompressing|PM: Loading image data|Reading image"),
              ("restore", r"PM: Image loading done|PM: hibernation: Read"),
              ("userspace", r"^@@BACK")]


def _phases(lines, t_go, hibernator, held=0.0):
    """Host seconds from the hibernate command to each phase marker seen on the console
    (`held`: seconds the runner held the payload at its pause, left out of what follows)."""
    marks = SWSUSP_HIB if hibernator == "swsusp" else [
        ("module", r"suspendos"), ("payload", r"^@@PAYLOAD start"),
        ("written", r"^@@PAYLOAD done")]
    paused = next((t for t, l in lines if t >= t_go and l.startswith("@@PAUSE")), None)
    out = {}
    for name, pat in marks:
        for t, l in lines:
            if t >= t_go and re.search(pat, l):
                late = held if paused is not None and t > paused else 0.0
                out[name] = round(t - t_go - late, 2)
                break
    return out


def _payload_cpus(lines, t_go):
    """What the payload that wrote the image says of its CPUs on serial (builder/core/smp.c):
    `@@CPUS used=N missing=M`, and an `@@CPU ...` line for each one left out."""
    out = {}
    for t, l in lines:
        m = re.match(r"@@CPUS used=(\d+) missing=(\d+)", l)
        if t >= t_go and m:
            out.update(cpus_used=int(m.group(1)), cpus_missing=int(m.group(2)))
        elif t >= t_go and l.startswith("@@CPU "):
            out.setdefault("cpu_notes", []).append(l.strip())
    return out


def _resume_phases(lines, hibernator):
    marks = SWSUSP_RES if hibernator == "swsusp" else [
        ("efi_stage", r"@@EFI start"), ("loader", r"^@@RESUME"), ("verified", r"^@@RESUME verified"),
        ("restored", r"^@@RESUME restored"), ("userspace", r"^\{.*\"status\"|^@@BACK")]
    out = {}
    for name, pat in marks:
        for t, l in lines:
            if re.search(pat, l):
                out[name] = round(t, 2)
                break
    return out


def _swsusp_counts(lines):
    out = {}
    for _, l in lines:
        m = re.search(r"Read (\d+) kbytes in ([\d.]+) seconds", l)
        if m:
            out["pages_saved"] = int(m.group(1)) // 4
            out["swsusp_read_seconds"] = float(m.group(2))
    return out


def _check_workdir(work):
    """--workdir: a folder we can write in, or a new one whose parent is."""
    if work.exists() and not work.is_dir():
        raise UsageError(f"--workdir: {work} is not a folder")
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--workdir: {work}: cannot make it ({e.strerror})")
    if not os.access(work, os.W_OK | os.X_OK):
        raise UsageError(f"--workdir: {work}: cannot write there")


def parse_dirty_free(text, memory):
    """--dirty-free: a size (0 for none) or a percentage of --memory ("40%")."""
    from ..sizes import parse_size
    t = text.strip()
    if t.endswith("%"):
        from ..argparser import parse_number
        try:
            percent = parse_number(t[:-1], "--dirty-free", 0, 100, hex_ok=False)
        except UsageError:
            raise UsageError(f"--dirty-free: cannot read {text!r} as a percentage (e.g. 40%)")
        return memory * percent // 100 // MiB * MiB
    return 0 if t == "0" else parse_size(t, "--dirty-free")


def run_scenario(**kw):
    return Scenario(**kw).run()


BOOT_MARKS = (("loader", re.escape(GRUB_MARK)), ("kernel", r"Linux version \d"),
              ("userspace", r"systemd\[1\]: systemd \d\S* running"))


def boot_seconds(lines, ready):
    """Host seconds from QEMU's start (power-on) to the first line of each stage of a boot:
    `loader` (GRUB, on UEFI; with -kernel QEMU is the loader: absent), `kernel`, `userspace`
    (systemd's first line), `ready` (the console): what the firmware's share is."""
    out = {}
    for name, pattern in BOOT_MARKS:
        rx = re.compile(pattern)
        t = next((t for t, l in lines if rx.search(l)), None)
        if t is not None:
            out[name] = round(t, 2)
    out["ready"] = round(ready, 2)
    return out


def cmd(a):
    """`suspendos qemu linux` (argparse in cli.py)."""
    import sys
    from ..sizes import parse_size
    memory = parse_size(a.memory, "--memory")
    dirty = parse_dirty_free(a.dirty_free, memory) if a.dirty_free is not None else None
    r, ok = run_scenario(memory=memory, cpus=a.cpus, swap=a.swap, compress=a.compress,
                         dirty_free=dirty, hibernator=a.hibernator,
                         boot_normally=a.boot_normally, disk_bus=a.disk_bus,
                         workdir=a.workdir, keep=a.keep, iommu=a.iommu, firmware=a.firmware)
    if a.json:
        print(json.dumps(r, indent=2))
    else:
        for k in ("status", "stale_image", "iommu_translating_before", "cpus_online",
                  "md5_match", "process_continued",
                  "fsck", "pages_saved", "free_pages_skipped", "caches_dropped_pages",
                  "bytes_on_disk", "outside_swap_written_bytes",
                  "hibernate_seconds", "resume_seconds"):
            if k in r:
                print(f"{k}: {r[k]}")
    if not ok:
        print("suspendos: qemu linux: the run did not pass (see the JSON)", file=sys.stderr)
        return 1
    return 0
