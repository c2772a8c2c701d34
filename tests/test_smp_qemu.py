"""Several CPUs under real QEMU (-smp N, multi-threaded TCG): the test host hands its APs to
the payload and checks each is parked with its state intact afterwards; the image still
equals QEMU's own dump of guest RAM and resumes through the loader on every CPU (which
still refuses a damaged image, naming the first bad chunk, before writing RAM, and leaves
out an AP that never answers, and ends in order on a fault on an AP); an AP that never answers is left out and
the run says so; a fault on an AP ends the run in order, naming the CPU."""
import json

import pytest

from suspendos.image.reader import open_image
from test_faults_qemu import assert_no_image, assert_orderly_failure, suspend
from test_faults_qemu import disk  # noqa: F401  (the fixture: a 64M machine's disk)
from test_resume_qemu import _chunks, _digest, _flip, assert_refused
from test_suspend_qemu import compare_with_dump

MiB = 1 << 20


@pytest.mark.parametrize("cpus, compress", [(2, "lz4"), (3, "lz4hc")])
def test_ground_truth_and_resume_with_several_cpus(tmp_path, cli, cpus, compress):
    """lz4hc (the thorough search) on three CPUs: its blocks are LZ4 blocks, which
    python-lz4 (the extraction below) and the loader read as any other."""
    disk, ram, key = tmp_path / "disk.img", tmp_path / "ram.bin", tmp_path / "key"
    cli("key", "new", "-o", key, check=True)
    p = cli("qemu", "suspend", "--memory", "256M", "--disk", disk, "--cpus", cpus,
            "--seed", cpus, "--compress", compress, "--encrypt-key", key, "--ram-dump", ram,
            "--json", "--quiet", timeout=900)
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["status"] == "written" and s["host_exit"] == "ok", s
    assert s["host_memory_check"] == s["host_cpu_check"] == s["host_ap_check"] == "passed"
    assert s["cpus_used"] == cpus and s["cpus_missing"] == 0, s
    assert sum("cpu=ok" in line for line in s["cpu_log"]) == cpus - 1, s["cpu_log"]

    img = open_image(disk, key=key.read_bytes())
    info = img.info()
    assert info["compression"] == "lz4", info
    img.extract_raw(tmp_path / "extracted.bin")
    assert compare_with_dump(info, ram, tmp_path / "extracted.bin") >= 0.95 * 256 * MiB
    assert "every checksum matches" in img.verify()

    # Two damaged chunks a few apart, most likely in one batch on different CPUs: the
    # loader names the first, and refuses before writing RAM or disk.
    chunks = [(i, pos, c) for i, pos, c in _chunks(img) if c.stored_size]
    (first, pos1, c1), (_, pos2, c2) = chunks[len(chunks) // 2], chunks[len(chunks) // 2 + 3]
    flips = [pos1 + c1.header_size + c1.stored_size // 2, pos2 + c2.header_size]
    for offset in flips:
        _flip(disk, offset)
    before = _digest(disk)
    deaf = ["--inject", "ap-deaf:2"] if cpus == 3 else []   # and one AP that never answers
    p = cli("qemu", "resume", "--memory", "256M", "--disk", disk, "--cpus", cpus,
            "--key", key, "--json", "--quiet", *deaf, timeout=900)
    r = json.loads(p.stdout)
    assert_refused(p, r, "chunk-damaged", f"chunk {first} ", disk, before)
    if deaf:
        assert "@@CPU apic 2 did not answer in time (1000 ms): left out" in r["cpu_log"], r
        assert "@@CPUS used=2 missing=1 start_page=0x8000" in r["cpu_log"], r
    for offset in flips:
        _flip(disk, offset)
    if cpus == 2:
        # a fault on the loader's AP ends the run in order, before RAM is written: the boot
        # CPU names the AP, gives the disk back (unchanged) and stops
        whole = _digest(disk)
        p = cli("qemu", "resume", "--memory", "256M", "--disk", disk, "--cpus", cpus,
                "--key", key, "--json", "--quiet", "--inject", "ap-fault:1", timeout=900)
        r = json.loads(p.stdout)
        assert p.returncode == 1 and r["status"] == "loader-fault", r
        assert "vector=13" in r["message"] and "cpu=apic1" in r["message"], r
        assert r["ram"] == "untouched", r
        assert _digest(disk) == whole, "the disk changed"

    p = cli("qemu", "resume", "--memory", "256M", "--disk", disk, "--cpus", cpus,
            "--key", key, "--json", "--quiet", timeout=900)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["status"] == "resumed" and r["host_exit"] == "ok", r
    assert r["host_memory_check"] == r["host_cpu_check"] == r["host_ap_check"] == "passed"
    assert r["pages_restored"] == s["pages_saved"]
    # every CPU in the loader: found in the ACPI MADT, started, sent INIT before the return
    # (the host's own INIT-SIPI-SIPI then parks them: host_ap_check)
    assert r["cpus_used"] == cpus and r["cpus_missing"] == 0, r
    assert f"@@CPUS found={cpus} source=madt" in r["cpu_log"], r["cpu_log"]


def test_an_ap_that_never_answers_is_left_out(cli, disk):
    p, s = suspend(cli, disk, "--cpus", "3", "--ap-deaf", "2", "--compress", "lz4")
    assert p.returncode == 0, p.stderr
    assert s["status"] == "written" and s["host_ap_check"] == "passed", s
    assert s["cpus_used"] == 2 and s["cpus_missing"] == 1, s
    assert "@@CPU apic 2 did not answer within 1000 ms: left out" in s["cpu_log"]
    assert "@@AP apic=2 slot=1 calls=0 state=1 cpu=ok" in s["cpu_log"]   # never called
    assert open_image(disk).info()["state"] == "valid"


def test_a_fault_on_an_ap_ends_the_run_in_order(cli, disk):
    before = open(disk, "rb").read()
    p, s = suspend(cli, disk, "--cpus", "2", "--selftest", "ap-write-saved-ram")
    assert_orderly_failure(p, s, "cpu_fault")
    assert s["fault_cpu"] == 1 and s["fault_vector"] == 14, s
    assert s["message"].startswith("cpu apic 1: #PF at"), s
    assert any(a <= s["fault_address"] < b for a, b in disk.target.saved_ranges())
    assert s["host_ap_check"] == "passed", s            # the faulting AP went home
    assert open(disk, "rb").read() == before, "the disk changed"
    assert_no_image(cli, disk)


def test_cpus_handed_in_offline_are_woken_and_sent_init(tmp_path, cli):
    """As the Linux module hands them in (state OFFLINE, not started): the payload wakes APs
    1 and 2 from the AP start page, leaves APIC id 7 (no such CPU) out after the deadline,
    and sends every one INIT at the end; the host finds each STOPPED and starts them again
    itself, as add_cpu does. RAM is QEMU's own dump; the start page is not saved RAM."""
    from suspendos.sources import source_dir
    from suspendos.target.qemu import TEST_HOST_AP_START_PAGE
    assert f"#define AP_START_PAGE {TEST_HOST_AP_START_PAGE:#x}" in \
        (source_dir("qemu-boot") / "smp.h").read_text()
    disk, ram = tmp_path / "disk.img", tmp_path / "ram.bin"
    p = cli("qemu", "suspend", "--memory", "64M", "--disk", disk, "--cpus", "3", "--ap-offline",
            "--ap-deaf", "7", "--compress", "lz4", "--ram-dump", ram, "--json", "--quiet",
            timeout=600)
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["status"] == "written" and s["host_exit"] == "ok", s
    assert s["host_memory_check"] == s["host_cpu_check"] == s["host_ap_check"] == "passed"
    assert s["cpus_used"] == 3 and s["cpus_missing"] == 1, s
    assert "@@CPU apic 7 woken, did not start within 1000 ms: left out" in s["cpu_log"]
    for apic, slot in ((1, 0), (2, 1), (7, 2)):     # INIT'd: waiting for a STARTUP IPI
        assert f"@@AP apic={apic} slot={slot} offline state=5 cpu=ok" in s["cpu_log"]
    img = open_image(disk)
    info = img.info()
    assert all(not (a <= TEST_HOST_AP_START_PAGE < b) for a, b in info["ranges"])
    img.extract_raw(tmp_path / "extracted.bin")
    assert compare_with_dump(info, ram, tmp_path / "extracted.bin") >= 0.9 * 64 * MiB

    # a fault on a woken CPU ends the run in order, like one on a parked AP
    p, s = suspend(cli, tmp_path / "disk2.img", "--cpus", "2", "--ap-offline",
                   "--selftest", "ap-write-saved-ram")
    assert_orderly_failure(p, s, "cpu_fault")
    assert s["fault_cpu"] == 1 and s["fault_vector"] == 14, s
    assert s["host_ap_check"] == "passed", s            # STOPPED, then started by the host
    assert_no_image(cli, tmp_path / "disk2.img")


@pytest.mark.parametrize("command", ["suspend", "resume"])
def test_a_bad_cpu_count_is_refused_before_anything_is_written(tmp_path, cli, command):
    disk = tmp_path / "disk.img"
    if command == "resume":
        disk.write_bytes(bytes(4096))
    p = cli("qemu", command, "--memory", "64M", "--disk", disk, "--cpus", "0")
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0, p.stderr
    assert "--cpus: '0' is out of range (from 1 to" in p.stderr, p.stderr   # the parser's bound
    assert (disk.read_bytes() == bytes(4096)) if command == "resume" else not disk.exists()
