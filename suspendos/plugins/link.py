"""Putting plugins into a payload: each plugin is linked on its own (a separate ld step, so it
cannot reach a single symbol of the core) at its place in the reserved region, after the
core's image and before the tables:

    .text (RX)  .rodata (R)  .data (RW)  .bss (RW)  assets (R)  guard (unmapped)
    stack (RW, STACK_SIZE)  scratch (RW, scratch_kib)

and gets a page-table view of its own (generated like the core's, pagetables.py): the core's
code executable, the core's data, tables, handoff block and saved RAM read-only, the
writer's scratch, the AHCI registers and the other plugins absent; writable only its own
data, bss, stack and scratch and the framebuffer. In the core's view the plugin's pages are
read-only and not executable (the core never runs plugin code under its own tables), except
its stack, which the fault handler keeps using after it switches back to the core's tables.
"""
from dataclasses import dataclass, field
from pathlib import Path

from elftools.elf.elffile import ELFFile

from .. import pagetables
from ..build import toolchain
from ..errors import BuildError, FormatError
from ..formats import plugin as fmt
from ..formats.common import PAGE_SIZE, align_up, build, parse

STACK_SIZE = 16 * 1024
SYMBOL = "sos_plugin"

LINKER_SCRIPT = """\
/* One plugin, linked alone at its place in the reserved region (suspendos/plugins/link.py). */
ENTRY(sos_plugin)
SECTIONS
{
    . = @BASE@;
    .text : ALIGN(4096) { *(.text .text.* .ltext .ltext.*) }
    .rodata : ALIGN(4096) { KEEP(*(.rodata.sos_plugin)) *(.rodata .rodata.* .lrodata .lrodata.*) }
    .data : ALIGN(4096) { *(.data .data.* .ldata .ldata.*) }
    .bss : ALIGN(4096) { *(.bss .bss.* .lbss .lbss.*) *(COMMON) }
    . = ALIGN(4096);
    sos_plugin_end = .;
    /DISCARD/ : { *(.comment) *(.note*) *(.eh_frame*) *(.got*) }
}
"""
SECTIONS = (".text", ".rodata", ".data", ".bss")


@dataclass
class LinkedPlugin:
    name: str
    sections: dict              # name -> (addr, size, bytes)
    symbols: dict
    descriptor: object          # the parsed struct sos_plugin
    end: int


def link(obj, base, workdir, label):
    """Link relocatable object `obj` alone at `base`; check what it must be."""
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    out = work / f"plugin-{base:x}.elf"
    try:
        toolchain.link([obj], LINKER_SCRIPT.replace("@BASE@", hex(base)), out, work)
    except BuildError as e:
        raise BuildError(f"plugin {label}: it does not link on its own (a plugin may use only "
                         f"the services table, no other symbol): {str(e).splitlines()[0]}\n{e}")
    with open(out, "rb") as f:
        elf = ELFFile(f)
        sections = {}
        for s in elf.iter_sections():
            if not s["sh_flags"] & 2 or not s["sh_size"]:          # SHF_ALLOC
                continue
            if s.name not in SECTIONS:
                raise BuildError(f"plugin {label}: unexpected section {s.name}")
            data = b"" if s["sh_type"] == "SHT_NOBITS" else s.data()
            sections[s.name] = (s["sh_addr"], s["sh_size"], data)
        symtab = elf.get_section_by_name(".symtab")
        symbols = {sym.name: sym["st_value"] for sym in symtab.iter_symbols() if sym.name}
    if SYMBOL not in symbols:
        raise BuildError(f"plugin {label}: no `{SYMBOL}` descriptor (use SOS_PLUGIN(...) from "
                         f"sos_plugin.h)")
    desc = _descriptor(sections, symbols[SYMBOL], label)
    return LinkedPlugin(name=desc.name.split(b"\0")[0].decode("ascii", "replace"),
                        sections=sections, symbols=symbols, descriptor=desc,
                        end=align_up(symbols["sos_plugin_end"], PAGE_SIZE))


def _descriptor(sections, addr, label):
    size = fmt.PluginDescriptor.sizeof()
    for name, (start, length, data) in sections.items():
        if start <= addr and addr + size <= start + length and name != ".bss":
            raw = data[addr - start:addr - start + size]
            break
    else:
        raise BuildError(f"plugin {label}: `{SYMBOL}` is not an initialised descriptor")
    try:
        d = parse(fmt.PluginDescriptor, raw, f"plugin {label} descriptor")
    except FormatError as e:
        raise BuildError(str(e))
    name = d.name.split(b"\0")[0]
    problems = []
    if d.magic != fmt.PLUGIN_MAGIC:
        problems.append("bad magic")
    if d.abi_revision != fmt.PLUGIN_ABI_REVISION:
        problems.append(f"ABI revision {d.abi_revision}, this tool has "
                        f"{fmt.PLUGIN_ABI_REVISION} (rebuild it with `suspendos plugin build`)")
    if d.size != size:
        problems.append(f"size {d.size}, expected {size}")
    from .package import NAME_RE
    if not NAME_RE.match(name.decode("ascii", "replace")) or b"\0" not in d.name:
        problems.append(f"name {d.name!r} is not 1 to 31 of a-z 0-9 _ -")
    if d.scratch_kib > 4096:
        problems.append(f"scratch_kib {d.scratch_kib} is more than 4 MiB")
    text = sections.get(".text")
    for hook in ("init", "progress", "finish"):
        a = getattr(d, hook)
        if a and not (text and text[0] <= a < text[0] + text[1]):
            problems.append(f"hook {hook} at {a:#x} is not in the plugin's code")
    if problems:
        raise BuildError(f"plugin {label}: descriptor: " + "; ".join(problems))
    return d


@dataclass
class Placed:
    """A plugin at its place: what the blob, the page tables and the plugin table need."""
    name: str
    linked: LinkedPlugin
    assets: bytes
    assets_addr: int
    stack_bottom: int
    stack_top: int
    scratch: int
    scratch_size: int
    end: int
    regions: list = field(default_factory=list)   # (label, start, end, core perm, own perm)

    @property
    def text(self):
        t = self.linked.sections.get(".text")
        return (t[0], t[0] + t[1]) if t else (0, 0)


def place(objects, base, workdir):
    """Link and place plugins from `base` on. `objects`: [(name, object path, assets,
    the name its descriptor must carry)]. Returns ([Placed], end address)."""
    placed, cursor = [], align_up(base, PAGE_SIZE)
    for name, obj, assets, expect in objects:
        lp = link(obj, cursor, Path(workdir) / f"link-{name}", name)
        if lp.name != expect:
            raise BuildError(f"plugin {name}: its descriptor calls it {lp.name!r}")
        regions = []
        own = {".text": "r-x", ".rodata": "r--", ".data": "rw-", ".bss": "rw-"}
        for sname, (addr, size, _) in sorted(lp.sections.items(), key=lambda kv: kv[1][0]):
            regions.append((f"plugin {name} {sname}", addr, align_up(addr + size, PAGE_SIZE),
                            "r--", own[sname]))
        assets_addr = lp.end
        a_end = assets_addr + align_up(len(assets), PAGE_SIZE)
        if assets:
            regions.append((f"plugin {name} assets", assets_addr, a_end, "r--", "r--"))
        stack_bottom = a_end + PAGE_SIZE                     # a guard page below the stack
        stack_top = stack_bottom + STACK_SIZE
        regions.append((f"plugin {name} stack", stack_bottom, stack_top, "rw-", "rw-"))
        scratch_size = lp.descriptor.scratch_kib * 1024
        scratch_end = stack_top + align_up(scratch_size, PAGE_SIZE)
        if scratch_size:
            regions.append((f"plugin {name} scratch", stack_top, scratch_end, "r--", "rw-"))
        placed.append(Placed(name=name, linked=lp, assets=assets, assets_addr=assets_addr,
                             stack_bottom=stack_bottom, stack_top=stack_top, scratch=stack_top,
                             scratch_size=scratch_size, end=scratch_end, regions=regions))
        cursor = scratch_end
    return placed, cursor


# What each of the core's regions (build/payload.py names them) is in a plugin's view.
# Anything not named here is left out of the view.
VIEW_OF_CORE = {"handoff": "r--", ".text": "r-x", ".rodata": "r--", ".data": "r--",
                ".bss": "r--", "stack": "r--", "tables": "r--", "saved RAM": "r--",
                "framebuffer": "rw-"}


def view_mappings(core_regions, placed, index):
    """The page-table view of plugin `index`: pagetables.Mapping list."""
    maps = []
    for r in core_regions:
        if r.name.startswith("plugin "):
            continue
        perm = VIEW_OF_CORE.get(r.name)
        if perm:
            maps.append(pagetables.Mapping(r.start, r.end, writable="w" in perm,
                                           executable="x" in perm, uncached=r.uncached,
                                           name=r.name))
    for label, start, end, _, own in placed[index].regions:
        maps.append(pagetables.Mapping(start, end, writable="w" in own, executable="x" in own,
                                       name=label))
    return maps


def plugin_table(placed, roots):
    """The sos_plugin_table bytes: `roots` are the views' CR3 values, in order."""
    slots = []
    for p, cr3 in zip(placed, roots):
        text_start, text_end = p.text
        slots.append(dict(descriptor=p.linked.symbols[SYMBOL], cr3=cr3, stack_top=p.stack_top,
                          text_start=text_start, text_end=text_end,
                          assets=p.assets_addr if p.assets else 0, assets_size=len(p.assets),
                          scratch=p.scratch if p.scratch_size else 0,
                          scratch_size=p.scratch_size,
                          name=p.name.encode().ljust(fmt.PLUGIN_NAME_LEN, b"\0")))
    empty = dict(descriptor=0, cr3=0, stack_top=0, text_start=0, text_end=0, assets=0,
                 assets_size=0, scratch=0, scratch_size=0, name=bytes(fmt.PLUGIN_NAME_LEN))
    slots += [empty] * (fmt.MAX_PLUGINS - len(slots))
    return build(fmt.PluginTable, dict(magic=fmt.PLUGIN_TABLE_MAGIC if placed else 0,
                                       count=len(placed), slots=slots), "plugin table")
