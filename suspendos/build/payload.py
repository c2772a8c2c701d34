"""Build a payload blob for a target: compile, link at the target's address, lay out the
reserved region, generate the trampoline, IDT, page tables and lists, fill in the payload's
configuration and pack it all into a blob (formats/blob.py).

Reserved region layout (all page-aligned):

    load_base            trampoline (RX)                 keystone, build/trampoline.py
    + 0x1000             handoff page (RW): handoff block, GDT, descriptor scratch
    + 0x2000             payload ELF: .text RX, .rodata R, .data RW, .bss RW,
                         guard page (unmapped), stack RW
    ...                  plugins, if any, each linked alone (suspendos/plugins/link.py)
    ...                  tables (R): IDT, memory list, sector list, page tables
    ...                  scratch (RW) up to the end of the region: AHCI DMA area, then the
                         image writer's buffers
"""
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import xxhash
from elftools.elf.elffile import ELFFile

from .. import pagetables
from ..errors import UsageError
from ..formats import blob as blobfmt
from ..formats import handoff as handofffmt
from ..formats import lists
from ..formats.common import PAGE_SIZE, align_up, build
from ..formats.payload_info import (CHECKSUM, COMPRESSION, DISK_KIND, ENCRYPTION, FB_FORMAT,
                                    IOMMU_KIND,
                                    PAYLOAD_INFO_MAGIC, PAYLOAD_INFO_REVISION, PayloadInfo)
from ..sources import source_dir
from ..target.description import DISK_MMIO_SPAN, IOMMU_MMIO_SPAN
from . import idt, toolchain, trampoline

STACK_SIZE = 64 * 1024
AHCI_DMA_SIZE = 0x10000          # PAYLOAD_DISK_DMA_SIZE in builder/core/payload.h (any driver)
MIN_WRITER_SCRATCH = 64 * 1024   # header block, tables, chunk headers
# With plugins taking room, keep what LZ4 or encrypted chunks need (staging and two stream
# buffers, image_writer.c), so a plugin never turns a build into a run that cannot write.
PLUGIN_MIN_WRITER_SCRATCH = 512 * 1024
# The local APIC's registers at their architectural place (SDM vol. 3 10.4.1, IA32_APIC_BASE
# after reset); the payload maps them only to wake the CPUs a host took offline, and leaves
# those CPUs out when IA32_APIC_BASE says otherwise (x2APIC mode needs no mapping: MSRs).
XAPIC_BASE = 0xFEE00000
DISK_KIND_OF = {"ahci": DISK_KIND.AHCI, "nvme": DISK_KIND.NVME, "virtio-blk": DISK_KIND.VIRTIO_BLK}
IOMMU_KIND_OF = {"none": IOMMU_KIND.NONE, "vt-d": IOMMU_KIND.VTD, "amd-vi": IOMMU_KIND.AMDVI}
SEG = blobfmt.SEGMENT_KIND
PERM = blobfmt.SEGMENT_PERM


@dataclass
class Region:
    name: str
    start: int
    end: int
    perm: str                    # "r-x", "rw-", "r--"
    uncached: bool = False


@dataclass
class BuildResult:
    blob: bytes
    regions: list = field(default_factory=list)
    symbols: dict = field(default_factory=dict)
    tables: object = None
    plugin_views: list = field(default_factory=list)   # page tables of each plugin's view


def _elf_info(path):
    with open(path, "rb") as f:
        elf = ELFFile(f)
        sections = {}
        for s in elf.iter_sections():
            if s.name in (".text", ".rodata", ".data", ".bss") and s["sh_size"]:
                data = b"" if s["sh_type"] == "SHT_NOBITS" else s.data()
                sections[s.name] = (s["sh_addr"], s["sh_size"], data)
        symtab = elf.get_section_by_name(".symtab")
        symbols = {sym.name: sym["st_value"] for sym in symtab.iter_symbols() if sym.name}
    return sections, symbols


def mcmodel(target):
    # The small code model needs every symbol below 2 GiB; above that, the large one.
    return "small" if target.reserved_range[1] <= (1 << 31) else "large"


def payload_flags(mcmodel, compress):
    """The payload's compile flags beyond toolchain.FREESTANDING: all a target changes in
    them is its code model ("small", "large") and its compression, so the object cache's
    warm-up (objcache.py) builds every set there is without a target."""
    # the LZ4 search is fixed per build (builder/core/image_writer.c), so a blob carries one
    return [f"-mcmodel={mcmodel}", "-ffunction-sections", "-fdata-sections",
            f"-DSOS_LZ4_HIGH={int(compress == 'lz4hc')}"]


def compile_payload(target, workdir):
    load = target.reserved.load_address
    text_base = load + 2 * PAGE_SIZE
    objects = toolchain.compile_all(toolchain.payload_sources(target.disk.kind), workdir,
                                    payload_flags(mcmodel(target), target.options.compress))
    script = (source_dir("builder") / "payload.ld").read_text()
    script = script.replace("@TEXT_BASE@", hex(text_base)).replace("@STACK_SIZE@", hex(STACK_SIZE))
    elf = Path(workdir) / "payload.elf"
    toolchain.link(objects, script, elf, workdir)
    return elf


ZERO_RUN = 1024     # zero runs at least this long are not stored in the blob


def _nonzero_pieces(data):
    """[(offset, bytes)] covering every non-zero byte of data; at least one piece."""
    pieces, i, n = [], 0, len(data)
    while i < n:
        j = data.find(bytes(ZERO_RUN), i)
        stop = n if j < 0 else j
        if stop > i:
            pieces.append((i, data[i:stop].rstrip(b"\0")))
        if j < 0:
            break
        i = j + ZERO_RUN
        while i < n and data[i] == 0:
            i += 1
    return pieces or [(0, b"")]


def _fb_format(fb):
    return getattr(FB_FORMAT, fb.format.upper()) if fb else FB_FORMAT.NONE


def target_lists(target):
    """(saved ranges, memory list bytes, sector list bytes) of `target`: what the blob, the
    resume loader and the image all carry."""
    saved = target.saved_ranges()
    return (saved, lists.memory_list(saved),
            lists.sector_list([(e.lba, e.count) for e in target.extents]))


def payload_info(target, key=None, selftest=0, **layout):
    """The PayloadInfo bytes for `target`: what the target description says, plus `layout`,
    the addresses the caller laid out (memory_list, sector_list, pml4, scratch_base,
    scratch_size, stack_top, trampoline_exit). Shared by the payload and the resume loader."""
    saved, mem_list, _ = target_lists(target)
    bus, dev, fn = target.disk.pci_address()
    fb = target.framebuffer
    target.check_chunk_pages(encrypted=bool(key))
    chunk_pages = target.chunk_pages(encrypted=bool(key))
    info = dict(
        magic=PAYLOAD_INFO_MAGIC, revision=PAYLOAD_INFO_REVISION, size=PayloadInfo.sizeof(),
        load_base=target.reserved.load_address, reserved_size=target.reserved.size,
        memory_count=len(saved), sector_count=len(target.extents),
        image_sectors=sum(e.count for e in target.extents),
        ahci_abar=target.disk.base(),
        ahci_pci_bus=bus, ahci_pci_dev=dev, ahci_pci_fn=fn,
        ahci_port=target.disk.port if target.disk.kind == "ahci" else 0,
        compression=getattr(COMPRESSION, target.options.compress.upper()),
        checksum=CHECKSUM.XXH64,
        encryption=ENCRYPTION.CHACHA20_POLY1305 if key else ENCRYPTION.NONE,
        chunk_pages=chunk_pages,
        max_command_sectors=target.options.max_command_kib * 1024 // target.disk.block_size,
        memmap_hash=xxhash.xxh64(mem_list).intdigest(),
        fb_addr=fb.address if fb else 0, fb_width=fb.width if fb else 0,
        fb_height=fb.height if fb else 0, fb_pitch=fb.pitch if fb else 0,
        fb_bpp=fb.bpp if fb else 0, fb_format=_fb_format(fb),
        debug_exit_port=target.options.debug_exit_port,
        key=key or bytes(32), selftest=selftest,
        disk_kind=DISK_KIND_OF[target.disk.kind], block_size=target.disk.block_size,
        disk_nsid=(target.disk.namespace or 1) if target.disk.kind == "nvme" else 0,
        ap_start_page=target.reserved.ap_start,
        lapic_base=XAPIC_BASE if target.reserved.ap_start else 0,
        iommu_kind=IOMMU_KIND_OF[target.disk.iommu], _pad_iommu=bytes(4),
        iommu_base=target.disk.iommu_base,
        **{"ap_entry": 0, "ap_exit": 0, **layout})
    return build(PayloadInfo, info, "payload info")


def patch_payload_info(data, data_addr, sym, info):
    """`data` (a .data section's bytes at data_addr) with sos_payload_info replaced."""
    off = sym["sos_payload_info"] - data_addr
    return data[:off] + info + data[off + PayloadInfo.sizeof():]


def build_payload(target, workdir=None, key=None, selftest=0, plugins=None):
    """`plugins`: approved packages (suspendos.plugins.package.approve), linked after the
    core, each with its own page-table view."""
    target.validate()
    with tempfile.TemporaryDirectory(prefix="sos-build-") as tmp:
        work = Path(workdir or tmp)
        elf = compile_payload(target, work)
        sections, sym = _elf_info(elf)
        placed = []
        if plugins:
            from ..plugins import link as plugin_link, sdk as plugin_sdk
            prepared = plugin_sdk.prepare(plugins, target, work / "plugins")
            placed, _ = plugin_link.place(
                [(p.name, p.object, p.assets, p.descriptor_name) for p in prepared],
                sym["sos_image_end"], work / "plugins")
        return _assemble(target, sections, sym, key=key, selftest=selftest, plugins=placed)


def _assemble(target, sections, sym, key=None, selftest=0, plugins=()):
    load, reserved_end = target.reserved_range
    tramp_addr, handoff_addr = load, load + PAGE_SIZE
    image_end = align_up(plugins[-1].end if plugins else sym["sos_image_end"], PAGE_SIZE)

    # Tables: IDT, memory list, sector list, then the page tables (placed once sized).
    saved, mem_list, sec_list = target_lists(target)
    idt_addr = image_end
    mem_addr = idt_addr + idt.IDT_BYTES
    sec_addr = mem_addr + len(mem_list)
    pt_base = align_up(sec_addr + len(sec_list), PAGE_SIZE)

    need = AHCI_DMA_SIZE + MIN_WRITER_SCRATCH      # scratch after the tables
    if plugins:
        need = max(need, PLUGIN_MIN_WRITER_SCRATCH)

    def too_small(tables_end):
        return UsageError(f"reserved.size: {target.reserved.size:#x} is too small for the "
                          f"payload (it needs at least {tables_end - load + need:#x})")

    def regions_for(pt_end):
        if pt_end > reserved_end:       # the code and tables alone overflow the region
            raise too_small(pt_end)
        r = [Region("trampoline", tramp_addr, tramp_addr + PAGE_SIZE, "r-x"),
             Region("handoff", handoff_addr, handoff_addr + PAGE_SIZE, "rw-")]
        perms = {".text": "r-x", ".rodata": "r--", ".data": "rw-", ".bss": "rw-"}
        for name, (addr, size, _) in sorted(sections.items(), key=lambda kv: kv[1][0]):
            r.append(Region(name, addr, align_up(addr + size, PAGE_SIZE), perms[name]))
        r.append(Region("stack", sym["sos_stack_bottom"], sym["sos_stack_top"], "rw-"))
        for p in plugins:
            r += [Region(label, s, e, core) for label, s, e, core, _ in p.regions]
        r.append(Region("tables", idt_addr, pt_end, "r--"))
        r.append(Region("scratch", pt_end, reserved_end, "rw-"))
        r += [Region("saved RAM", s, e, "r--") for s, e in saved]
        mmio = target.disk.base() & ~(PAGE_SIZE - 1)
        r.append(Region(f"{target.disk.kind} MMIO", mmio, mmio + DISK_MMIO_SPAN[target.disk.kind],
                        "rw-", uncached=True))
        if target.disk.iommu != "none":     # read-only: the payload only reads its status
            r.append(Region("IOMMU unit", target.disk.iommu_base,
                            target.disk.iommu_base + IOMMU_MMIO_SPAN, "r--", uncached=True))
        if target.reserved.ap_start:    # the shared start code runs there under our CR3
            r.append(Region("AP start page", target.reserved.ap_start,    # (drivers/apic.h)
                            target.reserved.ap_start + PAGE_SIZE, "rwx"))
            r.append(Region("local APIC", XAPIC_BASE, XAPIC_BASE + PAGE_SIZE, "rw-",
                            uncached=True))
        fb = target.framebuffer
        if fb:
            start = fb.address & ~(PAGE_SIZE - 1)
            r.append(Region("framebuffer", start, align_up(fb.address + fb.pitch * fb.height,
                                                           PAGE_SIZE), "rw-", uncached=True))
        return r

    def mappings(regions):
        return [pagetables.Mapping(r.start, r.end, writable="w" in r.perm,
                                   executable="x" in r.perm, uncached=r.uncached, name=r.name)
                for r in regions]

    def views(regions):   # the core's page tables, then one view per plugin
        from ..plugins.link import view_mappings
        return [mappings(regions)] + [view_mappings(regions, plugins, i)
                                      for i in range(len(plugins))]

    pt_size = 0
    for _ in range(4):   # the tables map themselves: iterate until their size settles
        size = sum(pagetables.table_bytes_needed(m) for m in views(regions_for(pt_base + pt_size)))
        if size == pt_size:
            break
        pt_size = size
    pt_end = pt_base + pt_size
    scratch = reserved_end - pt_end
    if scratch < need:
        raise too_small(pt_end)
    regions = regions_for(pt_end)
    all_maps = views(regions)
    tables = pagetables.build_page_tables(all_maps[0], pt_base)
    plugin_views, view_base = [], pt_base + len(tables.data)
    for m in all_maps[1:]:
        plugin_views.append(pagetables.build_page_tables(m, view_base))
        view_base += len(plugin_views[-1].data)

    code, exit_addr, ap_entry, ap_exit = trampoline.assemble(
        tramp_addr, handoff=handoff_addr, pml4=tables.root, idt_base=idt_addr,
        idt_limit=idt.IDT_BYTES - 1, stack_top=sym["sos_stack_top"],
        payload_main=sym["payload_main"], ap_main=sym["payload_ap_main"])
    if len(code) > PAGE_SIZE:
        raise AssertionError("trampoline outgrew its page")

    info = payload_info(target, key=key, selftest=selftest, memory_list=mem_addr,
                        sector_list=sec_addr, pml4=tables.root, scratch_base=pt_end,
                        scratch_size=scratch, stack_top=sym["sos_stack_top"],
                        trampoline_exit=exit_addr, ap_entry=ap_entry, ap_exit=ap_exit)
    data_addr, data_size, data = sections[".data"]
    data = patch_payload_info(data, data_addr, sym, info)
    if plugins:
        from ..plugins.link import plugin_table
        off = sym["sos_plugin_table"] - data_addr
        table = plugin_table(plugins, [v.root for v in plugin_views])
        data = data[:off] + table + data[off + len(table):]

    handoff_page = build(handofffmt.Handoff, handofffmt.new_handoff(), "handoff block")
    handoff_page = handoff_page.ljust(trampoline.GDT_OFFSET, b"\0") + trampoline.gdt_page_bytes(
        handoff_addr, idt_addr, idt.IDT_BYTES - 1)
    table_bytes = (idt.build_idt(sym, trampoline.CODE_SELECTOR) + mem_list + sec_list)
    table_bytes = table_bytes.ljust(pt_base - idt_addr, b"\0") + tables.data + b"".join(
        v.data for v in plugin_views)

    segs, payloads = [], []

    def add(kind, addr, perm, content, mem_size=None):
        # Long zero runs are left to the loader's zero-fill, so the blob stays small.
        end = addr + align_up(mem_size or len(content), PAGE_SIZE)
        pieces = _nonzero_pieces(content)
        for i, (off, piece) in enumerate(pieces):
            start = addr if i == 0 else addr + off
            stop = end if i + 1 == len(pieces) else addr + pieces[i + 1][0]
            data = piece if i else bytes(off) + piece
            segs.append(dict(addr=start, kind=kind, perm=perm, mem_size=stop - start))
            payloads.append(data)

    add(SEG.TRAMPOLINE, tramp_addr, PERM.R | PERM.X, code)
    add(SEG.HANDOFF, handoff_addr, PERM.R | PERM.W, handoff_page)
    for name, kind, perm in ((".text", SEG.TEXT, PERM.R | PERM.X),
                             (".rodata", SEG.RODATA, PERM.R), (".data", SEG.DATA, PERM.R | PERM.W)):
        if name in sections:
            addr, size, content = sections[name]
            add(kind, addr, perm, data if name == ".data" else content, size)
    if ".bss" in sections:
        addr, size, _ = sections[".bss"]
        add(SEG.BSS, addr, PERM.R | PERM.W, b"", size)
    for p in plugins:       # permissions as the plugin's own view maps them
        for name, kind, perm in ((".text", SEG.TEXT, PERM.R | PERM.X),
                                 (".rodata", SEG.RODATA, PERM.R),
                                 (".data", SEG.DATA, PERM.R | PERM.W),
                                 (".bss", SEG.BSS, PERM.R | PERM.W)):
            if name in p.linked.sections:
                addr, size, content = p.linked.sections[name]
                add(kind, addr, perm, content, size)
        if p.assets:
            add(SEG.RODATA, p.assets_addr, PERM.R, p.assets)
    add(SEG.TABLES, idt_addr, PERM.R, table_bytes)
    _fit_segments(segs, payloads)
    header = dict(magic=blobfmt.BLOB_MAGIC, flags=0, load_base=load,
                  reserved_size=target.reserved.size, entry=tramp_addr, handoff=handoff_addr,
                  payload_info=sym["sos_payload_info"])
    out = blobfmt.pack(header, segs, payloads)
    return BuildResult(blob=out, regions=regions, symbols=sym, tables=tables,
                       plugin_views=plugin_views)


def _fit_segments(segs, payloads):
    """Merge adjacent pieces of one segment (split at zero runs) until the blob's segment
    table is not over its limit, cheapest merge (fewest zero bytes stored) first."""
    while len(segs) > blobfmt.MAX_SEGMENTS:
        best = None
        for i in range(len(segs) - 1):
            a, b = segs[i], segs[i + 1]
            if a["kind"] == b["kind"] and a["perm"] == b["perm"] and \
                    a["addr"] + a["mem_size"] == b["addr"]:
                cost = a["mem_size"] - len(payloads[i])
                if best is None or cost < best[0]:
                    best = (cost, i)
        if best is None:
            raise UsageError(f"the payload needs more than {blobfmt.MAX_SEGMENTS} blob segments")
        i = best[1]
        payloads[i] = payloads[i].ljust(segs[i]["mem_size"], b"\0") + payloads[i + 1]
        segs[i]["mem_size"] += segs[i + 1]["mem_size"]
        del segs[i + 1], payloads[i + 1]
