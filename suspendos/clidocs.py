"""The files generated from the parser and kept in the checkout, so that the wheel ships them
(setup.cfg data_files) and the README shows them: README.md's "Command line" block, the man
page and the bash completion. The parser stays their one source:

    python -m suspendos.clidocs          rewrites every one of them from the parser
    python -m suspendos.clidocs --check  exit 1 naming those that differ (tests/test_cli_docs.py)
"""
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
README = "README.md"
README_BLOCK_START = "## Command line\n\n```\n"
README_BLOCK_END = "```\n"
MAN_PAGE = "share/man/man1/suspendos.1"
BASH_COMPLETION = "share/bash-completion/completions/suspendos"
REGENERATE = "python -m suspendos.clidocs"


def readme_with_synopsis(readme, synopsis_text):
    """README.md's text with its Command line block replaced by `synopsis_text`."""
    start = readme.find(README_BLOCK_START)
    if start < 0:
        raise ValueError(f"{README} has no {README_BLOCK_START.splitlines()[0]!r} code block")
    start += len(README_BLOCK_START)
    end = readme.index(README_BLOCK_END, start)
    return readme[:start] + synopsis_text + readme[end:]


def generated(root=CHECKOUT):
    """{file relative to the checkout: the text it must have}, generated now."""
    from .cli import parser
    from .completion import script
    from .manpage import man_page
    from .synopsis import synopsis
    readme = (root / README).read_text()
    return {README: readme_with_synopsis(readme, synopsis(parser())),
            MAN_PAGE: man_page(),
            BASH_COMPLETION: script("bash")}


def stale(root=CHECKOUT):
    """The generated files whose checked-in text is not what the parser gives now."""
    return [name for name, text in generated(root).items()
            if not (root / name).exists() or (root / name).read_text() != text]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not (CHECKOUT / README).exists():
        print(f"clidocs: {CHECKOUT} is not a suspendos checkout", file=sys.stderr)
        return 2
    if argv == ["--check"]:
        names = stale()
        for name in names:
            print(f"{name} is not what the parser gives: run `{REGENERATE}`", file=sys.stderr)
        return 1 if names else 0
    for name, text in generated().items():
        path = CHECKOUT / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
