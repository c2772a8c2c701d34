"""What the built-in progress plugin (plugins/progress/progress.c) puts on the screen,
computed in Python with Pillow: the reference the QEMU screenshots are compared with, and
what `suspendos plugin preview` shows a theme author. Same integer layout as the C code."""
from ..formats.payload_info import FB_FORMAT
from . import font
from .theme import FORMAT_NAMES, splash_image


def _centre(total, w):
    return (total - w) // 2 if total >= w else -((w - total) // 2)


class Canvas:
    def __init__(self, img):
        self.img = img
        self.W, self.H = img.size

    def fill(self, x, y, w, h, rgb):
        """Clipped exactly like sos_fb_fill."""
        if x < 0:
            w, x = w + x, 0
        if y < 0:
            h, y = h + y, 0
        w = min(w, self.W - x)
        h = min(h, self.H - y)
        if w > 0 and h > 0:
            self.img.paste(_rgb(rgb), (x, y, x + w, y + h))


def _rgb(c):
    return (c >> 16 & 255, c >> 8 & 255, c & 255)


def layout(W, H):
    s = max(1, H // 300)
    bar_w, bar_h = W // 2, max(10, H // 30)
    bar_x, bar_y = _centre(W, bar_w), H * 4 // 5
    box_w = 4 * (font.GLYPH_W + 1) * s - s
    return dict(s=s, bar=(bar_x, bar_y, bar_w, bar_h),
                inner=(bar_x + 4, bar_y + 4, bar_w - 8, bar_h - 8),
                text_y=bar_y + bar_h + 4 * s, box=(_centre(W, box_w), box_w))


def render(theme_asset, width, height, percent=100, fb_format="xrgb8888"):
    """The screen (a Pillow RGB image) once the plugin has shown `percent`, on a
    framebuffer of `fb_format`, quantised like the framebuffer stores it."""
    from PIL import Image
    splash, bg, fg = splash_image(theme_asset)
    img = Image.new("RGB", (width, height), _rgb(bg))
    cv = Canvas(img)
    if splash is not None:
        img.paste(splash, (_centre(width, splash.width), _centre(height, splash.height)))
    L = layout(width, height)
    s = L["s"]
    bx, by, bw, bh = L["bar"]
    cv.fill(bx, by, bw, bh, fg)
    cv.fill(bx + 2, by + 2, bw - 4, bh - 4, bg)
    ix, iy, iw, ih = L["inner"]
    cv.fill(ix, iy, iw * min(percent, 100) // 100, ih, fg)
    text = f"{min(percent, 100)}%"
    cell = (font.GLYPH_W + 1) * s
    x = _centre(width, len(text) * cell - s)
    box_x, box_w = L["box"]
    cv.fill(box_x, L["text_y"], box_w, font.GLYPH_H * s, bg)
    for i, ch in enumerate(text):
        for r, bits in enumerate(font.rows(ch)):
            for c in range(font.GLYPH_W):
                if bits & (1 << (font.GLYPH_W - 1 - c)):
                    cv.fill(x + i * cell + c * s, L["text_y"] + r * s, s, s, fg)
    return quantize(img, fb_format)


def quantize(img, fb_format):
    """`img` at the precision of `fb_format`: RGB565 keeps the top 5/6/5 bits of each
    channel (what a 16-bpp framebuffer can hold; QEMU's screendump fills the low bits in)."""
    fmt = FORMAT_NAMES.get(fb_format, fb_format)
    if fmt != FB_FORMAT.RGB565:
        return img.convert("RGB")
    from PIL import Image
    r, g, b = img.convert("RGB").split()
    return Image.merge("RGB", (r.point(lambda v: v & 0xF8), g.point(lambda v: v & 0xFC),
                                   b.point(lambda v: v & 0xF8)))


def differences(a, b, limit=10):
    """[(x, y, a pixel, b pixel)] of up to `limit` pixels where two RGB images differ."""
    from PIL import ImageChops
    if a.size != b.size:
        return [("size", a.size, b.size)]
    box = ImageChops.difference(a.convert("RGB"), b.convert("RGB")).getbbox()
    if not box:
        return []
    out = []
    pa, pb = a.convert("RGB").load(), b.convert("RGB").load()
    for y in range(box[1], box[3]):
        for x in range(box[0], box[2]):
            if pa[x, y] != pb[x, y]:
                out.append((x, y, pa[x, y], pb[x, y]))
                if len(out) >= limit:
                    return out
    return out
