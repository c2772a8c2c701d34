"""Human sizes ("256M", "3G", "4096") to bytes and back."""
from .errors import UsageError

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
MAX_SIZE = 1 << 64      # larger than any disk or memory this tool describes


def parse_size(text, what="size"):
    from .argparser import parse_number
    s = text.upper().removesuffix("IB").removesuffix("B") if isinstance(text, str) else ""
    unit = s[-1:] if s[-1:] in _UNITS and s[-1:] != "" else ""
    number = s[: len(s) - len(unit)]
    try:
        value = parse_number(number, what, 0, MAX_SIZE) * _UNITS[unit]
    except UsageError:
        raise UsageError(f"{what}: cannot read {text!r} as a size (examples: 256M, 3G, 65536)")
    if value <= 0:
        raise UsageError(f"{what}: must be positive, got {text!r}")
    if value > MAX_SIZE:
        raise UsageError(f"{what}: {text!r} is larger than 16 EiB")
    return value


def format_size(n):
    for unit in ("G", "M", "K"):
        if n >= _UNITS[unit] and n % _UNITS[unit] == 0:
            return f"{n // _UNITS[unit]}{unit}"
    return str(n)
