"""The wheel, as a user gets it: it carries every file of the C parts (compared with
`git ls-files`), and installed with its dependencies in a fresh venv it does, from an empty
folder, what the README shows: suspend and resume a machine, verify the image, a theme and a
plugin, and the Linux module build. One 64M suspend and resume: the rest is fast. Its
`qemu linux` puts the installed package itself into the Debian guest (selfwheel.py): a fast
test shows that wheel equals the tree's, a slow one (in the Debian-guest chain of
tests/conftest.py) runs the guest from the installed wheel."""
import json
import os
import subprocess
import venv
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from wheel.wheelfile import WheelFile

from suspendos.linuxvm import debian

ROOT = Path(__file__).resolve().parent.parent
PARTS = {"builder": "builder", "drivers": "drivers", "plugins": "plugins",
         "qemu-boot": "qemu_boot", "linux": "linux"}
BUILD_PRODUCTS = (".o", ".ko", ".pyc")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel of the tree, built as the Debian guest's is (debian.checkout_wheel: pip
    wheel of a clean copy), so an install of it and the checkout share one cached guest."""
    assert Path(debian.__file__).is_relative_to(ROOT), debian.__file__
    return debian.checkout_wheel(ROOT, tmp_path_factory.mktemp("wheel"))


def test_the_wheel_carries_every_source_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(["git", "ls-files", *PARTS], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    want = set()
    for path in tracked:
        top, rest = path.split("/", 1)
        if not os.path.basename(rest).startswith("."):      # .gitignore: not for users
            want.add(f"suspendos_c/{PARTS[top]}/{rest}")
    assert want - names == set(), "not in the wheel"
    assert not [n for n in names if n.endswith(BUILD_PRODUCTS)]
    assert "lief" not in zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("METADATA"))).decode().split("Provides-Extra")[0]


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """A fresh venv with the wheel and its declared dependencies (nothing of the checkout)."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True).create(env_dir)
    subprocess.run([env_dir / "bin" / "pip", "install", "-q", str(wheel)], check=True,
                   timeout=900, capture_output=True)
    return env_dir


def test_an_installed_wheel_does_what_the_readme_shows(installed, tmp_path):
    home = tmp_path / "empty"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{installed / 'bin'}{os.pathsep}{env['PATH']}"

    def run(*args, tool="suspendos"):
        p = subprocess.run([installed / "bin" / tool, *map(str, args)], cwd=home, env=env,
                           capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, f"{tool} {' '.join(map(str, args))}: {p.stderr}"
        return p.stdout

    where = run("-c", "import suspendos, suspendos.sources as s; print(suspendos.__file__); "
                "print(s.source_dir('builder'))", tool="python")
    assert str(ROOT) not in where and str(installed) in where, where

    # The main job, as the README's first command runs it: hibernate, check every page
    # against QEMU's dump, resume, and a second resume refused (a work folder with a comma).
    out = run("demo", "--memory", "64M", "--keep", "work,1")
    assert "every chunk and every page against QEMU's memory dump: done" in out, out
    assert "refused (already-resumed), as it must be" in out, out
    assert "memory passed, CPU passed" in out, out
    assert sorted(p.name for p in (home / "work,1").iterdir()) == ["disk.img", "ram.bin"]
    run("target", "qemu", "--memory", "64M", "-o", "t.toml")
    run("build", "--target", "t.toml", "-o", "p.blob")

    # A theme and a plugin, signed.
    Image.new("RGB", (32, 16), (200, 30, 60)).save(home / "logo.png")
    run("plugin", "keygen", "-o", "key")
    run("plugin", "pack", "--splash", "logo.png", "--key", "key", "-o", "theme.sop")
    run("plugin", "preview", "theme.sop", "-o", "preview.png")
    run("plugin", "new", "demo")
    run("plugin", "build", "demo")
    run("plugin", "pack", "demo", "--key", "key", "-o", "demo.sop")
    (home / "trusted").mkdir()
    (home / "trusted" / "key.pub").write_bytes((home / "key.pub").read_bytes())
    run("build", "--target", "t.toml", "--plugin", "theme.sop", "--plugin", "demo.sop",
        "--trust", "trusted", "-o", "p2.blob")

    # The Linux module, against Debian's cached headers (suspendos.linuxvm fetches them).
    ko = run("-c", "from suspendos.linuxvm import Debian, build_module; "
             "print(build_module(Debian(headers=True), 'module'))", tool="python").strip()
    assert ko.endswith("suspendos.ko") and Path(ko).stat().st_size > 0


def test_the_wheel_installs_the_man_page_and_the_completion(wheel, installed):
    """Generated from the parser and checked in (suspendos/clidocs.py): the wheel carries
    them as data, pip puts them under the prefix where man and bash-completion look, and
    the installed command prints the same completion."""
    names = zipfile.ZipFile(wheel).namelist()
    for path in ("share/man/man1/suspendos.1", "share/bash-completion/completions/suspendos"):
        assert any(n.endswith(".data/data/" + path) for n in names), path
        assert (installed / path).read_text() == (ROOT / path).read_text(), path
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    p = subprocess.run([installed / "bin" / "suspendos", "completion", "bash"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout == (installed / "share/bash-completion/completions/suspendos").read_text()
    page = subprocess.run(["groff", "-man", "-Tutf8", "-P", "-cbou",   # scripts/setup.sh
                           installed / "share/man/man1/suspendos.1"],
                          capture_output=True, text=True, timeout=60)
    assert page.returncode == 0 and "suspendos qemu suspend" in page.stdout, page.stderr


def _user_env(installed):
    """The environment of a user of the installed wheel: its bin first, nothing of the
    checkout, and no pinned Debian guest (SOS_DEBIAN_GUEST would skip the guest's key)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "SOS_DEBIAN_GUEST")}
    env["PATH"] = f"{installed / 'bin'}{os.pathsep}{env['PATH']}"
    return env


def _installed_tree(env_dir):
    """{path under the venv: bytes} of what a suspendos wheel installed there (the package,
    the C sources, the man page and completion), the bytecode Python compiled left out."""
    site = next((env_dir / "lib").glob("python3*/site-packages"))
    files = [*(site / "suspendos").rglob("*"), *(site / "suspendos_c").rglob("*"),
             *(env_dir / "share").rglob("suspendos*")]
    return {f.relative_to(env_dir).as_posix(): f.read_bytes() for f in files
            if f.is_file() and "__pycache__" not in f.parts}


def test_the_guest_wheel_rebuilt_from_an_installed_wheel_is_the_trees(wheel, installed,
                                                                      tmp_path):
    """`qemu linux` from an installed suspendos packs its installed files back into a wheel
    for the Debian guest (suspendos/linuxvm/selfwheel.py). That wheel has the digest of the
    tree's wheel, the guest's cache key, so both use one cached guest; every hash in its
    RECORD is right (checked by the wheel package); it declares the same dependencies; and
    it installs the same files."""
    out = tmp_path / "rebuilt"
    out.mkdir()
    p = subprocess.run([installed / "bin" / "python", "-c",
                        "import sys; from suspendos.linuxvm import selfwheel; "
                        "print(selfwheel.build_wheel(sys.argv[1]))", out],
                       cwd=out, env=_user_env(installed), capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    rebuilt = Path(p.stdout.strip())
    assert rebuilt.name == wheel.name
    assert debian.wheel_digest(rebuilt) == debian.wheel_digest(wheel)
    assert debian.wheel_requirements(rebuilt) == debian.wheel_requirements(wheel)
    assert "construct>=2.10" in debian.wheel_requirements(rebuilt)
    assert not [r for r in debian.wheel_requirements(rebuilt) if "extra" in r]
    with WheelFile(rebuilt) as w:                  # raises on a file RECORD gets wrong
        names = w.namelist()
        for name in names:
            w.read(name)
    assert not [n for n in names if "__pycache__" in n or n.endswith(
        ("/INSTALLER", "/REQUESTED", "/direct_url.json"))], names
    assert names[-1].endswith(".dist-info/RECORD")

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    subprocess.run([env_dir / "bin" / "pip", "install", "-q", "--no-deps", rebuilt],
                   check=True, timeout=300, capture_output=True)
    assert _installed_tree(env_dir) == _installed_tree(installed)
    assert (env_dir / "bin" / "suspendos").is_file()     # pip made the entry point again
    p = subprocess.run([env_dir / "bin" / "python", "-c",
                        "import suspendos, suspendos.sources as s; print(suspendos.__file__); "
                        "print(s.source_dir('builder'))"], cwd=out, capture_output=True,
                       text=True, timeout=60, env=_user_env(env_dir))
    assert p.returncode == 0, p.stderr
    assert all(line.startswith(str(env_dir)) for line in p.stdout.split()), p.stdout


def test_qemu_linux_from_the_installed_wheel(installed, tmp_path):
    """`suspendos qemu linux` from the installed wheel, in an empty folder: the guest runs
    the installed package, hibernates and resumes; and it is the cached guest the checkout
    uses (the same files, the same key), not a second one. In the Debian-guest chain
    (tests/conftest.py CHAINS), so the guest is built by then. Measured alone with the
    cache cold, at a load average of 3: 238 s, of which building the guest (from the
    installed wheel) 88 s and the run the rest."""
    want = debian.guest_dir(log=lambda msg: None)
    home = tmp_path / "empty"
    home.mkdir()
    p = subprocess.run([installed / "bin" / "suspendos", "qemu", "linux", "--memory", "512M",
                        "--json"], cwd=home, env=_user_env(installed), capture_output=True,
                       text=True, timeout=3600)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout)
    assert r["status"] == "resumed", r
    assert r["md5_match"] is True, r
    assert r["guest"] == want.name, (r["guest"], want)
    assert (want / "guest.json").is_file()
    assert list(home.iterdir()) == []
