"""Build the libFuzzer harnesses of tests/fuzz/ for the host with clang.

    python tests/fuzz/build.py OUTDIR [NAME...]     # prints one built path per line

Used by tests/test_fuzz_c.py (bounded runs in CI) and bench/fuzz_long.sh (long runs).
Each harness is tests/fuzz/<name>.c linked with the project C it exercises; its seed
corpus is tests/fuzz/corpus/<name>/.
"""
import shutil
import subprocess
import sys
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent.parent
CORPUS = FUZZ / "corpus"

# name -> (project sources, extra link flags)
HARNESSES = {
    "lz4_decompress": (["builder/core/lz4.c"], ["-llz4"]),
    "aead_open": (["builder/core/chacha20poly1305.c"], []),
    "resume_parse": (["builder/resume/parse.c", "builder/core/xxh64.c", "drivers/printf.c"], []),
}

# Harnesses that include project headers: "" includes only (-iquote, so <string.h> stays
# libc's), and the generated ABI header in OUTDIR/include.
QUOTE_DIRS = {
    "resume_parse": ["builder/resume", "builder/core", "builder/lib", "drivers"],
}

CFLAGS = ["-g", "-O1", "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all",
          "-fno-omit-frame-pointer", "-Wall", "-Wextra"]


def clang():
    return shutil.which("clang")


def build(name, outdir):
    """Compile harness `name` into outdir; returns the executable's path."""
    sources, libs = HARNESSES[name]
    exe = Path(outdir) / name
    quote = []
    if name in QUOTE_DIRS:
        include = Path(outdir) / "include"
        include.mkdir(parents=True, exist_ok=True)
        abi = subprocess.run([sys.executable, "-m", "suspendos.formats.cheader"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
        (include / "suspendos_abi.h").write_text(abi)
        for d in [*(ROOT / q for q in QUOTE_DIRS[name]), include]:
            quote += ["-iquote", str(d)]
    cmd = [clang(), *CFLAGS, *quote, str(FUZZ / f"{name}.c"), *(str(ROOT / s) for s in sources),
           *libs, "-o", str(exe)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"building fuzz harness {name} failed:\n{' '.join(cmd)}\n"
                           f"{p.stdout}{p.stderr}")
    return exe


def main(argv):
    if not argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    if not clang():
        print("clang not found (apt-get install clang)", file=sys.stderr)
        return 1
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for name in argv[1:] or HARNESSES:
        print(build(name, out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
