"""The command tree of an argparse parser, walked the one way the synopsis, the help test and
the generated docs all need: every (sub)command with its words and help. argparse keeps the
tree in private attributes (a parser's `_subparsers` group holds one _SubParsersAction whose
`choices` maps each name to its parser, and `_choices_actions` carries each name's help);
this is the only module that reads them."""
import argparse
from dataclasses import dataclass


@dataclass
class Command:
    words: tuple            # ("target", "qemu"); () for the top level
    parser: argparse.ArgumentParser
    help: str               # what the parent's subcommand list says of it ("" at the top)

    @property
    def is_leaf(self):
        return subcommand_action(self.parser) is None


def subcommand_action(parser):
    """The parser's _SubParsersAction, or None for a command without subcommands."""
    if parser._subparsers is None:
        return None
    for action in parser._subparsers._group_actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def walk(parser, words=(), help=""):
    """Every command from the top down, parents before their subcommands, in the order the
    parser lists them."""
    yield Command(tuple(words), parser, help)
    sub = subcommand_action(parser)
    if sub is None:
        return
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, child in sub.choices.items():
        yield from walk(child, (*words, name), helps.get(name) or "")


def own_actions(parser):
    """The parser's options and positionals, without -h/--help, --version and the
    subcommand slot."""
    return [a for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._VersionAction,
                                  argparse._SubParsersAction))]


def is_hidden(action):
    return action.help == argparse.SUPPRESS
