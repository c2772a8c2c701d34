"""Plugins: the ABI between the payload core and a plugin, the plugin table the builder hands
the core, the theme asset of the built-in progress plugin, and the signed package (.sop).

A plugin is a freestanding relocatable object that defines one symbol, `sos_plugin`, a
struct sos_plugin (magic, ABI revision, name, hooks). The builder links each plugin on its
own pages inside the reserved region and gives it a page-table view in which only its own
data, stack and scratch and the framebuffer are writable; the core switches to that view
(and to the plugin's own stack) for every hook call, and back afterwards. A fault inside a
hook ends the run with SOS_STATUS_PLUGIN_FAULT naming the plugin, before any image header is
written. Hooks, in the order the core calls them (each may be NULL):

    init(fb, svc)              once, before the disk is touched; non-zero: the plugin is
                               left out of the run (it declined, e.g. an unsupported bpp)
    progress(done, total, phase)   when done * 100 / total changes (at most 101 times a phase)
    finish(status)             once, just before the image header is written (status
                               SOS_STATUS_WRITTEN) or after a failed run (its status)

`fb` and `svc` point into the core's memory (read-only for the plugin) and stay valid for the
whole run. The services run on the plugin's stack under the plugin's view, so the pointers a
plugin passes them are checked by the page tables like its own accesses. Time spent in hooks
is added to handoff.draw_tsc.

The package (.sop): a header, a section table, the sections' bytes, then an optional
signature block. The signature is ed25519 (RFC 8032) over every byte before the block; the
block carries the signer's public key, which must be one of the trusted keys. A theme
package carries a THEME section (the asset below, pixels in XRGB8888); a code package an
OBJECT section (an ELF64 x86-64 relocatable object) and optionally an ASSETS section.

The theme asset: a struct sos_theme, sos_theme_band[band_count], then the bands: LZ4 blocks
(lz4 doc/lz4_Block_format.md, no size prefix), each band_rows rows of the splash (the last
may have fewer), rows packed (width * bytes per pixel each) in the theme's pixel format.
Band offsets count from the start of the asset. Colours are 0xRRGGBB.
"""
import construct as c

from .common import Constants, magic32, u8, u16, u32, u64


class CPointer(c.FormatField):
    """A u64 that C sees as a pointer: `decl` is its C declarator with {} for the field name,
    e.g. "const uint8_t *{}" or "void (*{})(const char *msg)"."""

    def __init__(self, decl):
        super().__init__("<", "Q")
        self.decl = decl


PLUGIN_MAGIC = magic32("SOSP")
PLUGIN_ABI_REVISION = 1
PLUGIN_TABLE_MAGIC = magic32("SOPT")
THEME_MAGIC = magic32("SOST")
THEME_REVISION = 1
MAX_PLUGINS = 4
PLUGIN_NAME_LEN = 32
PACKAGE_MAGIC = b"SOSPLUG\0"
PACKAGE_VERSION = 1
SIGNATURE_MAGIC = b"SOSSIGN\0"

PHASE = Constants("SOS_PHASE_", "What a plugin's progress hook is counting.",
                  WRITING=1,      # pages written to the image
                  READING=2)      # pages read back (resume loader)
PACKAGE_KIND = Constants("SOS_PKG_", "Package kinds (sos_package_header.kind).",
                         THEME=1, CODE=2)
SECTION_KIND = Constants("SOS_PKG_SECTION_", "Package section kinds.",
                         THEME=1, OBJECT=2, ASSETS=3)
SIGNATURE_ALGORITHM = Constants("SOS_SIG_", "Package signature algorithms.", ED25519=1)

FbInfo = c.Struct(
    "addr" / CPointer("uint8_t *{}"),   # linear framebuffer; 0: none
    "width" / u32,
    "height" / u32,
    "pitch" / u32,                      # bytes from one row to the next
    "bpp" / u8,                         # 16, 24 or 32
    "format" / u8,                      # SOS_FB_*
    "_pad0" / c.Bytes(2),
)

PluginServices = c.Struct(
    "size" / u32,
    "revision" / u32,                   # PLUGIN_ABI_REVISION
    "tsc_hz" / u64,                     # timestamp() ticks per second
    "assets" / CPointer("const uint8_t *{}"),   # the package's asset (read-only), or 0
    "assets_size" / u64,
    "scratch" / CPointer("uint8_t *{}"),        # this plugin's writable scratch
    "scratch_size" / u64,
    "log" / CPointer("void (*{})(const char *msg)"),
    "memcpy" / CPointer("void *(*{})(void *dst, const void *src, uint64_t n)"),
    "memset" / CPointer("void *(*{})(void *dst, int c, uint64_t n)"),
    "lz4_decompress" / CPointer(
        "int (*{})(const uint8_t *src, int src_len, uint8_t *dst, int dst_cap)"),
    "timestamp" / CPointer("uint64_t (*{})(void)"),
)

PluginDescriptor = c.Struct(
    "magic" / u32,                      # PLUGIN_MAGIC
    "abi_revision" / u16,               # PLUGIN_ABI_REVISION
    "size" / u16,                       # sizeof(struct sos_plugin)
    "name" / c.Bytes(PLUGIN_NAME_LEN),  # NUL-terminated: [a-z0-9_-], 1 to 31 characters
    "scratch_kib" / u32,                # scratch the plugin wants (KiB; 0: none)
    "flags" / u32,                      # 0
    "init" / CPointer(
        "int (*{})(const struct sos_fb_info *fb, const struct sos_plugin_services *svc)"),
    "progress" / CPointer("void (*{})(uint64_t done, uint64_t total, uint32_t phase)"),
    "finish" / CPointer("void (*{})(uint32_t status)"),
)

PluginSlot = c.Struct(
    "descriptor" / u64,                 # address of the plugin's struct sos_plugin
    "cr3" / u64,                        # the plugin's page-table view
    "stack_top" / u64,                  # its own stack (16-byte aligned)
    "text_start" / u64,                 # hooks must point into [text_start, text_end)
    "text_end" / u64,
    "assets" / u64,
    "assets_size" / u64,
    "scratch" / u64,
    "scratch_size" / u64,
    "name" / c.Bytes(PLUGIN_NAME_LEN),
)

PluginTable = c.Struct(
    "magic" / u32,                      # PLUGIN_TABLE_MAGIC when count > 0
    "count" / u32,
    "slots" / c.Array(MAX_PLUGINS, PluginSlot),
)

Theme = c.Struct(
    "magic" / u32,                      # THEME_MAGIC
    "revision" / u16,
    "size" / u16,                       # sizeof(struct sos_theme)
    "width" / u32,                      # splash size in pixels; 0 x 0: no splash
    "height" / u32,
    "format" / u32,                     # SOS_FB_* of the band pixels
    "band_rows" / u32,
    "band_count" / u32,
    "background" / u32,                 # 0xRRGGBB
    "bar_color" / u32,
    "_pad0" / u32,
)

ThemeBand = c.Struct(
    "offset" / u32,                     # from the start of the asset
    "size" / u32,                       # LZ4 block bytes
)

PackageHeader = c.Struct(
    "magic" / c.Const(PACKAGE_MAGIC),
    "version" / u16,
    "kind" / u16,                       # SOS_PKG_*
    "section_count" / u32,
    "abi_revision" / u32,               # PLUGIN_ABI_REVISION the package was made for
    "flags" / u32,                      # 0
    "name" / c.Bytes(PLUGIN_NAME_LEN),
    "body_size" / u64,                  # section table + section data, after this header
)

PackageSection = c.Struct(
    "kind" / u32,                       # SOS_PKG_SECTION_*
    "flags" / u32,
    "offset" / u64,                     # from the start of the package
    "size" / u64,
)

PackageSignature = c.Struct(
    "magic" / c.Const(SIGNATURE_MAGIC),
    "algorithm" / u32,                  # SOS_SIG_ED25519
    "_pad0" / u32,
    "public_key" / c.Bytes(32),         # raw ed25519 public key of the signer
    "signature" / c.Bytes(64),          # over every byte of the package before this block
)
