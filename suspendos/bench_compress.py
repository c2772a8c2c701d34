"""`suspendos bench compress`: the payload's LZ4 compressor against liblz4's
LZ4_compress_default.

    suspendos bench compress [--corpus FILE] [--chunk 65536] [--reps 7] [--path auto] [--json]
    suspendos bench compress --make-corpus FILE [--size BYTES] [--seed N]

Builds builder/bench/compress_bench.c with builder/core/lz4.c — compiled with the
payload's own code-generation flags (no SSE, no red zone, freestanding) — and
links it against the system liblz4 (-llz4; Debian: liblz4-dev). Both compressors
run in one process on the same chunks, timed in the thread's CPU time; ours takes
the match-length path the payload takes on this CPU (--path auto: AVX2 where the CPU
has it) or the one --path names. The driver reports median MB/s over the
repetitions, total output bytes, and the ratios (ours / liblz4: speed_ratio > 1
means we are faster, size_ratio > 1 means our output is larger).

Without --corpus a default corpus is generated (see make_corpus): a
reproducible mix of the page kinds a RAM image holds.
"""
from __future__ import annotations

import glob
import json
import os
import random
import sys
import tempfile
from pathlib import Path

from .argparser import Parser, bounded_int
from .errors import UsageError
from .fileutil import check_distinct, open_input, write_atomic

PAGE = 4096

# Payload code-generation flags (the module is built with these plus
# -nostdlib -fno-pic; the driver is a normal executable so those two are left
# out, -no-pie keeps code generation equivalent to -fno-pic).
PAYLOAD_CFLAGS = ["-O2", "-ffreestanding", "-mno-red-zone", "-fno-stack-protector",
                  "-mgeneral-regs-only", "-fno-pic"]


def _text_source() -> bytes:
    """Real text: licenses and Python sources shipped with the system."""
    files = sorted(glob.glob("/usr/share/common-licenses/*")) + \
        sorted(glob.glob("/usr/lib/python3*/*.py"))[:200]
    out = bytearray()
    for f in files:
        try:
            out += Path(f).read_bytes()
        except OSError:
            continue
        if len(out) > 8 << 20:
            break
    if len(out) < 1 << 20:  # fallback: synthetic words
        rng = random.Random(1)
        words = [bytes(rng.choices(b"etaoinshrdlucmfwyp", k=rng.randint(2, 9)))
                 for _ in range(3000)]
        while len(out) < 2 << 20:
            out += b" ".join(rng.choices(words, k=12)) + b".\n"
    return bytes(out)


def _code_source() -> bytes:
    """Machine code and data: bytes of installed binaries and libraries."""
    files = sorted(glob.glob("/usr/bin/*"))
    out = bytearray()
    for f in files:
        if os.path.islink(f) or not os.path.isfile(f):
            continue
        try:
            b = Path(f).read_bytes()
        except OSError:
            continue
        if b[:4] == b"\x7fELF":
            out += b
        if len(out) > 32 << 20:
            break
    return bytes(out)


WEIGHTS = {"zero": 25, "random": 15, "text": 20, "code": 25, "pattern": 15}


def make_corpus(size: int = 32 << 20, seed: int = 1, only: str | None = None) -> bytes:
    """A reproducible RAM-like mix of 4 KiB pages.

    zero 25%, random 15%, text 20%, code/binary 25%, pattern 15% (short
    periods, arrays of ascending integers/pointers, sparse mostly-zero pages).
    """
    rng = random.Random(seed)
    text = _text_source()
    code = _code_source() or text
    kinds = [only] if only else [k for k, w in WEIGHTS.items() for _ in range(w)]
    out = bytearray()
    for _ in range(size // PAGE):
        kind = rng.choice(kinds)
        if kind == "zero":
            page = bytes(PAGE)
        elif kind == "random":
            page = rng.randbytes(PAGE)
        elif kind == "text":
            off = rng.randrange(0, len(text) - PAGE)
            page = text[off:off + PAGE]
        elif kind == "code":
            off = rng.randrange(0, (len(code) - PAGE) // PAGE) * PAGE
            page = code[off:off + PAGE]
        else:
            sub = rng.randrange(3)
            if sub == 0:  # a short repeating period
                period = rng.randbytes(rng.randint(1, 64))
                page = (period * (PAGE // len(period) + 1))[:PAGE]
            elif sub == 1:  # array of ascending 64-bit values (pointers, ids)
                start, step = rng.getrandbits(48), rng.choice([8, 16, 24, 64, 4096])
                page = b"".join(((start + i * step) & (2**64 - 1)).to_bytes(8, "little")
                                for i in range(PAGE // 8))
            else:  # mostly zero with a few scattered words
                b = bytearray(PAGE)
                for _ in range(rng.randint(1, 40)):
                    o = rng.randrange(0, PAGE // 8) * 8
                    b[o:o + 8] = rng.randbytes(8)
                page = bytes(b)
        out += page
    return bytes(out)


def build_driver(tmp: Path) -> Path:
    obj = tmp / "lz4_payload.o"
    exe = tmp / "compress_bench"
    from .build.toolchain import run        # here, not at the top: every command builds the
    from .sources import source_dir         # parser, which holds this module's options
    builder = source_dir("builder")
    run(["gcc", *PAYLOAD_CFLAGS, "-Wall", "-c", str(builder / "core" / "lz4.c"), "-o", str(obj)],
        "compiling the payload's lz4.c")
    run(["gcc", "-O2", "-Wall", "-no-pie", str(builder / "bench" / "compress_bench.c"), str(obj),
         "-o", str(exe), "-llz4"], "building the benchmark (needs liblz4-dev)")
    return exe


def cpu_has_avx2() -> bool:
    """The avx2 flag of /proc/cpuinfo (the driver's __builtin_cpu_supports would only refuse
    after the build)."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and "avx2" in line.split() for line in f)
    except OSError:
        return True             # cannot tell: let the driver decide


def add_arguments(ap):
    """The options, here and in `suspendos --help`, the man page and the completion."""
    ap.add_argument("--corpus", metavar="FILE",
                    help="input file (default: a generated RAM-like corpus)")
    ap.add_argument("--chunk", type=bounded_int(4096, 64 << 20, "a block size"), default=65536,
                    metavar="BYTES", help="bytes per block, 4096 to 67108864 (default 65536)")
    ap.add_argument("--reps", type=bounded_int(1, 1000, "a repetition count"), default=7,
                    metavar="N", help="repetitions, 1 to 1000; the median is reported "
                    "(default 7)")
    ap.add_argument("--path", choices=("auto", "scalar", "avx2"), default="auto",
                    help="our match-length path: auto, scalar or avx2 (default auto: the "
                         "payload's choice on this CPU)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--make-corpus", metavar="FILE", help="only write the default corpus to FILE")
    ap.add_argument("--size", type=bounded_int(PAGE, 4 << 30, "a corpus size"), default=32 << 20,
                    metavar="BYTES", help=f"generated corpus size in bytes, a multiple of {PAGE} "
                    "from 4096 to 4294967296 (default 33554432)")
    ap.add_argument("--seed", type=bounded_int(0, (1 << 64) - 1, "a seed"), default=1,
                    metavar="N", help="generated corpus seed, 0 to 2**64-1 (default 1)")
    ap.add_argument("--only", choices=sorted(WEIGHTS),
                    help="generate pages of one kind only: " + ", ".join(sorted(WEIGHTS))
                         + " (default: a mix)")


def main(argv=None) -> int:
    ap = Parser(prog="suspendos bench compress",
                                 description=__doc__.split("\n")[0])
    add_arguments(ap)
    args = ap.parse_args(argv)
    if args.size % PAGE:                # make_corpus writes whole pages: say so, not round
        raise UsageError(f"--size: {args.size} is not a whole number of {PAGE}-byte pages")
    if args.corpus is not None and args.make_corpus is not None:   # one would replace the other
        check_distinct([("--corpus", args.corpus)], [("--make-corpus", args.make_corpus)])
    if args.corpus is not None:         # refused before the driver is compiled
        with open_input(args.corpus, "--corpus") as f:
            if not os.fstat(f.fileno()).st_size:
                raise UsageError(f"--corpus: {args.corpus}: the file is empty")
    if args.path == "avx2" and not cpu_has_avx2():
        raise UsageError("--path avx2: this CPU has no AVX2 (/proc/cpuinfo); use --path "
                         "scalar or auto")

    if args.make_corpus is not None:    # "" is refused as a name, not taken as "no file"
        write_atomic(args.make_corpus, make_corpus(args.size, args.seed, args.only),
                     what="--make-corpus")
        return 0

    from .build.toolchain import run
    with tempfile.TemporaryDirectory(prefix="sos-bench-") as td:
        tmp = Path(td)
        corpus = args.corpus
        if corpus is None:
            corpus = str(tmp / "corpus.bin")
            Path(corpus).write_bytes(make_corpus(args.size, args.seed, args.only))
        exe = build_driver(tmp)
        res = run([str(exe), corpus, str(args.chunk), str(args.reps), args.path],
                  "the benchmark")
        result = json.loads(res.stdout)
    result["corpus"] = args.corpus or (
        f"generated(size={args.size}, seed={args.seed}, only={args.only})")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        r = result
        print(f"corpus {r['corpus']}: {r['corpus_bytes']} bytes, {r['chunks']} chunks of "
              f"{r['chunk']}, {r['reps']} reps, liblz4 {r['liblz4_version']}")
        print(f"  compress  ours   {r['ours_mb_s']:8.1f} MB/s  {r['ours_bytes']:>12} bytes"
              f"  ({r['ours_path']} match length)")
        print(f"  compress  liblz4 {r['liblz4_mb_s']:8.1f} MB/s  {r['liblz4_bytes']:>12} bytes")
        print(f"  speed ratio (ours/liblz4) {r['speed_ratio']:.3f}   "
              f"size ratio (ours/liblz4) {r['size_ratio']:.4f}   "
              f"identical output: {'yes' if r['identical_output'] else 'no'}")
        print(f"  decompress (liblz4 blocks) ours {r['ours_decomp_mb_s']:.1f} MB/s, "
              f"liblz4 {r['liblz4_decomp_mb_s']:.1f} MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
