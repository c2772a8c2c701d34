"""A content-addressed cache of compiled objects (toolchain.compile_all), as ccache keeps
them: the payload's and the resume loader's objects depend on the compiler, its flags and
the sources, never on the target (its memory map and disk go into the link and the blob,
not into an object), so `suspendos hibernate --prepare` and `install-resume` need not
compile ~30 files again on every run (~2 s natively, ~40 s and more in the Debian guest
under TCG).

Where: SUSPENDOS_OBJECT_CACHE (a folder, or `off`), else $XDG_CACHE_HOME/suspendos/objects,
else HOME's .cache/suspendos/objects, with the effective user's home from the password
database when HOME is unset or empty (a systemd unit without User= has no HOME). One file
per object, KEY.o, KEY a sha256. A hit copies the entry into the build's obj folder and
touches its mtime; a miss compiles as before and stores the object through a temporary
file in the cache folder and os.replace, so a reader sees a whole entry or none, and two
processes storing the same key (the suite's two xdist workers share ~/.cache) each replace
it with the same bytes. Only a successful compile is stored. A folder that cannot be made,
read or written is passed over silently (the build never fails because of the cache); an
entry that is not a whole ELF relocatable object (magic, e_type ET_REL, section headers
inside the file) is removed and compiled again. Above MAX_ENTRIES objects, a store removes
the oldest half by mtime.

What goes into the key, and why that is all that can change an object:
  - FORMAT, this layout's version.
  - The compiler: `gcc -v` (version with the distribution's revision, configure line,
    target; not its COLLECT_GCC line, the name it was called by), `gcc -dumpspecs`, the
    real paths and sizes of the cc1 and as that gcc runs (-print-prog-name; a bare `as` is
    looked up in PATH as gcc does) and `as --version`,
    all run with LC_ALL=C (translated banners would split the cache) and computed once per
    process and gcc. The -isystem folder (gcc's own stddef.h, stdint.h, immintrin.h) belongs
    to that gcc, so the compiler's identity covers its headers; any other -isystem folder
    makes the compile uncached.
  - Every argument of the command but the output, the source and the include folders, in
    order (-O2/-Os, -mcmodel, -D..., -pipe, ...). An argument that names a file or passes
    options on to a tool (-include, -imacros, -iquote, -idirafter, --sysroot, -B, -specs,
    @file, -Wa,/-Wp,/-Xassembler, -fplugin, profile feedback, -M... dependency files) or a
    second input file makes the compile uncached.
  - The include folders, in order, each named by its source root and its path inside it,
    or as the build's generated ABI header folder (toolchain.abi_header_dir: WORKDIR/include),
    whose files' names and bytes go in. Any other folder makes the compile uncached.
  - The source's root and its path inside it; the source must lie in one of the roots.
  - The digest of every file under the three C source roots (sources.source_dir of
    builder, drivers, qemu-boot): names relative to their root and bytes, recursively,
    once per process (a process is one build; sources do not change under it). A header
    a source includes is therefore in the key whatever its folder inside the roots, and
    `#include "../lib/le.h"` too.
  - Environment variables gcc reads that change what it compiles or with what: CPATH,
    C_INCLUDE_PATH, CPLUS_INCLUDE_PATH, OBJC_INCLUDE_PATH (include folders, even with
    -nostdinc), GCC_EXEC_PREFIX and COMPILER_PATH (which cc1 and as run), and
    DEPENDENCIES_OUTPUT / SUNPRO_DEPENDENCIES (a file written beside the object, which a hit
    would not write): when any is set, nothing is cached. The others change no object:
    LANG/LC_* only translate messages (GCC takes its input charset from -finput-charset,
    default UTF-8, not from the locale), TMPDIR only places temporary files (-pipe needs
    none), SOURCE_DATE_EPOCH only feeds __DATE__/__TIME__, which the sources may not use
    (below), LIBRARY_PATH only linking. PATH is covered by the compiler's identity above.
What is not in the key: the target, absolute paths (gcc writes the source's base name
alone into the object's STT_FILE symbol and -g0 writes no DWARF with a comp_dir, so a
source tree in /opt or in a checkout gives the same bytes), the working folder.
What could still leak in, and is refused: text in the sources that reads the world outside
the key. While digesting the roots, a source or header (.c .h .S .s .inc) using __FILE__,
__BASE_FILE__ (absolute paths), __DATE__, __TIME__, __TIMESTAMP__ (the clock, the file's
mtime), .incbin or #embed (a file by path, relative to the working folder), an absolute
#include, or a relative one whose ".." leaves the roots, turns the cache off for the
process: tests/test_objcache.py checks the tree has none, so that never happens silently.
"""
import functools
import hashlib
import os
import pwd
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..sources import source_dir

FORMAT = b"suspendos-objcache-1"
ROOTS = ("builder", "drivers", "qemu-boot")
MAX_ENTRIES = 2000
ENV = "SUSPENDOS_OBJECT_CACHE"
# gcc reads these (gcc(1) ENVIRONMENT); each changes what is compiled or with what.
UNCACHEABLE_ENV = ("CPATH", "C_INCLUDE_PATH", "CPLUS_INCLUDE_PATH", "OBJC_INCLUDE_PATH",
                   "GCC_EXEC_PREFIX", "COMPILER_PATH", "DEPENDENCIES_OUTPUT",
                   "SUNPRO_DEPENDENCIES")
# Arguments that name a file or hand options to another tool: not keyable by their text.
# -i...: -include, -imacros, -iquote, -idirafter, -isysroot, ... (-isystem is handled
# before); -M...: dependency files written beside the object.
UNCACHEABLE_ARGS = ("-i", "-M", "--sysroot", "-B", "-specs", "--specs", "@", "-Wa,", "-Wp,",
                    "-Xassembler", "-Xpreprocessor", "-fplugin", "-fprofile-use",
                    "-fauto-profile", "-fprofile-dir")
SOURCE_SUFFIXES = {".c", ".h", ".S", ".s", ".inc"}
HAZARD = re.compile(rb"__(?:FILE|BASE_FILE|DATE|TIME|TIMESTAMP)__|\.incbin|#\s*embed\b")
INCLUDE = re.compile(rb'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)
TMP_PREFIX = ".tmp-"
STALE_TMP = 3600.0              # s after which a store's leftover temporary file goes

# Counts of this process's compiles (compile_all and the warm-up report them).
stats = {"hits": 0, "compiled": 0, "stored": 0}


def cache_dir():
    """The cache folder, or None when SUSPENDOS_OBJECT_CACHE is `off`."""
    env = os.environ.get(ENV, "")
    if env.lower() == "off":
        return None
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):         # the XDG spec: a relative value is to be ignored
        return Path(xdg) / "suspendos" / "objects"
    home = os.environ.get("HOME")
    if not home:
        try:
            home = pwd.getpwuid(os.geteuid()).pw_dir
        except KeyError:            # a user without a passwd entry: no cache
            return None
    return Path(home) / ".cache" / "suspendos" / "objects"


# ---- the key -------------------------------------------------------------------------------
def _run_c(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=120,
                       env=dict(os.environ, LC_ALL="C"))
    return f"{p.returncode}\0{p.stdout}\0{p.stderr}"


def _prog(gcc, name):
    """(path, size) of the program gcc runs as `name`, or None when there is none."""
    p = subprocess.run([gcc, f"-print-prog-name={name}"], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, LC_ALL="C"))
    path = p.stdout.strip()
    if os.sep not in path:
        path = shutil.which(path) or ""
    try:
        return os.path.realpath(path), os.stat(path).st_size
    except OSError:
        return None


@functools.lru_cache(maxsize=None)
def compiler_identity(gcc):
    """The identity of the compiler `gcc` and its assembler (bytes), or None."""
    try:
        cc1, as_ = _prog(gcc, "cc1"), _prog(gcc, "as")
        if not cc1 or not as_:
            return None
        include = subprocess.run([gcc, "-print-file-name=include"], capture_output=True,
                                 text=True, timeout=120).stdout.strip()
        # COLLECT_GCC= is the name gcc was called by (/bin/gcc and /usr/bin/gcc are one
        # program on a merged /usr): what it runs is in the paths and sizes of cc1 and as
        version = re.sub(r"(?m)^COLLECT_GCC=.*\n", "", _run_c([gcc, "-v"]))
        parts = [version, _run_c([gcc, "-dumpspecs"]), repr(cc1), repr(as_),
                 _run_c([as_[0], "--version"])]
    except (OSError, subprocess.SubprocessError):
        return None
    return hashlib.sha256("\0".join(parts).encode()).digest(), include


def _within(path, roots):
    """(root name, path inside it) of `path`, or None when it lies in no root."""
    p = Path(os.path.abspath(path)).resolve()
    for name, root in roots.items():
        try:
            return name, p.relative_to(root).as_posix()
        except ValueError:
            continue
    return None


def _hazard(path, data, roots):
    """Whether a source text reads something the key does not hold (the docstring)."""
    if path.suffix not in SOURCE_SUFFIXES:
        return False
    if HAZARD.search(data):
        return True
    for _, name in INCLUDE.findall(data):
        name = name.decode(errors="replace")
        if name.startswith("/"):
            return True
        if ".." in name.split("/") and not _within(path.parent / name, roots):
            return True
    return False


@functools.lru_cache(maxsize=None)
def tree_digest(roots):
    """sha256 of every file under `roots` ((name, folder) pairs), or None when a source
    uses something the key cannot hold."""
    resolved = {name: Path(root).resolve() for name, root in roots}
    h = hashlib.sha256()
    for name, root in sorted(resolved.items()):
        for top, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for f in sorted(files):
                p = Path(top, f)
                data = p.read_bytes()
                if _hazard(p, data, resolved):
                    return None
                rel = f"{name}/{p.relative_to(root).as_posix()}".encode()
                h.update(b"%s\0%d\0" % (rel, len(data)) + data)
    return h.digest()


def default_roots():
    return tuple((name, str(source_dir(name))) for name in ROOTS)


def _folder_digest(folder):
    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            h.update(b"%s\0%d\0" % (p.relative_to(folder).as_posix().encode(), len(data)) + data)
    return h.hexdigest()


def object_key(cmd, source, obj, abi_dir, roots=None):
    """The cache key (hex sha256) of the compile `cmd` of `source` into `obj`, or None when
    it cannot be cached (module docstring). `abi_dir`: the build's generated header folder."""
    if any(os.environ.get(v) for v in UNCACHEABLE_ENV):
        return None
    roots = roots or default_roots()
    named = {name: Path(root).resolve() for name, root in roots}
    ident = compiler_identity(cmd[0])
    tree = tree_digest(tuple(roots))
    where = _within(source, named)
    if ident is None or tree is None or where is None:
        return None
    identity, gcc_include = ident
    abi = Path(os.path.abspath(abi_dir)).resolve() if abi_dir else None
    parts, args, i, seen = [FORMAT, identity, tree], cmd[1:], 0, set()
    while i < len(args):
        a = str(args[i])
        if a == "-o" and i + 1 < len(args):
            if Path(args[i + 1]) != Path(obj):
                return None
            i += 2
            seen.add("-o")
            continue
        if a in ("-I", "-isystem") and i + 1 < len(args):
            a, i = a + str(args[i + 1]), i + 1
        if a.startswith("-isystem"):
            if a[len("-isystem"):] != gcc_include:
                return None
            parts.append(b"-isystem <gcc>")     # the compiler identity covers its headers
        elif a.startswith("-I"):
            folder = Path(os.path.abspath(a[2:])).resolve()
            if abi is not None and folder == abi:
                parts.append(b"-I<abi>" + _folder_digest(folder).encode())
            else:
                inside = _within(folder, named)
                if inside is None:
                    return None
                parts.append(f"-I<{inside[0]}>/{inside[1]}".encode())
        elif a.startswith(UNCACHEABLE_ARGS):
            return None
        elif a.startswith("-"):
            parts.append(a.encode())
        elif a == str(source) and "source" not in seen:
            seen.add("source")
            parts.append(f"<{where[0]}>/{where[1]}".encode())
        else:
            return None                         # a second input
        i += 1
    if seen != {"-o", "source"}:
        return None
    h = hashlib.sha256()
    for p in parts:
        h.update(b"%d\0" % len(p) + p)
    return h.hexdigest()


# ---- the entries ---------------------------------------------------------------------------
def valid_object(data):
    """A whole ELF relocatable object: magic, e_type ET_REL and the section header table
    inside the file (it is at the end of what gcc's as writes, so a cut file fails)."""
    if len(data) < 52 or data[:4] != b"\x7fELF" or data[5] not in (1, 2):
        return False
    end = "<" if data[5] == 1 else ">"
    if data[4] == 2 and len(data) >= 64:
        (e_type,) = struct.unpack_from(end + "H", data, 16)
        (shoff,) = struct.unpack_from(end + "Q", data, 0x28)
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x3A)
    elif data[4] == 1:
        (e_type,) = struct.unpack_from(end + "H", data, 16)
        (shoff,) = struct.unpack_from(end + "I", data, 0x20)
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x2E)
    else:
        return False
    return e_type == 1 and shnum > 0 and shoff + shnum * shentsize <= len(data)


def fetch(folder, key, obj):
    """Copy the entry `key` to `obj`; False on a miss. A damaged entry is removed."""
    entry = Path(folder) / f"{key}.o"
    try:
        data = entry.read_bytes()
    except OSError:
        return False
    if not valid_object(data):
        try:
            entry.unlink()
        except OSError:
            pass
        return False
    try:
        Path(obj).write_bytes(data)
    except OSError:                 # the build's folder: the compile will say what is wrong
        return False
    try:
        os.utime(entry)                 # recently used: pruned last
    except OSError:
        pass
    return True


def store(folder, key, obj):
    """Store `obj` as the entry `key` (atomically); False when the folder cannot take it."""
    folder = Path(folder)
    tmp = None
    try:
        data = Path(obj).read_bytes()
        if not valid_object(data):
            return False
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".o.part", dir=folder)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, folder / f"{key}.o")
        tmp = None
        prune(folder)
        return True
    except OSError:
        return False
    finally:
        if tmp:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def prune(folder, limit=None):
    """Above `limit` (MAX_ENTRIES) objects, remove the oldest half by mtime, and temporary
    files a killed store left. Another process may prune at the same time: an entry already
    gone is no error, and a hit on a removed entry is a miss."""
    limit = MAX_ENTRIES if limit is None else limit
    entries, now = [], time.time()
    with os.scandir(folder) as it:
        for e in it:
            try:
                mtime = e.stat().st_mtime
            except OSError:
                continue
            if e.name.endswith(".o"):
                entries.append((mtime, e.path))
            elif e.name.startswith(TMP_PREFIX) and now - mtime > STALE_TMP:
                _remove(e.path)
    if len(entries) > limit:
        for _, path in sorted(entries)[:len(entries) // 2]:
            _remove(path)


def _remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def compile_cached(cmd, source, obj, abi_dir, compile):
    """Put the object of `cmd` at `obj`: from the cache, or by `compile()` (then stored)."""
    folder = cache_dir()
    try:
        key = object_key(cmd, source, obj, abi_dir) if folder else None
    except OSError:                 # a source gcc cannot read either: let it say so
        key = None
    if key and fetch(folder, key, obj):
        stats["hits"] += 1
        return
    compile()
    stats["compiled"] += 1
    if key and store(folder, key, obj):
        stats["stored"] += 1


# ---- warm-up -------------------------------------------------------------------------------
def warm_builds():
    """(label, sources, extra flags, includes(workdir) or None) of every compile set real
    builds use: each disk kind's payload (both code models, each distinct compression flag
    set) and resume loader (both code models, the default serial port)."""
    from ..target.description import COMPRESSIONS, DISK_KINDS, Options
    from . import payload, resume, toolchain
    out = []
    for kind in DISK_KINDS:
        for mcmodel in ("small", "large"):
            flag_sets = []
            for compress in COMPRESSIONS:
                flags = payload.payload_flags(mcmodel, compress)
                if flags not in flag_sets:
                    flag_sets.append(flags)
            for flags in flag_sets:
                out.append((f"payload {kind} {' '.join(flags)}",
                            toolchain.payload_sources(kind), flags, None))
            # the lists source is written per target, in the build folder: never cached
            out.append((f"loader {kind} {mcmodel}", resume.loader_sources(kind),
                        resume.loader_flags(mcmodel, Options.serial_port),
                        resume.loader_includes))
    return out


def warm():
    """Compile every set of warm_builds() into the cache; returns (compiled and stored,
    found in the cache, seconds). Raises when the cache is off or cannot store. The sets
    share most sources (the core in each disk kind's payload, the drivers in the loader),
    so after the first set many compiles are hits."""
    from ..errors import BuildError
    from . import toolchain
    folder = cache_dir()
    if folder is None:
        raise BuildError(f"{ENV}=off: no object cache to warm")
    t0 = time.monotonic()
    before = dict(stats)
    with tempfile.TemporaryDirectory(prefix="sos-objcache-") as tmp:
        for i, (_, sources, flags, includes) in enumerate(warm_builds()):
            work = Path(tmp) / str(i)
            incs = includes(work) if includes else None
            toolchain.compile_all(sources, work, flags, includes=incs)
    hits = stats["hits"] - before["hits"]
    compiled = stats["compiled"] - before["compiled"]
    stored = stats["stored"] - before["stored"]
    if stored < compiled:
        raise BuildError(f"object cache {folder}: {compiled - stored} of {compiled} objects "
                         f"could not be stored (or cannot be cached: see "
                         f"suspendos/build/objcache.py)")
    return stored, hits, time.monotonic() - t0


def main(argv=None):
    """python -m suspendos.build.objcache --warm"""
    import argparse
    from ..errors import BuildError
    ap = argparse.ArgumentParser(prog="python -m suspendos.build.objcache",
                                 description="Fill the object cache with every object real "
                                             "builds compile.")
    ap.add_argument("--warm", action="store_true", required=True,
                    help="compile every source set of the payload and resume loader builds")
    ap.parse_args(argv)
    try:
        stored, hits, seconds = warm()
    except BuildError as e:
        print(f"objcache: {e}", file=sys.stderr)
        return 1
    print(f"objcache: {stored} objects compiled and stored in {cache_dir()}, {hits} found "
          f"there, in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    # through the module toolchain imports, whose counts compile_all keeps (not __main__'s)
    from suspendos.build.objcache import main as _main
    sys.exit(_main())
