"""What is generated from the parser: README's Command line block, the man page and the
bash completion are current (checked in, shipped by the wheel), the man page renders and
names every command and option, and bash completes commands and choices with the script."""
import shutil
import subprocess
import sys

import pytest

from suspendos import clidocs
from suspendos.cli import parser
from suspendos.completion import SHELLS
from suspendos.parsertree import is_hidden, own_actions, walk

ROOT = clidocs.CHECKOUT


def test_generated_files_are_current():
    stale = clidocs.stale()
    assert stale == [], (f"{', '.join(stale)}: not what the parser gives (a command or option "
                         f"was added or its help changed); regenerate them with "
                         f"`.venv/bin/python -m suspendos.clidocs` and commit the result")


def every_command_and_option():
    """("qemu suspend", ["--memory", ...]) for every command, options without -h."""
    return [(" ".join(c.words), [s for a in own_actions(c.parser) if not is_hidden(a)
                                 for s in a.option_strings])
            for c in walk(parser()) if c.words]


def test_readme_lists_every_command_and_option():
    """Each leaf command has an entry (its line and the indented lines under it) naming every
    option it has, by one of its spellings (-o or --output)."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split(clidocs.README_BLOCK_START, 1)[1].split(clidocs.README_BLOCK_END)[0]
    entries = {}
    for line in block.splitlines():
        if line.startswith(" "):
            entries[head] += line
        else:
            head = line
            entries[head] = line
    for command in walk(parser()):
        if not command.is_leaf:
            continue
        name = " ".join(("suspendos", *command.words))
        entry = next((e for e in entries.values() if e == name or e.startswith(name + " ")),
                     None)
        assert entry is not None, name
        words = set(entry.replace("[", " ").replace("]", " ").split())
        for action in own_actions(command.parser):
            if action.option_strings and not is_hidden(action):
                assert words & set(action.option_strings), (name, action.option_strings)


def test_man_page_renders_and_names_every_command_and_option():
    groff = shutil.which("groff")
    assert groff, "groff is missing: scripts/setup.sh installs groff-base"
    p = subprocess.run([groff, "-man", "-Tutf8", "-P", "-cbou", str(ROOT / clidocs.MAN_PAGE)],
                       capture_output=True, text=True, check=True)
    assert "error" not in p.stderr.lower(), p.stderr
    text = " ".join(p.stdout.split())
    assert "SYNOPSIS" in text and "Exit status: 0 done" in text
    for words, options in every_command_and_option():
        assert f"suspendos {words}" in text, words
        for option in options:
            assert option in text, (words, option)


def bash_complete(line):
    """What bash's completion of `line` (the cursor at its end) offers, with the shipped
    script sourced."""
    words = line.split(" ")
    script = (f"source {ROOT / clidocs.BASH_COMPLETION}\n"
              f"COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}\n"
              f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
              f"$(complete -p suspendos | sed 's/.* -F \\([^ ]*\\) .*/\\1/') suspendos "
              f"'{words[-1]}' '{words[-2]}'\n"
              "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    p = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    return p.stdout.split()


def test_bash_completion_is_valid_and_completes_every_command():
    script = ROOT / clidocs.BASH_COMPLETION
    subprocess.run(["bash", "-n", str(script)], check=True)
    for command in walk(parser()):
        if command.is_leaf:
            continue
        prefix = " ".join(("suspendos", *command.words))
        offered = bash_complete(prefix + " ")
        names = [c.words[-1] for c in walk(command.parser, command.words)
                 if len(c.words) == len(command.words) + 1]
        assert set(names) <= set(offered), (prefix, offered)
    assert bash_complete("suspendos qemu suspend --compress ") == ["none", "lz4", "lz4hc"]
    assert "--sector-size" in bash_complete("suspendos qemu resume --sec")


@pytest.mark.parametrize("shell", SHELLS)
def test_completion_command_prints_the_script(shell):
    p = subprocess.run([sys.executable, "-m", "suspendos.cli", "completion", shell],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    for words, _ in every_command_and_option():
        assert words.split()[-1] in p.stdout, words
    if shell == "bash":
        assert p.stdout == (ROOT / clidocs.BASH_COMPLETION).read_text()


def test_readme_block_is_replaced_whole():
    readme = "intro\n## Command line\n\n```\nold\nlines\n```\n\nafter ```x```\n"
    assert clidocs.readme_with_synopsis(readme, "new\n") == \
        "intro\n## Command line\n\n```\nnew\n```\n\nafter ```x```\n"
