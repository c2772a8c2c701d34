"""Page-table generator tests.

The generator's output is decoded here by an independent walker written from the Intel SDM
(vol. 3A, 4.5 four-level paging, 4.6 access rights), not from the generator's code: only the
public API (Mapping, build_page_tables, table_bytes_needed, PageTables) is imported.
"""
import random

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from suspendos.errors import UsageError
from suspendos.pagetables import Mapping, build_page_tables, table_bytes_needed

K4, M2, G1 = 1 << 12, 1 << 21, 1 << 30
MASK_ADDR = ((1 << 52) - 1) & ~0xFFF        # entry bits 51:12


# -- An independent walker ----------------------------------------------------------------

class Fault(AssertionError):
    """The CPU would take a reserved-bit page fault, or the tables point outside the blob."""


def _entry(data, base, table, index):
    off = table - base
    if table % 4096 or not 0 <= off <= len(data) - 4096:
        raise Fault(f"table {table:#x} outside the blob [{base:#x}, {base + len(data):#x})")
    return int.from_bytes(data[off + 8 * index: off + 8 * index + 8], "little")


def _bit(e, n):
    return (e >> n) & 1


def walk(data, base, root, vaddr):
    """Translate `vaddr` the way the CPU does with CR4.PAE=1, EFER.LME=1, EFER.NXE=1,
    CR0.WP=1, supervisor mode. Returns (phys, flags) or None when not present."""
    assert 0 <= vaddr < 1 << 47, "non-canonical"
    table = root
    writable, xd, user = 1, 0, 1
    for level, shift in ((4, 39), (3, 30), (2, 21), (1, 12)):
        e = _entry(data, base, table, (vaddr >> shift) & 511)
        if not _bit(e, 0):
            return None
        # Bits 62:52 are ignored by the CPU (62:59: protection key with CR4.PKE); the
        # generator has no business setting them.
        if (e >> 52) & 0x7FF:
            raise Fault(f"level {level}: bits 62:52 set in {e:#x}")
        writable &= _bit(e, 1)
        user &= _bit(e, 2)
        xd |= _bit(e, 63)
        leaf = level == 1 or (level in (2, 3) and _bit(e, 7))
        if level == 4 and _bit(e, 7):
            raise Fault("PS set in a PML4E (reserved, SDM table 4-15)")
        if leaf:
            size = 1 << shift
            if size > K4:
                # Bits (shift-1):13 of a large-page entry are reserved (tables 4-16, 4-18).
                if (e & (size - 1)) >> 13:
                    raise Fault(f"reserved address bits set in a {size:#x} leaf {e:#x}")
                frame = e & MASK_ADDR & ~(size - 1)
                pat = _bit(e, 12)
            else:
                frame = e & MASK_ADDR
                pat = _bit(e, 7)
            return frame + (vaddr & (size - 1)), {
                "writable": bool(writable), "executable": not xd, "user": bool(user),
                "pwt": bool(_bit(e, 3)), "pcd": bool(_bit(e, 4)), "pat": bool(pat),
                "accessed": bool(_bit(e, 5)), "dirty": bool(_bit(e, 6)),
                "global": bool(_bit(e, 8)), "page_size": size, "level": level,
            }
        table = e & MASK_ADDR


def all_leaves(data, base, root):
    """Every present leaf as (vaddr, size, flags), in address order, by a full tree walk.
    Also checks the tables form a tree covering every page of the blob exactly once."""
    seen = {root}
    leaves = []

    def visit(table, level, vbase):
        shift = {4: 39, 3: 30, 2: 21, 1: 12}[level]
        for i in range(512):
            e = _entry(data, base, table, i)
            if not _bit(e, 0):
                assert e == 0, f"non-present entry with stray bits {e:#x}"
                continue
            va = vbase + (i << shift)
            if level == 1 or (level in (2, 3) and _bit(e, 7)):
                phys, flags = walk(data, base, root, va)
                leaves.append((va, 1 << shift, phys, flags))
            else:
                assert level != 4 or not _bit(e, 7)
                child = e & MASK_ADDR
                assert child not in seen, f"table {child:#x} referenced twice"
                seen.add(child)
                visit(child, level - 1, va)

    visit(root, 4, 0)
    assert seen == {base + n * 4096 for n in range(len(data) // 4096)}, "unused table pages"
    return leaves


# -- Expectations from the input alone ----------------------------------------------------

def expect(mappings, addr):
    for m in mappings:
        if m.start <= addr < m.end:
            return m
    return None


def check_address(pt, mappings, addr):
    got = walk(pt.data, pt.base, pt.root, addr)
    m = expect(mappings, addr)
    if m is None:
        assert got is None, f"{addr:#x} present but outside every mapping"
        return
    assert got is not None, f"{addr:#x} in {m.name} not present"
    phys, f = got
    assert phys == addr, "not an identity map"
    assert (f["writable"], f["executable"]) == (m.writable, m.executable), (hex(addr), m, f)
    assert f["pcd"] == f["pwt"] == m.uncached
    assert not f["pat"] and not f["user"] and not f["global"]


def boundary_addresses(mappings):
    out = set()
    for m in mappings:
        for a in (m.start - K4, m.start, m.start + K4, m.end - 2 * K4, m.end - K4, m.end):
            if 0 <= a < 1 << 47:
                out.add(a)
    return sorted(out)


def check_leaves(pt, mappings, gib_pages=True):
    """Full check from a tree walk: the present leaves cover exactly the mappings, each
    with its mapping's attributes, and no leaf is smaller than it could have been."""
    ms = sorted(mappings, key=lambda m: m.start)
    leaves = all_leaves(pt.data, pt.base, pt.root)
    # Coverage: leaf ranges, merged, equal the mappings' ranges, merged.
    def merged(ranges):
        out = []
        for s, e in ranges:
            if out and out[-1][1] == s:
                out[-1][1] = e
            else:
                out.append([s, e])
        return out
    assert merged((va, va + size) for va, size, _, _ in leaves) == \
        merged((m.start, m.end) for m in ms)
    attrs = lambda m: (m.writable, m.executable, m.uncached)  # noqa: E731
    for va, size, phys, f in leaves:
        assert phys == va
        # Every mapping the leaf touches has the leaf's attributes.
        touched = [m for m in ms if m.start < va + size and m.end > va]
        assert touched
        for m in touched:
            assert attrs(m) == (f["writable"], f["executable"], f["pcd"]), (hex(va), size, m)
        assert f["pcd"] == f["pwt"]
        # Writable leaves are preset dirty, read-only leaves never (shadow-stack encoding).
        assert f["accessed"] and f["dirty"] == f["writable"]
        # Largest page: a smaller leaf must not sit in a larger aligned block that is
        # uniformly covered.
        for bigger in (M2, G1):
            if size < bigger and (bigger != G1 or gib_pages):
                lo = va & ~(bigger - 1)
                assert not uniform(ms, lo, lo + bigger), \
                    f"{size:#x} leaf at {va:#x} where a {bigger:#x} page fits"
    return leaves


def uniform(ms, lo, hi):
    """[lo, hi) entirely covered by mappings that all have the same attributes?"""
    pos, attrs = lo, None
    for m in ms:
        if m.end <= lo or m.start >= hi:
            continue
        if m.start > pos:
            return False
        a = (m.writable, m.executable, m.uncached)
        if attrs is not None and a != attrs:
            return False
        attrs, pos = a, m.end
    return pos >= hi


def build(mappings, base=0x7000000, **kw):
    pt = build_page_tables(mappings, base, **kw)
    assert pt.base == base and pt.root == base
    assert len(pt.data) == table_bytes_needed(mappings, **kw)
    assert len(pt.data) % 4096 == 0
    return pt


def ro(s, e, name="ram"):
    return Mapping(s, e, writable=False, executable=False, name=name)


# -- The q35-like map ---------------------------------------------------------------------

RESERVED = 0x7000000      # a 2 MiB reserved region at 112 MiB

Q35 = [
    ro(0, 0x9F000, "ram-low"),
    ro(0x100000, RESERVED, "ram"),
    Mapping(RESERVED, RESERVED + 0x40000, False, True, name="payload-text"),
    Mapping(RESERVED + 0x40000, RESERVED + 0x80000, True, False, name="payload-data"),
    ro(RESERVED + 0x80000, RESERVED + 0x100000, "lists"),
    Mapping(RESERVED + 0x100000, RESERVED + 0x200000, True, False, name="scratch"),
    ro(RESERVED + 0x200000, 0x80000000, "ram-2g"),
    Mapping(0xFD000000, 0xFE000000, True, False, uncached=True, name="framebuffer"),
    Mapping(0xFEBD5000, 0xFEBD6000, True, False, uncached=True, name="ahci-abar"),
    ro(0x100000000, 0x140000000, "ram-high"),
]


def test_q35_map_is_small_and_correct():
    pt = build(Q35, base=RESERVED + 0x80000)
    # PML4, one PDPT, PD [0,1G), PT [0,2M), PT for the reserved 2 MiB, PD [3G,4G), PT ABAR.
    assert len(pt.data) == 7 * 4096
    assert len(pt.data) <= 64 * 1024
    leaves = check_leaves(pt, Q35)
    for a in boundary_addresses(Q35):
        check_address(pt, Q35, a)
    sizes = {va: size for va, size, _, _ in leaves}
    assert sizes[0x40000000] == G1 and sizes[0x100000000] == G1      # 1-2 GiB, 4-5 GiB
    assert sizes[0x200000] == M2 and sizes[0xFD000000] == M2
    assert sizes[0x0] == K4 and sizes[0xFEBD5000] == K4


def test_q35_specific_addresses():
    pt = build(Q35)
    w = lambda a: walk(pt.data, pt.base, pt.root, a)  # noqa: E731
    assert w(0xA0000) is None and w(0xFFFFF000) is None and w(0x80000000) is None
    assert w(0x140000000) is None and w(0xFEBD4000) is None and w(0xFEBD6000) is None
    phys, f = w(0xFEBD5123)
    assert phys == 0xFEBD5123 and f["writable"] and f["pcd"] and f["pwt"] and not f["executable"]
    _, f = w(RESERVED + 0x1234)
    assert f["executable"] and not f["writable"] and not f["pcd"]
    _, f = w(RESERVED + 0x40000)
    assert f["writable"] and not f["executable"]
    _, f = w(0x13FFFFFFF)
    assert not f["writable"] and not f["executable"] and f["page_size"] == G1


def test_summary():
    pt = build(Q35)
    s = pt.summary()
    by_start = {r["start"]: r for r in s}
    assert by_start[0]["end"] == 0x9F000 and by_start[0]["perm"] == "r--"
    assert by_start[RESERVED]["perm"] == "r-x" and by_start[RESERVED]["page_sizes"] == [K4]
    assert by_start[RESERVED + 0x40000]["perm"] == "rw-"
    fb = by_start[0xFD000000]
    assert fb["end"] == 0xFE000000 and fb["uncached"] and fb["perm"] == "rw-"
    assert fb["page_sizes"] == [M2] and fb["pages"] == {M2: 8}
    hi = by_start[0x100000000]
    assert hi["page_sizes"] == [G1] and hi["end"] == 0x140000000
    # Merged: adjacent read-only pieces with the same attributes make one range.
    assert by_start[RESERVED + 0x80000]["end"] == RESERVED + 0x100000
    assert by_start[RESERVED + 0x200000]["end"] == 0x80000000
    # Ranges are disjoint and in order.
    assert all(a["end"] <= b["start"] for a, b in zip(s, s[1:]))
    assert "ram-2g" in by_start[RESERVED + 0x200000]["names"]


# -- Hand-written cases -------------------------------------------------------------------

def test_4gib_ram_uses_1gib_pages():
    ms = [ro(0, 4 * G1)]
    pt = build(ms)
    leaves = check_leaves(pt, ms)
    assert [(va, size) for va, size, _, _ in leaves] == [(n * G1, G1) for n in range(4)]
    assert len(pt.data) == 2 * 4096        # PML4 + PDPT


def test_without_1gib_pages():
    ms = [ro(0, 4 * G1)]
    pt = build(ms, gib_pages=False)
    leaves = check_leaves(pt, ms, gib_pages=False)
    assert {size for _, size, _, _ in leaves} == {M2}
    assert len(pt.data) == (2 + 4) * 4096


def test_unaligned_range_uses_4k_at_edges():
    ms = [ro(0x1FF000, 0x40201000)]   # one page before 2 MiB ... one page past 1 GiB + 2 MiB
    pt = build(ms)
    leaves = check_leaves(pt, ms)
    sizes = [size for _, size, _, _ in leaves]
    assert sizes[0] == K4 and sizes[-1] == K4
    assert sizes.count(K4) == 2 and M2 in sizes
    assert (0x40000000, M2) in [(va, s) for va, s, _, _ in leaves]
    for a in boundary_addresses(ms):
        check_address(pt, ms, a)


def test_one_page_short_of_a_large_page():
    ms = [ro(0, M2 - K4, "short-2M"), ro(G1 + K4, 2 * G1, "short-1G")]
    pt = build(ms)
    leaves = check_leaves(pt, ms)
    assert {s for va, s, _, _ in leaves if va < M2} == {K4}
    assert G1 not in {s for _, s, _, _ in leaves}
    w = lambda a: walk(pt.data, pt.base, pt.root, a)  # noqa: E731
    assert w(M2 - K4) is None and w(G1) is None
    assert w(M2 - 2 * K4) is not None and w(G1 + K4) is not None


def test_edges_of_each_mapping():
    ms = [
        Mapping(0x1000, 0x3000, True, False, name="a"),
        Mapping(0x3000, 0x4000, False, True, name="b"),
        Mapping(0x5000, 0x6000, True, True, uncached=True, name="c"),
    ]
    pt = build(ms)
    w = lambda a: walk(pt.data, pt.base, pt.root, a)  # noqa: E731
    assert w(0) is None and w(0xFFF) is None
    assert w(0x1000)[1]["writable"] and w(0x2FFF)[1]["writable"]
    assert not w(0x3000)[1]["writable"] and w(0x3000)[1]["executable"]
    assert w(0x4000) is None
    _, f = w(0x5FFF)
    assert f["writable"] and f["executable"] and f["pcd"] and f["pwt"]
    assert w(0x6000) is None
    check_leaves(pt, ms)


def test_above_4gib():
    ms = [
        ro(0x1_0000_0000, 0x3_4020_0000, "ram-high"),
        Mapping(0x3F_FFFF_F000, 0x40_0000_1000, True, False, name="straddles-256G"),
        Mapping((1 << 46) - M2 - K4, (1 << 46) + G1, False, True, name="near-2^46"),
        ro((1 << 47) - K4, 1 << 47, "top"),
    ]
    pt = build(ms)
    check_leaves(pt, ms)
    for a in boundary_addresses(ms):
        check_address(pt, ms, a)
    _, f = walk(pt.data, pt.base, pt.root, 1 << 46)
    assert f["page_size"] == G1 and f["executable"]
    assert walk(pt.data, pt.base, pt.root, (1 << 47) - K4)[0] == (1 << 47) - K4


def test_upper_levels_permissive_leaf_decides():
    ms = [ro(0, M2), Mapping(M2, 2 * M2, True, True, name="rwx")]
    pt = build(ms)
    pml4e = int.from_bytes(pt.data[:8], "little")
    assert pml4e & 0b11 == 0b11 and not pml4e >> 63 and not pml4e & 4
    assert walk(pt.data, pt.base, pt.root, M2)[1]["writable"]


def test_deterministic_and_order_independent():
    a = build(Q35, base=0x200000)
    shuffled = list(Q35)
    random.Random(1).shuffle(shuffled)
    b = build(shuffled, base=0x200000)
    assert a.data == b.data and a.root == b.root
    c = build(Q35, base=0x300000)
    assert len(c.data) == len(a.data) and c.root == 0x300000
    assert c.summary() == a.summary()


def test_adjacent_identical_mappings_share_large_pages():
    ms = [ro(0, G1 // 2, "a"), ro(G1 // 2, G1 + M2 + K4, "b")]
    pt = build(ms)
    leaves = check_leaves(pt, ms)
    assert (0, G1) in [(va, s) for va, s, _, _ in leaves]
    # Same ranges but different caching: no sharing across the seam.
    ms2 = [ro(0, G1 // 2, "a"), Mapping(G1 // 2, G1, False, False, uncached=True, name="b")]
    leaves = check_leaves(build(ms2), ms2)
    assert {s for _, s, _, _ in leaves} == {M2}


def test_empty_map():
    pt = build([])
    assert len(pt.data) == 4096 and pt.data == bytes(4096)
    assert walk(pt.data, pt.base, pt.root, 0) is None
    assert pt.summary() == []


def test_overlap_names_both():
    ms = [ro(0, 0x10000, "first"), ro(0x20000, 0x30000, "other"), ro(0xF000, 0x11000, "second")]
    for f in (lambda: table_bytes_needed(ms), lambda: build_page_tables(ms, 0x100000)):
        with pytest.raises(UsageError) as e:
            f()
        assert "first" in str(e.value) and "second" in str(e.value)
    # Contained inside a large earlier one, not adjacent in sorted order to it.
    ms = [ro(0, G1, "big"), ro(0x1000, 0x2000, "small"), ro(0x3000, 0x4000, "tiny")]
    with pytest.raises(UsageError, match="big.*small|small.*big"):
        table_bytes_needed(ms)
    # Identical ranges.
    with pytest.raises(UsageError, match="overlap"):
        table_bytes_needed([ro(0, K4, "x"), ro(0, K4, "y")])


@pytest.mark.parametrize("bad", [
    ro(0x800, 0x2000, "start"), ro(0x1000, 0x2800, "end"), ro(0x2000, 0x2000, "empty"),
    ro(0x3000, 0x2000, "inverted"), ro(-K4, K4, "negative"), ro(0, (1 << 47) + K4, "huge"),
])
def test_bad_mappings_raise(bad):
    with pytest.raises(UsageError, match=bad.name):
        table_bytes_needed([bad])
    with pytest.raises(UsageError):
        build_page_tables([bad], 0x100000)


@pytest.mark.parametrize("base", [0x100800, -0x1000])
def test_bad_base_raises(base):
    with pytest.raises(UsageError):
        build_page_tables(Q35, base)


# -- Generated memory maps ----------------------------------------------------------------

SIZE_UNITS = [K4, M2, G1]


@st.composite
def memory_maps(draw):
    """Several non-overlapping ranges, sizes from 4 KiB to several GiB, gaps and alignments
    from 4 KiB up, sometimes adjacent, some read-only 'saved RAM'."""
    pos = draw(st.sampled_from([0, K4, M2 - K4, G1, 0xF000_0000, 1 << 39, (1 << 46) - G1]))
    mappings = []
    for n in range(draw(st.integers(1, 7))):
        kind = draw(st.sampled_from(["adjacent", "page-gap", "align-2M", "align-1G", "big-gap"]))
        if kind == "page-gap":
            pos += draw(st.integers(1, 600)) * K4
        elif kind == "align-2M":
            aligned = -(-pos // M2) * M2
            pos = max(pos, aligned + draw(st.sampled_from([0, 0, K4, -K4])))
        elif kind == "align-1G":
            pos = -(-pos // G1) * G1
        elif kind == "big-gap":
            pos += draw(st.integers(1, 3)) * draw(st.sampled_from([M2, G1]))
        unit = draw(st.sampled_from(SIZE_UNITS))
        size = draw(st.integers(1, 5 if unit == G1 else 700 if unit == K4 else 600)) * unit
        size += draw(st.sampled_from([0, 0, K4, -K4 if size > K4 else 0, 17 * K4]))
        if pos + size > 1 << 47:
            break
        writable, executable = draw(st.sampled_from(
            [(False, False), (False, False), (True, False), (False, True), (True, True)]))
        uncached = draw(st.booleans()) if writable and not executable else False
        mappings.append(Mapping(pos, pos + size, writable, executable, uncached,
                                name=f"m{n}{'-saved' if not writable else ''}"))
        pos += size
    assume(mappings)
    return mappings


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mappings=memory_maps(), seed=st.integers(0, 2**32 - 1),
       gib_pages=st.sampled_from([True, True, False]), shuffle=st.booleans())
def test_generated_maps(mappings, seed, gib_pages, shuffle):
    rng = random.Random(seed)
    given_order = list(mappings)
    if shuffle:
        rng.shuffle(given_order)
    base = rng.randrange(0, 1 << 40, K4)
    pt = build(given_order, base=base, gib_pages=gib_pages)

    # Whole-tree check: coverage equals the mappings exactly (gaps have nothing present),
    # attributes match, large pages used wherever they fit.
    leaves = check_leaves(pt, mappings, gib_pages)

    # Saved RAM stays read-only: no writable leaf overlaps a read-only mapping.
    saved = [m for m in mappings if not m.writable]
    for va, size, _, f in leaves:
        if f["writable"]:
            assert not any(m.start < va + size and m.end > va for m in saved)

    # Per-address walks: every boundary +-1 page, random addresses inside the mappings and
    # in the gaps between them.
    samples = set(boundary_addresses(mappings))
    lo, hi = mappings[0].start, mappings[-1].end
    for m in mappings:
        samples.update(rng.randrange(m.start, m.end) for _ in range(4))
    for a, b in zip(mappings, mappings[1:]):
        if b.start > a.end:
            samples.update(rng.randrange(a.end, b.start) for _ in range(3))
    samples.update(rng.randrange(max(lo - G1, 0), min(hi + G1, 1 << 47)) for _ in range(20))
    for a in sorted(samples):
        check_address(pt, mappings, a)
