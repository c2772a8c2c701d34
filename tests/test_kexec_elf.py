"""`build --format kexec-elf`: the blob as an ELF for `kexec --load-preserve-context`,
read back independently with lief and pyelftools. (No kernel with CONFIG_KEXEC_JUMP is
available to load it for real: Debian's is built without it, docs/LINUX.md.)"""
import io

import lief
from elftools.elf.elffile import ELFFile

from suspendos.build.kexec import STUB_OFFSET, stub
from suspendos.formats import blob as blobfmt


def test_kexec_elf_holds_the_blob_and_enters_through_the_stub(tmp_path, cli):
    cli("target", "qemu", "--memory", "256M", "-o", tmp_path / "t.toml", check=True)
    cli("build", "--target", tmp_path / "t.toml", "-o", tmp_path / "p.blob", check=True)
    cli("build", "--target", tmp_path / "t.toml", "-o", tmp_path / "p.elf", "--format",
        "kexec-elf", check=True)
    blob = (tmp_path / "p.blob").read_bytes()
    elf = (tmp_path / "p.elf").read_bytes()
    head, segs = blobfmt.unpack(blob)

    binary = lief.parse(str(tmp_path / "p.elf"))
    assert binary.header.file_type == lief.ELF.Header.FILE_TYPE.EXEC
    assert binary.entrypoint == head.entry + STUB_OFFSET
    loads = [s for s in binary.segments if s.type == lief.ELF.Segment.TYPE.LOAD]
    assert [(s.physical_address, s.virtual_size) for s in loads] == \
        [(s.addr, s.mem_size) for s in segs]

    e = ELFFile(io.BytesIO(elf))
    for seg, ph in zip(segs, e.iter_segments()):
        data = ph.data()
        want = blob[seg.file_offset:seg.file_offset + seg.file_size]
        assert data[:len(want)] == want
        if seg.kind == blobfmt.SEGMENT_KIND.TRAMPOLINE:
            code = stub(head.entry + STUB_OFFSET, head.handoff, head.entry)
            assert data[STUB_OFFSET:STUB_OFFSET + len(code)] == code
        w = bool(ph["p_flags"] & 2)
        assert w == bool(seg.perm & blobfmt.SEGMENT_PERM.W)
