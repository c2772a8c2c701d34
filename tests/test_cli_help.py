"""Help a user can read: every command of the whole parser tree has a help line, every option
and positional a help string that lists its choices and says its default, and the top-level
description says what the tool does. An option added without help fails here."""
import argparse
import subprocess
import sys

import pytest

from suspendos import cli
from suspendos.argparser import Parser
from suspendos.parsertree import own_actions, walk

TRIVIAL_DEFAULTS = (None, False, [], argparse.SUPPRESS)


def help_problems(parser):
    """Every shortfall of the tree's help, one line each (empty: none)."""
    problems = []
    for command in walk(parser):
        name = " ".join(("suspendos", *command.words))
        if command.words and not command.help.strip():
            problems.append(f"{name}: no help line in its parent's command list")
        for action in own_actions(command.parser):
            what = f"{name} {'/'.join(action.option_strings) or action.dest}"
            text = (action.help or "").strip()
            if not text:
                problems.append(f"{what}: no help string")
                continue
            if text == argparse.SUPPRESS:       # deliberately hidden (tests' own options)
                continue
            # A long range (--percent 0..100) is said as a range, not as every value.
            choices = list(action.choices or ())
            if 0 < len(choices) <= 10:
                missing = [str(c) for c in choices if str(c) not in text]
                if missing:
                    problems.append(f"{what}: the help does not name {', '.join(missing)}")
            takes_value = action.nargs != 0
            if takes_value and action.default not in TRIVIAL_DEFAULTS and "default" not in text:
                problems.append(f"{what}: the help does not say the default "
                                f"({action.default!r})")
    return problems


def test_every_command_option_and_positional_has_help():
    assert help_problems(cli.parser()) == []


def test_the_tree_holds_every_command():
    """The walk reaches the commands main() dispatches before the parser (demo, bench
    compress, hibernate) with their real options, not stand-ins."""
    leaves = {" ".join(c.words): c.parser for c in walk(cli.parser()) if c.is_leaf}
    assert {"target qemu", "target check", "qemu suspend", "qemu linux", "image verify",
            "image discard", "hibernate", "install-resume", "uninstall-resume", "demo",
            "bench compress", "plugin verify", "key new", "completion"} <= set(leaves)
    opts = lambda p: {s for a in own_actions(p) for s in a.option_strings}
    assert {"--memory", "--seed", "--keep"} <= opts(leaves["demo"])
    assert {"--chunk", "--make-corpus"} <= opts(leaves["bench compress"])


def test_an_option_without_help_is_found():
    """The checker itself: a parser like ours with one bare option, one bare positional, a
    command without help and an option whose help hides its choices and default."""
    p = Parser(prog="suspendos")
    sub = p.add_subparsers(dest="command")
    good = sub.add_parser("good", help="does good")
    good.add_argument("--fine", help="a fine option")
    bare = sub.add_parser("bare")
    bare.add_argument("--size")
    bare.add_argument("thing")
    bare.add_argument("--mode", choices=("red", "blue"), default="red", help="the colour")
    problems = help_problems(p)
    assert problems == ["suspendos bare: no help line in its parent's command list",
                        "suspendos bare --size: no help string",
                        "suspendos bare thing: no help string",
                        "suspendos bare --mode: the help does not name red, blue",
                        "suspendos bare --mode: the help does not say the default ('red')"]


def test_top_level_help_says_what_the_tool_does():
    text = " ".join(cli.parser().format_help().split())
    assert "writes a machine's RAM to disk" in text
    assert "Exit status: 0 done, 1 a run failed, 2 bad input" in text
    assert cli.DESCRIPTION not in (cli.__doc__ or "")


def test_image_help_describes_its_subcommands():
    p = subprocess.run([sys.executable, "-m", "suspendos.cli", "image", "--help"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    image = next(c for c in walk(cli.parser()) if c.words == ("image",))
    for command in walk(image.parser, ("image",)):
        if command.words != ("image",):
            first_words = " ".join(command.help.split()[:4])
            assert first_words in " ".join(p.stdout.split()), command.words


@pytest.mark.parametrize("argv", [["demo", "--help"], ["bench", "compress", "--help"],
                                  ["hibernate", "--help"]])
def test_the_separately_parsed_commands_show_the_same_help(argv):
    """demo, bench compress and hibernate are parsed outside cli.parser(): their own --help
    shows the help strings the tree has."""
    p = subprocess.run([sys.executable, "-m", "suspendos.cli", *argv], capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
    words = tuple(w for w in argv if w != "--help")
    command = next(c for c in walk(cli.parser()) if c.words == words)
    shown = " ".join(p.stdout.split())
    for action in own_actions(command.parser):
        if action.help != argparse.SUPPRESS:
            assert " ".join(action.help.replace("%%", "%").split()[:5]) in shown, action.dest
