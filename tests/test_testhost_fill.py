"""The test host's RAM content, checked byte for byte against an independent model.

The host is booted with a blob that never returns; once it prints "@@HOST ready" QEMU is
stopped over QMP and guest RAM saved with pmemsave (the project's ground truth). Every
filled page must equal what a Python model of qemu-boot/fill.c's algorithm (documented in
qemu-boot/fill.h) produces for that seed and page frame number, and the blob must sit where
the host says it loaded it.
"""
import os
import queue
import re
import subprocess
import threading

import pytest
from qemu.qmp.legacy import QEMUMonitorProtocol

import testhost_fake_blob as fake
from test_testhost import ROOT, host_elf, qemu_command  # noqa: F401 (host_elf: fixture)

M64 = (1 << 64) - 1
PAGE = 4096
FILL_C = os.path.join(ROOT, "qemu-boot", "fill.c")


# --- a model of fill.c -------------------------------------------------------------------

def mix64(x):
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def xorshift64s(state):
    """Yields xorshift64* outputs from a non-zero state."""
    x = state
    while True:
        x ^= x >> 12
        x ^= (x << 25) & M64
        x ^= x >> 27
        yield (x * 0x2545F4914F6CDD1D) & M64


class FillModel:
    def __init__(self, seed, mix):
        src = open(FILL_C).read()
        self.salt = {k: int(v, 16) for k, v in re.findall(r"#define (SALT_\w+)\s+(0x\w+)ull", src)}
        self.golden = int(re.search(r"#define GOLDEN\s+(0x\w+)ull", src).group(1), 16)
        self.corpus_size = int(re.search(r"#define CORPUS_SIZE \((\d+)u \* 1024\)", src).group(1)) * 1024
        self.line_width = int(re.search(r"#define LINE_WIDTH\s+(\d+)", src).group(1))
        table = re.search(r"words\[\] = \{(.*?)\};", src, re.S).group(1)
        self.words = re.findall(r'"(\w+)"', table)
        self.seed_key = mix64(seed)
        self.cumulative = [sum(mix[:k + 1]) for k in range(4)]
        self.corpus = self._corpus(seed)

    def _corpus(self, seed):
        gen = xorshift64s(mix64(seed ^ self.salt["SALT_CORPUS"]) | 1)
        out, col, capital = bytearray(), 0, True
        while len(out) < self.corpus_size:
            r = next(gen)
            w = self.words[(r >> 8) % len(self.words)]
            out += (w[0].upper() + w[1:] if capital else w).encode()
            col += len(w) + 1
            capital = False
            p = (r >> 40) % 32
            if p == 0:
                out += b"."
                capital = True
            elif p < 3:
                out += b","
            elif p == 3 and col > 20:
                out += b":"
            if col >= self.line_width:
                out += b"\n"
                if capital and (r >> 48) % 4 == 0:
                    out += b"\n"
                col = 0
            else:
                out += b" "
        return bytes(out[:self.corpus_size])

    def page(self, pfn):
        """(kind, bytes) of the page with this frame number."""
        key = mix64((self.seed_key + pfn * self.golden) & M64)
        pick = ((key >> 32) * 100) >> 32
        kind = 0
        while kind < 3 and pick >= self.cumulative[kind]:
            kind += 1
        if kind == 0:
            return "zero", bytes(PAGE)
        if kind == 1:
            gen = xorshift64s(mix64(key ^ self.salt["SALT_RANDOM"]) | 1)
            return "random", b"".join(next(gen).to_bytes(8, "little") for _ in range(512))
        if kind == 2:
            off = mix64(key ^ self.salt["SALT_TEXT"]) % (self.corpus_size - PAGE + 1)
            return "text", self.corpus[off:off + PAGE]
        k = mix64(key ^ self.salt["SALT_PATTERN"])
        gen = xorshift64s(k | 1)
        n = 8 + k % 249
        pattern = b"".join(next(gen).to_bytes(8, "little") for _ in range((n + 7) // 8))[:n]
        return "pattern", (pattern * (PAGE // n + 1))[:PAGE]


# --- booting and saving RAM --------------------------------------------------------------

def boot_and_save(kernel, tmp_path, blob, memory_mb, append):
    module = tmp_path / "spin.bin"
    module.write_bytes(blob)
    sock, dump = str(tmp_path / "qmp.sock"), str(tmp_path / "ram.bin")
    cmd = qemu_command(kernel, str(module), f"{memory_mb}M", append,
                       extra=["-qmp", f"unix:{sock},server=on,wait=off"])
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout] + [lines.put(None)],
                     daemon=True).start()
    output = []
    try:
        while True:
            line = lines.get(timeout=60)
            if line is None:
                raise AssertionError(f"QEMU ended before @@HOST ready: {' '.join(cmd)}\n"
                                     + "".join(output))
            output.append(line.decode(errors="replace").replace("\r", ""))
            if output[-1].startswith("@@HOST ready"):
                break
        qmp = QEMUMonitorProtocol(sock)
        qmp.connect()
        qmp.cmd("stop")
        qmp.cmd("pmemsave", val=0, size=memory_mb << 20, filename=dump)
        for step in (lambda: qmp.cmd("quit"), qmp.close):
            try:
                step()
            except EOFError:    # QEMU closes the socket as it quits: expected
                pass
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    return "".join(output), open(dump, "rb").read()


@pytest.mark.parametrize("seed, mix", [(1, (25, 25, 25, 25)), (0xDEADBEEF, (10, 20, 30, 40))])
def test_ram_matches_the_fill_model(host_elf, tmp_path, seed, mix):  # noqa: F811
    blob = fake.make("spin")
    out, ram = boot_and_save(host_elf, tmp_path, blob, 32,
                             f"seed={seed:#x} mix={','.join(map(str, mix))}")
    model = FillModel(seed, mix)
    regions = [(int(s, 16), int(e, 16), c) for s, e, c in
               re.findall(r"@@REGION (\w+) (\w+) (\w+)", out)]
    counts, wrong = {}, []
    for start, end, cls in regions:
        if cls != "fill":
            continue
        for addr in range(start, end, PAGE):
            kind, expected = model.page(addr // PAGE)
            counts[kind] = counts.get(kind, 0) + 1
            if ram[addr:addr + PAGE] != expected:
                wrong.append(f"{addr:#x} ({kind})")
    assert not wrong, f"{len(wrong)} pages differ from the model: {wrong[:10]}"
    stats = dict(kv.split("=") for kv in re.search(r"@@FILLSTATS (.*)", out).group(1).split())
    assert {k: int(v) for k, v in stats.items() if int(v)} == counts

    # The text really is text, and patterns really repeat.
    text = model.corpus[:4096].decode("ascii")
    assert re.fullmatch(r"[A-Za-z .,:\n]+", text) and text.count("\n") > 20

    # The blob lies where the module was, and its segments where the host loaded them.
    mod_start, mod_end = (int(x, 16) for x in re.search(r"@@MODULE (\w+) (\w+)", out).groups())
    assert ram[mod_start:mod_end] == blob
    tramp = fake.assemble(fake.VARIANTS["spin"])
    assert ram[fake.LOAD_BASE:fake.LOAD_BASE + len(tramp)] == tramp
    assert ram[fake.LOAD_BASE + len(tramp):fake.HANDOFF_ADDR] == bytes(fake.HANDOFF_ADDR - fake.LOAD_BASE - len(tramp))
