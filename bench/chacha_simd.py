#!/usr/bin/env python3
"""ChaCha20 on the host: the payload's scalar, SSE2 and AVX2 keystream paths side by side.

    python bench/chacha_simd.py [--bytes 65536] [--reps 5] [--json FILE]

Builds builder/bench/chacha_bench.c with builder/core/chacha20poly1305.c compiled with the
payload's own flags (suspendos.build.toolchain.FREESTANDING: -mgeneral-regs-only, the
vector code only in the functions with their own target attributes) and runs it: median
MB/s of ChaCha20 alone and of the AEAD seal per path, and each path's median per-repetition
ratio to scalar. AVX2 only where this CPU has it. Results: bench/results/chacha_simd.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _runner import loadavg, results_path, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bytes", type=int, default=65536)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    from suspendos.build.toolchain import FREESTANDING
    with tempfile.TemporaryDirectory(prefix="sos-chacha-") as td:
        obj, exe = Path(td) / "aead.o", Path(td) / "chacha_bench"
        subprocess.run(["gcc", *FREESTANDING, "-c", str(ROOT / "builder/core/chacha20poly1305.c"),
                        "-o", str(obj)], check=True)
        subprocess.run(["gcc", "-O2", "-no-pie", "-Wall", str(ROOT / "builder/bench/chacha_bench.c"),
                        str(obj), "-o", str(exe)], check=True)
        load_before = loadavg()
        out = subprocess.run([str(exe), str(a.bytes), str(a.reps)], check=True,
                             capture_output=True, text=True).stdout
    r = json.loads(out)
    r.update(cpu=cpu_model(), load_before=load_before, load_after=loadavg())
    write_results(results_path(__file__, a.json), r)
    print(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
