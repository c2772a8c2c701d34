"""`build --format kexec-elf`: the blob as an ELF for `kexec --load-preserve-context`, read
back independently with lief and pyelftools. A real kernel loads and runs it in
tests/test_kexec_jump_qemu.py; this checks the file's layout against the blob."""
import io

import lief
from elftools.elf.elffile import ELFFile

from suspendos.build.kexec import handoff_page, kexec_mem_range
from suspendos.formats import blob as blobfmt
from suspendos.formats.common import PAGE_SIZE


def test_kexec_elf_holds_the_blob_and_enters_through_the_stub(tmp_path, cli):
    cli("target", "qemu", "--memory", "256M", "-o", tmp_path / "t.toml", check=True)
    cli("build", "--target", tmp_path / "t.toml", "-o", tmp_path / "p.blob", check=True)
    cli("build", "--target", tmp_path / "t.toml", "-o", tmp_path / "p.elf", "--format",
        "kexec-elf", check=True)
    blob = (tmp_path / "p.blob").read_bytes()
    head, segs = blobfmt.unpack(blob)

    binary = lief.parse(str(tmp_path / "p.elf"))
    assert binary.header.file_type == lief.ELF.Header.FILE_TYPE.EXEC
    loads = [s for s in binary.segments if s.type == lief.ELF.Segment.TYPE.LOAD]
    assert len(loads) == 1
    # the trampoline and handoff pages are outside kexec's range (kexec swaps every segment,
    # and the holes kexec-tools fills between --mem-min and --mem-max, back on the return)
    lo, hi = kexec_mem_range(blob)
    assert (loads[0].physical_address, head.handoff + PAGE_SIZE) == (lo, lo)
    assert lo + loads[0].virtual_size - 1 <= hi == head.load_base + head.reserved_size - 1
    assert loads[0].virtual_size % PAGE_SIZE == 0
    stub_page = lo + loads[0].virtual_size - PAGE_SIZE
    assert binary.entrypoint == stub_page

    ph = next(ELFFile(io.BytesIO((tmp_path / "p.elf").read_bytes())).iter_segments())
    image = ph.data()
    for seg in segs:
        want = blob[seg.file_offset:seg.file_offset + seg.file_size]
        if seg.addr >= lo:
            assert image[seg.addr - lo:seg.addr - lo + len(want)] == want
        elif seg.kind == blobfmt.SEGMENT_KIND.TRAMPOLINE:     # copied in by the stub
            assert want in image[stub_page - lo:]
    # the stub page also carries every non-zero byte of the handoff page, in order
    page = image[stub_page - lo:]
    for run in [r for r in handoff_page(blob).split(bytes(16)) if r.strip(b"\0")]:
        assert run.strip(b"\0") in page
