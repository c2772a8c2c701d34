"""`suspendos hibernate` refuses, before touching anything, whatever it cannot do safely:
one line naming the fix, exit 2. The machine is a synthetic sysroot built on the snapshot of
Debian's 6.1 kernel on the QEMU test machine (tests/data/linux-sysroot: 512 MiB,
memmap=2M$0x10000000, sda1 = 640 MiB swap, sda2 a scratch partition); swap files get their
FIEMAP extents injected (target/linux.py's fiemap)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from suspendos.errors import UsageError
from suspendos.linuxhost import guard
from suspendos.linuxhost.hibernate import Request, hibernate, plan
from suspendos.linuxhost.host import Host
from suspendos.linuxvm import swap_header
from suspendos.target import linux as tl
from suspendos.target.description import loads

SNAPSHOT = Path(__file__).parent / "data" / "linux-sysroot"
MiB = 1 << 20
MEMINFO = "MemTotal: 505000 kB\nMemFree: {free} kB\nMemAvailable: {avail} kB\n"
SWAPS_HEAD = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
MOUNTINFO = "22 1 8:2 / / rw,relatime shared:1 - {fs} /dev/sda2 rw\n"


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    shutil.copytree(SNAPSHOT, r, symlinks=True)
    (r / "proc/meminfo").write_text(MEMINFO.format(free=300000, avail=400000))
    (r / "proc/cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu pae lm\n")
    (r / "proc/self").mkdir(parents=True)
    (r / "proc/self/mountinfo").write_text(MOUNTINFO.format(fs="ext4"))
    with open(r / "dev/sda1", "ab") as f:    # the header page and the image's first page:
        f.truncate(2 * 4096)                  # what a discard rewrites must be there
    return r


def host(root, tmp_path, **kw):
    return Host(sysroot=str(root), cache_dir=tmp_path / "cache", release="6.1.0-56-amd64",
                euid=kw.pop("euid", 0), **kw)


def refusal(root, tmp_path, req=None, **kw):
    with pytest.raises(UsageError) as e:
        plan(host(root, tmp_path, **kw), req or Request(swap="/dev/sda1"))
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_plan_for_a_good_machine(root, tmp_path, capsys):
    assert hibernate(Request(swap="/dev/sda1", dry_run=True, json=True),
                     host(root, tmp_path)) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["swap"] == "/dev/sda1"
    assert any(s.startswith("mark /dev/sda1 SOSIMAGE01") for s in out["plan"])
    assert not any(s.startswith("swapoff") for s in out["plan"])    # not in /proc/swaps
    assert loads(out["target_toml"]).extents[0].lba == 2056
    assert "no stale-image guard installed" in out["notes"][0]
    assert not (tmp_path / "cache").exists()                          # touched nothing


def test_not_root(root, tmp_path):
    assert "run as root" in refusal(root, tmp_path, euid=1000)


def test_lockdown(root, tmp_path):
    p = root / "sys/kernel/security"
    p.mkdir(parents=True)
    (p / "lockdown").write_text("none [integrity] confidentiality\n")
    assert "lockdown is 'integrity'" in refusal(root, tmp_path)


def test_five_level_paging_needs_no5lvl(root, tmp_path):
    (root / "proc/cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu la57 lm\n")
    assert "add no5lvl to the kernel command line" in refusal(root, tmp_path)
    (root / "proc/cmdline").write_text("console=ttyS0 memmap=2M$0x10000000 no5lvl\n")
    plan(host(root, tmp_path), Request(swap="/dev/sda1"))


def test_no_reserved_region_names_the_memmap_to_add(root, tmp_path):
    (root / "proc/cmdline").write_text("console=ttyS0 quiet\n")
    assert "add memmap=2M$0x10000000 to the kernel command line" in refusal(root, tmp_path)


def test_swapped_out_pages_must_fit_in_ram(root, tmp_path):
    (root / "proc/swaps").write_text(SWAPS_HEAD + "/dev/sda1 partition 655356 450000 -2\n")
    msg = refusal(root, tmp_path)
    assert "439 MiB of swapped-out pages" in msg and "390 MiB of RAM" in msg
    # a little swapped out: swapoff is part of the plan, and swapon after the return
    (root / "proc/swaps").write_text(SWAPS_HEAD + "/dev/sda1 partition 655356 1000 -2\n")
    _, _, steps, _, state = plan(host(root, tmp_path), Request(swap="/dev/sda1"))
    assert state == {"active": True, "used": 1000 * 1024}
    assert "swapoff /dev/sda1 (0 MiB in use)" in steps and "swapon /dev/sda1" in steps[-1]


def test_pages_in_use_must_fit_the_swap_area(root, tmp_path):
    # 200 MiB swapped out come back into RAM, where almost nothing is free: more than 640 MiB
    (root / "proc/meminfo").write_text(MEMINFO.format(free=4000, avail=420000))
    (root / "proc/swaps").write_text(SWAPS_HEAD + "/dev/sda1 partition 655356 204800 -2\n")
    msg = refusal(root, tmp_path)
    assert "use --compress lz4" in msg and "holds 639 MiB" in msg
    # compressed it may fit: accepted, with the consequence in the plan's notes
    _, _, _, notes, _ = plan(host(root, tmp_path), Request(swap="/dev/sda1", compress="lz4"))
    assert "only compressed" in notes[0]


def test_stale_image_guard_must_match(root, tmp_path):
    h = host(root, tmp_path)
    target, swap, *_ = plan(h, Request(swap="/dev/sda1"))
    text, values = guard.render(h, swap, target)
    assert values["SOS_SIG_OFFSET"] == 4086 and values["SOS_HEADER_OFFSET"] == 4096
    conf = guard.conf_path(h)
    conf.parent.mkdir(parents=True)
    conf.write_text(text)
    _, _, _, notes, _ = plan(h, Request(swap="/dev/sda1"))
    assert notes == []                                    # installed and matching
    conf.write_text(text.replace(values["SOS_EXTENTS"], "0123456789abcdef"))
    assert "run suspendos install-resume again" in refusal(root, tmp_path)


@pytest.mark.parametrize("kind", ["not-utf8", "folder", "fifo"])
def test_a_damaged_guard_conf_is_one_line_not_a_crash_or_a_hang(root, tmp_path, kind):
    """resume.conf was read with read_text(): bytes that are not UTF-8 crashed the plan, a
    folder was a raw IsADirectoryError, a FIFO was waited on for ever."""
    conf = guard.conf_path(host(root, tmp_path))
    conf.parent.mkdir(parents=True)
    if kind == "not-utf8":
        conf.write_bytes(b"\xff\xfeSOS_SIG_OFFSET=\"4086\"\n")
    elif kind == "folder":
        conf.mkdir()
    else:
        os.mkfifo(conf)
    msg = refusal(root, tmp_path)
    assert "resume.conf" in msg, msg


def test_image_already_on_the_swap_area(root, tmp_path):
    head = bytearray((root / "dev/sda1").read_bytes())
    head[4086:4096] = tl.SUSPENDOS_SWAP_MAGIC
    (root / "dev/sda1").write_bytes(bytes(head))
    assert "suspendos image discard" in refusal(root, tmp_path)


# ---- swap files ----------------------------------------------------------------------------
def swap_file(root, monkeypatch, mapping, size=8 * MiB):
    f = root / "swapfile"
    with open(f, "wb") as out:
        out.write(swap_header(size))
        out.truncate(size)
    monkeypatch.setattr(tl, "fiemap", lambda path: mapping)
    return "/swapfile"


PHYS = 4 * MiB          # where in sda2 (16 MiB) the file is
GOOD = [(0, PHYS, 8 * MiB, tl.FIEMAP_EXTENT_LAST)]


@pytest.mark.parametrize("flags", [0, tl.FIEMAP_UNWRITTEN])    # fallocate + mkswap
def test_swap_file_plan(root, tmp_path, monkeypatch, flags):
    sw = swap_file(root, monkeypatch, [(0, PHYS, 4096, 0),
                                       (4096, PHYS + 4096, 8 * MiB - 4096,
                                        tl.FIEMAP_EXTENT_LAST | flags)])
    target, swap, *_ = plan(host(root, tmp_path), Request(swap=sw, compress="lz4"))
    start = int((root / "sys/class/block/sda2/start").read_text())
    assert [(e.lba, e.count) for e in target.extents] == \
        [(start + PHYS // 512 + 8, 8 * MiB // 512 - 8)]
    _, sig, header = guard.swap_location(host(root, tmp_path), swap, target)
    assert (sig, header) == (PHYS + 4086, PHYS + 4096)


@pytest.mark.parametrize("flags, words", [
    (0x2000, "shared"), (0x8, "encoded"), (0x200, "inline data"), (0x4, "delayed allocation"),
    (0x2, "unknown location")])
def test_swap_file_extent_kinds(root, tmp_path, monkeypatch, flags, words):
    sw = swap_file(root, monkeypatch, [(0, PHYS, 8 * MiB, tl.FIEMAP_EXTENT_LAST | flags)])
    assert words in refusal(root, tmp_path, Request(swap=sw, compress="lz4"))


def test_swap_file_with_a_hole(root, tmp_path, monkeypatch):
    sw = swap_file(root, monkeypatch, [(0, PHYS, 1 * MiB, 0),
                                       (2 * MiB, PHYS + 2 * MiB, 6 * MiB, tl.FIEMAP_EXTENT_LAST)])
    assert "has a hole at offset 1048576" in refusal(root, tmp_path, Request(swap=sw,
                                                                             compress="lz4"))


@pytest.mark.parametrize("fs", ["btrfs", "nfs4", "zfs"])
def test_swap_file_filesystems(root, tmp_path, monkeypatch, fs):
    sw = swap_file(root, monkeypatch, GOOD)
    (root / "proc/self/mountinfo").write_text(MOUNTINFO.format(fs=fs))
    assert f"is on {fs}" in refusal(root, tmp_path, Request(swap=sw, compress="lz4"))


def test_swap_file_on_device_mapper(root, tmp_path, monkeypatch):
    sw = swap_file(root, monkeypatch, GOOD)
    dm = root / "sys/devices/virtual/block/dm-0"
    (dm / "dm").mkdir(parents=True)
    (dm / "partition").write_text("1\n")
    os.symlink("../../devices/virtual/block/dm-0", root / "sys/dev/block/254:0")
    os.symlink("../../devices/virtual/block/dm-0", root / "sys/class/block/dm-0")
    (root / "proc/self/mountinfo").write_text(
        "22 1 254:0 / / rw - ext4 /dev/mapper/vg-root rw\n")
    assert "device-mapper" in refusal(root, tmp_path, Request(swap=sw, compress="lz4"))


def test_command_line_refusal_is_one_line_exit_2(root, tmp_path):
    (root / "proc/cmdline").write_text("console=ttyS0\n")
    r = subprocess.run([sys.executable, "-m", "suspendos.cli", "hibernate", "--dry-run",
                        "--json", "--sysroot", str(root), "--swap", "/dev/sda1"],
                       capture_output=True, text=True,
                       env={**os.environ, "SOS_CACHE_DIR": str(tmp_path / "cache")})
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "memmap=2M$0x10000000" in r.stderr


def test_prepare_builds_blob_and_module_once(root, tmp_path, capsys):
    """--prepare: the blob for the target and suspendos.ko for the kernel (Debian's 6.1
    headers as /lib/modules/RELEASE/build), cached; the second run builds nothing."""
    from suspendos.linuxvm import Debian
    debian = Debian(headers=True)
    (root / "lib/modules" / debian.abi).mkdir(parents=True)
    os.symlink(debian.headers, root / "lib/modules" / debian.abi / "build")
    h = Host(sysroot=str(root), cache_dir=tmp_path / "cache", release=debian.abi, euid=0)
    assert hibernate(Request(swap="/dev/sda1", prepare=True, json=True), h) == 0
    out = json.loads(capsys.readouterr().out)
    blob, ko = Path(out["blob"]), Path(out["module"])
    assert blob.read_bytes()[:8] == b"SOSBLOB\0" and ko.name == "suspendos.ko"
    assert blob.parent == ko.parent.parent == tmp_path / "cache"
    stamps = (blob.stat().st_mtime_ns, ko.stat().st_mtime_ns)
    assert hibernate(Request(swap="/dev/sda1", prepare=True, json=True), h) == 0
    assert json.loads(capsys.readouterr().out) == out
    assert (blob.stat().st_mtime_ns, ko.stat().st_mtime_ns) == stamps


@pytest.mark.parametrize("keep", [False, True])
def test_after_a_resume_everything_is_put_back(root, tmp_path, monkeypatch, capsys, keep):
    """The run itself, with the module's files faked in the sysroot: swapoff, the area marked
    for the handoff, the caches dropped (MemFree's rise reported in pages; untouched with
    --keep-caches), then SWAPSPACE2 back, swapon, the offline CPU online, one JSON line."""
    from suspendos.linuxhost import hibernate as hib
    (root / "proc/swaps").write_text(SWAPS_HEAD + "/dev/sda1 partition 655356 1000 -2\n")
    sysfs = root / "sys/class/misc/suspendos"
    sysfs.mkdir(parents=True)
    (sysfs / "stats").write_text("status=0x2 pages_saved=71920 free_pages_skipped=58510 "
                                 "zero_pages=17000 bytes_written=224395264 free_ranges=12 "
                                 "cpus_used=1 error=0\n")
    (sysfs / "status").write_text("resumed 0x2 71920 \n")
    for n, online in ((0, None), (1, "0")):
        d = root / f"sys/devices/system/cpu/cpu{n}"
        d.mkdir(parents=True)
        if online:
            (d / "online").write_text(online)
    ran, seen = [], {}
    h = host(root, tmp_path)
    monkeypatch.setattr(h, "run", lambda cmd: ran.append(cmd) or (0, ""))
    monkeypatch.setattr(hib.kmodule, "cached_module", lambda host: tmp_path / "suspendos.ko")
    monkeypatch.setattr(hib.kmodule, "load", lambda host, ko: "loaded")
    drop = root / "proc/sys/vm/drop_caches"
    drop.parent.mkdir(parents=True)
    drop.write_text("0\n")
    meminfo = h.meminfo

    def freed_by_drop():            # the fake kernel: dropping frees 30 MiB
        m = meminfo()
        m["MemFree"] += (30 << 20) if drop.read_text() == "3\n" else 0
        return m
    monkeypatch.setattr(h, "meminfo", freed_by_drop)
    real = hib.handoff

    def handoff(host, blob, serial, keep_caches):
        seen["signature"] = tl.read_swap_magic(root / "dev/sda1")
        return real(host, blob, serial, keep_caches)
    monkeypatch.setattr(hib, "handoff", handoff)
    assert hibernate(Request(swap="/dev/sda1", json=True, keep_caches=keep), h) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"status": "resumed", "payload_status": "resumed", "swap": "/dev/sda1",
                   "pages_saved": 71920, "free_pages_skipped": 58510, "zero_pages": 17000,
                   "bytes_written": 224395264, "cpus_online": 2,
                   "caches_dropped_pages": 0 if keep else 7680, "caches_kept": keep,
                   "message": "resumed 0x2 71920", "resume_cpus_used": 1}
    assert drop.read_text() == ("0\n" if keep else "3\n")
    assert seen["signature"] == tl.SUSPENDOS_SWAP_MAGIC
    assert tl.read_swap_magic(root / "dev/sda1") == b"SWAPSPACE2"
    assert ran == [["swapoff", "/dev/sda1"], ["swapon", "/dev/sda1"]]
    assert (root / "sys/devices/system/cpu/cpu1/online").read_text() == "1"
    assert (sysfs / "hibernate").read_text() == "go\n"
    assert (root / "dev/suspendos").read_bytes()[:8] == b"SOSBLOB\0"
