"""Plugins under real QEMU: a theme made from a PNG shows on the test machine's Bochs VBE
framebuffer exactly as the Python rendering says (QMP screendump, compared with Pillow) at
32, 24 and 16 bpp, for under 2% of the write time; a plugin that writes outside its memory is
stopped by its page tables with nothing harmed; refused packages stop `qemu suspend` before
it makes the disk."""
import json

import pytest
from PIL import Image, ImageDraw

from suspendos.formats import plugin as fmt
from suspendos.plugins import package, render

FORMATS = {32: "xrgb8888", 24: "rgb888", 16: "rgb565"}


@pytest.fixture(scope="module")
def kit(tmp_path_factory, qemu_pci):
    """A signing key, a trust folder with its public key, a theme from a PNG, and plugins
    that write where they must not. `suspendos` commands only, as a plugin author would."""
    from conftest import run_cli as cli
    d = tmp_path_factory.mktemp("kit")
    cli("plugin", "keygen", "-o", d / "key", check=True)
    (d / "trust").mkdir()
    (d / "trust" / "key.pub").write_bytes((d / "key.pub").read_bytes())
    im = Image.new("RGB", (240, 160), (250, 250, 240))
    draw = ImageDraw.Draw(im)
    draw.ellipse((20, 20, 140, 140), fill=(200, 30, 60))
    draw.polygon([(150, 140), (190, 60), (230, 140)], fill=(30, 160, 80))
    for x in range(240):                       # every shade once: a misplaced pixel shows
        for y in range(4):
            im.putpixel((x, y), (x, 255 - x, (x * 37 + y * 91) & 255))
    im.save(d / "splash.png")
    cli("plugin", "pack", "--splash", d / "splash.png", "--bar-color", "30c0ff",
        "--background", "102030", "--key", d / "key", "-o", d / "sunrise.sop", check=True)
    for name, target in (("ramwriter", "(volatile uint64_t *)0x200000"),       # saved RAM
                         ("corewriter", "(volatile uint64_t *)svc")):          # core data
        cli("plugin", "new", name, "--dir", d, check=True)
        (d / name / f"{name}.c").write_text(f"""#include "sos_plugin.h"
static const struct sos_plugin_services *svc;
static int init(const struct sos_fb_info *fb, const struct sos_plugin_services *s)
{{
    (void)fb;
    svc = s;
    svc->log("writing where I must not, at the first progress");
    return 0;
}}
static void progress(uint64_t done, uint64_t total, uint32_t phase)
{{
    (void)total; (void)phase;
    if (done)
        *{target} = 0xbadbadbadull;
}}
SOS_PLUGIN("{name}", 0, init, progress, 0);
""")
        cli("plugin", "pack", d / name, "--key", d / "key", "-o", d / f"{name}.sop", check=True)
    return d


def suspend(cli, disk, kit, *extra, memory="64M"):
    p = cli("qemu", "suspend", "--memory", memory, "--disk", disk, "--json", "--quiet",
            "--trust", kit / "trust", *extra, timeout=300)
    return p, (json.loads(p.stdout) if p.stdout.strip() else None)


def check_screenshot(kit, shot, bpp):
    theme_asset = package.read_package(kit / "sunrise.sop").section(fmt.SECTION_KIND.THEME)
    want = render.render(theme_asset, 800, 600, 100, FORMATS[bpp])
    got = render.quantize(Image.open(shot), FORMATS[bpp])
    assert got.size == (800, 600)
    assert render.differences(want, got) == []
    # And the picture really is where it should be: the centre of the screen, as in the PNG.
    png = Image.open(kit / "splash.png").convert("RGB")
    crop = Image.open(shot).convert("RGB").crop((280, 220, 520, 380))
    if bpp != 16:
        assert crop.tobytes() == png.tobytes()


def test_theme_at_32_bpp_pixel_exact(tmp_path, cli, kit):
    """The drawing cost is measured, not judged here: speeds belong to bench/."""
    shot = tmp_path / "shot.png"
    p, s = suspend(cli, tmp_path / "disk.img", kit, "--plugin", kit / "sunrise.sop",
                   "--screenshot", shot, memory="256M")
    assert p.returncode == 0, p.stderr
    assert s["status"] == "written" and s["plugins"] == {"sunrise": "ready"}
    assert s["framebuffer"] == "800x600x32 pitch=3200"
    assert s["host_memory_check"] == "passed" and s["host_cpu_check"] == "passed"
    check_screenshot(kit, shot, 32)
    assert 0 < s["draw_seconds"] and 0 < s["draw_percent"] < 100, s     # the hooks ran
    assert cli("image", "verify", tmp_path / "disk.img").returncode == 0


@pytest.mark.parametrize("bpp", [24, 16])
def test_theme_at_24_and_16_bpp(tmp_path, cli, kit, bpp):
    shot = tmp_path / "shot.png"
    p, s = suspend(cli, tmp_path / "disk.img", kit, "--plugin", kit / "sunrise.sop",
                   "--framebuffer", f"800x600x{bpp}", "--screenshot", shot)
    assert p.returncode == 0, p.stderr
    assert s["framebuffer"] == f"800x600x{bpp} pitch={800 * bpp // 8}"
    check_screenshot(kit, shot, bpp)


@pytest.mark.parametrize("name", ["ramwriter", "corewriter"])
def test_a_plugin_writing_outside_its_memory_is_stopped(tmp_path, cli, kit, name):
    disk = tmp_path / "disk.img"
    p, s = suspend(cli, disk, kit, "--plugin", kit / f"{name}.sop",
                   "--plugin", kit / "sunrise.sop")
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert s["status"] == "plugin_fault" and s["fault_vector"] == 14
    assert s["message"].startswith(f"plugin {name}: #PF write to {s['fault_address']:x}")
    if name == "ramwriter":
        assert s["fault_address"] == 0x200000
    else:                                    # the services table, in the core's .bss
        assert 0x1000000 <= s["fault_address"] < 0x1200000
    assert s["host_memory_check"] == "passed" and s["host_cpu_check"] == "passed"
    assert s["pages_saved"] < s["pages_total"]
    p = cli("image", "info", disk)
    assert p.returncode == 2 and "no image" in p.stderr


def test_refused_packages_stop_before_the_disk_is_made(tmp_path, cli, kit):
    signed = (kit / "sunrise.sop").read_bytes()
    unsigned = package.parse_package(signed).signed_part
    tampered = bytearray(signed)
    tampered[len(signed) // 2] ^= 1
    cli("plugin", "keygen", "-o", tmp_path / "stranger", check=True)
    (tmp_path / "unsigned.sop").write_bytes(unsigned)
    (tmp_path / "tampered.sop").write_bytes(bytes(tampered))
    cli("plugin", "sign", kit / "sunrise.sop", "--key", tmp_path / "stranger", "-o",
        tmp_path / "untrusted.sop", check=True)
    for name, why in (("unsigned", "not signed"), ("tampered", "does not verify"),
                      ("untrusted", "not a trusted key")):
        p, _ = suspend(cli, tmp_path / "disk.img", kit, "--plugin", tmp_path / f"{name}.sop")
        assert p.returncode == 2 and why in p.stderr, p.stderr
        assert len(p.stderr.splitlines()) == 1
        assert not (tmp_path / "disk.img").exists()
