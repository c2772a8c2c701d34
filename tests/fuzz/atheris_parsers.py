"""Coverage-guided fuzzing of the Python parsers with atheris (libFuzzer for Python).

    .venv/bin/python tests/fuzz/atheris_parsers.py target|blob [libFuzzer options] [CORPUS...]

target: the bytes, decoded as UTF-8 (with replacement), go to
        suspendos.target.description.loads.
blob:   the bytes get their blob_size and crc32 rewritten (so the checks behind the CRC
        run), then go to suspendos.formats.blob.unpack and suspendos.inspect.inspect_blob.
        With no corpus given, a real blob (the QEMU target's) is the seed.

Any exception other than the project's own (SuspendosError) is a crash: atheris prints the
traceback and writes the input as crash-<sha1>. Needs `pip install atheris` (not a
dependency of the package: tests/test_fuzz_atheris.py skips without it). Seeds:
tests/fuzz/corpus/atheris_<name>/.
"""
import os
import struct
import sys
import tempfile

import atheris

with atheris.instrument_imports(include=["suspendos", "tomllib", "construct"]):
    from suspendos.errors import SuspendosError
    from suspendos.formats import blob as blobfmt
    from suspendos.formats.common import offset_of
    from suspendos.inspect import inspect_blob
    from suspendos.target import description

HSIZE = blobfmt.BlobHeader.sizeof()
CRC_OFF = offset_of(blobfmt.BlobHeader, "crc32")
SIZE_OFF = offset_of(blobfmt.BlobHeader, "blob_size")


def one_target(data):
    try:
        description.loads(data.decode("utf-8", errors="replace"))
    except SuspendosError:
        pass


def one_blob(data):
    b = bytearray(data)
    if len(b) >= HSIZE:
        b[SIZE_OFF:SIZE_OFF + 8] = struct.pack("<Q", len(b))
        b[CRC_OFF:CRC_OFF + 4] = struct.pack("<I", blobfmt.crc_of(b))
    try:
        blobfmt.unpack(bytes(b))
        inspect_blob(bytes(b))
    except SuspendosError:
        pass


def blob_seed_dir():
    from suspendos.build.payload import build_payload
    from suspendos.target.qemu import qemu_target
    t = qemu_target(256 << 20, pci={"ahci": ("00:1f.2", 0xfebf1000),
                                    "vga": ("00:01.0", 0xfd000000, 1 << 24)})
    d = tempfile.mkdtemp(prefix="atheris-blob-")
    with open(os.path.join(d, "qemu-256M.blob"), "wb") as f:
        f.write(build_payload(t).blob)
    return d


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("target", "blob"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    which = sys.argv.pop(1)
    args = sys.argv
    if which == "blob" and not any(not a.startswith("-") for a in args[1:]):
        args = args + [blob_seed_dir()]
    if which == "blob" and not any(a.startswith("-max_len") for a in args):
        args = args + ["-max_len=65536"]
    atheris.Setup(args, one_target if which == "target" else one_blob)
    atheris.Fuzz()


if __name__ == "__main__":
    sys.exit(main())
