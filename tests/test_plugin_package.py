"""Plugin packages without QEMU: keys, packing, signatures (ed25519, checked with the
cryptography package), trust, tampering, parse errors as exit 2 with one line, and themes
converted with Pillow and decoded back with python-lz4."""
import os
import random
import stat

import pytest
from PIL import Image, ImageDraw

from suspendos.errors import FormatError, UsageError
from suspendos.formats import plugin as fmt
from suspendos.plugins import keys, package, render, theme


@pytest.fixture(scope="module")
def signing(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    keys.keygen(d / "key")
    keys.keygen(d / "other")
    (d / "trust").mkdir()
    (d / "trust" / "key.pub").write_bytes((d / "key.pub").read_bytes())
    return d


def splash(path, size=(96, 64), alpha=False, seed=1):
    """A picture with flat areas, a gradient row and a noisy corner (every pixel counts)."""
    rnd = random.Random(seed)
    im = Image.new("RGBA" if alpha else "RGB", size, (240, 240, 230, 255))
    d = ImageDraw.Draw(im)
    d.ellipse((4, 4, size[0] // 2, size[1] - 4), fill=(200, 30, 60, 255))
    for x in range(size[0]):
        im.putpixel((x, 0), (x * 255 // size[0], 255 - x, x * 7 & 255, 255))
    for x in range(size[0] - 16, size[0]):
        for y in range(size[1] - 16, size[1]):
            im.putpixel((x, y), (rnd.randrange(256), rnd.randrange(256), rnd.randrange(256),
                                 rnd.randrange(256) if alpha else 255))
    im.save(path)
    return path


def test_keygen_writes_a_private_pem_and_an_openssh_public_key(signing):
    assert stat.S_IMODE(os.stat(signing / "key").st_mode) == 0o600
    assert (signing / "key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert (signing / "key.pub").read_text().startswith("ssh-ed25519 ")
    priv = keys.load_private_key(signing / "key")
    assert keys.load_public_key(signing / "key.pub") == keys.raw_public(priv.public_key())
    with pytest.raises(UsageError, match="already exists"):
        keys.keygen(signing / "key")


def test_theme_round_trip_is_pixel_exact(tmp_path):
    png = splash(tmp_path / "s.png")
    asset = theme.theme_from_png(png, 0x102030, 0x30C0FF)
    head, pixels = theme.read_theme(asset)
    assert (head.width, head.height, head.background, head.bar_color) == (96, 64, 0x102030,
                                                                         0x30C0FF)
    original = Image.open(png).convert("RGB")
    back = Image.frombytes("RGB", (96, 64), pixels, "raw", "BGRX")
    assert back.tobytes() == original.tobytes()
    # Bands fit the plugin's 64 KiB scratch.
    assert head.band_rows * head.width * 4 <= theme.BAND_BYTES


def test_transparency_is_composited_over_the_background(tmp_path):
    png = splash(tmp_path / "a.png", alpha=True)
    img, bg, _ = theme.splash_image(theme.theme_from_png(png, 0x336699, 0xFFFFFF))
    src = Image.open(png).convert("RGBA")
    under = Image.new("RGBA", src.size, (0x33, 0x66, 0x99, 255))
    want = Image.alpha_composite(under, src).convert("RGB")
    assert img.tobytes() == want.tobytes()


@pytest.mark.parametrize("fb_format, bpp", [("rgb888", 3), ("rgb565", 2)])
def test_conversion_to_24_and_16_bpp(tmp_path, fb_format, bpp):
    asset = theme.theme_from_png(splash(tmp_path / "s.png"), 0, 0xFFFFFF)
    conv = theme.theme_for_framebuffer(asset, theme.FORMAT_NAMES[fb_format])
    head, pixels = theme.read_theme(conv)
    assert head.format == theme.FORMAT_NAMES[fb_format] and len(pixels) == 96 * 64 * bpp
    src = Image.open(tmp_path / "s.png").convert("RGB")
    for (x, y) in [(0, 0), (50, 0), (95, 63), (30, 30), (90, 60)]:
        r, g, b = src.getpixel((x, y))
        raw = pixels[(y * 96 + x) * bpp:(y * 96 + x + 1) * bpp]
        if bpp == 3:
            assert raw == bytes((b, g, r))
        else:
            assert int.from_bytes(raw, "little") == (r >> 3) << 11 | (g >> 2) << 5 | b >> 3
    # 32 bpp targets get the package's own bytes.
    assert theme.theme_for_framebuffer(asset, theme.FORMAT_NAMES["xrgb8888"]) is asset


def _theme_package(tmp_path, signing, key="key", name="t"):
    asset = theme.theme_from_png(splash(tmp_path / "s.png"), 0, 0xFFFFFF)
    data = package.make_package(fmt.PACKAGE_KIND.THEME, name, [(fmt.SECTION_KIND.THEME, asset)])
    return package.sign_bytes(data, keys.load_private_key(signing / key))


def test_signed_package_verifies_and_names_its_signer(tmp_path, signing):
    data = _theme_package(tmp_path, signing)
    pkg = package.parse_package(data)
    assert pkg.kind == "theme" and pkg.name == "t" and pkg.signed
    fp = package.verify(pkg, keys.trusted_keys(signing / "trust"), "trust")
    assert fp == keys.fingerprint(keys.load_public_key(signing / "key.pub"))
    # Re-signing replaces the signature, it does not stack another.
    again = package.sign_bytes(data, keys.load_private_key(signing / "other"))
    assert len(again) == len(data) and package.parse_package(again).public_key != pkg.public_key


def test_every_changed_byte_is_caught(tmp_path, signing):
    """Flip one byte anywhere: the package either no longer parses (FormatError) or its
    signature no longer verifies; never is it accepted."""
    data = _theme_package(tmp_path, signing)
    trusted = keys.trusted_keys(signing / "trust")
    for off in sorted({0, 9, 12, 30, 60, 70, 100, len(data) // 2, len(data) - 150,
                       len(data) - 112 + 20, len(data) - 1}):
        bad = bytearray(data)
        bad[off] ^= 0x01
        with pytest.raises(UsageError):
            package.verify(package.parse_package(bytes(bad)), trusted, "trust")


def test_parse_errors_are_format_errors(tmp_path, signing):
    data = _theme_package(tmp_path, signing)
    for bad in (b"", b"SOSPLUG\0", b"x" * 200, data[:100], data + b"\0", data[:-1]):
        with pytest.raises(FormatError):
            package.parse_package(bad)
    wrong_abi = bytearray(data)
    wrong_abi[16] = 99                       # abi_revision
    with pytest.raises(FormatError, match="ABI revision 99"):
        package.parse_package(bytes(wrong_abi))


def test_approve_refuses_unsigned_untrusted_and_tampered(tmp_path, signing):
    good = tmp_path / "good.sop"
    good.write_bytes(_theme_package(tmp_path, signing, name="good"))
    other = tmp_path / "other.sop"
    other.write_bytes(_theme_package(tmp_path, signing, key="other", name="other"))
    unsigned = tmp_path / "unsigned.sop"
    unsigned.write_bytes(package.parse_package(good.read_bytes()).signed_part)
    trust = signing / "trust"
    assert package.approve([good], trust)[0].signer.startswith("SHA256:")
    with pytest.raises(UsageError, match="not a trusted key"):
        package.approve([other], trust)
    with pytest.raises(UsageError, match="not signed"):
        package.approve([unsigned], trust)
    warnings = []
    ok = package.approve([unsigned], trust, allow_unsigned=True, warn=warnings.append)
    assert ok[0].signer is None and "--allow-unsigned" in warnings[0]
    # --allow-unsigned is about unsigned packages only: a bad key stays refused.
    with pytest.raises(UsageError, match="not a trusted key"):
        package.approve([other], trust, allow_unsigned=True)
    with pytest.raises(UsageError, match="not a folder"):
        package.approve([good], tmp_path / "missing")
    with pytest.raises(UsageError, match="second plugin"):
        package.approve([good, good], trust)


def test_cli_pack_sign_verify(tmp_path, signing, cli):
    png = splash(tmp_path / "logo.png")
    p = cli("plugin", "pack", "--splash", png, "--bar-color", "30c0ff", "--background",
            "#102030", "-o", tmp_path / "logo.sop", check=True)
    assert "NOT signed" in p.stdout
    p = cli("plugin", "verify", tmp_path / "logo.sop", "--trust", signing / "trust")
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and "not signed" in p.stderr
    cli("plugin", "sign", tmp_path / "logo.sop", "--key", signing / "key", check=True)
    p = cli("plugin", "verify", tmp_path / "logo.sop", "--trust", signing / "trust", check=True)
    assert "signature good" in p.stdout
    cli("plugin", "preview", tmp_path / "logo.sop", "--percent", "42", "-o",
        tmp_path / "pre.png", check=True)
    want = render.render(package.read_package(tmp_path / "logo.sop").section(
        fmt.SECTION_KIND.THEME), 800, 600, 42)
    assert not render.differences(Image.open(tmp_path / "pre.png"), want)
    for args in (["--bar-color", "blue"], ["--splash", tmp_path / "missing.png"]):
        p = cli("plugin", "pack", "--splash", png, *args, "-o", tmp_path / "x.sop")
        assert p.returncode == 2 and len(p.stderr.splitlines()) == 1, p.stderr
        assert not (tmp_path / "x.sop").exists()
    (tmp_path / "junk.sop").write_bytes(os.urandom(300))
    p = cli("plugin", "verify", tmp_path / "junk.sop", "--trust", signing / "trust")
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1


def test_render_layout_matches_the_c_plugin_rules():
    """The numbers the C plugin computes (comment at the top of progress.c)."""
    L = render.layout(800, 600)
    assert L["s"] == 2 and L["bar"] == (200, 480, 400, 20) and L["inner"] == (204, 484, 392, 12)
    assert L["text_y"] == 508
    L = render.layout(320, 200)
    assert L["s"] == 1 and L["bar"] == (80, 160, 160, 10)
