"""Splash themes: a picture and two colours for the built-in progress plugin, no code.

`suspendos plugin pack --splash IMAGE.png` converts the picture with Pillow (transparency is
composited over the background colour) into XRGB8888 rows, cut into bands of at most
BAND_BYTES, each compressed losslessly as one LZ4 block (python-lz4). That asset (struct
sos_theme, formats/plugin.py) is what the package carries and what the plugin draws from on a
32-bpp framebuffer, byte for byte. For a 24- or 16-bpp target the builder converts it to the
target's pixel format (RGB888 bytes B,G,R; RGB565 by dropping low bits) and re-bands it.
"""
import array

import lz4.block

from ..errors import FormatError, UsageError
from ..formats import plugin as fmt
from ..formats.common import build, parse
from ..formats.payload_info import FB_FORMAT

BAND_BYTES = 64 * 1024          # the progress plugin's scratch holds one band
MAX_SPLASH = 4096               # pixels, either side
BYTES_PER_PIXEL = {FB_FORMAT.XRGB8888: 4, FB_FORMAT.RGB888: 3, FB_FORMAT.RGB565: 2}
FORMAT_NAMES = {"xrgb8888": FB_FORMAT.XRGB8888, "rgb888": FB_FORMAT.RGB888,
                "rgb565": FB_FORMAT.RGB565}
DEFAULT_BACKGROUND = 0x000000
DEFAULT_BAR_COLOR = 0xFFFFFF


def parse_color(text, what):
    t = text[1:] if text.startswith("#") else text
    if len(t) != 6 or any(ch not in "0123456789abcdefABCDEF" for ch in t):
        raise UsageError(f"{what}: {text!r} is not a colour RRGGBB (hex)")
    return int(t, 16)


def load_splash(path, background):
    """The picture as a Pillow RGB image, transparency composited over `background`."""
    import warnings
    with warnings.catch_warnings():
        # Pillow warns on stderr about what it decodes anyway (a palette's transparency
        # given as bytes, damaged EXIF data, a large picture): not a line the user can act
        # on. The size is checked from the header before anything is decoded, and what
        # Pillow cannot decode is an error below.
        warnings.simplefilter("ignore")
        return _load_splash(path, background)


def _load_splash(path, background):
    from PIL import Image, UnidentifiedImageError

    from ..fileutil import open_input, show
    with open_input(path, "--splash") as f:
        try:
            with Image.open(f) as im:
                w, h = im.size
                if not (1 <= w <= MAX_SPLASH and 1 <= h <= MAX_SPLASH):
                    raise UsageError(f"--splash: {show(path)} is {w}x{h}; at most "
                                     f"{MAX_SPLASH}x{MAX_SPLASH}")
                im.load()
                img = im.copy()
        except Image.DecompressionBombError:
            raise UsageError(f"--splash: {show(path)} is larger than {MAX_SPLASH}x{MAX_SPLASH}")
        except UnidentifiedImageError:
            raise UsageError(f"--splash: {show(path)}: not a picture Pillow can read")
        except (OSError, ValueError, SyntaxError) as e:
            raise UsageError(f"--splash: {show(path)}: not a picture Pillow can read "
                             f"({' '.join(str(e).split())})")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        under = Image.new("RGBA", img.size, _rgb(background) + (255,))
        return Image.alpha_composite(under, rgba).convert("RGB")
    return img.convert("RGB")


def _rgb(c):
    return (c >> 16 & 255, c >> 8 & 255, c & 255)


def _rows_to_format(xrgb, fb_format):
    """XRGB8888 pixel bytes converted to `fb_format`."""
    if fb_format == FB_FORMAT.XRGB8888:
        return xrgb
    if fb_format == FB_FORMAT.RGB888:
        return _drop_x(xrgb)
    px = array.array("I")
    px.frombytes(xrgb)
    out = array.array("H", (((p >> 19 & 31) << 11) | ((p >> 10 & 63) << 5) | (p >> 3 & 31)
                            for p in px))
    return out.tobytes()


def _drop_x(xrgb):
    b = bytearray(len(xrgb) // 4 * 3)
    b[0::3], b[1::3], b[2::3] = xrgb[0::4], xrgb[1::4], xrgb[2::4]
    return bytes(b)


def make_theme(pixels, width, height, fb_format, background, bar_color):
    """The theme asset: `pixels` (packed rows in `fb_format`) cut into LZ4 bands."""
    bpp = BYTES_PER_PIXEL[fb_format]
    row = width * bpp
    band_rows = max(1, BAND_BYTES // row) if width else 0
    count = -(-height // band_rows) if band_rows else 0
    head_size = fmt.Theme.sizeof() + count * fmt.ThemeBand.sizeof()
    bands, blocks, offset = [], [], head_size
    for b in range(count):
        chunk = pixels[b * band_rows * row:(b + 1) * band_rows * row]
        block = lz4.block.compress(chunk, mode="high_compression", compression=9,
                                   store_size=False)
        if lz4.block.decompress(block, uncompressed_size=len(chunk)) != chunk:
            raise AssertionError("LZ4 round trip failed")
        bands.append(dict(offset=offset, size=len(block)))
        blocks.append(block)
        offset += len(block)
    head = dict(magic=fmt.THEME_MAGIC, revision=fmt.THEME_REVISION, size=fmt.Theme.sizeof(),
                width=width, height=height, format=fb_format, band_rows=band_rows,
                band_count=count, background=background, bar_color=bar_color, _pad0=0)
    out = build(fmt.Theme, head, "theme")
    for b in bands:
        out += build(fmt.ThemeBand, b, "theme band")
    return out + b"".join(blocks)


def theme_from_png(path, background=DEFAULT_BACKGROUND, bar_color=DEFAULT_BAR_COLOR):
    """The package's THEME section: the picture in XRGB8888. path None: no picture."""
    if path is None:
        return make_theme(b"", 0, 0, FB_FORMAT.XRGB8888, background, bar_color)
    img = load_splash(path, background)
    return make_theme(img.tobytes("raw", "BGRX"), img.width, img.height, FB_FORMAT.XRGB8888,
                      background, bar_color)


def read_theme(asset, what="theme"):
    """(header, pixel bytes in header.format): parses and fully decodes an asset."""
    n = fmt.Theme.sizeof()
    if len(asset) < n:
        raise FormatError(f"{what}: too short for a theme")
    head = parse(fmt.Theme, asset[:n], what)
    if head.magic != fmt.THEME_MAGIC or head.revision != fmt.THEME_REVISION or head.size != n:
        raise FormatError(f"{what}: not a theme of revision {fmt.THEME_REVISION}")
    if head.format not in BYTES_PER_PIXEL:
        raise FormatError(f"{what}: unknown pixel format {head.format}")
    if head.width > MAX_SPLASH or head.height > MAX_SPLASH or bool(head.width) != bool(head.height):
        raise FormatError(f"{what}: bad splash size {head.width}x{head.height}")
    row = head.width * BYTES_PER_PIXEL[head.format]
    if head.width and (not head.band_rows or head.band_rows * row > BAND_BYTES
                       or head.band_count != -(-head.height // head.band_rows)):
        raise FormatError(f"{what}: bad band layout")
    if not head.width and head.band_count:
        raise FormatError(f"{what}: bands without a picture")
    table_end = n + head.band_count * fmt.ThemeBand.sizeof()
    if table_end > len(asset):
        raise FormatError(f"{what}: band table past the end")
    pixels = bytearray()
    for b in range(head.band_count):
        off = n + b * fmt.ThemeBand.sizeof()
        band = parse(fmt.ThemeBand, asset[off:off + fmt.ThemeBand.sizeof()], what)
        if band.offset < table_end or band.offset + band.size > len(asset):
            raise FormatError(f"{what}: band {b} outside the asset")
        rows = min(head.band_rows, head.height - b * head.band_rows)
        try:
            data = lz4.block.decompress(asset[band.offset:band.offset + band.size],
                                        uncompressed_size=rows * row)
        except lz4.block.LZ4BlockError as e:
            raise FormatError(f"{what}: band {b} does not decompress ({e})")
        if len(data) != rows * row:
            raise FormatError(f"{what}: band {b} decompresses to {len(data)} bytes, not "
                              f"{rows * row}")
        pixels += data
    return head, bytes(pixels)


def theme_for_framebuffer(asset, fb_format, what="theme"):
    """The asset as the plugin needs it on a framebuffer of `fb_format` (a SOS_FB_* value):
    the package's own bytes for XRGB8888, converted and re-banded otherwise."""
    head, pixels = read_theme(asset, what)
    if head.format == fb_format:
        return asset
    if head.format != FB_FORMAT.XRGB8888:
        raise FormatError(f"{what}: pixels are not XRGB8888")
    return make_theme(_rows_to_format(pixels, fb_format), head.width, head.height, fb_format,
                      head.background, head.bar_color)


def splash_image(asset, what="theme"):
    """(Pillow RGB image or None, background, bar colour) of an XRGB8888 theme asset."""
    from PIL import Image
    head, pixels = read_theme(asset, what)
    if head.format != FB_FORMAT.XRGB8888:
        raise FormatError(f"{what}: pixels are not XRGB8888")
    img = (Image.frombytes("RGB", (head.width, head.height), pixels, "raw", "BGRX")
           if head.width else None)
    return img, head.background, head.bar_color
