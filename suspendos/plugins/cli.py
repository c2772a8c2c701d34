"""`suspendos plugin ...` and the plugin options of `build` and `qemu suspend`."""
from pathlib import Path

from ..argparser import bounded_int, parse_number
from ..errors import UsageError
from ..fileutil import show

# parse_fb_mode's ranges, in words.
FB_MODE_HELP = ("the Bochs VBE mode the test host sets: WxHxBPP, width 320 to 2560, height 200 "
                "to 1600, BPP 32, 24 or 16; or none (default 800x600x32)")


def parse_fb_mode(text, what="--framebuffer"):
    """'800x600x32' -> (800, 600, 32); 'none' -> None; None (not given) -> the default.
    An empty string is refused like any other text that is not a mode: a user who typed
    `--framebuffer ""` did not ask for 800x600x32."""
    if text is None:
        return (800, 600, 32)
    if text == "none":
        return None
    parts = text.lower().split("x")
    try:
        if len(parts) != 3:
            raise UsageError(what)
        w, h, bpp = (parse_number(p, what, hex_ok=False) for p in parts)
    except UsageError:
        raise UsageError(f"{what}: {text!r} is not WxHxBPP (e.g. 800x600x32) or none")
    if bpp not in (16, 24, 32) or not (320 <= w <= 2560 and 200 <= h <= 1600):
        raise UsageError(f"{what}: {text!r}: width 320-2560, height 200-1600, bpp 16, 24 or 32")
    return w, h, bpp


def add_plugin_options(p):
    """--plugin, --trust, --allow-unsigned (build and qemu suspend)."""
    from .keys import DEFAULT_TRUST_DIR
    p.add_argument("--plugin", action="append", default=[], metavar="X.sop",
                   help="a signed plugin or theme package (repeatable; default: none)")
    p.add_argument("--trust", default=DEFAULT_TRUST_DIR, metavar="DIR",
                   help=f"folder of trusted public keys, *.pub (default {DEFAULT_TRUST_DIR})")
    p.add_argument("--allow-unsigned", action="store_true",
                   help="load unsigned packages too (development only; prints a warning)")


def approved_plugins(a):
    """The --plugin packages, checked; raises UsageError (exit 2) before anything is written."""
    if not a.plugin:
        return None
    from .package import approve
    return approve(a.plugin, a.trust, a.allow_unsigned)


def cmd_keygen(a):
    from .keys import fingerprint, keygen, raw_public
    pub = keygen(a.output)
    print(f"wrote {show(a.output)} (private, mode 0600) and {show(a.output + '.pub')} "
          f"({fingerprint(raw_public(pub))}); copy the .pub into a trust folder")


def cmd_new(a):
    from .sdk import new_plugin
    folder = new_plugin(a.name, a.dir)
    print(f"wrote {show(folder)}/: {a.name}.c and sdk/; next: suspendos plugin build "
          f"{show(folder)}")


def cmd_build(a):
    from .sdk import build_plugin
    obj, name, scratch = build_plugin(a.folder)
    print(f"wrote {show(obj)}: plugin {name!r}, {obj.stat().st_size} bytes, scratch "
          f"{scratch} KiB")


def _load_key(key_path):
    """The signing key, read before anything is built or written (None: unsigned)."""
    from .keys import load_private_key
    return load_private_key(key_path) if key_path is not None else None     # "": refused


def _sign_and_write(data, key, out):
    from .keys import fingerprint, raw_public
    from .package import sign_bytes, write_package
    if key:
        data = sign_bytes(data, key)
        how = f"signed by {fingerprint(raw_public(key.public_key()))}"
    else:
        how = "NOT signed (sign it with `suspendos plugin sign`)"
    write_package(out, data)
    return how


def cmd_pack(a):
    from ..formats import plugin as fmt
    from .package import check_name, make_package
    # `is not None`: an option given as "" was given (and is refused below), not the default.
    if a.folder and any(v is not None for v in (a.splash, a.bar_color, a.background)):
        raise UsageError("plugin pack: give a plugin folder or --splash, not both")
    key = _load_key(a.key)
    if a.folder:
        from .sdk import build_plugin
        obj, name, _ = build_plugin(a.folder)
        if a.name is not None and a.name != name:
            raise UsageError(f"--name: the plugin's descriptor calls it {name!r}")
        sections = [(fmt.SECTION_KIND.OBJECT, obj.read_bytes())]
        assets = Path(a.folder) / "assets.bin"
        if assets.exists():
            from ..fileutil import read_input
            from .package import MAX_PACKAGE
            sections.append((fmt.SECTION_KIND.ASSETS,
                             read_input(assets, limit=MAX_PACKAGE, kind="plugin asset")))
        data = make_package(fmt.PACKAGE_KIND.CODE, name, sections)
        what = f"code plugin {name!r}"
    else:
        if not a.splash:
            raise UsageError("plugin pack: give a plugin folder, or --splash IMAGE.png for a theme")
        from .theme import DEFAULT_BACKGROUND, DEFAULT_BAR_COLOR, parse_color, theme_from_png
        bg = (parse_color(a.background, "--background") if a.background is not None
              else DEFAULT_BACKGROUND)
        bar = (parse_color(a.bar_color, "--bar-color") if a.bar_color is not None
               else DEFAULT_BAR_COLOR)
        name = check_name(a.name if a.name is not None else Path(a.output).stem.lower(),
                          "--name")
        asset = theme_from_png(a.splash, bg, bar)
        data = make_package(fmt.PACKAGE_KIND.THEME, name, [(fmt.SECTION_KIND.THEME, asset)])
        what = f"theme {name!r}"
    how = _sign_and_write(data, key, a.output)
    print(f"wrote {show(a.output)}: {what}, {Path(a.output).stat().st_size} bytes, {how}")


def cmd_sign(a):
    from .package import read_package
    key = _load_key(a.key)
    pkg = read_package(a.package)
    out = a.output or a.package
    how = _sign_and_write(pkg.signed_part, key, out)
    print(f"wrote {show(out)}: plugin {pkg.name!r}, {how}")


def cmd_verify(a):
    from .package import read_package, verify
    pkg = read_package(a.package)
    fp = verify(pkg, None, a.trust)     # the trust folder is read after the signature
    if a.json:
        from ..cli import emit_json
        return emit_json({"package": str(a.package), "kind": pkg.kind, "name": pkg.name,
                          "signature_valid": True, "signer": fp, "trusted": True,
                          "trust": str(a.trust)})
    print(f"{pkg.source}: {pkg.kind} plugin {pkg.name!r}: signature good, signed by {fp} "
          f"(trusted in {show(a.trust)})")


def cmd_info(a):
    from .package import describe, facts, read_package
    pkg = read_package(a.package)
    if a.json:
        from ..cli import emit_json
        return emit_json(facts(pkg))
    print(describe(pkg))


def cmd_preview(a):
    from ..fileutil import write_atomic
    from ..formats import plugin as fmt
    from .package import read_package
    from .render import render
    pkg = read_package(a.package)
    if pkg.kind != "theme":
        raise UsageError(f"{pkg.source}: preview shows themes; {pkg.name!r} is a code plugin")
    mode = parse_fb_mode(a.framebuffer)
    if mode is None:
        raise UsageError("--framebuffer: preview needs a mode, WxHxBPP")
    w, h, bpp = mode
    fb_format = {32: "xrgb8888", 24: "rgb888", 16: "rgb565"}[bpp]
    img = render(pkg.section(fmt.SECTION_KIND.THEME), w, h, a.percent, fb_format)
    import io
    buf = io.BytesIO()
    img.save(buf, "PNG")
    write_atomic(a.output, buf.getvalue(), what="-o")
    print(f"wrote {show(a.output)}: theme {pkg.name!r} at {a.percent}% on {w}x{h}x{bpp}")


def add_parser(sub):
    from ..helptext import JSON
    from .keys import DEFAULT_TRUST_DIR
    from .theme import MAX_SPLASH
    pl = sub.add_parser("plugin", help="plugins and splash themes: make, sign, verify")
    pl = pl.add_subparsers(dest="what", required=True)
    k = pl.add_parser("keygen", help="write an ed25519 signing key KEY and KEY.pub")
    k.add_argument("-o", "--output", required=True, metavar="KEY",
                   help="the private key to write (mode 0600); the public key goes to KEY.pub")
    k.set_defaults(func=cmd_keygen)
    n = pl.add_parser("new", help="scaffold a C plugin folder NAME with the SDK")
    n.add_argument("name", metavar="NAME", help="the plugin's name: 1 to 31 of a-z 0-9 _ -")
    n.add_argument("--dir", default=".", metavar="DIR",
                   help="the folder to create NAME in (default: here)")
    n.set_defaults(func=cmd_new)
    b = pl.add_parser("build", help="compile a plugin folder into DIR/build/NAME.o")
    b.add_argument("folder", metavar="FOLDER", help="the plugin folder (suspendos plugin new)")
    b.set_defaults(func=cmd_build)
    p = pl.add_parser("pack", help="make a package: a plugin folder, or a theme from a picture")
    p.add_argument("folder", nargs="?", metavar="FOLDER",
                   help="a plugin folder (code plugin); leave it out for a theme (--splash)")
    p.add_argument("--splash", metavar="IMAGE",
                   help="picture for a theme (PNG or anything Pillow reads), at most "
                        f"{MAX_SPLASH}x{MAX_SPLASH} pixels")
    p.add_argument("--bar-color", metavar="RRGGBB",
                   help="theme bar and text colour, 6 hex digits (default ffffff)")
    p.add_argument("--background", metavar="RRGGBB",
                   help="theme background, 6 hex digits (default 000000)")
    p.add_argument("--name", help="theme name, 1 to 31 of a-z 0-9 _ - (default: the output "
                   "file's name)")
    p.add_argument("--key", metavar="KEY",
                   help="sign with this private key (suspendos plugin keygen; default: unsigned)")
    p.add_argument("-o", "--output", required=True, metavar="X.sop",
                   help="the package file to write")
    p.set_defaults(func=cmd_pack)
    s = pl.add_parser("sign", help="sign (or re-sign) a package")
    s.add_argument("package", metavar="PACKAGE", help="the package file (.sop)")
    s.add_argument("--key", required=True, metavar="KEY",
                   help="the private signing key (suspendos plugin keygen)")
    s.add_argument("-o", "--output", metavar="X.sop",
                   help="write the signed package here (default: in place)")
    s.set_defaults(func=cmd_sign)
    v = pl.add_parser("verify", help="check a package's signature against trusted keys")
    v.add_argument("package", metavar="PACKAGE", help="the package file (.sop)")
    v.add_argument("--trust", default=DEFAULT_TRUST_DIR, metavar="DIR",
                   help=f"folder of trusted public keys, *.pub (default {DEFAULT_TRUST_DIR})")
    v.add_argument("--json", action="store_true", help=JSON)
    v.set_defaults(func=cmd_verify)
    i = pl.add_parser("info", help="show what a package holds")
    i.add_argument("package", metavar="PACKAGE", help="the package file (.sop)")
    i.add_argument("--json", action="store_true", help=JSON)
    i.set_defaults(func=cmd_info)
    pv = pl.add_parser("preview", help="draw a theme as the progress plugin will (PNG)")
    pv.add_argument("package", metavar="PACKAGE", help="the theme package file (.sop)")
    pv.add_argument("--framebuffer", default="800x600x32", metavar="WxHxBPP",
                    help="the screen to draw on: width 320 to 2560, height 200 to 1600, BPP 32, "
                         "24 or 16 (default 800x600x32)")
    # Decimal only: "0x10" for a percentage is more likely a slip than a wish for 16%.
    pv.add_argument("--percent", type=bounded_int(0, 100, "a percentage", hex_ok=False),
                    default=100,
                    metavar="0-100",
                    help="how far the progress bar is, 0 to 100 percent (default 100)")
    pv.add_argument("-o", "--output", required=True, metavar="FILE.png",
                    help="the PNG file to write")
    pv.set_defaults(func=cmd_preview)
