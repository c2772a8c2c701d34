"""Show what a blob holds: header, segments, the payload's configuration, its lists, and its
page tables decoded from the bytes (a reader of the blob, not of the builder's memory)."""
import struct

from .errors import FormatError
from .formats import blob as blobfmt
from .formats.common import parse
from .formats.lists import Extent, MemRange
from .formats.payload_info import DISK_KIND, PayloadInfo

P, RW, PCD, PS, XD = 1, 2, 1 << 4, 1 << 7, 1 << 63
ADDR = 0x000FFFFFFFFFF000
LEVEL_SPAN = [1 << 39, 1 << 30, 1 << 21, 1 << 12]


class BlobMemory:
    """The blob's segments as the loader would place them, readable by physical address."""

    def __init__(self, data):
        self.header, self.segments = blobfmt.unpack(data)
        self.data = data

    def read(self, addr, size):
        out = bytearray(size)
        covered = 0
        for s in self.segments:
            lo, hi = max(addr, s.addr), min(addr + size, s.addr + s.mem_size)
            if lo >= hi:
                continue
            covered += hi - lo
            file_lo, file_hi = lo - s.addr, min(hi - s.addr, s.file_size)
            if file_lo < file_hi:
                out[lo - addr:lo - addr + file_hi - file_lo] = \
                    self.data[s.file_offset + file_lo:s.file_offset + file_hi]
        if covered != size:
            raise FormatError(f"blob: address {addr:#x} (+{size}) is not inside its segments")
        return bytes(out)


MAX_TABLES = 4096          # far more than any blob's tables: a walk past it is a damaged blob


def decode_page_tables(mem, root):
    """Merged [start, end) ranges with 'perm' and 'uncached', walking from CR3 = root."""
    leaves = []
    visited = set()

    def walk(table, level, base, rw, nx):
        if table in visited or len(visited) >= MAX_TABLES:
            raise FormatError(f"page tables: table {table:#x} is reached twice or the tables "
                              f"never end (damaged blob)")
        visited.add(table)
        entries = struct.unpack("<512Q", mem.read(table, 4096))
        for i, e in enumerate(entries):
            if not e & P:
                continue
            va = base + i * LEVEL_SPAN[level]
            erw, enx = rw and bool(e & RW), nx or bool(e & XD)
            if level == 3 or (level in (1, 2) and e & PS):
                perm = "r" + ("w" if erw else "-") + ("-" if enx else "x")
                leaves.append([va, va + LEVEL_SPAN[level], perm, bool(e & PCD)])
            else:
                walk(e & ADDR, level + 1, va, erw, enx)

    walk(root, 0, 0, True, False)
    merged = []
    for leaf in leaves:
        if merged and merged[-1][1] == leaf[0] and merged[-1][2:] == leaf[2:]:
            merged[-1][1] = leaf[1]
        else:
            merged.append(leaf)
    return [dict(start=s, end=e, perm=p, uncached=u) for s, e, p, u in merged]


SEGMENT_NAMES = {v: k.lower() for k, v in blobfmt.SEGMENT_KIND.values.items()}


def inspect_blob(data):
    if data[:4] == b"\x7fELF":
        raise FormatError("an ELF file, not a payload blob (inspect reads what `build "
                          "--format blob` writes; a kexec-elf holds the same segments)")
    if data[:len(blobfmt.BLOB_MAGIC)] != blobfmt.BLOB_MAGIC:
        raise FormatError("not a payload blob (no blob magic at its start)")
    mem = BlobMemory(data)
    h = mem.header
    info = parse(PayloadInfo, mem.read(h.payload_info, PayloadInfo.sizeof()), "payload info")
    # The lists are data the builder wrote into the blob: longer than the blob they are not.
    for name, count in (("memory list", info.memory_count), ("sector list", info.sector_count)):
        if count * 16 > len(data):
            raise FormatError(f"blob: the {name} claims {count} entries, more than the blob holds")
    raw_ranges = mem.read(info.memory_list, info.memory_count * 16)
    raw_extents = mem.read(info.sector_list, info.sector_count * 16)
    ranges = [parse(MemRange, raw_ranges[i * 16:(i + 1) * 16], "memory list")
              for i in range(info.memory_count)]
    extents = [parse(Extent, raw_extents[i * 16:(i + 1) * 16], "sector list")
               for i in range(info.sector_count)]

    def perm(p):
        return ("r" if p & 4 else "-") + ("w" if p & 2 else "-") + ("x" if p & 1 else "-")

    return {
        "blob_size": len(data),
        "load_base": h.load_base, "reserved_size": h.reserved_size,
        "entry": h.entry, "handoff": h.handoff, "payload_info": h.payload_info,
        "segments": [dict(kind=SEGMENT_NAMES.get(s.kind, str(s.kind)), addr=s.addr,
                          file_size=s.file_size, mem_size=s.mem_size, perm=perm(s.perm))
                     for s in mem.segments],
        "scratch": [info.scratch_base, info.scratch_base + info.scratch_size],
        "stack_top": info.stack_top,
        "disk": dict(ahci_abar=info.ahci_abar, port=info.ahci_port,
                     pci=f"{info.ahci_pci_bus:02x}:{info.ahci_pci_dev:02x}.{info.ahci_pci_fn:x}",
                     kind=DISK_KIND.name_of(info.disk_kind), block_size=info.block_size,
                     nsid=info.disk_nsid),
        "options": dict(compression=info.compression, chunk_pages=info.chunk_pages,
                        max_command_sectors=info.max_command_sectors,
                        encryption=info.encryption),
        "memory_ranges": [[r.start, r.end] for r in ranges],
        "extents": [[e.lba, e.count] for e in extents],
        "page_tables": dict(cr3=info.pml4, ranges=decode_page_tables(mem, info.pml4)),
    }


def format_text(r):
    out = [f"blob: {r['blob_size']} bytes; reserved region {r['load_base']:#x}-"
           f"{r['load_base'] + r['reserved_size']:#x}; entry {r['entry']:#x}; "
           f"handoff {r['handoff']:#x}",
           "segments:"]
    for s in r["segments"]:
        out.append(f"  {s['kind']:<10} {s['addr']:#012x}  file {s['file_size']:>7}  "
                   f"memory {s['mem_size']:>7}  {s['perm']}")
    out.append(f"scratch: {r['scratch'][0]:#x}-{r['scratch'][1]:#x}   stack top {r['stack_top']:#x}")
    d = r["disk"]
    if d.get("kind", "ahci").lower() == "ahci":
        out.append(f"disk: AHCI {d['pci']} ABAR {d['ahci_abar']:#x} port {d['port']}")
    else:
        out.append(f"disk: {d['kind']} {d['pci']} BAR {d['ahci_abar']:#x} namespace "
                   f"{d['nsid']}, {d['block_size']}-byte blocks")
    pages = sum(e - s for s, e in r["memory_ranges"]) // 4096
    out.append(f"memory list: {len(r['memory_ranges'])} ranges, {pages} pages")
    for s, e in r["memory_ranges"]:
        out.append(f"  {s:#014x}-{e:#014x}")
    out.append(f"sector list: {len(r['extents'])} extents")
    for lba, n in r["extents"]:
        out.append(f"  LBA {lba} + {n} sectors")
    out.append(f"page tables (CR3 {r['page_tables']['cr3']:#x}):")
    for t in r["page_tables"]["ranges"]:
        out.append(f"  {t['start']:#014x}-{t['end']:#014x} {t['perm']}{' uncached' if t['uncached'] else ''}")
    return "\n".join(out)
