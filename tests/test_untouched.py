"""The proof that a run wrote nothing outside the swap area (suspendos/linuxvm/untouched.py),
on real qcow2 chains made with qemu-img and written with qemu-io, a real QEMU taking the
snapshot over QMP, and the real payload on the QEMU test machine snapshotted at its pause."""
import asyncio
import shutil
import subprocess

import pytest

from suspendos.linuxvm import untouched
from suspendos.qemu.disks import device_args
from suspendos.qemu.machine import QemuMachine, machine_args

KiB, MiB = 1 << 10, 1 << 20

assert shutil.which("qemu-img") and shutil.which("qemu-io"), "no qemu-utils (scripts/setup.sh)"


def _img(*args):
    subprocess.run(["qemu-img", *map(str, args)], check=True, capture_output=True)


def _write(image, *cmds):
    """qemu-io commands on a qcow2 image (its backing chain underneath)."""
    args = ["qemu-io", "-f", "qcow2"]
    for c in cmds:
        args += ["-c", c]
    subprocess.run([*args, str(image)], check=True, capture_output=True)


@pytest.fixture
def chain(tmp_path):
    """base.raw (32 MiB, some data) <- mid.qcow2 (the run's overlay) <- a top layer."""
    base = tmp_path / "base.raw"
    with open(base, "wb") as f:
        f.truncate(32 * MiB)
        f.seek(5 * MiB)
        f.write(b"\x5a" * 8192)
    mid = tmp_path / "mid.qcow2"
    _img("create", "-q", "-f", "qcow2", "-F", "raw", "-b", base, mid)
    _write(mid, "write -P 0x11 4M 64k")
    return base, mid


def test_merge_and_outside():
    assert untouched.merge([(10, 5), (0, 4), (4, 2), (30, 0), (12, 10)]) == [(0, 6), (10, 12)]
    allowed = [(100, 50), (200, 100)]
    assert untouched.outside([(100, 50), (220, 30)], allowed) == []
    assert untouched.outside([(90, 20)], allowed) == [(90, 10)]
    assert untouched.outside([(140, 100)], allowed) == [(150, 50)]
    assert untouched.outside([(0, 400)], allowed) == [(0, 100), (150, 50), (300, 100)]
    assert untouched.outside([(0, 10)], []) == [(0, 10)]


def test_area_ranges_and_offsets():
    info = {"swapfile_extents": [[300, 2], [100, 3]]}      # file order, not disk order
    file_ranges = untouched.area_ranges(info, "file", 1 * MiB, 0, 0)
    assert file_ranges == [(1 * MiB + 300 * 4096, 8192), (1 * MiB + 100 * 4096, 12288)]
    assert untouched.area_offset(file_ranges, 4096) == 1 * MiB + 301 * 4096    # swap page 1
    assert untouched.area_offset(file_ranges, 8192) == 1 * MiB + 100 * 4096
    part = untouched.area_ranges(info, "partition", 1 * MiB, 7 * MiB, 2 * MiB)
    assert part == [(7 * MiB, 2 * MiB)]
    assert untouched.area_offset(part, 4096) == 7 * MiB + 4096
    with pytest.raises(Exception, match="past the end"):
        untouched.area_offset(file_ranges, 20480)


def test_writes_inside_the_area_pass(chain, tmp_path):
    base, mid = chain
    top = untouched.make_top_layer(mid, tmp_path / "top.qcow2")
    _write(top, "write -P 0xaa 8M 12k", "write -z 9M 4k", "write -P 0xbb 20M 4k")
    r = untouched.check_top_layer(top, mid, [(8 * MiB, 2 * MiB), (20 * MiB, 4096)])
    assert r["snapshot_cluster_size"] == 4096
    assert r["snapshot_clusters_checked"] == 5           # 3 written, 1 zeroed, 1 more
    assert r["snapshot_bytes_held"] == 5 * 4096
    assert r["outside_swap_written_bytes"] == 0 and r["outside_swap_ranges"] == []


def test_a_write_outside_is_counted_even_with_the_same_bytes(chain, tmp_path):
    base, mid = chain
    top = untouched.make_top_layer(mid, tmp_path / "top.qcow2")
    # inside, then one page of the file system rewritten with what it already held
    _write(top, "write -P 0xaa 8M 4k", "write -P 0x11 4M 4k", "write -z 12M 8k")
    r = untouched.check_top_layer(top, mid, [(8 * MiB, 1 * MiB)])
    assert r["outside_swap_written_bytes"] == 4096 + 8192
    assert r["outside_swap_ranges"] == [[4 * MiB, 4096], [12 * MiB, 8192]]
    assert r["snapshot_clusters_checked"] == 4


def test_a_wide_cluster_partly_inside_counts_only_changed_outside_bytes(chain, tmp_path):
    """64 KiB clusters over an area that starts 4 KiB into one: a write inside allocates the
    whole cluster, whose outside part still reads as below; one changed byte outside
    counts as one."""
    base, mid = chain
    top = untouched.make_top_layer(mid, tmp_path / "top.qcow2", cluster_size=64 * KiB)
    area = [(4 * MiB + 4096, 1 * MiB)]
    _write(top, "write -P 0xaa 4100k 8k")
    r = untouched.check_top_layer(top, mid, area)
    assert r["snapshot_cluster_size"] == 64 * KiB and r["snapshot_clusters_checked"] == 1
    assert r["outside_swap_written_bytes"] == 0, r
    _write(top, "write -P 0x12 4M 1")      # below held 0x11 there
    r = untouched.check_top_layer(top, mid, area)
    assert r["outside_swap_written_bytes"] == 1 and r["outside_swap_ranges"] == [[4 * MiB, 4096]]
    # two whole clusters before it count whole, the shared cluster's outside 4 KiB by bytes
    _write(top, "write -P 0x11 4M 1", "write -P 0x22 3968k 136k")
    r = untouched.check_top_layer(top, mid, area)
    assert r["outside_swap_written_bytes"] == 128 * KiB + 4096, r
    assert r["outside_swap_ranges"] == [[4 * MiB - 128 * KiB, 128 * KiB + 4096]]
    assert r["snapshot_clusters_checked"] == 3


def test_the_qmp_snapshot_sends_later_writes_to_the_top_layer(chain, tmp_path):
    """A real QEMU with the chain as the runner's drive d0: a write before the snapshot goes
    to mid.qcow2, one after it to the top layer, which is then all the check sees."""
    base, mid = chain
    top = untouched.make_top_layer(mid, tmp_path / "top.qcow2")
    args = [*machine_args(64 * MiB), "-boot", "reboot-timeout=-1",   # SeaBIOS: no disk, wait
            "-drive", f"if=none,id=d0,file={mid},format=qcow2,cache=writeback",
            *device_args("ahci", 512, "d0")]

    async def run():
        m = QemuMachine(args, log_path=tmp_path / "serial.log")
        try:
            await m.start()
            hmp = "human-monitor-command"
            await m.execute(hmp, {"command-line": 'qemu-io d0 "write -P 0x33 6M 4k"'})
            await untouched.snapshot(m, top)
            await m.execute(hmp, {"command-line": 'qemu-io d0 "write -P 0x44 7M 8k"'})
            status = await m.execute("query-status")
            assert status["running"], status       # let go again after the switch
        finally:
            await m.stop()
    asyncio.run(run())
    assert untouched.top_allocation(top) == [(7 * MiB, 8192)]
    assert (6 * MiB, 64 * KiB) in untouched.top_allocation(mid)      # its 64 KiB cluster
    r = untouched.check_top_layer(top, mid, [(7 * MiB, 1 * MiB)])
    assert r["outside_swap_written_bytes"] == 0 and r["snapshot_bytes_held"] == 8192
    r = untouched.check_top_layer(top, mid, [(8 * MiB, 1 * MiB)])
    assert r["outside_swap_written_bytes"] == 8192


def test_pause_before_write_needs_serial(cli):
    """The runner's hidden hibernate option: without --serial nobody could answer the
    pause, so it is refused before anything is read or loaded."""
    p = cli("hibernate", "--pause-before-write", "--swap", "/dev/null")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.splitlines() == [
        "suspendos: error: --pause-before-write: only with --serial (the pause waits there)"]


def test_pause_before_write_reaches_the_module(tmp_path):
    """`--pause-before-write` puts `pause=before` into the module's go line (the payload
    then pauses after `@@PAYLOAD start`, before it opens the disk: builder/core/main.c);
    without it the line is as before. A sysroot stands in for /dev and /sys."""
    from suspendos.linuxhost.hibernate import SYSFS, handoff
    from suspendos.linuxhost.host import Host
    sysfs = tmp_path / SYSFS.lstrip("/")
    sysfs.mkdir(parents=True)
    (tmp_path / "dev").mkdir()
    (sysfs / "stats").write_text("status=1 pages_saved=3\n")
    (sysfs / "status").write_text("written\n")
    blob = tmp_path / "blob"
    blob.write_bytes(b"\x7fblob")
    host = Host(sysroot=str(tmp_path))
    for pause, line in ((True, "go serial=0x3f8 pause=before\n"), (False, "go serial=0x3f8\n")):
        err, stats, status, dropped = handoff(host, blob, 0x3f8, keep_caches=True, pause=pause)
        assert (sysfs / "hibernate").read_text() == line
        assert (tmp_path / "dev/suspendos").read_bytes() == b"\x7fblob"
        assert (err, status, dropped) == (0, "written", 0) and stats["pages_saved"] == 3


@pytest.fixture(scope="module")
def payload_run(tmp_path_factory):
    """The runner's protocol on the QEMU test machine with the real payload: at its
    `before-read` pause (after `@@PAYLOAD start`, before it opens the disk) the disk gets
    the top layer, as runner.py does on the Debian guest."""
    from suspendos.build.payload import build_payload
    from suspendos.build.testhost import build_test_host
    from suspendos.qemu.machine import module_path
    from suspendos.qemu.suspend import run_guest
    from suspendos.target.qemu import qemu_target
    d = tmp_path_factory.mktemp("payload")
    memory = 64 * MiB
    target = qemu_target(memory, framebuffer=None)
    (d / "payload.blob").write_bytes(build_payload(target).blob)
    build_test_host(d / "host.elf")
    disk = d / "disk.qcow2"
    _img("create", "-q", "-f", "qcow2", disk, target.disk.sectors * target.disk.block_size)
    top = untouched.make_top_layer(disk, d / "top.qcow2")
    args = [*machine_args(memory),
            "-drive", f"if=none,id=d0,file={disk},format=qcow2,cache=writeback",
            *device_args("ahci", 512, "d0"), "-kernel", str(d / "host.elf"),
            "-initrd", module_path(d / "payload.blob"), "-append", "seed=3 pause=before vbe=off"]
    seen = []

    async def on_pause(machine, where):
        seen.append(where)
        if where == "before-read":
            await untouched.snapshot(machine, top)
    handoff, result, exit_value, error, m = asyncio.run(
        run_guest(args, target, memory, on_pause))
    assert seen == ["before-read"] and handoff is not None and not error, (error, m.tail)
    raw = d / "disk.raw"
    _img("convert", "-O", "raw", top, raw)
    bs = target.disk.block_size
    return {"disk": disk, "top": top, "raw": raw,
            "extents": [(e.lba * bs, e.count * bs) for e in target.extents]}


def test_a_real_payload_after_the_snapshot_writes_inside_its_extents_only(payload_run):
    """The whole image lands in the top layer and inside the target's extents. Left out
    of the allowed set, the first extent (the header's) shows up as written outside."""
    from suspendos.image.reader import open_image
    disk, top, extents = payload_run["disk"], payload_run["top"], payload_run["extents"]
    r = untouched.check_top_layer(top, disk, extents)
    assert r["outside_swap_written_bytes"] == 0 and r["outside_swap_ranges"] == [], r
    assert untouched.top_allocation(disk) == []          # nothing before the pause
    info = open_image(payload_run["raw"]).info()
    assert info["state"] == "valid"
    # the image's every byte (header, tables, chunks up to data_end) is in the layer
    assert r["snapshot_bytes_held"] >= info["bytes_on_disk"] > 0, (r, info)
    r = untouched.check_top_layer(top, disk, extents[1:])
    assert r["outside_swap_written_bytes"] > 0 and r["outside_swap_ranges"][0][0] == extents[0][0]


def test_image_on_disk_valid_damaged_then_none(payload_run, tmp_path):
    """That image read on the raw disk at its header (the first extent): valid with every
    checksum; a damaged chunk is named; the header page zeroed, as the stale-image check
    does, leaves none."""
    from suspendos.image.reader import open_image
    disk = tmp_path / "disk.raw"
    shutil.copyfile(payload_run["raw"], disk)
    at = payload_run["extents"][0][0]
    found = untouched.image_on_disk(disk, at)
    assert found["state"] == "valid" and found["checked"] == "every checksum matches", found
    assert found["pages"] > 0 and found["chunks"] > 0
    assert untouched.image_on_disk(disk, at + 4096) is None      # not where the header is

    img = open_image(disk)
    chunk_at, _ = img._map(img.header.chunks_offset + 100)
    img.close()
    with open(disk, "r+b") as f:
        f.seek(chunk_at)
        b = f.read(1)
        f.seek(chunk_at)
        f.write(bytes([b[0] ^ 1]))
    bad = untouched.image_on_disk(disk, at)
    assert bad["state"] == "damaged" and "chunk" in bad["checked"], bad

    with open(disk, "r+b") as f:
        f.seek(at)
        f.write(bytes(4096))
    assert untouched.image_on_disk(disk, at) is None
