"""The serial line protocol between the guest (test host, payload) and the tool.

Lines that start with "@@" are for the tool; everything else is a log line. The handoff
block travels as hex and is decoded with its construct declaration.
"""
from ..formats.common import parse
from ..errors import RunError
from ..formats.handoff import Handoff

# isa-debug-exit values of the test host (qemu-boot/exit_codes.h).
HOST_EXIT = {
    0x10: "ok",
    0x11: "payload-failed",
    0x12: "host-memory-changed",
    0x13: "cpu-state-changed",
    0x14: "bad-blob",
    0x15: "no-module",
    0x16: "bad-command-line",
    0x17: "host-exception",
    0x18: "reserved-region-not-ram",
    0x19: "ap-not-parked",
}


def split(line):
    """('KEYWORD', [args]) for a protocol line, or None for a log line."""
    if not line.startswith("@@"):
        return None
    head, _, rest = line[2:].partition(" ")
    return head, rest.split()


def parse_handoff(hex_text):
    """The @@HANDOFF line's block. A line that is not whole hex of the block's size means
    characters were lost on the serial line (QEMU's 16550 drops a byte it cannot hand to
    the chardev after its retries): a run error naming that, not a crash."""
    want = 2 * Handoff.sizeof()
    try:
        raw = bytes.fromhex(hex_text)
    except ValueError:
        raw = None
    if raw is None or len(hex_text) != want:
        raise RunError(f"the guest's @@HANDOFF line is damaged ({len(hex_text)} characters, "
                       f"{want} expected): serial output was lost")
    return parse(Handoff, raw, "handoff block from the guest")


def parse_fields(args):
    out = {}
    for a in args:
        k, _, v = a.partition("=")
        out[k] = v
    return out
