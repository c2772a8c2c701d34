"""`suspendos hibernate`: hibernate the Linux machine this runs on (as root).

    capture   `target linux` for the swap partition or file (its FIEMAP extents)
    blob      built for that target, cached under /var/cache/suspendos
    module    suspendos.ko built for the running kernel, cached, loaded
    swap      taken out of use (swapoff when its pages fit in RAM, else refused),
              marked SOSIMAGE01, synced
    caches    clean page cache and reclaimable slab dropped (/proc/sys/vm/drop_caches),
              so those pages are free and left out of the image, as swsusp shrinks memory
              before its snapshot; `--keep-caches` saves them instead
    arm       on a UEFI install, BootNext = its boot entry (uefi.py), just before:
    handoff   /sys/class/misc/suspendos/hibernate: the payload writes the image and the
              machine powers off; a resume comes back here
    after     any return: SWAPSPACE2 back (the image header zeroed), swapon again, BootNext
              cleared, every CPU online, one line (JSON with --json) saying what happened

`--prepare` stops after the builds (so a timed run measures the hibernate, not gcc);
`--dry-run` prints the plan and the target and touches nothing. Whatever cannot be done
safely is refused before anything is touched: one line naming the fix, exit 2.
"""
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..errors import RunError, UsageError
from ..formats import image as imagefmt
from ..formats.common import PAGE_SIZE
from ..formats.status import STATUS
from ..sources import source_dir
from ..target import description
from ..target import linux as tl
from . import efivars, guard, uefi
from . import module as kmodule
from .host import Host

SYSFS = "/sys/class/misc/suspendos"
SWAPOFF_MARGIN = 64 << 20        # RAM left over after swapoff brought the swapped pages in


@dataclass
class Request:
    swap: str = None
    compress: str = "none"
    prepare: bool = False
    dry_run: bool = False
    json: bool = False
    serial: int = 0
    keep_caches: bool = False
    pause_before_write: bool = False   # the payload waits for a byte on serial (test hosts)


# ---- what this machine is ------------------------------------------------------------------
def suggest_memmap(target_memory, size=2 << 20):
    """A memmap=SIZE$ADDR the user can add: 2 MiB of usable RAM at or above 256 MiB."""
    for m in sorted(target_memory, key=lambda m: m.start):
        if m.type != "ram":
            continue
        addr = max(m.start, 0x10000000)
        addr = -(-addr // size) * size
        if addr + size <= m.end:
            return f"memmap={size >> 20}M${addr:#x}"
    return "memmap=2M$ADDR (a 2 MiB-aligned usable RAM address)"


def suggest_ap_start(target_memory, page=0x8000):
    """A memmap=4K$ADDR for the AP start page, a page of usable RAM below 1 MiB."""
    for m in target_memory:
        if m.type == "ram" and m.start <= page and page + PAGE_SIZE <= m.end:
            return f"memmap=4K${page:#x}"
    return "memmap=4K$ADDR (a usable RAM page below 1 MiB, not 0xa0000-0xbffff)"


def check_kernel(host):
    if host.euid != 0:
        raise UsageError("hibernate: run as root (it reads /proc/iomem, loads a module and "
                         "writes the swap area)")
    if host.lockdown() != "none":
        raise UsageError(f"kernel lockdown is '{host.lockdown()}' (Secure Boot): an unsigned "
                         "module cannot load; disable Secure Boot or sign suspendos.ko")
    cmdline = host.cmdline()
    if "la57" in host.cpu_flags() and "no5lvl" not in cmdline:
        raise UsageError("the CPU has 5-level paging and the module's trampoline uses 4 "
                         "levels: add no5lvl to the kernel command line")


def capture(host, req):
    """The target for this machine and swap area, refusing what target linux refuses; a
    missing memmap= names the exact one to add."""
    try:
        return tl.linux_target(req.swap, host.sysroot, req.compress, with_framebuffer=False,
                               smaller_than_ram=True)
    except UsageError as e:
        if str(e).startswith("reserved: no memmap="):
            memory, _ = tl.firmware_memory(host.sys)
            raise UsageError(f"no region reserved for suspendos: add {suggest_memmap(memory)} "
                             "to the kernel command line (in /etc/default/grub write the $ "
                             "as \\$) and reboot")
        raise


def swap_path(host, req):
    return tl.pick_swap(host.sys, req.swap)


def _same(host, a, b):
    if not host.live:
        return a == b
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a == b


def swap_use(host, swap):
    """(active?, used bytes) of the swap area in /proc/swaps."""
    for name, _, _, used in host.swaps():
        if _same(host, name, swap):
            return True, used
    return False, 0


def fit(host, target, swap, active, used):
    """Refuse when the pages in use cannot fit the swap area; returns notes for the plan."""
    mem = host.meminfo()
    notes = []
    if active and used + SWAPOFF_MARGIN > mem["MemAvailable"]:
        raise UsageError(f"{swap} holds {used >> 20} MiB of swapped-out pages and only "
                         f"{mem['MemAvailable'] >> 20} MiB of RAM is available to take them "
                         f"back: stop programs or add another swap area, then try again")
    pages_in_use = max(0, target.saved_pages() - mem["MemFree"] // PAGE_SIZE) + \
        (used // PAGE_SIZE if active else 0)
    need = imagefmt.worst_case_bytes(pages_in_use, len(target.extents),
                                     len(target.saved_ranges()), target.chunk_pages())
    have = target.image_capacity()
    if need > have:
        if target.options.compress == "none":
            raise UsageError(f"the {pages_in_use * PAGE_SIZE >> 20} MiB in use need up to "
                             f"{need >> 20} MiB on disk and {swap} holds {have >> 20} MiB: use "
                             "--compress lz4 (or lz4hc), free memory, or a larger swap area")
        notes.append(f"the {pages_in_use * PAGE_SIZE >> 20} MiB in use fit {swap} "
                     f"({have >> 20} MiB) only compressed; if not, nothing is saved")
    return notes


# ---- the caches ----------------------------------------------------------------------------
def _sources_digest():
    h = hashlib.sha256(__version__.encode())
    for part in ("builder", "drivers"):
        root = source_dir(part)
        for p in sorted(root.rglob("*")):
            if p.is_file() and p.suffix in (".c", ".h", ".S", ".ld"):
                h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def blob_path(host, target):
    key = hashlib.sha256(description.dumps(target).encode() + _sources_digest().encode())
    return host.cache / f"blob-{key.hexdigest()[:16]}.blob"


def cached_blob(host, target):
    from ..build.payload import build_payload
    from ..fileutil import write_atomic
    path = blob_path(host, target)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, build_payload(target).blob)
    return path


# ---- the plan ------------------------------------------------------------------------------
def plan(host, req):
    """Everything that can be checked without touching anything: (target, swap, steps,
    notes, state). Raises UsageError for every refusal."""
    check_kernel(host)
    target = capture(host, req)
    swap = swap_path(host, req)
    active, used = swap_use(host, swap)
    notes = fit(host, target, swap, active, used)
    warning = guard.check(host, swap, target)
    if warning:
        notes.append(warning)
    boot_entry = uefi.armed_entry(host)       # refused here when the entry is gone
    if not target.reserved.ap_start and len(host.cpus()) > 1:
        notes.append(f"the payload runs on one CPU: add {suggest_ap_start(target.memory)} to "
                      "the kernel command line (a page where it starts the other CPUs) to "
                      "use every CPU")
    blob = blob_path(host, target)
    steps = [f"capture: target linux --swap {swap}: {target.saved_pages()} pages of RAM, "
             f"image extents {target.image_capacity() >> 20} MiB in {len(target.extents)} "
             f"extents, compression {req.compress}",
             f"blob: {'cached ' if blob.exists() else 'build '}{blob}",
             f"module: suspendos.ko for {host.release} (built with make -C "
             f"/lib/modules/{host.release}/build M=..., cached in {host.cache}), insmod"]
    if active:
        steps.append(f"swapoff {swap} ({used >> 20} MiB in use)")
    steps += [f"mark {swap} SOSIMAGE01, load the blob into /dev/suspendos, sync",
              "keep the page cache (--keep-caches): clean cache pages are saved too"
              if req.keep_caches else
              "drop clean page cache and slab (echo 3 > /proc/sys/vm/drop_caches): the "
              "pages freed are left out of the image",
              f"hand off: echo go > {SYSFS}/hibernate (image written: power off)",
              f"after any return: SWAPSPACE2 back on {swap}"
              f"{f', swapon {swap}' if active else ''}"
              f"{', BootNext cleared' if boot_entry is not None else ''}, every CPU online, "
              "report"]
    if boot_entry is not None:
        steps.insert(-2, f"arm: BootNext = {efivars.boot_name(boot_entry)} ('{uefi.LABEL}'), "
                         "so the next boot starts the resume loader")
    state = {"active": active, "used": used}
    if boot_entry is not None:
        state["boot_entry"] = boot_entry
    return target, swap, steps, notes, state


# ---- running it ----------------------------------------------------------------------------

def cpus_online(host):
    """Bring every CPU that can go offline back online; returns how many are online."""
    for n, online in sorted(host.cpus().items()):
        if not online:
            try:
                host.sys.path(f"/sys/devices/system/cpu/cpu{n}/online").write_text("1")
            except OSError:
                pass                        # reported through the count
    return host.online_cpus()


def parse_stats(text):
    out = {}
    for word in text.split():
        k, sep, v = word.partition("=")
        if sep:
            out[k] = int(v, 0)
    return out


def drop_caches(host):
    """Free the clean page cache and the reclaimable slab (dentries, inodes) so those pages
    sit in the page allocator's free lists, which the module leaves out of the image. This
    is what swsusp gets from shrink_all_memory() before its snapshot (kernel/power/
    snapshot.c, hibernate_preallocate_memory): after sync nothing dropped is dirty, and the
    caches refill from disk after the resume. drop_caches (Documentation/admin-guide/sysctl/
    vm.rst) is the interface that frees exactly that and never swaps anonymous memory out
    (the swap area is about to hold the image). Returns the pages it freed (MemFree's rise)."""
    before = host.meminfo()["MemFree"]
    with open(host.sys.path("/proc/sys/vm/drop_caches"), "w") as f:
        f.write("3\n")
    return max(0, host.meminfo()["MemFree"] - before) // PAGE_SIZE


def handoff(host, blob, serial, keep_caches=False, pause=False, arm=None):
    """Load the blob, drop the caches (unless kept), call `arm` (BootNext: set as late as
    possible, after everything that can fail) and trigger; returns (errno or 0, stats
    dict, status line, pages freed by dropping caches). `pause`: the payload prints
    "@@PAUSE before-read" on serial before it opens the disk and waits for one byte there
    (a test host snapshots the disk in that moment: suspendos/linuxvm/untouched.py)."""
    with open(host.sys.path("/dev/suspendos"), "wb") as f:
        f.write(Path(blob).read_bytes())
    os.sync()
    dropped = 0 if keep_caches else drop_caches(host)
    err = 0
    go = f"go serial={serial:#x}" if serial else "go"
    if pause:
        go += " pause=before"
    if arm:
        arm()
    try:
        with open(host.sys.path(f"{SYSFS}/hibernate"), "w") as f:
            f.write(go + "\n")
    except OSError as e:
        err = e.errno
    stats = parse_stats(host.read(f"{SYSFS}/stats", "module"))
    status = host.read(f"{SYSFS}/status", "module").strip()
    return err, stats, status, dropped


def report(req, result):
    if req.json:
        print(json.dumps(result))
        return
    if result["status"] == "resumed":
        print(f"resumed: {result['pages_saved']} pages restored, {result['free_pages_skipped']}"
              f" free pages left out ({result['caches_dropped_pages']} of them freed by "
              f"dropping caches), image {result['bytes_written']} bytes; "
              f"{result['cpus_online']} CPUs online")
    else:
        print(f"{result['status']}: {result['message']}; {result['cpus_online']} CPUs online")


def hibernate(req, host=None):
    if req.pause_before_write and not req.serial:     # nobody could answer the pause
        raise UsageError("--pause-before-write: only with --serial (the pause waits there)")
    host = host or Host()
    target, swap, steps, notes, state = plan(host, req)
    if req.dry_run:
        out = {"plan": steps, "notes": notes, "swap": swap, "target": target.to_dict(),
               "target_toml": description.dumps(target)}
        print(json.dumps(out, indent=None if req.json else 2))
        return 0
    blob = cached_blob(host, target)
    ko = kmodule.cached_module(host)
    if req.prepare:
        out = {"prepared": True, "blob": str(blob), "module": str(ko), "swap": swap,
               "target_toml": description.dumps(target)}
        print(json.dumps(out) if req.json else f"prepared: blob {blob}, module {ko}")
        return 0
    for n in notes:
        if not req.json:
            print(f"note: {n}")
    kmodule.load(host, ko)
    swapped_off = marked = False
    area = host.area(swap)
    entry = state.get("boot_entry")
    arm = (lambda: uefi.arm(host, entry)) if entry is not None else None
    try:
        if state["active"]:
            rc, why = host.run(["swapoff", swap])
            if rc:
                raise UsageError(f"swapoff {swap} failed: {why}")
            swapped_off = True
        tl.mark_swap(area)
        marked = True
        extra = {"pause": True} if req.pause_before_write else {}
        if arm:
            extra["arm"] = arm
        err, stats, status, dropped = handoff(host, blob, req.serial, req.keep_caches, **extra)
    finally:
        if marked:
            tl.discard_image(area)
        if swapped_off:
            host.run(["swapon", swap])
        cpus = cpus_online(host)
        if entry is not None:       # no power-off: the next boot is a normal one again
            uefi.disarm(host, entry)
    code = stats.get("status", 0)
    result = {"status": "resumed" if code == STATUS.RESUMED else
              "written" if code == STATUS.WRITTEN else "failed",
              "payload_status": STATUS.name_of(code), "swap": swap,
              "pages_saved": stats.get("pages_saved", 0),
              "free_pages_skipped": stats.get("free_pages_skipped", 0),
              "zero_pages": stats.get("zero_pages", 0),
              "caches_dropped_pages": dropped, "caches_kept": req.keep_caches,
              "bytes_written": stats.get("bytes_written", 0), "cpus_online": cpus,
              "message": status}
    if entry is not None:
        result["boot_next"] = efivars.boot_name(entry)    # armed, and cleared again
    # The CPUs of the run that returned: the payload's after a failure, the resume loader's
    # after a resume (the payload that wrote the image reports its own on serial, @@CPUS).
    result["resume_cpus_used" if code == STATUS.RESUMED else "cpus_used"] = \
        stats.get("cpus_used", 0)
    if code == STATUS.IMAGE_FULL:
        result["message"] = (f"the image did not fit {swap} even compressed; nothing was "
                             "saved (no image header), the system goes on")
    elif err and code not in (STATUS.RESUMED, STATUS.WRITTEN):
        result["message"] = f"{status} ({os.strerror(err)})"
    report(req, result)
    if result["status"] == "failed":
        raise RunError(f"hibernate failed: {result['message']}")
    return 0
