"""Shared building blocks for the format declarations and the one choke point where
construct's exceptions become the project's own FormatError."""
import construct as c

from ..errors import FormatError

PAGE_SIZE = 4096
SECTOR_SIZE = 512

u8, u16, u32, u64 = c.Int8ul, c.Int16ul, c.Int32ul, c.Int64ul


def magic32(text):
    """A four-character magic as the little-endian u32 the C side compares against."""
    assert len(text) == 4
    return int.from_bytes(text.encode(), "little")


def align_up(value, alignment):
    return (value + alignment - 1) // alignment * alignment


def parse(fmt, data, what):
    """Parse `data` with `fmt`; any construct failure becomes a FormatError naming `what`."""
    try:
        return fmt.parse(bytes(data))
    except (c.ConstructError, ValueError, OverflowError) as e:
        raise FormatError(f"{what}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")


def build(fmt, value, what):
    try:
        return fmt.build(value)
    except (c.ConstructError, ValueError, OverflowError, KeyError) as e:
        raise FormatError(f"cannot encode {what}: {e}")


class Constants:
    """A named group of integer constants exported to the generated C header."""

    def __init__(self, prefix, doc, **values):
        self.prefix, self.doc, self.values = prefix, doc, values

    def __getattr__(self, name):
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name)

    def name_of(self, value):
        for k, v in self.values.items():
            if v == value:
                return k.lower()
        return f"unknown({value:#x})"


def offset_of(struct, field):
    """Byte offset of a top-level field of a fixed-size Struct."""
    off = 0
    for sc in struct.subcons:
        if sc.name == field:
            return off
        off += sc.sizeof()
    raise KeyError(field)
