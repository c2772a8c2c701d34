"""The object cache (suspendos/build/objcache.py): a second build of a target runs no gcc and
gives the same blob; the key follows every byte of the sources, the flags and the generated
header and nothing of where they lie; what it cannot key is compiled uncached; `off`, an
unwritable folder and a damaged entry still build; the size bound prunes; concurrent stores
are safe; and after `--warm` a QEMU target's payload and resume loader compile nothing.

The proof that gcc did not run: PATH starts with a folder whose `gcc` and `ld` log every
compile (-c) and link to a file, then exec the real ones. Each test has its own cache
folder (SUSPENDOS_OBJECT_CACHE), so the suite's shared ~/.cache plays no part."""
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT
from suspendos.build import objcache, payload, resume, toolchain
from suspendos.errors import BuildError
from suspendos.sources import source_dir
from suspendos.target import load
from suspendos.target.description import COMPRESSIONS, DISK_KINDS, Options

WRAPPER = """#!/bin/sh
case " $* " in *" -c "*|*" -T "*) echo "$0 $*" >> "{log}" ;; esac
exec {real} "$@"
"""


@pytest.fixture(scope="module")
def target_toml(tmp_path_factory):
    d = tmp_path_factory.mktemp("target")
    p = subprocess.run([sys.executable, "-m", "suspendos.cli", "target", "qemu", "--memory",
                        "256M", "-o", str(d / "t.toml")], capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert p.returncode == 0, p.stderr
    return d / "t.toml"


class Tools:
    """A PATH whose gcc and ld log what they are asked to do."""

    def __init__(self, folder):
        self.bin = Path(folder) / "bin"
        self.log = Path(folder) / "tools.log"
        self.bin.mkdir(parents=True)
        for name in ("gcc", "ld"):
            w = self.bin / name
            w.write_text(WRAPPER.format(log=self.log, real=shutil.which(name)))
            w.chmod(0o755)
        self.path = f"{self.bin}{os.pathsep}{os.environ['PATH']}"

    def take(self):
        """(compiled sources' names, links) since the last call."""
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        self.log.unlink(missing_ok=True)
        compiled = [Path(l.split(" -c ")[1].split()[0]).name for l in lines
                    if l.split()[0].endswith("/gcc")]
        links = [l for l in lines if l.split()[0].endswith("/ld")]
        return compiled, links


@pytest.fixture
def tools(tmp_path):
    return Tools(tmp_path)


def build(tools, target, out, cache, **env):
    e = dict(os.environ, PYTHONPATH=str(ROOT), PATH=tools.path, **env)
    e["SUSPENDOS_OBJECT_CACHE"] = str(cache)
    p = subprocess.run([sys.executable, "-m", "suspendos.cli", "build", "--target", str(target),
                        "-o", str(out)], capture_output=True, text=True, timeout=900, env=e)
    assert p.returncode == 0, p.stderr
    return Path(out).read_bytes()


def entries(cache):
    return sorted(Path(cache).glob("*.o"))


def test_a_second_build_compiles_nothing_and_gives_the_same_blob(tmp_path, tools, target_toml):
    cache = tmp_path / "objects"
    first = build(tools, target_toml, tmp_path / "1.blob", cache)
    compiled, links = tools.take()
    assert len(compiled) == len(toolchain.payload_sources("ahci")) and len(links) == 1
    assert len(entries(cache)) == len(compiled)
    second = build(tools, target_toml, tmp_path / "2.blob", cache)
    compiled, links = tools.take()
    assert compiled == [] and len(links) == 1          # ld still runs: only objects are kept
    assert second == first
    # and the cached objects are the ones gcc makes: the same blob with the cache off
    fresh = build(tools, target_toml, tmp_path / "3.blob", "off")
    compiled, _ = tools.take()
    assert len(compiled) == len(toolchain.payload_sources("ahci"))
    assert fresh == first


def test_off_compiles_every_time(tmp_path, tools, target_toml):
    for i in range(2):
        build(tools, target_toml, tmp_path / "p.blob", "off")
        assert len(tools.take()[0]) == len(toolchain.payload_sources("ahci"))


def test_an_unusable_cache_folder_still_builds(tmp_path, tools, target_toml):
    (tmp_path / "file").write_text("not a folder")
    blob = build(tools, target_toml, tmp_path / "p.blob", tmp_path / "file" / "objects")
    assert len(tools.take()[0]) == len(toolchain.payload_sources("ahci")) and blob
    if os.geteuid() != 0:       # root writes through permission bits
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        build(tools, target_toml, tmp_path / "p.blob", ro)
        assert len(tools.take()[0]) == len(toolchain.payload_sources("ahci"))


def test_a_damaged_entry_is_replaced(tmp_path, tools, target_toml):
    cache = tmp_path / "objects"
    first = build(tools, target_toml, tmp_path / "1.blob", cache)
    tools.take()
    garbage, cut, not_rel, *_ = entries(cache)
    garbage.write_bytes(b"garbage")
    cut.write_bytes(cut.read_bytes()[:len(cut.read_bytes()) // 2])    # a torn copy
    data = bytearray(not_rel.read_bytes())
    data[16] = 2                                                      # ET_EXEC
    not_rel.write_bytes(data)
    again = build(tools, target_toml, tmp_path / "2.blob", cache)
    assert len(tools.take()[0]) == 3
    assert again == first
    for e in (garbage, cut, not_rel):
        assert objcache.valid_object(e.read_bytes())


# ---- the key -------------------------------------------------------------------------------
def copy_roots(dest):
    """A copy of the three C source roots under `dest`; returns objcache's roots tuple."""
    roots = []
    for name in objcache.ROOTS:
        shutil.copytree(source_dir(name), dest / name)
        roots.append((name, str(dest / name)))
    return tuple(roots)


def command(roots, source, work, extra=(), includes=None):
    """The command compile_all runs for `source` (a path inside `roots`), as a key sees it."""
    r = dict(roots)
    abi = Path(work) / "include"
    if not abi.exists():                # generated once (a test may change it after)
        toolchain.abi_header_dir(work)
    incs = includes if includes is not None else [
        abi, Path(r["drivers"]), Path(r["builder"]) / "lib", Path(r["builder"]) / "core"]
    obj = Path(work) / "obj" / "x.o"
    return [toolchain.tool("gcc"), "-pipe", *toolchain.FREESTANDING, "-nostdinc", "-isystem",
            toolchain.compiler_include_dir(), *extra, *[f"-I{i}" for i in incs], "-c",
            str(source), "-o", str(obj)], obj, abi


def key(roots, rel, work, extra=("-mcmodel=small",), includes=None):
    source = Path(dict(roots)[rel.split("/")[0]], *rel.split("/")[1:])
    cmd, obj, abi = command(roots, source, work, extra, includes)
    return objcache.object_key(cmd, source, obj, abi, roots)


@pytest.fixture
def roots(tmp_path):
    return copy_roots(tmp_path / "src")


def test_every_source_byte_is_in_the_key(tmp_path, roots):
    work = tmp_path / "w"
    base = key(roots, "builder/core/lz4.c", work)
    assert base and len(base) == 64
    src = Path(dict(roots)["builder"])
    # any file of any root: the compiled source, a header, a file no build compiles
    for rel in ("builder/core/lz4.c", "builder/lib/string.h", "drivers/ahci_regs.h",
                "qemu-boot/README.md"):
        name, _, inside = rel.partition("/")
        p = Path(dict(roots)[name], inside)
        data = p.read_bytes()
        p.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        objcache.tree_digest.cache_clear()         # once per process: a process is one build
        assert key(roots, "builder/core/lz4.c", work) != base, rel
        p.write_bytes(data)
        objcache.tree_digest.cache_clear()
        assert key(roots, "builder/core/lz4.c", work) == base
    (src / "core" / "new.h").write_text("/* new */\n")
    objcache.tree_digest.cache_clear()
    assert key(roots, "builder/core/lz4.c", work) != base
    (src / "core" / "new.h").rename(src / "core" / "renamed.h")
    objcache.tree_digest.cache_clear()
    renamed = key(roots, "builder/core/lz4.c", work)
    assert renamed not in (base, None)
    objcache.tree_digest.cache_clear()


def test_where_the_tree_lies_is_not_in_the_key(tmp_path, roots):
    """A checkout, the chroot's /opt/suspendos and the guest's see the same keys, and a
    file's name is in the key, not its place."""
    other = copy_roots(tmp_path / "elsewhere")
    assert key(roots, "drivers/serial.c", tmp_path / "w1") == \
        key(other, "drivers/serial.c", tmp_path / "w2")
    assert key(roots, "drivers/serial.c", tmp_path / "w1") != \
        key(roots, "drivers/pci.c", tmp_path / "w1")


def test_flags_and_the_generated_header_are_in_the_key(tmp_path, roots):
    work = tmp_path / "w"
    k = {f: key(roots, "builder/core/image_writer.c", work, f) for f in (
        tuple(payload.payload_flags("small", "lz4")), tuple(payload.payload_flags("large", "lz4")),
        tuple(payload.payload_flags("small", "lz4hc")),
        (*payload.payload_flags("small", "lz4"), "-Os"))}
    assert None not in k.values() and len(set(k.values())) == len(k)
    # the include folders' order is in it too
    r = dict(roots)
    incs = [work / "include", Path(r["drivers"]), Path(r["builder"]) / "lib",
            Path(r["builder"]) / "core"]
    flags = tuple(payload.payload_flags("small", "lz4"))
    assert key(roots, "builder/core/image_writer.c", work, flags, incs) == k[flags]
    assert key(roots, "builder/core/image_writer.c", work, flags, incs[::-1]) != k[flags]
    # the ABI header: its bytes are, its folder's place is not
    abi = work / "include" / "suspendos_abi.h"
    abi.write_text(abi.read_text() + "#define SOS_EXTRA 1\n")
    assert key(roots, "builder/core/image_writer.c", work, flags) != k[flags]
    assert key(roots, "builder/core/image_writer.c", tmp_path / "w2", flags) == k[flags]


def test_what_the_key_cannot_hold_is_not_cached(tmp_path, roots, monkeypatch):
    work = tmp_path / "w"
    assert key(roots, "drivers/serial.c", work)
    outside = tmp_path / "outside.c"
    outside.write_text("int f(void) { return 1; }\n")
    cmd, obj, abi = command(roots, outside, work)
    assert objcache.object_key(cmd, outside, obj, abi, roots) is None      # a source outside
    extra = tmp_path / "inc"
    extra.mkdir()
    r = dict(roots)
    assert key(roots, "drivers/serial.c", work, includes=[                 # an include outside
        toolchain.abi_header_dir(work), Path(r["drivers"]), extra]) is None
    for flags in (["-include", str(extra / "x.h")], [f"-iquote{extra}"], ["-isystem", str(extra)],
                  ["-Wa,-I/tmp"], [f"-B{extra}"], ["-MD"], [str(outside)]):
        assert key(roots, "drivers/serial.c", work, flags) is None, flags
    for var in objcache.UNCACHEABLE_ENV:
        monkeypatch.setenv(var, str(extra))
        assert key(roots, "drivers/serial.c", work) is None, var
        monkeypatch.delenv(var)
    assert key(roots, "drivers/serial.c", work)


@pytest.mark.parametrize("text", [b'const char *f = __FILE__;\n', b'char d[] = __DATE__;\n',
                                  b'.incbin "blob.bin"\n', b'#include "/etc/x.h"\n',
                                  b'#include "../../../x.h"\n'])
def test_a_source_that_reads_outside_the_key_turns_the_cache_off(tmp_path, roots, text):
    (Path(dict(roots)["drivers"]) / "hazard.c").write_bytes(text)
    assert objcache.tree_digest(roots) is None
    assert key(roots, "drivers/serial.c", tmp_path / "w") is None


def test_the_sources_read_nothing_outside_the_key():
    """So the cache is never turned off silently (see the test above)."""
    assert objcache.tree_digest(objcache.default_roots()) is not None


def test_the_cache_folder(monkeypatch):
    monkeypatch.delenv("SUSPENDOS_OBJECT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/x/cache")
    assert objcache.cache_dir() == Path("/x/cache/suspendos/objects")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")            # ignored, as XDG says
    monkeypatch.setenv("HOME", "/h")
    assert objcache.cache_dir() == Path("/h/.cache/suspendos/objects")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.delenv("HOME")                                  # a systemd unit: no HOME
    import pwd
    assert objcache.cache_dir() == Path(pwd.getpwuid(os.geteuid()).pw_dir,
                                        ".cache/suspendos/objects")
    monkeypatch.setenv("SUSPENDOS_OBJECT_CACHE", "/c")
    assert objcache.cache_dir() == Path("/c")
    monkeypatch.setenv("SUSPENDOS_OBJECT_CACHE", "off")
    assert objcache.cache_dir() is None


def test_the_chroot_warm_up_has_the_guest_console_environment():
    """debian._assemble warms the cache with GUEST_ENV, the guest's commands run with the
    console's: the same HOME (so the same folder) and PATH (so the same gcc)."""
    from suspendos.linuxvm import debian, guest
    line = next(l for l in guest.CONSOLE.splitlines() if l.startswith("export PATH="))
    assert dict(w.split("=", 1) for w in line.split()[1:]) == debian.GUEST_ENV


# ---- the entries ---------------------------------------------------------------------------
def an_object(tmp_path):
    """A real object (and its key's stand-in) to store."""
    src = tmp_path / "o.c"
    src.write_text("int f(void) { return 42; }\n")
    obj = tmp_path / "o.o"
    subprocess.run(["gcc", "-c", str(src), "-o", str(obj)], check=True, timeout=120)
    return obj


def test_the_size_bound_prunes_the_oldest_half(tmp_path):
    cache = tmp_path / "objects"
    cache.mkdir()
    obj = an_object(tmp_path)
    now = time.time()
    for i in range(objcache.MAX_ENTRIES):
        p = cache / f"{i:064x}.o"
        p.write_bytes(obj.read_bytes())
        os.utime(p, (now - 10000 + i, now - 10000 + i))        # 0 is the oldest
    old_tmp = cache / (objcache.TMP_PREFIX + "left.o.part")
    old_tmp.write_bytes(b"x")
    os.utime(old_tmp, (now - 2 * objcache.STALE_TMP,) * 2)
    # a hit makes an old entry recent
    assert objcache.fetch(cache, f"{0:064x}", tmp_path / "hit.o")
    assert (tmp_path / "hit.o").read_bytes() == obj.read_bytes()
    assert len(entries(cache)) == objcache.MAX_ENTRIES       # not above the bound: kept
    assert objcache.store(cache, "f" * 64, obj)
    left = {p.name for p in entries(cache)}
    assert len(left) == (objcache.MAX_ENTRIES + 1) - (objcache.MAX_ENTRIES + 1) // 2
    assert f"{0:064x}.o" in left and "f" * 64 + ".o" in left
    assert f"{1:064x}.o" not in left and f"{objcache.MAX_ENTRIES - 1:064x}.o" in left
    assert not old_tmp.exists()


def test_concurrent_stores_of_one_key_are_safe(tmp_path):
    """The suite's two xdist workers share ~/.cache: the same object stored by both at once
    (here by threads; os.replace is atomic between processes alike) is whole for every
    reader, and no temporary file stays."""
    cache = tmp_path / "objects"
    obj = an_object(tmp_path)
    want = obj.read_bytes()
    k = "a" * 64
    errors, got = [], []

    def storer():
        for _ in range(100):
            if not objcache.store(cache, k, obj):
                errors.append("store failed")

    def reader(i):
        for j in range(300):
            out = tmp_path / f"r{i}-{j}.o"
            if objcache.fetch(cache, k, out):
                got.append(out.read_bytes() == want)

    threads = [threading.Thread(target=storer) for _ in range(3)] + \
        [threading.Thread(target=reader, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and got and all(got)
    assert [p.name for p in cache.iterdir()] == [k + ".o"]


# ---- the warm-up ---------------------------------------------------------------------------
def test_the_warm_up_covers_every_flag_set():
    assert payload.payload_flags("small", "none") == payload.payload_flags("small", "lz4")
    sets = objcache.warm_builds()
    payloads = [s for s in sets if s[0].startswith("payload")]
    loaders = [s for s in sets if s[0].startswith("loader")]
    want = {(tuple(toolchain.payload_sources(k)), tuple(payload.payload_flags(m, c)))
            for k in DISK_KINDS for m in ("small", "large") for c in COMPRESSIONS}
    assert {(tuple(s[1]), tuple(s[2])) for s in payloads} == want
    assert len(payloads) == len(want)
    assert {(tuple(s[1]), tuple(s[2])) for s in loaders} == {
        (tuple(resume.loader_sources(k)), tuple(resume.loader_flags(m, Options.serial_port)))
        for k in DISK_KINDS for m in ("small", "large")}


def test_after_the_warm_up_a_payload_and_a_loader_compile_nothing(tmp_path, tools, target_toml,
                                                                   monkeypatch):
    cache = tmp_path / "objects"
    env = dict(os.environ, PYTHONPATH=str(ROOT), SUSPENDOS_OBJECT_CACHE=str(cache),
               PATH=tools.path)
    p = subprocess.run([sys.executable, "-m", "suspendos.build.objcache", "--warm"],
                       capture_output=True, text=True, timeout=1800, env=env)
    assert p.returncode == 0, p.stderr
    compiled, _ = tools.take()
    stored = len(entries(cache))
    assert p.stdout.startswith(f"objcache: {stored} objects compiled and stored in {cache}, ")
    assert len(compiled) == stored and len(p.stdout.splitlines()) == 1
    again = subprocess.run([sys.executable, "-m", "suspendos.build.objcache", "--warm"],
                           capture_output=True, text=True, timeout=600, env=env)
    assert again.stdout.startswith("objcache: 0 objects compiled"), again.stdout
    assert tools.take()[0] == []

    build(tools, target_toml, tmp_path / "p.blob", cache)
    compiled, links = tools.take()
    assert compiled == [] and len(links) == 1
    # the loader, in this process: only its lists (written per target) are compiled
    monkeypatch.setenv("PATH", tools.path)
    monkeypatch.setenv("SUSPENDOS_OBJECT_CACHE", str(cache))
    resume.build_resume_loader(load(target_toml), tmp_path / "resume.elf")
    compiled, links = tools.take()
    assert compiled == ["resume_lists.S"] and len(links) == 1


def test_a_missing_compiler_is_reported_as_before(tmp_path, monkeypatch):
    """Even with every object in the cache, the build names the missing gcc."""
    cache = tmp_path / "objects"
    monkeypatch.setenv("SUSPENDOS_OBJECT_CACHE", str(cache))
    serial = [source_dir("drivers") / "serial.c"]
    toolchain.compile_all(serial, tmp_path / "w1")
    assert len(entries(cache)) == 1
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BuildError, match="gcc is not installed"):
        toolchain.compile_all(serial, tmp_path / "w2")
