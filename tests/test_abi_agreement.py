"""The C side and the Python side agree on every shared layout, byte for byte: a C probe,
compiled with the payload's own flags against the generated header, prints sizeof and
offsetof of every field, and they must equal the construct declarations."""
import subprocess

from suspendos.build import toolchain
from suspendos.formats import cheader


def test_generated_header_matches_construct_declarations(tmp_path):
    inc = toolchain.abi_header_dir(tmp_path)
    lines = ['#include <stdio.h>', '#include <stddef.h>', '#include "suspendos_abi.h"',
             "int main(void) {"]
    for cname, struct in cheader.STRUCTS:
        lines.append(f'printf("{cname} size %zu\\n", sizeof(struct {cname}));')
        for field, _, _ in cheader.struct_fields(struct):
            lines.append(f'printf("{cname}.{field} %zu %zu\\n", offsetof(struct {cname}, {field}),'
                         f' sizeof(((struct {cname} *)0)->{field}));')
    lines += ["return 0;", "}"]
    (tmp_path / "probe.c").write_text("\n".join(lines))
    # -mno-red-zone etc. do not change layout, but -mgeneral-regs-only and the standard do
    # matter for what the payload sees: compile with the same language flags.
    subprocess.run(["gcc", "-std=gnu11", "-O2", f"-I{inc}", str(tmp_path / "probe.c"),
                    "-o", str(tmp_path / "probe")], check=True, timeout=120)
    out = subprocess.run([str(tmp_path / "probe")], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    c_side = {}
    for line in out:
        name, *nums = line.replace(" size ", " ").split()
        c_side[name] = tuple(int(n) for n in nums)

    checked = 0
    for cname, struct in cheader.STRUCTS:
        assert c_side[f"{cname}"] == (struct.sizeof(),), cname
        for field, offset, size in cheader.struct_fields(struct):
            assert c_side[f"{cname}.{field}"] == (offset, size), f"{cname}.{field}"
            checked += 1
    assert checked > 100


def test_constants_reach_the_header():
    text = cheader.generate()
    from suspendos.formats.status import STATUS
    for name, value in STATUS.values.items():
        assert f"#define SOS_STATUS_{name} {value:#x}u" in text
