"""argparse, made to follow the project's rule: a usage error is one line on stderr and exit
status 2. Sub-parsers inherit the class, so every subcommand added anywhere follows it."""
import argparse

from .errors import UsageError


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

    def error(self, message):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def bounded_int(low, high, what="a number"):
    """An argparse type: an integer in [low, high] (decimal or 0x...)."""
    def convert(text):
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is out of range ({low} to {high})")
        return value
    convert.__name__ = what        # argparse names the type in its messages
    return convert


# ATA's 48-bit LBA (ACS-3, 4.1): no disk an AHCI port reaches has a sector beyond it.
lba = bounded_int(0, (1 << 48) - 1, "an LBA")
byte_offset = bounded_int(0, (1 << 48) * 512 - 1, "a byte offset")
