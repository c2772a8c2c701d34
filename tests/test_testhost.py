"""The QEMU test host (qemu-boot/) booted for real under QEMU with fake blobs.

Each run is a 64 MiB machine unless the test is about memory size; one run takes well
under a second under TCG (3 GiB: a few seconds). Exit statuses are (V << 1) | 1 for the
values in qemu-boot/exit_codes.h.
"""
import os
import re
import subprocess
import time

import pytest

import testhost_fake_blob as fake
from suspendos.formats import cheader
from suspendos.formats.handoff import HANDOFF_FLAGS, HANDOFF_MAGIC, Handoff
from suspendos.formats.status import STATUS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EXIT_OK, EXIT_PAYLOAD_FAILED, EXIT_MEMORY_CHANGED, EXIT_CPU_STATE = 0x10, 0x11, 0x12, 0x13
EXIT_BAD_BLOB, EXIT_NO_MODULE, EXIT_BAD_BOOT_INFO, EXIT_HOST_EXCEPTION = 0x14, 0x15, 0x16, 0x17
EXIT_BAD_RESERVED = 0x18

CFLAGS = ["-ffreestanding", "-nostdlib", "-mno-red-zone", "-fno-stack-protector",
          "-mgeneral-regs-only", "-fno-pic", "-mcmodel=small", "-O2", "-Wall", "-Wextra"]
LIB_SOURCES = ["drivers/serial.c", "drivers/printf.c", "drivers/timer.c", "drivers/apic.c",
               "drivers/ap_start.S", "builder/lib/string.c"]


def build_host(outdir):
    """The lead's recipe: every qemu-boot/*.c and *.S plus the shared drivers, linked with
    qemu-boot/host.ld, converted to the elf32-i386 QEMU's multiboot loader takes."""
    inc = os.path.join(outdir, "include")
    os.makedirs(inc, exist_ok=True)
    cheader.write(os.path.join(inc, "suspendos_abi.h"))
    boot = os.path.join(ROOT, "qemu-boot")
    sources = sorted(os.path.join("qemu-boot", f) for f in os.listdir(boot)
                     if f.endswith((".c", ".S"))) + LIB_SOURCES
    flags = CFLAGS + ["-Idrivers", "-Ibuilder/lib", "-I" + inc, "-Iqemu-boot"]
    objects = []
    for src in sources:
        obj = os.path.join(outdir, src.replace("/", "_") + ".o")
        _run(["gcc", *flags, "-c", src, "-o", obj])
        objects.append(obj)
    elf64 = os.path.join(outdir, "host64.elf")
    elf = os.path.join(outdir, "host.elf")
    _run(["ld", "-T", "qemu-boot/host.ld", "-nostdlib", "-z", "max-page-size=4096",
          "-z", "noexecstack", *objects, "-o", elf64])
    _run(["objcopy", "-O", "elf32-i386", elf64, elf])
    return elf


def _run(cmd):
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    if p.returncode:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{p.stdout}{p.stderr}")


@pytest.fixture(scope="session")
def host_elf(tmp_path_factory):
    return build_host(str(tmp_path_factory.mktemp("testhost")))


def qemu_command(kernel, module=None, memory="64M", append="seed=1", extra=()):
    cmd = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-machine", "q35",
           "-m", memory, "-display", "none", "-serial", "stdio", "-no-reboot",
           "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", kernel,
           "-append", append, *extra]
    if module:
        cmd[cmd.index("-kernel"):cmd.index("-kernel")] = ["-initrd", module]
    return cmd


class Run:
    """One boot of the host: QEMU's exit status, the host's exit value and its @@ lines."""

    def __init__(self, cmd, status, output, seconds):
        self.cmd, self.status, self.output, self.seconds = cmd, status, output, seconds
        self.exit_value = status >> 1 if status & 1 else None
        self.lines = {}
        for line in output.splitlines():
            m = re.match(r"@@(\w+) ?(.*)", line.strip())
            if m:
                self.lines.setdefault(m.group(1), []).append(m.group(2))

    def one(self, tag):
        assert len(self.lines.get(tag, [])) == 1, f"expected one @@{tag} line\n{self}"
        return self.lines[tag][0]

    def fields(self, tag):
        return dict(kv.split("=", 1) for kv in self.one(tag).split() if "=" in kv)

    def handoff(self):
        return Handoff.parse(bytes.fromhex(self.one("HANDOFF")))

    def __str__(self):
        tail = "\n".join(l[:200] for l in self.output.splitlines()[-40:])
        return f"command: {' '.join(self.cmd)}\nstatus {self.status}\n{tail}"


def boot(kernel, tmp_path, blob=None, memory="64M", append="seed=1", timeout=120):
    module = None
    if blob is not None:
        module = str(tmp_path / f"blob{len(list(tmp_path.iterdir()))}.bin")
        with open(module, "wb") as f:
            f.write(blob)
    cmd = qemu_command(kernel, module, memory, append)
    start = time.monotonic()
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace")
        raise AssertionError(f"QEMU timed out after {timeout}s: {' '.join(cmd)}\n{out}")
    out = p.stdout.decode(errors="replace").replace("\r\n", "\n")
    return Run(cmd, p.returncode, out + p.stderr.decode(errors="replace"),
               time.monotonic() - start)


def expect(run, value):
    assert run.exit_value == value, f"expected exit 0x{value:x}\n{run}"
    assert run.status == (value << 1) | 1


# --- the good path -----------------------------------------------------------------------

@pytest.mark.parametrize("memory", ["64M", "256M", "3G"])
def test_written_blob_returns_ok(host_elf, tmp_path, memory):
    run = boot(host_elf, tmp_path, fake.make("written"), memory=memory)
    expect(run, EXIT_OK)
    h = run.handoff()
    assert h.magic == HANDOFF_MAGIC and h.size == Handoff.sizeof()
    assert h.status == STATUS.WRITTEN
    assert h.serial_port == 0x3F8 and h.flags == 0 and h.tsc_hz == 0
    assert run.fields("RESULT") == {"status": "0x1", "changed_pages": "0", "cpu": "ok",
                                    "aps": "ok"}
    assert run.lines["FILL"] == [str(p) for p in range(0, 101, 10)]
    assert any(l.startswith("ready pages=") for l in run.lines["HOST"])
    mmap = [tuple(int(x, 0) for x in l.split()) for l in run.lines["MMAP"]]
    usable = sum(e - s for s, e, t in mmap if t == 1)
    assert abs(usable - int(memory[:-1]) * (1 << 30 if memory[-1] == "G" else 1 << 20)) < 1 << 20
    if memory == "3G":     # q35 puts RAM above 2 GiB at 4 GiB
        assert any(s >= 1 << 32 and t == 1 for s, e, t in mmap)
        regions = [l.split() for l in run.lines["REGION"]]
        assert any(int(s, 16) >= 1 << 32 and c == "fill" for s, e, c in regions)


def test_resumed_status_is_success(host_elf, tmp_path):
    expect(boot(host_elf, tmp_path, fake.make("resumed")), EXIT_OK)


@pytest.mark.parametrize("variant", ["abort", "nothing"])
def test_failure_status_is_an_orderly_abort(host_elf, tmp_path, variant):
    run = boot(host_elf, tmp_path, fake.make(variant))
    expect(run, EXIT_PAYLOAD_FAILED)
    assert run.fields("RESULT")["cpu"] == "ok"


@pytest.mark.parametrize("append, flags", [
    ("seed=1 pause=before", HANDOFF_FLAGS.PAUSE_BEFORE_READ),
    ("pause=after", HANDOFF_FLAGS.PAUSE_BEFORE_RETURN),
    ("quiet pause=both", HANDOFF_FLAGS.PAUSE_BEFORE_READ | HANDOFF_FLAGS.PAUSE_BEFORE_RETURN
     | HANDOFF_FLAGS.QUIET),
])
def test_command_line_sets_handoff_flags(host_elf, tmp_path, append, flags):
    run = boot(host_elf, tmp_path, fake.make("written"), append=append)
    expect(run, EXIT_OK)
    assert run.handoff().flags == flags


# --- what the checks catch ---------------------------------------------------------------

@pytest.mark.parametrize("variant, what", [
    ("clobber-rbx", "rbx"), ("clobber-r15", "r15"), ("clobber-xmm6", "xmm6"),
    ("clobber-gsbase", "gs_base"), ("set-df", "rflags"), ("break-idt", "idt_base"),
    ("bad-rsp", "rsp"),
])
def test_cpu_state_not_restored(host_elf, tmp_path, variant, what):
    run = boot(host_elf, tmp_path, fake.make(variant))
    expect(run, EXIT_CPU_STATE)
    assert what in [l.split()[0] for l in run.lines["CPU"]]
    assert run.fields("RESULT")["cpu"] == "bad"


@pytest.mark.parametrize("variant, page", [
    ("write-host-page", fake.HOST_PAGE), ("write-host-code", 0x100000)])
def test_host_memory_changed(host_elf, tmp_path, variant, page):
    run = boot(host_elf, tmp_path, fake.make(variant))
    expect(run, EXIT_MEMORY_CHANGED)
    assert run.lines["CHANGED"] == [hex(page)]
    assert run.fields("RESULT")["changed_pages"] == "1"


def test_exception_in_payload_is_reported(host_elf, tmp_path):
    run = boot(host_elf, tmp_path, fake.make("ud2"))
    expect(run, EXIT_HOST_EXCEPTION)
    f = dict(kv.split("=", 1) for kv in run.lines["EXCEPTION"][0].split())
    assert f["vector"] == "6" and f["where"] == "payload"
    assert int(f["rip"], 16) == fake.LOAD_BASE


# --- refusals ----------------------------------------------------------------------------

def test_flipped_byte_is_a_bad_blob(host_elf, tmp_path):
    blob = bytearray(fake.make("written"))
    blob[len(blob) // 2] ^= 0x40
    run = boot(host_elf, tmp_path, bytes(blob))
    expect(run, EXIT_BAD_BLOB)
    assert "CRC32" in run.one("ERROR")


def test_bad_magic_is_a_bad_blob(host_elf, tmp_path):
    blob = bytearray(fake.make("written"))
    blob[0] = ord("X")
    expect(boot(host_elf, tmp_path, bytes(blob)), EXIT_BAD_BLOB)


def test_no_module(host_elf, tmp_path):
    expect(boot(host_elf, tmp_path, None), EXIT_NO_MODULE)


@pytest.mark.parametrize("append", ["bogus", "seed=", "seed=12x", "mix=1,2,3",
                                    "mix=50,50,0,1", "pause=sometimes"])
def test_bad_command_line(host_elf, tmp_path, append):
    run = boot(host_elf, tmp_path, fake.make("written"), append=append)
    expect(run, EXIT_BAD_BOOT_INFO)
    assert "command line" in run.one("ERROR")


@pytest.mark.parametrize("load_base", [
    0xB0000000,                     # a hole in the memory map
    0x4000000 - 0x100000,           # runs past the end of a 64 MiB machine
    0x100000,                       # on top of the host image
])
def test_reserved_region_must_be_free_usable_ram(host_elf, tmp_path, load_base):
    run = boot(host_elf, tmp_path, fake.make("written", load_base=load_base))
    expect(run, EXIT_BAD_RESERVED)


# --- reproducible content ----------------------------------------------------------------

def test_same_seed_same_ram_different_seed_different_ram(host_elf, tmp_path):
    blob = fake.make("written")
    hashes = [boot(host_elf, tmp_path, blob, append=a).one("RAMHASH")
              for a in ("seed=7", "seed=7", "seed=8", "seed=7 mix=10,20,30,40")]
    assert hashes[0] == hashes[1]
    assert len(set(hashes[1:])) == 3


def test_mix_selects_page_kinds(host_elf, tmp_path):
    run = boot(host_elf, tmp_path, fake.make("written"), append="mix=0,0,100,0")
    stats = run.fields("FILLSTATS")
    assert int(stats["text"]) > 0
    assert stats["zero"] == stats["random"] == stats["pattern"] == "0"
    stats = boot(host_elf, tmp_path, fake.make("written")).fields("FILLSTATS")
    total = sum(int(v) for v in stats.values())
    assert all(abs(int(v) - total / 4) < total / 20 for v in stats.values())
