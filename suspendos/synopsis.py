"""The synopsis of every command, generated from the parser: README.md's "Command line" block
(`python -m suspendos.clidocs` writes it there). One command per entry, its positionals first,
then its options in the parser's order; optional ones in brackets, choices as a|b|c;
long entries wrap under the command's first option."""
import textwrap

from .parsertree import is_hidden, own_actions, walk

WIDTH = 96
KEEP = "\x00"             # a space inside one entry, while wrapping
MAX_CHOICES = 10          # more than this (--percent's 0..100) is shown by its metavar


def value_word(action):
    choices = list(action.choices or ())
    if action.metavar is not None:
        return action.metavar
    if 0 < len(choices) <= MAX_CHOICES:
        return "|".join(map(str, choices))
    return action.dest.upper()


def option_word(action):
    if not action.option_strings:
        word = value_word(action)
        return f"[{word}]" if action.nargs == "?" else word
    short = [s for s in action.option_strings if not s.startswith("--")]
    word = (short or action.option_strings)[0]
    if action.nargs != 0:
        word += " " + value_word(action)
    if action.__class__.__name__ == "_AppendAction":
        word += " ..."
    return word if action.required else f"[{word}]"


def command_line(words, parser):
    actions = [a for a in own_actions(parser) if not is_hidden(a)]
    ordered = [a for a in actions if not a.option_strings] + \
              [a for a in actions if a.option_strings]
    head = " ".join(("suspendos", *words))
    # An entry ("[--compress none|lz4]") never breaks: its spaces are held until wrapped.
    entries = " ".join(option_word(a).replace(" ", KEEP) for a in ordered)
    text = textwrap.fill(entries, WIDTH, initial_indent=head + " ",
                         subsequent_indent=" " * (len(head) + 1), break_long_words=False,
                         break_on_hyphens=False)
    return text.replace(KEEP, " ")


def synopsis(parser):
    """Every leaf command of `parser`, one entry each, in the parser's order."""
    return "\n".join(command_line(c.words, c.parser) for c in walk(parser) if c.is_leaf) + "\n"
