"""Fuzzing the target description reader: suspendos.target.description.loads.

Whatever the text, loads returns a validated Target or raises the project's own exception
(SuspendosError; in practice UsageError naming the field), never another exception type and
never a hang. Inputs: random text; random TOML documents (recursive tables, arrays, ints,
strings, bools, floats, dates) under random and real key names; a valid target's TOML with
fields removed, values of the wrong type, huge and negative integers, unknown keys; and
line-level damage to its text. A Target that loads must survive dumps/loads unchanged.
"""
import datetime
import os
import re
from datetime import timedelta

import pytest
import tomli_w
from hypothesis import (HealthCheck, currently_in_test_context, event, given, settings,
                        strategies as st)

from suspendos.errors import SuspendosError
from suspendos.target import description
from suspendos.target.description import Target


def examples(n):
    """n, scaled by SUSPENDOS_FUZZ_SCALE (bench/fuzz_long.sh runs these tests longer)."""
    return max(1, int(n * float(os.environ.get("SUSPENDOS_FUZZ_SCALE", "1"))))

# The deadline guards against a parser that hangs or loops on bad input; it is not a
# speed claim, so it is generous enough for a loaded 2-core machine.
FAST = settings(deadline=timedelta(seconds=20), max_examples=examples(300),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# The names the reader knows, so random documents hit its checks rather than "unknown".
SECTIONS = ["name", "memory", "reserved", "disk", "extents", "framebuffer", "options"]
FIELDS = ["start", "end", "type", "load_address", "size", "ahci_base", "pci", "port",
          "sectors", "lba", "count", "address", "width", "height", "pitch", "bpp", "format",
          "compress", "chunk_pages", "max_command_kib", "serial_port", "debug_exit_port"]
STRINGS = ["", "ram", "reserved", "acpi", "nvs", "unusable", "lz4", "none", "xrgb8888",
           "rgb565", "00:1f.2", "ff:1f.7", "100:00.0", "-1:00.0", "0:0", "a:b.c", "00:1f.2.3",
           "qemu", "\x00", "\ud7ff\U0010ffff"]
INTS = [0, 1, -1, 4096, 512 * 1024, 2048, 0x3F8, 2**31 - 1, 2**32, 2**63 - 1, -2**63,
        2**64, 2**100, -2**100]


def note(what, e=None):
    if currently_in_test_context():
        event(f"{what}: " + (re.sub(r"0x[0-9a-f]+|-?\d+", "N", str(e))[:60] if e else "ok"))


def check_loads(text):
    """loads gives a Target that round-trips, or the project's own error."""
    try:
        t = description.loads(text)
    except SuspendosError as e:
        note("loads", e)
        return None
    note("loads")
    assert isinstance(t, Target)
    again = description.loads(description.dumps(t))
    assert again == t
    return t


# ---- strategies ---------------------------------------------------------------------------

ints = st.sampled_from(INTS) | st.integers(-2**64, 2**64)
scalars = st.one_of(ints, st.booleans(), st.sampled_from(STRINGS), st.text(max_size=12),
                    st.floats(allow_nan=True), st.dates(),
                    st.datetimes(timezones=st.none() | st.just(datetime.timezone.utc)))
keys = st.sampled_from(SECTIONS + FIELDS) | st.text(min_size=1, max_size=8)
toml_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25)
documents = st.dictionaries(keys, toml_values, max_size=8)


def toml_text(doc):
    try:
        return tomli_w.dumps(doc)
    except (TypeError, ValueError):   # tomli_w refuses some values (e.g. ints > 64 bits)
        return None


@pytest.fixture(scope="module")
def valid():
    """A valid target, and one with a framebuffer and options, as plain dicts."""
    from suspendos.target.qemu import qemu_target
    t = qemu_target(256 << 20, pci={"ahci": ("00:1f.2", 0xfebf1000),
                                    "vga": ("00:01.0", 0xfd000000, 1 << 24)})
    plain = t.to_dict()
    rich = t.to_dict()
    rich["framebuffer"] = dict(address=0xfd000000, width=800, height=600, pitch=3200, bpp=32,
                               format="xrgb8888")
    rich["options"].update(compress="lz4", chunk_pages=16)
    for d in (plain, rich):
        assert check_loads(tomli_w.dumps(d)) is not None
    return [plain, rich]


def paths(doc, prefix=()):
    """Every (path, value) in a nested dict/list document."""
    out = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc)
    for k, v in items:
        out.append((prefix + (k,), v))
        if isinstance(v, (dict, list)):
            out += paths(v, prefix + (k,))
    return out


def mutate(doc, draw):
    import copy
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 4))):
        path, value = draw(st.sampled_from(paths(doc)))
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        kind = draw(st.sampled_from(["remove", "retype", "int", "unknown", "empty", "dup"]))
        if kind == "remove":
            del parent[key]
        elif kind == "retype":
            parent[key] = draw(toml_values)
        elif kind == "int":
            parent[key] = draw(ints | st.integers(-4096, 4096).map(
                lambda d: (value + d) if isinstance(value, int) else d))
        elif kind == "unknown":
            target = parent[key] if isinstance(value, dict) else parent
            if isinstance(target, dict):
                target[draw(keys)] = draw(toml_values)
        elif kind == "empty":
            parent[key] = {} if isinstance(value, dict) else [] if isinstance(value, list) else ""
        elif kind == "dup" and isinstance(parent, list):
            parent.append(copy.deepcopy(value))
        if not paths(doc):
            break
    return doc


# ---- the properties ---------------------------------------------------------------------

@FAST
@given(text=st.text(max_size=400) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_random_text(text):
    check_loads(text)


@FAST
@given(doc=documents)
def test_random_toml_documents(doc):
    text = toml_text(doc)
    if text is not None:
        check_loads(text)


@FAST
@given(data=st.data())
def test_mutated_valid_target(valid, data):
    doc = mutate(data.draw(st.sampled_from(valid)), data.draw)
    text = toml_text(doc)
    if text is not None:
        check_loads(text)


@FAST
@given(data=st.data())
def test_damaged_target_text(valid, data):
    """Line and character damage to the TOML text itself."""
    lines = tomli_w.dumps(data.draw(st.sampled_from(valid))).splitlines()
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(lines) - 1))
        kind = data.draw(st.sampled_from(["delete", "duplicate", "char", "truncate", "swap"]))
        if kind == "delete" and len(lines) > 1:
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "char" and lines[i]:
            j = data.draw(st.integers(0, len(lines[i]) - 1))
            lines[i] = lines[i][:j] + data.draw(st.sampled_from(list("[]{}=\",.#'\\ 0-x\n"))
                                                | st.characters()) + lines[i][j + 1:]
        elif kind == "truncate":
            lines = lines[:i]
        elif kind == "swap" and len(lines) > 1:
            j = data.draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        if not lines:
            break
    check_loads("\n".join(lines))


@pytest.mark.parametrize("text", [
    "name = " + "[" * 5000 + "]" * 5000,                   # arrays nested past the stack
    "name = " + "{a = " * 5000 + "1" + "}" * 5000,         # inline tables likewise
    "name = " + "[" * 200000,
])
def test_deep_nesting_is_a_usage_error(text):
    """tomllib parses nesting recursively: deep documents raised RecursionError."""
    with pytest.raises(SuspendosError):
        description.loads(text)
