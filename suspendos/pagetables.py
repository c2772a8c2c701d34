"""The suspend module's page tables, generated at build time.

x86-64 4-level paging (Intel SDM vol. 3A, 4.5 "4-Level Paging and 5-Level Paging"): a PML4
(CR3) of 512 PML4Es, each covering 512 GiB and referencing a page-directory-pointer table;
512 PDPTEs, each mapping a 1 GiB page (PS=1) or referencing a page directory; 512 PDEs, each
mapping a 2 MiB page (PS=1) or referencing a page table; 512 PTEs, each mapping a 4 KiB page.
Entry formats: SDM tables 4-15 (PML4E), 4-16 (PDPTE, 1 GiB page), 4-17 (PDPTE -> PD),
4-18 (PDE, 2 MiB page), 4-19 (PDE -> PT), 4-20 (PTE).

The map is an identity map (virtual == physical) of the given mappings and nothing else: an
address outside every mapping has no present entry on its path. Leaves are as large as the
mappings allow: a 1 GiB page where an aligned GiB is covered by mappings with one set of
attributes, a 2 MiB page for an aligned 2 MiB, 4 KiB pages at the edges. Adjacent mappings
with identical attributes share large pages.

Permissions (SDM 4.6 "Access Rights"): a supervisor write needs R/W=1 at every level (with
CR0.WP=1, which the payload keeps) and an instruction fetch needs XD=0 at every level. The
upper levels are therefore permissive (P|R/W, XD=0) and the leaf alone decides. U/S is 0
everywhere: supervisor-only pages.

Caching (SDM 4.9.2, 11.12.3): PCD|PWT with PAT=0 selects PAT entry 3, which is UC in the
power-on PAT and in Linux's PAT alike. Used for MMIO and the framebuffer.

Accessed and dirty flags (SDM 4.8) are preset -- A in every present entry, D in every
writable leaf -- so the processor never has to write into the tables while it walks them.
D stays clear in read-only leaves: with CET shadow stacks, R/W=0 with D=1 would mean a
shadow-stack page (SDM 4.6.1).

G (global) stays clear so that reloading CR3 on the way back to the host drops all of our
translations from the TLB (SDM 4.10.2.4).
"""
from bisect import bisect_right
from dataclasses import dataclass

from .errors import UsageError

# -- Sizes -------------------------------------------------------------------------------

PAGE_4K = 1 << 12
PAGE_2M = 1 << 21
PAGE_1G = 1 << 30
TABLE_SIZE = 4096           # every paging structure is one 4 KiB page (SDM 4.5.1)
ENTRIES = 512               # of 8 bytes each
ENTRY_SIZE = 8

# The identity map covers the lower canonical half of the 48-bit linear address space
# (SDM 3.3.7.1: bits 63:47 of a linear address must be equal), i.e. physical addresses up
# to 2^47. A CPU's MAXPHYADDR may be lower; an address above it in a leaf is a reserved-bit
# fault when used (SDM 4.5.4), which is the target description's business.
MAX_ADDRESS = 1 << 47
# Physical address field of an entry: bits 51:12 (SDM 4.5.4, M <= 52).
MAX_TABLE_ADDRESS = 1 << 52

# Per level: (name, shift of the region one entry covers). Level 4 = PML4, 1 = PT.
LEVELS = {4: ("PML4E", 39), 3: ("PDPTE", 30), 2: ("PDE", 21), 1: ("PTE", 12)}

# -- Entry bits (SDM 4.5.4, tables 4-15 .. 4-20) -------------------------------------------

P = 1 << 0          # present
RW = 1 << 1         # read/write; 0 = writes not allowed
US = 1 << 2         # user/supervisor; 0 = supervisor only (never set here)
PWT = 1 << 3        # page-level write-through
PCD = 1 << 4        # page-level cache disable
A = 1 << 5          # accessed
D = 1 << 6          # dirty (leaves only)
PS = 1 << 7         # page size: 1 = this PDPTE/PDE maps a page (PAT bit in a PTE)
G = 1 << 8          # global (leaves only; never set here)
PAT_LARGE = 1 << 12  # PAT bit of a 1 GiB/2 MiB leaf (never set here)
XD = 1 << 63        # execute-disable (needs IA32_EFER.NXE=1, else reserved)

ADDRESS_MASK = (MAX_TABLE_ADDRESS - 1) & ~(PAGE_4K - 1)   # bits 51:12

# Upper-level entries: present, writable, executable, accessed; the leaf decides (SDM 4.6).
UPPER_FLAGS = P | RW | A


@dataclass(frozen=True)
class Mapping:
    start: int          # byte address, 4 KiB aligned
    end: int            # exclusive, 4 KiB aligned
    writable: bool
    executable: bool
    uncached: bool = False  # PCD|PWT (UC with the default PAT): MMIO, framebuffer
    name: str = ""          # for error messages and summaries


def _label(m):
    """How error messages name a mapping: its name and range."""
    if isinstance(m.start, int) and isinstance(m.end, int):
        rng = f"[{m.start:#x}, {m.end:#x})"
    else:
        rng = f"[{m.start!r}, {m.end!r})"
    return f"{m.name!r} {rng}" if getattr(m, "name", "") else rng


@dataclass(frozen=True)
class _Attrs:
    writable: bool
    executable: bool
    uncached: bool

    @property
    def perm(self):
        return "r" + ("w" if self.writable else "-") + ("x" if self.executable else "-")

    def leaf_flags(self, size):
        flags = P | A
        if self.writable:
            flags |= RW | D
        if not self.executable:
            flags |= XD
        if self.uncached:
            flags |= PCD | PWT
        if size != PAGE_4K:
            flags |= PS
        return flags


@dataclass(frozen=True)
class _Run:
    """A maximal stretch of adjacent mappings with identical attributes."""
    start: int
    end: int
    attrs: _Attrs
    names: tuple


class PageTables:
    """Generated tables: `data` is loaded at physical `base`; `root` goes into CR3."""

    def __init__(self, root, data, base, leaves, runs, gib_pages):
        self.root = root
        self.data = data
        self.base = base
        self.gib_pages = gib_pages
        self._leaves = leaves   # [(address, size, _Attrs)] in address order
        self._runs = runs

    @property
    def table_pages(self):
        return len(self.data) // TABLE_SIZE

    def summary(self):
        """Merged ranges as mapped: adjacent leaves with the same attributes, in address
        order. Each: {start, end, perm ("r-x"/"rw-"/"r--"/"rwx"), uncached, page_sizes
        (sizes in bytes used, largest first), pages ({size: count}), names (the mappings it
        covers)}."""
        out = []
        for addr, size, attrs in self._leaves:
            if out and out[-1]["end"] == addr and out[-1]["_attrs"] == attrs:
                cur = out[-1]
                cur["end"] = addr + size
            else:
                cur = {"start": addr, "end": addr + size, "perm": attrs.perm,
                       "uncached": attrs.uncached, "pages": {}, "_attrs": attrs}
                out.append(cur)
            cur["pages"][size] = cur["pages"].get(size, 0) + 1
        for cur in out:
            del cur["_attrs"]
            cur["pages"] = dict(sorted(cur["pages"].items(), reverse=True))
            cur["page_sizes"] = list(cur["pages"])
            cur["names"] = [n for r in self._runs if r.start < cur["end"] and r.end > cur["start"]
                            for n in r.names if n]
        return out

    def describe(self):
        """Human lines for build logs."""
        names = {PAGE_1G: "1G", PAGE_2M: "2M", PAGE_4K: "4K"}
        lines = [f"page tables: {self.table_pages} pages at {self.base:#x}, CR3={self.root:#x}"]
        for s in self.summary():
            pages = " ".join(f"{n}x{names[sz]}" for sz, n in s["pages"].items())
            lines.append(f"  [{s['start']:#014x}, {s['end']:#014x}) {s['perm']}"
                         f"{' uc' if s['uncached'] else '   '} {pages}"
                         f"{'  ' + ', '.join(s['names']) if s['names'] else ''}")
        return lines


# -- Input checks and merging -------------------------------------------------------------

def _check(mappings):
    """Validate and sort; raise UsageError on bad or overlapping mappings."""
    checked = []
    for m in mappings:
        for field in ("start", "end"):
            v = getattr(m, field)
            if not isinstance(v, int) or isinstance(v, bool):
                raise UsageError(f"mapping {_label(m)}: {field} must be an integer, got {v!r}")
            if v % PAGE_4K:
                raise UsageError(f"mapping {_label(m)}: {field} {v:#x} is not 4 KiB aligned")
        if not 0 <= m.start < m.end:
            raise UsageError(f"mapping {_label(m)}: empty or inverted range")
        if m.end > MAX_ADDRESS:
            raise UsageError(f"mapping {_label(m)}: ends above {MAX_ADDRESS:#x}, the top of the "
                             f"identity-mappable lower canonical half")
        checked.append(m)
    checked.sort(key=lambda m: (m.start, m.end))
    widest = None   # the mapping reaching furthest so far
    for m in checked:
        if widest is not None and m.start < widest.end:
            raise UsageError(f"mappings overlap: {_label(widest)} and {_label(m)}")
        if widest is None or m.end > widest.end:
            widest = m
    return checked


def _runs(mappings):
    runs = []
    for m in _check(mappings):
        attrs = _Attrs(bool(m.writable), bool(m.executable), bool(m.uncached))
        if runs and runs[-1].end == m.start and runs[-1].attrs == attrs:
            last = runs[-1]
            runs[-1] = _Run(last.start, m.end, attrs, last.names + (m.name,))
        else:
            runs.append(_Run(m.start, m.end, attrs, (m.name,)))
    return runs


# -- Planning -----------------------------------------------------------------------------

class _Table:
    """One paging structure being planned: entries[i] is None (not present),
    ("page", _Attrs) or ("table", _Table)."""

    def __init__(self, level):
        self.level = level
        self.entries = [None] * ENTRIES
        self.address = None


class _Plan:
    def __init__(self, mappings, gib_pages):
        self.runs = _runs(mappings)
        self.starts = [r.start for r in self.runs]
        self.gib_pages = gib_pages
        self.root = self._table(4, 0)
        self.tables = []        # depth-first pre-order: the PML4 first
        self._order(self.root)

    def _cover(self, lo, hi):
        """What covers [lo, hi): None (nothing), an _Attrs (one run covers all), or "mixed"."""
        i = bisect_right(self.starts, lo) - 1
        if i >= 0 and self.runs[i].end >= hi:
            return self.runs[i].attrs
        if (i >= 0 and self.runs[i].end > lo) or \
                (i + 1 < len(self.runs) and self.runs[i + 1].start < hi):
            return "mixed"
        return None

    def _table(self, level, base):
        table = _Table(level)
        shift = LEVELS[level][1]
        size = 1 << shift
        # Leaves allowed: PTE always; PDE (2 MiB, SDM table 4-18); PDPTE (1 GiB, table 4-16)
        # if the CPU has them (CPUID.80000001H:EDX.Page1GB[bit 26]); never a PML4E (PS is
        # reserved there).
        leaf_ok = level in (1, 2) or (level == 3 and self.gib_pages)
        # Visit only the entries some run touches.
        i = max(bisect_right(self.starts, base) - 1, 0)
        while i < len(self.runs) and self.runs[i].start < base + ENTRIES * size:
            run = self.runs[i]
            first = max(run.start, base)
            last = min(run.end, base + ENTRIES * size)
            for idx in range((first - base) >> shift, ((last - 1 - base) >> shift) + 1):
                if table.entries[idx] is not None:
                    continue
                lo = base + (idx << shift)
                cover = self._cover(lo, lo + size)
                if cover is None:
                    continue
                if cover != "mixed" and leaf_ok:
                    table.entries[idx] = ("page", cover)
                else:
                    # A partly covered 4 KiB page cannot happen: everything is 4 KiB aligned.
                    assert level > 1
                    table.entries[idx] = ("table", self._table(level - 1, lo))
            i += 1
        return table

    def _order(self, table):
        self.tables.append(table)
        for e in table.entries:
            if e is not None and e[0] == "table":
                self._order(e[1])


def table_bytes_needed(mappings, *, gib_pages=True):
    """The exact number of bytes build_page_tables(mappings, base) will produce, whatever
    `base` is. Raises UsageError for bad mappings, like build_page_tables."""
    return len(_Plan(mappings, gib_pages).tables) * TABLE_SIZE


def build_page_tables(mappings, base, *, gib_pages=True):
    """Identity-map `mappings` with tables placed at [base, base + table_bytes_needed).

    The PML4 comes first (root == base), the other tables follow in depth-first address
    order. gib_pages=False avoids 1 GiB pages, for CPUs without them.
    """
    if not isinstance(base, int) or isinstance(base, bool) or base < 0 or base % TABLE_SIZE:
        raise UsageError(f"page tables base {base!r} must be a 4 KiB aligned address")
    plan = _Plan(mappings, gib_pages)
    end = base + len(plan.tables) * TABLE_SIZE
    if end > MAX_TABLE_ADDRESS:
        raise UsageError(f"page tables [{base:#x}, {end:#x}) above the 52-bit address limit")
    for n, table in enumerate(plan.tables):
        table.address = base + n * TABLE_SIZE

    data = bytearray(len(plan.tables) * TABLE_SIZE)
    leaves = []

    def emit(table, vbase):
        shift = LEVELS[table.level][1]
        off = table.address - base
        for idx, e in enumerate(table.entries):
            if e is None:
                continue
            vaddr = vbase + (idx << shift)
            if e[0] == "table":
                value = (e[1].address & ADDRESS_MASK) | UPPER_FLAGS
                emit(e[1], vaddr)
            else:
                attrs = e[1]
                value = (vaddr & ADDRESS_MASK) | attrs.leaf_flags(1 << shift)  # identity
                leaves.append((vaddr, 1 << shift, attrs))
            data[off + idx * ENTRY_SIZE: off + (idx + 1) * ENTRY_SIZE] = \
                value.to_bytes(ENTRY_SIZE, "little")

    emit(plan.root, 0)
    return PageTables(root=plan.root.address, data=bytes(data), base=base, leaves=leaves,
                      runs=plan.runs, gib_pages=gib_pages)
