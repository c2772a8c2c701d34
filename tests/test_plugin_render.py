"""The built-in progress plugin's C, run on the host against a framebuffer in memory, draws
exactly what suspendos/plugins/render.py computes: any size, a pitch wider than a row,
32/24/16 bpp, splashes larger than the screen (clipped), partial progress; and it writes
nothing but the visible pixels (padding at the end of each row and guard bytes around the
framebuffer keep their pattern)."""
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from suspendos.formats import cheader
from suspendos.formats.payload_info import FB_FORMAT
from suspendos.formats.status import STATUS
from suspendos.plugins import font, render, theme

ROOT = Path(__file__).resolve().parent.parent
GUARD = 4096
FORMATS = {32: ("xrgb8888", FB_FORMAT.XRGB8888), 24: ("rgb888", FB_FORMAT.RGB888),
           16: ("rgb565", FB_FORMAT.RGB565)}


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    d = tmp_path_factory.mktemp("progress")
    cheader.write(d / "suspendos_abi.h")
    (d / "progress_font.h").write_text(font.c_header())
    exe = d / "progress_harness"
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-std=gnu11", f"-I{d}",
                    f"-I{ROOT / 'plugins/sdk'}", f"-I{ROOT / 'builder/core'}",
                    str(ROOT / "plugins/progress/progress.c"), str(ROOT / "builder/core/lz4.c"),
                    str(ROOT / "tests/c/progress_harness.c"), "-o", str(exe)], check=True,
                   timeout=120)
    return exe


def picture(path, size):
    im = Image.new("RGB", size, (250, 240, 230))
    d = ImageDraw.Draw(im)
    d.ellipse((0, 0, size[0] - 1, size[1] - 1), fill=(20, 100, 200))
    for x in range(size[0]):
        im.putpixel((x, x % size[1]), (x & 255, 255 - (x & 255), (x * 13) & 255))
    im.save(path)
    return path


def to_rgb(raw, w, h, pitch, bpp):
    rows = b"".join(raw[y * pitch:y * pitch + w * bpp // 8] for y in range(h))
    if bpp == 32:
        return Image.frombytes("RGB", (w, h), rows, "raw", "BGRX")
    if bpp == 24:
        return Image.frombytes("RGB", (w, h), rows, "raw", "BGR")
    px = [int.from_bytes(rows[i:i + 2], "little") for i in range(0, len(rows), 2)]
    img = Image.new("RGB", (w, h))
    img.putdata([((p >> 11) << 3, (p >> 5 & 63) << 2, (p & 31) << 3) for p in px])
    return img


@pytest.mark.parametrize("w, h, pad, bpp, splash, percent", [
    (800, 600, 128, 32, (240, 160), 100),
    (333, 211, 25, 24, (500, 300), 100),       # splash larger than the screen both ways
    (320, 200, 64, 16, (400, 90), 100),        # wider only
    (640, 480, 0, 32, (64, 700), 42),          # taller only; stopped at 42 %
    (1024, 768, 4, 24, (1, 1), 7),
])
def test_progress_plugin_draws_what_python_computes(tmp_path, harness, w, h, pad, bpp,
                                                    splash, percent):
    name, code = FORMATS[bpp]
    asset = theme.theme_for_framebuffer(
        theme.theme_from_png(picture(tmp_path / "s.png", splash), 0x102030, 0x30C0FF), code)
    (tmp_path / "asset").write_bytes(asset)
    pitch = w * bpp // 8 + pad
    status = STATUS.WRITTEN if percent == 100 else 0
    subprocess.run([str(harness), tmp_path / "asset", str(w), str(h), str(pitch), str(bpp),
                    str(code), str(percent), str(status), tmp_path / "fb"], check=True,
                   timeout=60)
    raw = (tmp_path / "fb").read_bytes()
    assert raw[:GUARD] == raw[-GUARD:] == b"\xa5" * GUARD, "wrote outside the framebuffer"
    fbmem = raw[GUARD:-GUARD]
    for y in range(h):                       # the padding at the end of every row
        assert fbmem[y * pitch + w * bpp // 8:(y + 1) * pitch] == b"\xa5" * pad, y
    got = to_rgb(fbmem, w, h, pitch, bpp)
    want = render.render(asset if bpp == 32 else theme.theme_from_png(
        tmp_path / "s.png", 0x102030, 0x30C0FF), w, h, percent, name)
    assert render.differences(want, got) == []


def test_failed_run_leaves_the_bar_where_it_was(tmp_path, harness):
    asset = theme.theme_from_png(picture(tmp_path / "s.png", (50, 50)), 0, 0xFFFFFF)
    (tmp_path / "asset").write_bytes(asset)
    subprocess.run([str(harness), tmp_path / "asset", "640", "480", "2560", "32",
                    str(FB_FORMAT.XRGB8888), "30", str(STATUS.AHCI_TIMEOUT), tmp_path / "fb"],
                   check=True, timeout=60)
    got = to_rgb((tmp_path / "fb").read_bytes()[GUARD:-GUARD], 640, 480, 2560, 32)
    assert render.differences(render.render(asset, 640, 480, 30), got) == []


def test_unusable_framebuffer_or_theme_is_declined(tmp_path, harness):
    asset = theme.theme_from_png(picture(tmp_path / "s.png", (50, 50)), 0, 0xFFFFFF)
    (tmp_path / "asset").write_bytes(asset)
    for bpp, code in ((8, FB_FORMAT.XRGB8888), (32, FB_FORMAT.RGB565), (16, FB_FORMAT.RGB565)):
        # 8 bpp: not drawable; 32 with RGB565: inconsistent; 16 bpp with an XRGB theme:
        # the theme is not for this framebuffer.
        p = subprocess.run([str(harness), tmp_path / "asset", "640", "480", "2560", str(bpp),
                            str(code), "100", "1", tmp_path / "fb"], capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 3 and "declined" in p.stderr, (bpp, p.stderr)
    (tmp_path / "asset").write_bytes(asset[:40])          # truncated band table
    p = subprocess.run([str(harness), tmp_path / "asset", "640", "480", "2560", "32",
                        str(FB_FORMAT.XRGB8888), "100", "1", tmp_path / "fb"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 3
