"""Building a payload blob: the issue's done-when flow in an empty folder, the size budget,
the page-table rules as read back from the blob, and refusal of a damaged blob."""
import json

from suspendos.formats import blob as blobfmt


def _build(tmp_path, cli, memory="256M"):
    cli("target", "qemu", "--memory", memory, "-o", tmp_path / "t.toml", cwd=tmp_path, check=True)
    cli("build", "--target", "t.toml", "-o", "p.blob", cwd=tmp_path, check=True)
    p = cli("inspect", "p.blob", "--json", cwd=tmp_path, check=True)
    return json.loads(p.stdout), (tmp_path / "p.blob").read_bytes()


def test_target_build_inspect_in_an_empty_folder(tmp_path, cli):
    info, blob = _build(tmp_path, cli)
    assert len(blob) <= 64 * 1024
    kinds = {s["kind"] for s in info["segments"]}
    assert {"trampoline", "handoff", "text", "rodata", "data", "bss", "tables"} <= kinds
    assert info["entry"] == info["load_base"]
    assert info["extents"] and info["memory_ranges"]


def _perm_at(ranges, addr):
    for r in ranges:
        if r["start"] <= addr < r["end"]:
            return r["perm"] + (" uc" if r["uncached"] else "")
    return None


def test_page_tables_in_the_blob_follow_the_rules(tmp_path, cli):
    info, _ = _build(tmp_path, cli)
    pt = info["page_tables"]["ranges"]
    segs = {s["kind"]: s for s in info["segments"]}
    for start, end in info["memory_ranges"]:          # saved RAM: read-only, never executable
        for a in (start, end - 4096, (start + end) // 2 & ~4095):
            assert _perm_at(pt, a) == "r--"
    assert _perm_at(pt, segs["text"]["addr"]) == "r-x"
    assert _perm_at(pt, segs["trampoline"]["addr"]) == "r-x"
    assert _perm_at(pt, segs["rodata"]["addr"]) == "r--"
    assert _perm_at(pt, segs["data"]["addr"]) == "rw-"
    assert _perm_at(pt, info["scratch"][0]) == "rw-"
    assert _perm_at(pt, info["stack_top"] - 8) == "rw-"
    assert _perm_at(pt, info["disk"]["ahci_abar"]) == "rw- uc"
    # Nothing writable is executable, and nothing writable overlaps saved RAM.
    for r in pt:
        assert not ("w" in r["perm"] and "x" in r["perm"])
        if "w" in r["perm"]:
            for s, e in info["memory_ranges"]:
                assert r["end"] <= s or r["start"] >= e
    # Outside RAM, the reserved region and the MMIO window nothing is present.
    assert _perm_at(pt, 0xA0000) is None
    assert _perm_at(pt, 0xC0000000) is None


def test_a_damaged_blob_is_refused(tmp_path, cli):
    _, blob = _build(tmp_path, cli)
    for offset in (0, 40, len(blob) // 2, len(blob) - 1):
        bad = bytearray(blob)
        bad[offset] ^= 0x20
        (tmp_path / "bad.blob").write_bytes(bad)
        p = cli("inspect", "bad.blob", cwd=tmp_path)
        assert p.returncode == 2 and len(p.stderr.splitlines()) == 1, (offset, p.stderr)
    (tmp_path / "short.blob").write_bytes(blob[:100])
    assert cli("inspect", "short.blob", cwd=tmp_path).returncode == 2


def test_blob_roundtrip_parses():
    segs = [dict(addr=0x1000000, kind=1, perm=5, mem_size=4096)]
    out = blobfmt.pack(dict(magic=blobfmt.BLOB_MAGIC, flags=0, load_base=0x1000000,
                            reserved_size=0x200000, entry=0x1000000, handoff=0x1001000,
                            payload_info=0x1002000), segs, [b"\x90\xc3"])
    head, parsed = blobfmt.unpack(out)
    assert head.entry == 0x1000000 and parsed[0].file_size == 2
