"""`qemu suspend --raw-ceiling`: the payload streams a constant buffer through the same
driver, command size and extents as an image, writes no image, and reports the rate."""
from test_faults_qemu import assert_no_image, suspend
from test_faults_qemu import disk  # noqa: F401  (the fixture: a 64M machine's disk)


def test_raw_ceiling_writes_the_memory_size_through_the_extents(cli, disk):
    outside = [(s, e) for s, e in disk.spans]
    with open(disk, "rb") as f:
        before = [(f.seek(s), f.read(e - s))[1] for s, e in outside]
    p, s = suspend(cli, disk, "--raw-ceiling")
    assert p.returncode == 0, p.stderr
    assert s["status"] == "written" and s["raw_ceiling"] and s["host_exit"] == "ok", s
    saved = sum(e - b for b, e in disk.target.saved_ranges())
    ceiling = saved - saved % (256 * 1024)
    assert s["bytes_written"] == 4096 + ceiling                   # header block + the stream
    assert s["mb_per_s"] > 0
    with open(disk, "rb") as f:
        assert [(f.seek(s), f.read(e - s))[1] for s, e in outside] == before
        first = disk.target.extents[0]
        f.seek(first.lba * 512 + 4096)
        data = f.read(256 * 1024)
    assert data == bytes((i * 131 + 7) & 255 for i in range(256 * 1024))
    assert_no_image(cli, disk)
