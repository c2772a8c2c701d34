"""Code plugins and payloads with plugins, without QEMU: the scaffold builds as it comes, a
plugin that reaches for anything but the services table does not link, and each plugin's
page-table view, decoded from the blob's own bytes, lets it write only its own memory and
the framebuffer."""
import pytest

from suspendos.build.payload import build_payload
from suspendos.formats import plugin as fmt
from suspendos.formats.common import parse
from suspendos.inspect import BlobMemory, decode_page_tables
from suspendos.plugins import keys, package, sdk, theme
from suspendos.target.qemu import qemu_target

PCI = {"ahci": ("00:1f.2", 0xfebf1000), "vga": ("00:01.0", 0xfd000000, 1 << 24)}


def test_scaffold_builds_packs_and_verifies(tmp_path, cli):
    cli("plugin", "keygen", "-o", tmp_path / "key", cwd=tmp_path, check=True)
    (tmp_path / "trust").mkdir()
    (tmp_path / "trust" / "key.pub").write_bytes((tmp_path / "key.pub").read_bytes())
    cli("plugin", "new", "hello", cwd=tmp_path, check=True)
    assert (tmp_path / "hello" / "hello.c").exists()
    assert (tmp_path / "hello" / "sdk" / "sos_plugin.h").exists()
    assert "struct sos_plugin {" in (tmp_path / "hello" / "sdk" / "suspendos_abi.h").read_text()
    p = cli("plugin", "build", "hello", cwd=tmp_path, check=True)
    assert "plugin 'hello'" in p.stdout and (tmp_path / "hello" / "build" / "hello.o").exists()
    cli("plugin", "pack", "hello", "--key", "key", "-o", "hello.sop", cwd=tmp_path, check=True)
    p = cli("plugin", "verify", "hello.sop", "--trust", "trust", cwd=tmp_path, check=True)
    assert "code plugin 'hello'" in p.stdout
    p = cli("plugin", "new", "hello", cwd=tmp_path)
    assert p.returncode == 2 and "already exists" in p.stderr
    p = cli("plugin", "new", "Bad Name", cwd=tmp_path)
    assert p.returncode == 2


@pytest.mark.parametrize("body, problem", [
    ('extern void kprintf(const char *, ...);\n'
     'static void go(uint32_t s) { (void)s; kprintf("x"); }\n'
     'SOS_PLUGIN("x", 0, 0, 0, go);', "kprintf"),
    ('static int n;\nSOS_PLUGIN("x", 0, 0, 0, 0);\nint *p = &n;', None),
    ('SOS_PLUGIN("Not A Name", 0, 0, 0, 0);', "name"),
    ('int x;', "descriptor"),
])
def test_plugins_that_must_not_build(tmp_path, cli, body, problem):
    d = tmp_path / "x"
    d.mkdir()
    (d / "x.c").write_text('#include "sos_plugin.h"\n' + body + "\n")
    p = cli("plugin", "build", d)
    if problem is None:
        assert p.returncode == 0, p.stderr
    else:
        assert p.returncode != 0 and problem in p.stderr, p.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A 256M target with a 24-bpp framebuffer, built with a theme and a code plugin."""
    tmp = tmp_path_factory.mktemp("plugins")
    keys.keygen(tmp / "key")
    key = keys.load_private_key(tmp / "key")
    from PIL import Image
    Image.new("RGB", (64, 32), (1, 2, 3)).save(tmp / "s.png")
    th = package.make_package(fmt.PACKAGE_KIND.THEME, "look", [
        (fmt.SECTION_KIND.THEME, theme.theme_from_png(tmp / "s.png"))])
    sdk.new_plugin("code", tmp)
    obj, _, _ = sdk.build_plugin(tmp / "code")
    code = package.make_package(fmt.PACKAGE_KIND.CODE, "code", [
        (fmt.SECTION_KIND.OBJECT, obj.read_bytes()), (fmt.SECTION_KIND.ASSETS, b"A" * 5000)])
    for name, data in (("look", th), ("code", code)):
        (tmp / f"{name}.sop").write_bytes(package.sign_bytes(data, key))
    (tmp / "trust").mkdir()
    (tmp / "trust" / "key.pub").write_bytes((tmp / "key.pub").read_bytes())
    approved = package.approve([tmp / "look.sop", tmp / "code.sop"], tmp / "trust")
    t = qemu_target(256 << 20, pci=PCI, framebuffer=(640, 480, 24))
    return t, build_payload(t, plugins=approved)


def _perm(ranges, addr):
    for r in ranges:
        if r["start"] <= addr < r["end"]:
            return r["perm"] + (" uc" if r["uncached"] else "")
    return None


def test_each_plugin_view_allows_writes_only_to_its_own_memory(built):
    t, result = built
    mem = BlobMemory(result.blob)
    sym = result.symbols
    table = parse(fmt.PluginTable, mem.read(sym["sos_plugin_table"], fmt.PluginTable.sizeof()),
                  "plugin table")
    assert table.magic == fmt.PLUGIN_TABLE_MAGIC and table.count == 2
    regions = {r.name: r for r in result.regions}
    core = decode_page_tables(mem, result.tables.root)
    fb = t.framebuffer
    for i, name in enumerate(("look", "code")):
        slot = table.slots[i]
        assert slot.name.rstrip(b"\0").decode() == name
        view = decode_page_tables(mem, slot.cr3)
        own = {k[len(f"plugin {name} "):]: r for k, r in regions.items()
               if k.startswith(f"plugin {name} ")}
        assert _perm(view, own[".text"].start) == "r-x"
        assert _perm(core, own[".text"].start) == "r--"      # the core never runs it
        assert _perm(view, own["stack"].start) == "rw-"
        assert _perm(view, own["stack"].start - 4096) is None          # guard page
        assert _perm(view, slot.stack_top - 8) == "rw-"
        if ".data" in own:
            assert _perm(view, own[".data"].start) == "rw-"
            assert _perm(core, own[".data"].start) == "r--"
        if slot.scratch_size:
            assert _perm(view, slot.scratch) == "rw-"
        if slot.assets_size:
            assert _perm(view, slot.assets) == "r--"
        assert _perm(view, fb.address) == "rw- uc"
        assert _perm(view, fb.address + fb.pitch * fb.height - 1) == "rw- uc"
        # The core: code executable (the services), everything else read-only or absent.
        assert _perm(view, regions[".text"].start) == "r-x"
        for r in (".data", ".bss", "stack", "handoff", "tables"):
            assert _perm(view, regions[r].start) == "r--", r
        assert _perm(view, regions["trampoline"].start) is None
        assert _perm(view, regions["scratch"].start) is None          # the writer's buffers
        assert _perm(view, t.disk.ahci_base) is None                  # the disk
        for s, e in t.saved_ranges():
            assert _perm(view, s) == "r--" and _perm(view, e - 4096) == "r--"
        # The other plugin is not there at all.
        other = "code" if name == "look" else "look"
        assert _perm(view, regions[f"plugin {other} .text"].start) is None
        # Nothing else writable: every writable page is the framebuffer's or the plugin's
        # own data, bss, stack or scratch.
        mine = [own[k] for k in (".data", ".bss", "stack", "scratch") if k in own]
        for rng in view:
            if "w" in rng["perm"]:
                for page in range(rng["start"], rng["end"], 1 << 16 if rng["uncached"] else 4096):
                    assert (fb.address <= page < fb.address + (1 << 24)
                            or any(r.start <= page < r.end for r in mine)), (name, hex(page))
            assert not ("w" in rng["perm"] and "x" in rng["perm"])


def test_theme_asset_is_converted_for_the_target(built):
    t, result = built
    mem = BlobMemory(result.blob)
    slot = parse(fmt.PluginTable, mem.read(result.symbols["sos_plugin_table"],
                                           fmt.PluginTable.sizeof()), "plugin table").slots[0]
    head, pixels = theme.read_theme(mem.read(slot.assets, slot.assets_size))
    assert head.format == theme.FORMAT_NAMES["rgb888"] and pixels == bytes((3, 2, 1)) * 64 * 32
    assert slot.scratch_size == 64 * 1024


def test_build_cli_refuses_before_writing(tmp_path, cli):
    t = qemu_target(64 << 20, pci=PCI)
    from suspendos.target.description import save
    save(t, tmp_path / "t.toml")
    (tmp_path / "junk.sop").write_bytes(b"SOSPLUG\0" + bytes(100))
    for extra in (["--plugin", "junk.sop"], ["--plugin", "missing.sop"]):
        p = cli("build", "--target", "t.toml", "-o", "p.blob", *extra, cwd=tmp_path)
        assert p.returncode == 2 and len(p.stderr.splitlines()) == 1, p.stderr
        assert not (tmp_path / "p.blob").exists()


def test_blob_without_plugins_stays_small_and_has_an_empty_plugin_table():
    t = qemu_target(256 << 20, pci=PCI)
    result = build_payload(t)
    assert len(result.blob) <= 64 * 1024 and not result.plugin_views
    raw = BlobMemory(result.blob).read(result.symbols["sos_plugin_table"],
                                       fmt.PluginTable.sizeof())
    assert raw == bytes(len(raw))


def test_four_plugins_fit_the_blob(built, tmp_path):
    """The most plugins a payload takes: every segment still fits the blob's table (pieces
    of one segment are merged when needed) and a fifth is refused."""
    import copy
    t = copy.deepcopy(built[0])
    keys.keygen(tmp_path / "key")
    key = keys.load_private_key(tmp_path / "key")
    (tmp_path / "trust").mkdir()
    (tmp_path / "trust" / "key.pub").write_bytes((tmp_path / "key.pub").read_bytes())
    from PIL import Image
    Image.new("RGB", (300, 200), (9, 8, 7)).save(tmp_path / "s.png")
    asset = theme.theme_from_png(tmp_path / "s.png")
    paths = []
    for i in range(5):
        data = package.make_package(fmt.PACKAGE_KIND.THEME, f"t{i}",
                                    [(fmt.SECTION_KIND.THEME, asset)])
        paths.append(tmp_path / f"t{i}.sop")
        paths[-1].write_bytes(package.sign_bytes(data, key))
    with pytest.raises(Exception, match="at most 4"):
        package.approve(paths, tmp_path / "trust")
    t.reserved.size = 4 << 20
    result = build_payload(t, plugins=package.approve(paths[:4], tmp_path / "trust"))
    mem = BlobMemory(result.blob)
    assert mem.header.segment_count <= fmt_blob_max()
    assert len(result.plugin_views) == 4
    table = parse(fmt.PluginTable, mem.read(result.symbols["sos_plugin_table"],
                                            fmt.PluginTable.sizeof()), "plugin table")
    assert [s.name.rstrip(b"\0") for s in table.slots] == [b"t0", b"t1", b"t2", b"t3"]
    assert len({s.cr3 for s in table.slots}) == 4


def fmt_blob_max():
    from suspendos.formats.blob import MAX_SEGMENTS
    return MAX_SEGMENTS
