"""The stale-image guard's configuration: where the swap area's signature and the image
header are, as byte offsets in the block device holding them, for the initramfs check
(initramfs/local-premount), plus digests of the extents and of the machine the resume
loader was built for, so `suspendos hibernate` refuses when they no longer match.

/etc/suspendos/resume.conf is a shell fragment (the initramfs script sources it):

    SOS_DEVICES="/dev/disk/by-partuuid/... /dev/sda2"   tried in order
    SOS_SIG_OFFSET=...        byte of the 10-byte signature (SWAPSPACE2 / SOSIMAGE01)
    SOS_HEADER_OFFSET=...     byte of the image header (the first extent)
    SOS_SWAP=...              the swap partition or file it was written for
    SOS_EXTENTS=...           digest of the image extents
    SOS_MACHINE=...           digest of memory map, reserved region, disk and extents
"""
import hashlib
import os
import re

from ..errors import UsageError
from ..formats.common import PAGE_SIZE, SECTOR_SIZE
from ..target import linux as tl

SIGNATURE_OFFSET = PAGE_SIZE - 10
KEYS = ("SOS_DEVICES", "SOS_SIG_OFFSET", "SOS_HEADER_OFFSET", "SOS_SWAP", "SOS_EXTENTS",
        "SOS_MACHINE")


def extents_digest(target):
    text = ",".join(f"{e.lba}+{e.count}" for e in target.extents)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def machine_digest(target):
    """What the resume loader is built for, leaving options (compression) out: the loader
    reads those from the image header."""
    d = target.to_dict()
    d.pop("options", None)
    d.pop("name", None)
    # the firmware's runtime regions are the machine's; memory the kernel kept for itself
    # lands where each boot's allocations put it (OVMF: a 6-page boot-services block moved
    # by 744 KiB between two boots of one machine), so it is not the machine
    from ..formats.efi_runtime import KERNEL_KEPT_TYPES
    if d.get("efi_runtime"):
        d["efi_runtime"] = [r for r in d["efi_runtime"] if r["type"] not in KERNEL_KEPT_TYPES]
    return hashlib.sha256(repr(sorted(d.items())).encode()).hexdigest()[:16]


def swap_location(host, swap, target):
    """(partition name, signature byte offset, header byte offset) inside the partition."""
    sysmap = host.sys
    name = tl.block_name(sysmap, swap)
    if name:
        start = int(sysmap.read(f"/sys/class/block/{name}/start", "swap").strip())
        return name, SIGNATURE_OFFSET, (target.extents[0].lba - start) * SECTOR_SIZE
    path = swap if sysmap.live else sysmap.path(swap)
    st = os.stat(path)
    _, majmin = tl.file_backing(sysmap, os.path.abspath(swap) if sysmap.live else swap, st)
    name = os.path.basename(sysmap.realpath(f"/sys/dev/block/{majmin}"))
    start = int(sysmap.read(f"/sys/class/block/{name}/start", "swap").strip())
    first = [(lo, ph) for lo, ph, ln, _ in tl.fiemap(path) if lo <= 0 < lo + ln]
    if not first:
        raise UsageError(f"--swap: FIEMAP does not say where the first page of {swap} is")
    lo, ph = first[0]
    return name, ph - lo + SIGNATURE_OFFSET, (target.extents[0].lba - start) * SECTOR_SIZE


def device_names(host, name):
    """Stable names of /dev/NAME (by-partuuid, by-uuid), then /dev/NAME itself."""
    out = []
    for kind in ("by-partuuid", "by-uuid"):
        d = host.sys.path(f"/dev/disk/{kind}")
        if d.is_dir():
            for link in sorted(d.iterdir()):
                if os.path.basename(os.path.realpath(link)) == name:
                    out.append(f"/dev/disk/{kind}/{link.name}")
                    break
    return out + [f"/dev/{name}"]


def render(host, swap, target):
    name, sig, header = swap_location(host, swap, target)
    values = {"SOS_DEVICES": " ".join(device_names(host, name)), "SOS_SIG_OFFSET": sig,
              "SOS_HEADER_OFFSET": header, "SOS_SWAP": swap,
              "SOS_EXTENTS": extents_digest(target), "SOS_MACHINE": machine_digest(target)}
    lines = ["# written by suspendos install-resume; read by the initramfs stale-image check"]
    for k in KEYS:
        v = str(values[k])
        if not re.fullmatch(r"[A-Za-z0-9_./+:= -]*", v):
            raise UsageError(f"{k}: {v!r} cannot go into the initramfs configuration")
        lines.append(f'{k}="{v}"')
    return "\n".join(lines) + "\n", values


def parse(text):
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(r'(SOS_[A-Z_]+)="([^"]*)"', line.strip())
        if m:
            out[m.group(1)] = m.group(2)
    return out


def conf_path(host):
    return host.etc / "suspendos" / "resume.conf"


def check(host, swap, target):
    """None when the installed guard matches this swap area and machine; a warning line
    when none is installed. Refuses (exit 2, naming the fix) when it no longer matches."""
    from ..fileutil import read_input
    path = conf_path(host)
    if not os.path.lexists(path):
        return ("no stale-image guard installed (suspendos install-resume): a normal boot "
                "would not discard an image it did not resume")
    # read_input: a folder or FIFO in its place is refused (a FIFO is never waited on);
    # bytes that are not UTF-8 leave lines that do not match, named below
    conf = parse(read_input(path, limit=1 << 16, kind="stale-image guard configuration")
                 .decode("utf-8", "replace"))
    _, sig, header = swap_location(host, swap, target)
    want = {"SOS_SIG_OFFSET": str(sig), "SOS_HEADER_OFFSET": str(header),
            "SOS_EXTENTS": extents_digest(target), "SOS_MACHINE": machine_digest(target)}
    for k, v in want.items():
        if conf.get(k) != v:
            raise UsageError(f"the stale-image guard in {path} was written for another "
                             f"{'swap layout' if k != 'SOS_MACHINE' else 'machine'} "
                             f"({k} {conf.get(k)} != {v}): run suspendos install-resume again")
    return None
