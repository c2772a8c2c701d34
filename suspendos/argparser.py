"""argparse, made to follow the project's rule: a usage error is one line on stderr and exit
status 2. Sub-parsers inherit the class, so every subcommand added anywhere follows it.

Every number a user types (options, --inject LBAs, sizes, percentages, framebuffer modes)
is read by `parse_number` here: ASCII digits only. Python's own int() and str.isdigit()
also take other scripts' digits ("٣"), superscripts ("²", isdigit only), underscores,
surrounding blanks and a trailing newline, none of which a user means as a number."""
import argparse
import re

from .errors import UsageError

PROG = "suspendos"
# fullmatch: a `$` would also match before a trailing newline.
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|[0-9]+", re.ASCII)


class _Subcommands(argparse._SubParsersAction):
    def add_parser(self, name, **kwargs):
        # `suspendos image verify --help` opens with what the command list says of it.
        if kwargs.get("help") and "description" not in kwargs:
            kwargs["description"] = kwargs["help"]
        return super().add_parser(name, **kwargs)


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _Subcommands)

    def _print_message(self, message, file=None):
        # Help and --version go to sys.stdout, which is None when stdout is closed (`>&-`):
        # argparse would write them to stderr instead, where a run that succeeds is silent.
        if file is None:
            return
        super()._print_message(message, file)

    def error(self, message):
        # The CLI prefixes "suspendos: error: ": name the subcommand only, not the program.
        command = self.prog.removeprefix(PROG).strip()
        where = f"{command}: " if command else ""
        raise UsageError(f"{where}{message} (see --help)")


def parse_number(text, what, low=0, high=None, hex_ok=True):
    """`text` as an integer in [low, high]: ASCII decimal digits, or 0x and hexadecimal
    digits when `hex_ok`. Anything else is a UsageError naming `what`."""
    t = text if isinstance(text, str) else ""
    if not _NUMBER.fullmatch(t) or (t[:2].lower() == "0x" and not hex_ok):
        raise UsageError(f"{what}: {text!r} is not a number"
                         + (" (digits 0-9, or 0x and hex digits)" if hex_ok else
                            " (digits 0-9)"))
    value = int(t, 16) if t[:2].lower() == "0x" else int(t, 10)
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise UsageError(f"{what}: {text!r} is out of range ({bound})")
    return value


def bounded_int(low, high, what="a number", hex_ok=True):
    """An argparse type: an integer in [low, high] (decimal, or 0x... when `hex_ok`)."""
    def convert(text):
        try:
            return parse_number(text, "value", low, high, hex_ok)
        except UsageError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix("value: "))
    convert.__name__ = what        # argparse names the type in its messages
    return convert


def choice_int(*choices):
    """An argparse type for a number that must be one of `choices` (e.g. sector sizes);
    used with choices=, which then names them."""
    return bounded_int(min(choices), max(choices), "one of " + ", ".join(map(str, choices)))


# ATA's 48-bit LBA (ACS-3, 4.1): no disk an AHCI port reaches has a sector beyond it.
lba = bounded_int(0, (1 << 48) - 1, "an LBA")
byte_offset = bounded_int(0, (1 << 48) * 512 - 1, "a byte offset")


def cpu_count(text):
    """--cpus of the test machine: the boot CPU and up to MAX_CPUS APs (the handoff block's
    slots)."""
    from .formats.smp import MAX_CPUS
    return bounded_int(1, MAX_CPUS + 1, "a CPU count")(text)
