"""Generate the C header (suspendos_abi.h) from the construct declarations.

The C side of the project never spells out a layout by hand: every struct and constant it
shares with Python comes from here. Each struct gets _Static_asserts on its size, so a
compiler that lays a struct out differently fails the build; tests/test_abi_agreement.py
additionally compiles a probe that prints every sizeof/offsetof.
"""
import construct as c

from . import blob, context, efi_runtime, handoff, image, lists, payload_info, plugin, smp, \
    status
from .common import Constants

# (C name, construct declaration), in dependency order.
STRUCTS = [
    ("sos_cpu_context", context.CpuContext),
    ("sos_cpu_slot", smp.CpuSlot),
    ("sos_ap_context", smp.ApContext),
    ("sos_handoff", handoff.Handoff),
    ("sos_mem_range", lists.MemRange),
    ("sos_extent", lists.Extent),
    ("sos_efi_runtime_entry", efi_runtime.EfiRuntimeEntry),
    ("sos_efi_runtime_list", efi_runtime.EfiRuntimeList),
    ("sos_payload_info", payload_info.PayloadInfo),
    ("sos_blob_header", blob.BlobHeader),
    ("sos_blob_segment", blob.Segment),
    ("sos_image_header", image.ImageHeader),
    ("sos_chunk_header", image.ChunkHeader),
    ("sos_fb_info", plugin.FbInfo),
    ("sos_plugin_services", plugin.PluginServices),
    ("sos_plugin", plugin.PluginDescriptor),
    ("sos_plugin_slot", plugin.PluginSlot),
    ("sos_plugin_table", plugin.PluginTable),
    ("sos_theme", plugin.Theme),
    ("sos_theme_band", plugin.ThemeBand),
    ("sos_package_header", plugin.PackageHeader),
    ("sos_package_section", plugin.PackageSection),
    ("sos_package_signature", plugin.PackageSignature),
]



def _values():
    """Every exported constant group and plain value, gathered from the format modules."""
    groups = []
    for mod in (status, handoff, smp, payload_info, blob, image, plugin, efi_runtime):
        for name in dir(mod):
            obj = getattr(mod, name)
            if isinstance(obj, Constants) and obj not in groups:
                groups.append(obj)
    plain = {
        "SOS_HANDOFF_MAGIC": handoff.HANDOFF_MAGIC,
        "SOS_HANDOFF_REVISION": handoff.HANDOFF_REVISION,
        "SOS_MAX_CPUS": smp.MAX_CPUS,
        "SOS_FREE_POISON_BYTE": handoff.FREE_POISON_BYTE,
        "SOS_PAYLOAD_INFO_MAGIC": payload_info.PAYLOAD_INFO_MAGIC,
        "SOS_PAYLOAD_INFO_REVISION": payload_info.PAYLOAD_INFO_REVISION,
        "SOS_BLOB_VERSION": blob.BLOB_VERSION,
        "SOS_BLOB_MAX_SEGMENTS": blob.MAX_SEGMENTS,
        "SOS_IMAGE_VERSION": image.IMAGE_VERSION,
        "SOS_IMAGE_HEADER_BLOCK": image.HEADER_BLOCK,
        "SOS_CHUNK_MAGIC": image.CHUNK_MAGIC,
        "SOS_CHUNK_ALIGN": image.CHUNK_ALIGN,
        "SOS_MAX_CHUNK_PAGES": image.MAX_CHUNK_PAGES,
        "SOS_RAW_CHUNK_HEADER": image.RAW_CHUNK_HEADER,
        "SOS_EFI_RUNTIME_MAX": efi_runtime.MAX_ENTRIES,
        "SOS_EFI_DESCRIPTOR_VERSION": efi_runtime.DESCRIPTOR_VERSION,
        "SOS_EFI_MEMORY_RUNTIME": efi_runtime.MEMORY_RUNTIME,
        "SOS_PAGE_SIZE": 4096,
        "SOS_SECTOR_SIZE": 512,
        "SOS_PLUGIN_MAGIC": plugin.PLUGIN_MAGIC,
        "SOS_PLUGIN_ABI_REVISION": plugin.PLUGIN_ABI_REVISION,
        "SOS_PLUGIN_TABLE_MAGIC": plugin.PLUGIN_TABLE_MAGIC,
        "SOS_MAX_PLUGINS": plugin.MAX_PLUGINS,
        "SOS_PLUGIN_NAME_LEN": plugin.PLUGIN_NAME_LEN,
        "SOS_THEME_MAGIC": plugin.THEME_MAGIC,
        "SOS_THEME_REVISION": plugin.THEME_REVISION,
        "SOS_PACKAGE_VERSION": plugin.PACKAGE_VERSION,
    }
    strings = {"SOS_BLOB_MAGIC": blob.BLOB_MAGIC, "SOS_IMAGE_MAGIC": image.IMAGE_MAGIC,
               "SOS_PACKAGE_MAGIC": plugin.PACKAGE_MAGIC,
               "SOS_SIGNATURE_MAGIC": plugin.SIGNATURE_MAGIC}
    return groups, plain, strings


_INT_TYPES = {1: "uint8_t", 2: "uint16_t", 4: "uint32_t", 8: "uint64_t"}


def _unwrap(sc):
    while isinstance(sc, (c.Renamed, c.Const, c.Adapter)) and not isinstance(sc, c.Array):
        sc = sc.subcon
    return sc


def _field(sc, names):
    """(C type, array suffix) for one subcon."""
    inner = _unwrap(sc)
    if isinstance(inner, plugin.CPointer):      # pointers: declarator with the name inside
        return inner.decl, None
    if isinstance(inner, c.FormatField):
        return _INT_TYPES[inner.sizeof()], ""
    if isinstance(inner, c.Bytes):
        return "uint8_t", f"[{inner.sizeof()}]"
    if isinstance(inner, c.Array):
        elem_type, elem_suffix = _field(inner.subcon, names)
        return elem_type, f"[{inner.count}]{elem_suffix}"
    if isinstance(inner, c.Struct):
        return f"struct {names[id(inner)]}", ""
    raise TypeError(f"cannot express {inner!r} in C")


def struct_fields(struct):
    """[(field name, byte offset, byte size)] of a fixed-size Struct."""
    out, off = [], 0
    for sc in struct.subcons:
        out.append((sc.name, off, sc.sizeof()))
        off += sc.sizeof()
    return out


def generate():
    names = {id(s): n for n, s in STRUCTS}
    groups, plain, strings = _values()
    out = ["/* Generated by suspendos.formats.cheader from the construct declarations.",
           " * Do not edit: change the Python declaration instead. */",
           "#ifndef SUSPENDOS_ABI_H", "#define SUSPENDOS_ABI_H", "",
           "#include <stdint.h>", ""]
    for name, value in plain.items():
        out.append(f"#define {name} {value:#x}u")
    for name, value in strings.items():
        out.append(f'#define {name} "{value.rstrip(bytes(1)).decode()}"')
        out.append(f"#define {name}_LEN {len(value)}")
    for group in groups:
        out += ["", f"/* {group.doc} */"]
        for k, v in group.values.items():
            out.append(f"#define {group.prefix}{k} {v:#x}u")
    for cname, struct in STRUCTS:
        out += ["", f"struct {cname} {{"]
        for sc in struct.subcons:
            ctype, suffix = _field(sc, names)
            decl = ctype.format(sc.name) if suffix is None else f"{ctype} {sc.name}{suffix}"
            out.append(f"    {decl};")
        # No `packed`: every declaration is laid out naturally aligned on purpose, and the
        # asserts below fail the build if a compiler disagrees.
        out.append("};" if cname != "sos_cpu_context" else "} __attribute__((aligned(16)));")
        out.append(f"_Static_assert(sizeof(struct {cname}) == {struct.sizeof()}, "
                   f"\"{cname} size\");")
        for fname, off, _ in struct_fields(struct):
            out.append(f"_Static_assert(__builtin_offsetof(struct {cname}, {fname}) == {off}, "
                       f"\"{cname}.{fname}\");")
    out += ["", "#endif", ""]
    return "\n".join(out)


def write(path):
    text = generate()
    try:
        with open(path) as f:
            if f.read() == text:
                return path
    except FileNotFoundError:
        pass
    with open(path, "w") as f:
        f.write(text)
    return path


if __name__ == "__main__":
    print(generate())
