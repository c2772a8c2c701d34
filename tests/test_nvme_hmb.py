"""The NVMe driver's Host Memory Buffer check (drivers/nvme.c hmb_off) on the paths QEMU
cannot show: its controller asks for no HMB (HMPRE 0, tests/test_disk_buses_qemu.py shows
that path), so here a fake controller does (tests/c/nvme_hmb_harness.c).

The whole disk_open runs, not a piece of it: nvme.c, disk_queue.c and printf.c are compiled
exactly as the payload build compiles them (toolchain.compile_all: the freestanding flags,
-Os) and linked with the harness, which stands in for PCI configuration space, the timer
and the serial port, and runs the controller in a second thread over a register page and
queues in ordinary memory. Each scenario is one run of the harness; its output is the
driver's serial line(s), disk_open's status and message, what the fake controller saw, and
the registers after the give-back."""
import re
import subprocess
from pathlib import Path

import pytest

from suspendos.build import toolchain
from suspendos.formats.status import STATUS

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "tests/c/nvme_hmb_harness.c"
DRIVER = [ROOT / "drivers/nvme.c", ROOT / "drivers/disk_queue.c", ROOT / "drivers/printf.c"]

# What the harness's fake host left in the controller (its HOST_* values): give_back puts
# the admin queue registers and the PCI command register back, CC with EN clear.
HOST_REGS = {"aqa": 0x001F001F, "asq": 0x12340000, "acq": 0x12350000, "pci_command": 0x2}


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    out = tmp_path_factory.mktemp("nvme_hmb")
    objects = toolchain.compile_all(DRIVER, out)
    exe = out / "nvme_hmb_harness"
    p = subprocess.run(["gcc", "-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-no-pie",
                        "-pthread", f"-I{ROOT / 'drivers'}", f"-I{out / 'include'}",
                        str(HARNESS), *map(str, objects), "-o", str(exe)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return exe


def run(exe, scenario):
    p = subprocess.run([str(exe), scenario], capture_output=True, text=True, timeout=90)
    assert p.returncode == 0, (scenario, p.returncode, p.stdout, p.stderr)
    lines = p.stdout.splitlines()
    fields = {}
    for key in ("OPEN", "FAKE", "CLOSE"):
        line = next(l for l in lines if l.startswith(key + " "))
        fields[key] = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
    return [l for l in lines if l.startswith("@@")], fields


# scenario: (the driver's @@ line or None, disk_open's status, words of its message,
#            the fake's counters: Get Features, Set Features, I/O CQs created)
SCENARIOS = {
    # HMPRE 0: nothing to ask (QEMU's case).
    "not-requested": ("@@NVME hmb not-requested", 0, None, (0, 0, 1)),
    # HMPRE set, the Controller Level Reset cleared EHM as the spec says: one Get Features.
    "off": ("@@NVME hmb off", 0, None, (1, 0, 1)),
    # EHM kept across the reset: Set Features EHM=0, MR=0, and a second Get Features.
    "turned-off": ("@@NVME hmb turned-off", 0, None, (2, 1, 1)),
    # Set Features completes but EHM stays 1: the open ends, no I/O queue is made.
    "stays-on": (None, STATUS.DISK_UNSUPPORTED,
                 "Host Memory Buffer still on (EHM 1) after Set Features EHM=0", (2, 1, 0)),
    # Invalid Field in Command (SCT 0, SC 02h) while HMPRE is non-zero.
    "get-rejected": (None, STATUS.DISK_UNSUPPORTED,
                     "GET FEATURES HMB failed: status 0x4002 (SCT 0 SC 0x2)", (1, 0, 0)),
    "set-rejected": (None, STATUS.DISK_UNSUPPORTED,
                     "SET FEATURES HMB failed: status 0x4002 (SCT 0 SC 0x2)", (1, 1, 0)),
    # No completion: the admin command deadline (the harness runs time 20x faster).
    "get-silent": (None, STATUS.DISK_TIMEOUT,
                   "GET FEATURES HMB: no completion within 5000 ms", (1, 0, 0)),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_hmb_scenario(harness, scenario):
    line, status, words, (getf, setf, iocq) = SCENARIOS[scenario]
    serial, f = run(harness, scenario)
    assert serial == ([line] if line else []), serial
    assert int(f["OPEN"]["status"], 16) == status, f["OPEN"]
    if words:
        assert words in f["OPEN"]["what"], f["OPEN"]
    fake = f["FAKE"]
    assert (int(fake["getf"]), int(fake["setf"]), int(fake["iocq"])) == (getf, setf, iocq), fake
    assert fake["getf_prp"] == "ok", "Get Features 0Dh needs a data buffer (a page)"
    assert fake["unexpected"] == "0", fake
    if setf:
        assert fake["setf_cdw11"] == "0x0", "Set Features must send EHM=0, MR=0"
    close = {k: int(v, 16) for k, v in f["CLOSE"].items()}
    assert close["cc"] & 1 == 0 and close["csts"] & 1 == 0, close   # CC.EN, CSTS.RDY
    assert {k: close[k] for k in HOST_REGS} == HOST_REGS, close
