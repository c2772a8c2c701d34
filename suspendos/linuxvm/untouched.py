"""Proof that a hibernation wrote nothing outside the swap area, on the real Debian guest.

The runner (runner.py) holds the payload at its first pause point (`pause=before`: after
`@@PAYLOAD start`, before the disk is opened), stops the VM and puts a fresh qcow2 layer on
top of the guest's disk with QMP `blockdev-snapshot-sync` (mode "existing": the layer made
here with 4 KiB clusters, so a cluster is never wider than a swap file's 4 KiB block). From
then on every write lands in that layer. Once the payload has powered the guest off, the
layer's own allocation (`qemu-img map`, depth 0: data and zeroed clusters alike) must lie
inside the swap area: the swap file's blocks as filefrag saw them when the guest was built
(not the target the payload was given, which is what is under test), or the swap partition.

A cluster that lies only partly inside is allowed when its outside part reads the same as
the layer below (a cluster size wider than the area's granularity); a cluster wholly
outside counts whole, whatever it holds: writing the same bytes is still a write.

And the image on the raw disk: the header the hibernator left at swap page 1, read with the
project's own image reader.
"""
import json
import subprocess
from pathlib import Path

from ..errors import RunError

PAGE = 4096
SECTOR = 512
CLUSTER = 4096           # the top layer's cluster size: the swap file's block size
LISTED = 8               # outside ranges named in the report (the count has them all)


def _qemu_img(args, what):
    p = subprocess.run(["qemu-img", *args], capture_output=True, text=True)
    if p.returncode:
        raise RunError(f"{what}: qemu-img {args[0]} failed: {p.stderr.strip()[-500:]}")
    return p.stdout


# ---- the layer and the snapshot -----------------------------------------------------------
def make_top_layer(below, path, cluster_size=CLUSTER):
    """An empty qcow2 layer on `below` (a qcow2 file), ready for blockdev-snapshot-sync."""
    path = Path(path)
    path.unlink(missing_ok=True)
    _qemu_img(["create", "-q", "-f", "qcow2", "-o", f"cluster_size={cluster_size}",
               "-F", "qcow2", "-b", str(Path(below).resolve()), str(path)],
              "the snapshot layer")
    return path


async def snapshot(machine, top, device="d0"):
    """Every later write of the VM into `top` (made by make_top_layer on the disk QEMU has
    open as `device`). The VM is stopped around it so that no request is in flight and no
    vCPU runs while the chain changes; QEMU drains the disk for the switch in any case."""
    await machine.execute("stop")
    try:
        await machine.execute("blockdev-snapshot-sync", {
            "device": device, "snapshot-file": str(Path(top).resolve()),
            "format": "qcow2", "mode": "existing"})
    finally:
        await machine.execute("cont")


# ---- what the layer holds -----------------------------------------------------------------
def top_allocation(top):
    """(start, length) in disk bytes of every range the top layer itself holds."""
    out = json.loads(_qemu_img(["map", "--output=json", "-f", "qcow2", str(top)],
                               "the snapshot layer"))
    # depth 0: this file's own clusters; "present" false: a hole in an image without backing
    return [(e["start"], e["length"]) for e in out if e["depth"] == 0 and e.get("present", True)]


def cluster_size(top):
    info = json.loads(_qemu_img(["info", "--output=json", "-f", "qcow2", str(top)],
                                "the snapshot layer"))
    return info["cluster-size"]


def merge(ranges):
    """Sorted, non-overlapping (start, length) ranges, touching ones joined."""
    out = []
    for s, n in sorted(r for r in ranges if r[1] > 0):
        if out and s <= out[-1][0] + out[-1][1]:
            ps, pn = out[-1]
            out[-1] = (ps, max(pn, s + n - ps))
        else:
            out.append((s, n))
    return out


def outside(ranges, allowed):
    """The parts of `ranges` that no range of `allowed` covers, as (start, length)."""
    allowed = merge(allowed)
    out = []
    for s, n in merge(ranges):
        pos, end = s, s + n
        for a, an in allowed:
            if a + an <= pos:
                continue
            if a >= end:
                break
            if a > pos:
                out.append((pos, a - pos))
            pos = max(pos, a + an)
            if pos >= end:
                break
        if pos < end:
            out.append((pos, end - pos))
    return out


def _read(image, start, length):
    """`length` bytes at `start` of a qcow2 image as its guest sees them (backing included):
    the raw driver's offset/size window over it, converted to a file. (`qemu-img dd` with
    skip= fails on some versions while it exits 0.)"""
    import tempfile
    window = {"driver": "raw", "offset": start, "size": length,
              "file": {"driver": "qcow2", "file": {"driver": "file",
                                                   "filename": str(Path(image).resolve())}}}
    with tempfile.TemporaryDirectory(prefix="sos-range-") as d:
        out = Path(d) / "range.raw"
        _qemu_img(["convert", "-O", "raw", "json:" + json.dumps(window), str(out)],
                  "a disk range")
        data = out.read_bytes()
    if len(data) != length:
        raise RunError(f"{image}: read {len(data)} bytes at {start}, wanted {length}")
    return data


def _changed_bytes(top, below, start, length):
    a, b = _read(top, start, length), _read(below, start, length)
    return sum(1 for x, y in zip(a, b) if x != y)


def _by_cluster(s, n, csize):
    """An outside range cut into its head (up to its first cluster boundary), the whole
    clusters in between, and its tail: only a head or tail can share a cluster with the area."""
    end = s + n
    head_end = min(end, -(-s // csize) * csize) if s % csize else s
    tail_start = max(head_end, end // csize * csize)
    return [(a, b - a) for a, b in ((s, head_end), (head_end, tail_start), (tail_start, end))
            if b > a]


def _written(top, below, allowed, csize, s, n):
    """Bytes of one outside piece that count as written: all of them, unless its cluster
    also holds part of the area; then those that differ from the layer below."""
    c0 = s // csize * csize
    shares = s % csize or n < csize
    if shares and outside([(c0, csize)], allowed) != [(c0, csize)]:
        return _changed_bytes(top, below, s, n)
    return n


def check_top_layer(top, below, allowed):
    """What the top layer holds against the allowed ranges (disk bytes). The report's
    `outside_swap_written_bytes` is 0 when nothing was written outside."""
    csize = cluster_size(top)
    held = merge(top_allocation(top))
    clusters = set()
    for s, n in held:
        clusters.update(range(s // csize, -(-(s + n) // csize)))
    allowed = merge(allowed)
    written, named = 0, []
    for s, n in outside(held, allowed):
        bad = sum(_written(top, below, allowed, csize, ps, pn)
                  for ps, pn in _by_cluster(s, n, csize))
        if bad:
            written += bad
            if len(named) < LISTED:
                named.append([s, n])
    return {"snapshot_cluster_size": csize,
            "snapshot_clusters_checked": len(clusters),
            "snapshot_bytes_held": sum(n for _, n in held),
            "outside_swap_written_bytes": written,
            "outside_swap_ranges": named}


# ---- the image on the raw disk ------------------------------------------------------------
def image_on_disk(raw, header_offset):
    """The image header at `header_offset` of the raw disk, read and checked by the image
    reader (magic, version, header checksum, tables), then every chunk's checksum: a
    summary, or None when no image starts there."""
    from ..errors import FormatError
    from ..image.reader import NoImage, open_image
    if header_offset % SECTOR:
        raise RunError(f"image header offset {header_offset} is not on a sector")
    try:
        img = open_image(raw, lba=header_offset // SECTOR)
    except NoImage:
        return None
    except FormatError as e:
        return {"state": "damaged", "checked": str(e)}
    try:
        info = img.info()
        try:
            img.verify()
            checked = "every checksum matches"
        except FormatError as e:
            info["state"], checked = "damaged", str(e)
    finally:
        img.close()
    return {"state": info["state"], "pages": info["pages"], "chunks": info["chunks"],
            "bytes_on_disk": info["bytes_on_disk"], "checked": checked}


def area_ranges(guest_info, swap, root_start, swap_part_start, swap_part_bytes):
    """The swap area in disk bytes, in the area's own order: the swap file's blocks
    (filefrag's physical 4 KiB blocks on the root partition, in file order, found when the
    guest was built) or the swap partition."""
    if swap == "file":
        return [(root_start + p * PAGE, n * PAGE) for p, n in guest_info["swapfile_extents"]]
    return [(swap_part_start, swap_part_bytes)]


def area_offset(ranges, pos):
    """Disk byte offset of byte `pos` of the swap area laid out over `ranges` (area order)."""
    for s, n in ranges:
        if pos < n:
            return s + pos
        pos -= n
    raise RunError(f"byte {pos} lies past the end of the swap area")
