"""The wheel, as a user gets it: it carries every file of the C parts (compared with
`git ls-files`), and installed with its dependencies in a fresh venv it does, from an empty
folder, what the README shows: suspend and resume a machine, verify the image, a theme and a
plugin, and the Linux module build. One 64M suspend and resume: the rest is fast."""
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PARTS = {"builder": "builder", "drivers": "drivers", "plugins": "plugins",
         "qemu-boot": "qemu_boot", "linux": "linux"}
BUILD_PRODUCTS = (".o", ".ko", ".pyc")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(ROOT)], check=True, timeout=300, cwd=out,
                   capture_output=True)
    return next(out.glob("suspendos-*.whl"))


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
