"""Where the C and assembly sources are: the repository checkout when running from it, or
the copies installed with the package (as suspendos_c)."""
import functools
from pathlib import Path

from .errors import BuildError

PARTS = {"builder": "builder", "drivers": "drivers", "plugins": "plugins",
         "qemu-boot": "qemu_boot", "linux": "linux"}


@functools.cache
def source_dir(part):
    repo = Path(__file__).resolve().parent.parent / part
    if (repo / ".").is_dir() and any(repo.iterdir()):
        return repo
    try:
        import suspendos_c
        installed = Path(suspendos_c.__file__).parent / PARTS[part]
    except ImportError:
        installed = None
    if installed and installed.is_dir():
        return installed
    raise BuildError(f"cannot find the {part}/ sources (looked in {repo}"
                     f"{' and ' + str(installed) if installed else ''})")
