"""The wheel of the suspendos that is running, rebuilt from its installed files.

The Debian guest (debian.py) gets suspendos from a wheel. From a checkout, pip builds that
wheel from the tree. An installed suspendos has no tree, and the guest must run the very
package that runs here anyway, so this module packs the installed files back into a wheel
(PEP 427, PEP 491): the files pip's RECORD lists, the package's at the wheel's root, the
data files installed under the prefix (setup.cfg [options.data_files]: share/man and
share/bash-completion) under NAME-VERSION.data/data/, and a fresh .dist-info around the
installed METADATA. Their names and bytes are the same as in the wheel the tree builds, and
those are what the guest's cache key hashes (debian.wheel_digest): one release, installed
or checked out, shares one guest.

Left out: __pycache__ (compiled here, recompiled there), the scripts pip generated from the
entry points (pip generates them again), and what only the installer writes (INSTALLER,
REQUESTED, direct_url.json, the old RECORD and its signatures). An editable install has no
files of its own to take (they are the tree's): debian.py builds from the tree then.
"""
import base64
import csv
import hashlib
import io
import stat
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path, PurePosixPath

from ..errors import BuildError, UsageError

NAME = "suspendos"
GENERATOR = "suspendos.linuxvm.selfwheel"
INSTALLER_ONLY = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD", "RECORD.jws",
                  "RECORD.p7s", "WHEEL"}
# Zip entries carry no time of ours: the same files make the same wheel.
EPOCH = (1980, 1, 1, 0, 0, 0)


def running_distribution():
    """The installed distribution whose files are the suspendos that is running, or a
    UsageError saying why there is none (an editable install, or a copy on PYTHONPATH that
    no installed RECORD lists)."""
    import suspendos
    try:
        dist = metadata.distribution(NAME)
    except metadata.PackageNotFoundError:
        raise UsageError(f"suspendos runs from {Path(suspendos.__file__).parent}, which is "
                         "neither a source tree nor an installed package") from None
    running = Path(suspendos.__file__).resolve()
    listed = {Path(dist.locate_file(f)).resolve() for f in dist.files or ()}
    if running not in listed:
        raise UsageError(f"suspendos runs from {running.parent}, which the installed "
                         f"{NAME} {dist.version} does not list (an editable install, or a copy "
                         "on PYTHONPATH): the guest gets a source tree's suspendos or an "
                         "installed one")
    return dist


def build_wheel(out, dist=None):
    """Write the wheel of `dist` (the running suspendos) into the folder `out`; return its
    path."""
    dist = dist or running_distribution()
    info_dir = _dist_info_dir(dist)
    stem = info_dir[:-len(".dist-info")]
    wheel_file = _read(dist, f"{info_dir}/WHEEL").decode()
    entries = [(name, path.read_bytes(), path.stat().st_mode)
               for name, path in installed_files(dist, info_dir, stem)]
    for f in sorted(dist.files, key=str):
        parts = PurePosixPath(f).parts
        if len(parts) >= 2 and parts[0] == info_dir and parts[-1] not in INSTALLER_ONLY:
            entries.append((str(PurePosixPath(*parts)), _read(dist, f), 0o644))
    entries.append((f"{info_dir}/WHEEL", _wheel_metadata(wheel_file).encode(), 0o644))
    tag = _tag(wheel_file)
    path = Path(out) / f"{stem}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data, mode in entries:
            _add(z, name, data, mode)
        _add(z, f"{info_dir}/RECORD", _record(entries, f"{info_dir}/RECORD"), 0o644)
    return path


def installed_files(dist, info_dir, stem):
    """(name in the wheel, installed path) of each package and data file of `dist`, sorted
    by name: the package's files relative to site-packages, the others relative to the
    install scheme's root they lie under (prefix/share/... is .data/data/share/...)."""
    site = Path(dist.locate_file("")).resolve()
    roots = _scheme_roots(site)
    scripts = {e.name for e in dist.entry_points
               if e.group in ("console_scripts", "gui_scripts")}
    out = []
    for f in dist.files:
        parts = PurePosixPath(f).parts
        if "__pycache__" in parts or parts[0] == info_dir:
            continue
        path = Path(dist.locate_file(f)).resolve()
        if not path.is_file():
            raise BuildError(f"{path}: listed in {NAME}'s RECORD but missing; reinstall "
                             f"{NAME} (pip install --force-reinstall)")
        if path.is_relative_to(site):
            out.append((path.relative_to(site).as_posix(), path))
            continue
        scheme, root = _scheme_of(path, roots)
        if scheme == "scripts" and path.name in scripts:
            continue
        out.append((f"{stem}.data/{scheme}/{path.relative_to(root).as_posix()}", path))
    return sorted(out)


def _dist_info_dir(dist):
    for f in dist.files or ():
        parts = PurePosixPath(f).parts
        if len(parts) == 2 and parts[1] == "METADATA" and parts[0].endswith(".dist-info"):
            return parts[0]
    raise BuildError(f"the installed {NAME} lists no .dist-info/METADATA in its RECORD")


def _read(dist, f):
    return Path(dist.locate_file(f)).read_bytes()


def _scheme_roots(site):
    """{scheme key: root} of the install scheme whose purelib or platlib is `site` (a venv,
    the system's or the user's site-packages): where pip put the files a wheel's
    .data/KEY/ holds."""
    names = [sysconfig.get_default_scheme(), sysconfig.get_preferred_scheme("user"),
             *sysconfig.get_scheme_names()]
    for name in dict.fromkeys(names):
        try:
            paths = {k: Path(v).resolve() for k, v in sysconfig.get_paths(name).items()}
        except (KeyError, ValueError):
            continue
        if site in (paths.get("purelib"), paths.get("platlib")):
            return {k: paths[k] for k in ("purelib", "platlib", "headers", "scripts", "data")
                    if k in paths}
    raise BuildError(f"cannot tell the install scheme of {site}, where {NAME} is installed")


def _scheme_of(path, roots):
    """The scheme whose root holds `path`, the deepest first (data, the prefix, holds the
    others)."""
    for key, root in sorted(roots.items(), key=lambda kv: -len(kv[1].parts)):
        if path.is_relative_to(root):
            return key, root
    raise BuildError(f"{path}: installed with {NAME} but outside its prefix "
                     f"{roots.get('data')}")


def _wheel_fields(text, key):
    return [line.split(":", 1)[1].strip() for line in text.splitlines()
            if line.lower().startswith(key.lower() + ":")]


def _wheel_metadata(installed):
    """A fresh WHEEL: this generator, the installed one's Root-Is-Purelib and tags."""
    purelib = (_wheel_fields(installed, "Root-Is-Purelib") or ["true"])[0]
    tags = _wheel_fields(installed, "Tag") or ["py3-none-any"]
    return "".join([f"Wheel-Version: 1.0\nGenerator: {GENERATOR}\n",
                    f"Root-Is-Purelib: {purelib}\n", *(f"Tag: {t}\n" for t in tags)])


def _tag(installed):
    """The file name's compressed tag set (PEP 425): py2-none-any + py3-none-any is
    py2.py3-none-any."""
    tags = [t.split("-") for t in _wheel_fields(installed, "Tag") or ["py3-none-any"]]
    return "-".join(".".join(dict.fromkeys(t[i] for t in tags)) for i in range(3))


def _add(z, name, data, mode):
    info = zipfile.ZipInfo(name, EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (stat.S_IFREG | (stat.S_IMODE(mode) or 0o644)) << 16
    z.writestr(info, data)


def _record(entries, record_name):
    """RECORD (PEP 376, as PEP 427 asks): each file's urlsafe-base64 sha256 without
    padding and its size; RECORD itself without either."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for name, data, _ in entries:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        w.writerow([name, f"sha256={digest.decode()}", len(data)])
    w.writerow([record_name, "", ""])
    return buf.getvalue().encode()
