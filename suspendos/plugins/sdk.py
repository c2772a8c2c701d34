"""Code plugins: scaffold (`plugin new`), compile (`plugin build`), and turn approved
packages into what the payload builder links (`prepare`).

A plugin folder holds its C (and assembly) sources at the top level and an sdk/ folder the
tool refreshes on every build: sos_plugin.h and the generated suspendos_abi.h. It compiles
with the payload's own freestanding flags (build/toolchain.py FREESTANDING) plus the large
code model (a plugin is built before anyone knows where a target's reserved region lies)
and without loop-to-memset rewriting, together with the SDK's memcpy/memset, into one
relocatable object (ld -r): DIR/build/NAME.o.
"""
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..build import toolchain
from ..errors import UsageError
from ..fileutil import show
from ..formats import cheader
from ..formats import plugin as fmt
from ..sources import source_dir
from . import font, link
from .package import check_name
from .theme import FORMAT_NAMES, theme_for_framebuffer

PLUGIN_FLAGS = ["-mcmodel=large", "-fno-tree-loop-distribute-patterns",
                "-ffunction-sections", "-fdata-sections"]
PROBE_BASE = 0x1000000          # where `plugin build` test-links an object


def sdk_dir():
    return source_dir("plugins") / "sdk"


def refresh_sdk(folder):
    """Write folder/sdk/: the SDK header and the ABI header generated from the declarations."""
    sdk = Path(folder) / "sdk"
    sdk.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sdk_dir() / "sos_plugin.h", sdk / "sos_plugin.h")
    cheader.write(sdk / "suspendos_abi.h")
    return sdk


def new_plugin(name, parent="."):
    check_name(name, "plugin new")
    if not Path(parent).is_dir():
        raise UsageError(f"--dir: {show(parent)} is not a folder")
    folder = Path(parent) / name
    if folder.exists() or folder.is_symlink():
        raise UsageError(f"plugin new: {show(folder)} already exists")
    template = (source_dir("plugins") / "template" / "plugin.c").read_text()
    folder.mkdir(parents=True)
    (folder / f"{name}.c").write_text(template.replace("@NAME@", name))
    refresh_sdk(folder)
    return folder


def compile_object(sources, out, workdir, includes=()):
    """Compile plugin sources (plus the SDK runtime) and combine them into one relocatable
    object `out`."""
    work = Path(workdir)
    incs = [toolchain.abi_header_dir(work), sdk_dir(), *includes]
    objects = toolchain.compile_all([*sources, sdk_dir() / "sos_plugin_rt.c"], work,
                                    PLUGIN_FLAGS, includes=incs)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    toolchain.run([toolchain.tool("ld"), "-r", "-o", str(out), *map(str, objects)],
                  f"combining {Path(out).name}")
    return Path(out)


def refuse_symlinks(folder):
    """A plugin folder may hold no symbolic link at all. The tool reads its sources and
    assets.bin and writes into its sdk/ and build/: through a link, a folder received from
    someone else would have us pack /etc/shadow or write over a file outside it (any link,
    not only one leaving the folder: where a link leads can change after the check)."""
    for top, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = os.path.join(top, name)
            if os.path.islink(p):
                raise UsageError(f"plugin folder: {show(p)} is a symbolic link (a plugin "
                                 f"folder may hold none: copy the file in)")


def build_plugin(folder):
    """`suspendos plugin build DIR`: returns (object path, descriptor name, scratch KiB)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"plugin build: {show(folder)} is not a folder")
    refuse_symlinks(folder)
    sources = sorted(folder.glob("*.c")) + sorted(folder.glob("*.S"))
    if not sources:
        raise UsageError(f"plugin build: no .c or .S files in {show(folder)}")
    refresh_sdk(folder)
    out_dir = folder / "build"
    with tempfile.TemporaryDirectory(prefix="sos-plugin-") as tmp:
        obj = compile_object(sources, Path(tmp) / "plugin.o", tmp, [folder / "sdk", folder])
        lp = link.link(obj, PROBE_BASE, Path(tmp) / "probe", folder.name)
        out_dir.mkdir(exist_ok=True)
        final = out_dir / f"{lp.name}.o"
        shutil.copyfile(obj, final)
    return final, lp.name, lp.descriptor.scratch_kib


def check_object(data, label):
    """Test-link an object (bytes); returns its descriptor name."""
    with tempfile.TemporaryDirectory(prefix="sos-plugin-") as tmp:
        obj = Path(tmp) / "plugin.o"
        obj.write_bytes(data)
        return link.link(obj, PROBE_BASE, Path(tmp) / "probe", label).name


def compile_progress(workdir):
    """The built-in progress plugin's object, compiled from plugins/progress/."""
    work = Path(workdir)
    inc = work / "progress-include"
    inc.mkdir(parents=True, exist_ok=True)
    (inc / "progress_font.h").write_text(font.c_header())
    src = source_dir("plugins") / "progress"
    return compile_object(sorted(src.glob("*.c")), work / "progress.o", work / "progress",
                          [inc, src])


@dataclass
class Prepared:
    name: str                   # the package's name: how messages name the plugin
    object: Path
    assets: bytes
    descriptor_name: str        # what its descriptor must say ("progress" for a theme)


def prepare(approved, target, workdir):
    """Objects and assets to link for approved packages (package.approve)."""
    out, progress_obj = [], None
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(approved):
        pkg = a.package
        if pkg.kind == "theme":
            fb = target.framebuffer
            if fb is None:
                raise UsageError(f"{pkg.source}: theme {pkg.name!r} draws on a framebuffer; "
                                 f"the target describes none ([framebuffer])")
            asset = theme_for_framebuffer(pkg.section(fmt.SECTION_KIND.THEME),
                                          FORMAT_NAMES[fb.format], f"{pkg.source}: theme")
            if progress_obj is None:
                progress_obj = compile_progress(work / "progress-build")
            out.append(Prepared(pkg.name, progress_obj, asset, "progress"))
        else:
            obj = work / f"plugin-{i}.o"
            obj.write_bytes(pkg.section(fmt.SECTION_KIND.OBJECT))
            out.append(Prepared(pkg.name, obj, pkg.section(fmt.SECTION_KIND.ASSETS) or b"",
                                pkg.name))
    return out
