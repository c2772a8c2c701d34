"""Plugin packages (.sop): make, parse, sign, verify. The layout is declared in
suspendos/formats/plugin.py; every parse failure is a FormatError (exit 2).

    header (struct sos_package_header)
    section table (struct sos_package_section[section_count])
    section bytes, each at an 8-byte aligned offset
    [signature block (struct sos_package_signature)]  ed25519 over every byte before it
"""
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FormatError, UsageError
from ..formats import plugin as fmt
from ..formats.common import align_up, build, parse
from . import keys

NAME_RE = re.compile(r"[a-z0-9_-]{1,31}")     # fullmatch: `$` lets a "\n" through
HEADER = fmt.PackageHeader.sizeof()
SECTION = fmt.PackageSection.sizeof()
SIGNATURE = fmt.PackageSignature.sizeof()
KIND_NAMES = {fmt.PACKAGE_KIND.THEME: "theme", fmt.PACKAGE_KIND.CODE: "code"}
# The one size limit of a package file, signature included: what `plugin pack` and `plugin
# sign` may write and what every reader (info, verify, build, qemu suspend) accepts.
MAX_PACKAGE = 64 << 20


def check_package_size(size, what="plugin pack"):
    """Refuse, before anything is written, a package every reader would refuse."""
    if size > MAX_PACKAGE:
        raise UsageError(f"{what}: the package would be {size} bytes; a package holds at most "
                         f"{MAX_PACKAGE} bytes (64 MiB): use a smaller or plainer picture, "
                         f"or fewer assets")


def check_name(name, what="name"):
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise UsageError(f"{what}: {name!r} is not a plugin name (1 to 31 of a-z 0-9 _ -)")
    return name


@dataclass
class Package:
    kind: str                   # "theme" | "code"
    name: str
    sections: dict              # SECTION_KIND value -> bytes
    signed_part: bytes          # what the signature covers
    public_key: bytes = None    # the signer's raw key, or None when unsigned
    signature: bytes = None
    source: str = ""            # file name, for messages

    @property
    def signed(self):
        return self.signature is not None

    def section(self, kind):
        return self.sections.get(kind)


def make_package(kind, name, sections):
    """Unsigned package bytes. `sections`: [(SECTION_KIND value, bytes)]."""
    check_name(name)
    table_end = HEADER + SECTION * len(sections)
    offset, table, data = align_up(table_end, 8), [], bytearray()
    data += bytes(offset - table_end)
    for skind, payload in sections:
        table.append(dict(kind=skind, flags=0, offset=offset, size=len(payload)))
        data += payload
        pad = align_up(len(payload), 8) - len(payload)
        data += bytes(pad)
        offset += len(payload) + pad
    head = dict(version=fmt.PACKAGE_VERSION, kind=kind, section_count=len(sections),
                abi_revision=fmt.PLUGIN_ABI_REVISION, flags=0,
                name=name.encode().ljust(fmt.PLUGIN_NAME_LEN, b"\0"),
                body_size=offset - HEADER)
    # Room for the signature too: a package that could not be signed is no use.
    check_package_size(HEADER + head["body_size"] + SIGNATURE)
    out = build(fmt.PackageHeader, head, "package header")
    for t in table:
        out += build(fmt.PackageSection, t, "package section")
    return out + bytes(data)


def parse_package(data, what="package"):
    data = bytes(data)
    if len(data) < HEADER:
        raise FormatError(f"{what}: {len(data)} bytes is too short for a plugin package")
    if not data.startswith(fmt.PACKAGE_MAGIC):
        raise FormatError(f"{what}: not a plugin package (no package magic at its start)")
    head = parse(fmt.PackageHeader, data[:HEADER], f"{what}: not a plugin package")
    if head.version != fmt.PACKAGE_VERSION:
        raise FormatError(f"{what}: package version {head.version}, this tool reads "
                          f"{fmt.PACKAGE_VERSION}")
    if head.kind not in KIND_NAMES:
        raise FormatError(f"{what}: unknown package kind {head.kind}")
    if head.abi_revision != fmt.PLUGIN_ABI_REVISION:
        raise FormatError(f"{what}: made for plugin ABI revision {head.abi_revision}, this "
                          f"tool has revision {fmt.PLUGIN_ABI_REVISION}")
    name = head.name.split(b"\0")[0].decode("ascii", "replace")
    if not NAME_RE.fullmatch(name) or any(head.name[len(name):]):
        raise FormatError(f"{what}: bad plugin name {head.name!r}")
    end = HEADER + head.body_size
    if end > len(data):
        raise FormatError(f"{what}: truncated ({len(data)} bytes, the header says {end})")
    rest = len(data) - end
    if rest not in (0, SIGNATURE):
        raise FormatError(f"{what}: {rest} unexpected bytes after the sections")
    table_end = HEADER + SECTION * head.section_count
    if head.section_count > 8 or table_end > end:
        raise FormatError(f"{what}: section table does not fit ({head.section_count} sections)")
    sections, spans = {}, []
    for i in range(head.section_count):
        off = HEADER + i * SECTION
        s = parse(fmt.PackageSection, data[off:off + SECTION], f"{what}: section {i}")
        if s.kind not in fmt.SECTION_KIND.values.values():
            raise FormatError(f"{what}: section {i} has unknown kind {s.kind}")
        if s.kind in sections:
            raise FormatError(f"{what}: two sections of kind {fmt.SECTION_KIND.name_of(s.kind)}")
        if s.offset < table_end or s.offset + s.size > end:
            raise FormatError(f"{what}: section {i} lies outside the package body")
        for a, b in spans:
            if s.offset < b and a < s.offset + s.size:
                raise FormatError(f"{what}: section {i} overlaps another")
        spans.append((s.offset, s.offset + s.size))
        sections[s.kind] = data[s.offset:s.offset + s.size]
    kind = KIND_NAMES[head.kind]
    need = fmt.SECTION_KIND.THEME if kind == "theme" else fmt.SECTION_KIND.OBJECT
    if need not in sections:
        raise FormatError(f"{what}: a {kind} package without its "
                          f"{fmt.SECTION_KIND.name_of(need)} section")
    pkg = Package(kind=kind, name=name, sections=sections, signed_part=data[:end],
                  source=what)
    if rest:
        sig = parse(fmt.PackageSignature, data[end:], f"{what}: signature block")
        if sig.algorithm != fmt.SIGNATURE_ALGORITHM.ED25519:
            raise FormatError(f"{what}: unknown signature algorithm {sig.algorithm}")
        pkg.public_key, pkg.signature = sig.public_key, sig.signature
    return pkg


def read_package(path, what=None):
    from ..fileutil import read_input, show
    return parse_package(read_input(path, what, limit=MAX_PACKAGE, kind="plugin package"),
                         show(path))


def sign_bytes(data, private_key):
    """`data` (a package, signed or not) signed with `private_key`: any old signature goes."""
    pkg = parse_package(data)
    body = pkg.signed_part
    block = build(fmt.PackageSignature, dict(
        algorithm=fmt.SIGNATURE_ALGORITHM.ED25519, _pad0=0,
        public_key=keys.raw_public(private_key.public_key()),
        signature=keys.sign(private_key, body)), "package signature")
    check_package_size(len(body) + len(block), "plugin sign")
    return body + block


def verify(pkg, trusted, trust_dir):
    """Raise UsageError unless `pkg` carries a valid signature by a key in `trusted`
    ({raw key: path}; None: read `trust_dir` once the signature is known good, so a changed
    package is named as such and not as a missing trust folder). Returns the signer's
    fingerprint."""
    label = f"{pkg.source}: plugin {pkg.name!r}"
    if not pkg.signed:
        raise UsageError(f"{label} is not signed (sign it with `suspendos plugin sign`; "
                         f"--allow-unsigned loads it anyway, for development)")
    if not keys.signature_valid(pkg.public_key, pkg.signature, pkg.signed_part):
        raise UsageError(f"{label}: the signature does not verify: the package was changed "
                         f"after it was signed")
    fp = keys.fingerprint(pkg.public_key)
    if trusted is None:
        trusted = keys.trusted_keys(trust_dir)
    if pkg.public_key not in trusted:
        raise UsageError(f"{label} is signed by {fp}, which is not a trusted key in "
                         f"{trust_dir}")
    return fp


@dataclass
class Approved:
    """A package that may go into a payload, and why."""
    package: Package
    signer: str = None          # fingerprint, or None when loaded unsigned
    warnings: list = field(default_factory=list)


def approve(paths, trust_dir=None, allow_unsigned=False, warn=None):
    """Read and check every package; raise UsageError (exit 2) on the first one that may not
    be loaded. Unsigned packages pass only with allow_unsigned, with a warning; a signature
    that does not verify or a key that is not trusted never passes."""
    trust_dir = trust_dir or keys.DEFAULT_TRUST_DIR
    warn = warn or (lambda m: print(f"suspendos: warning: {m}", file=sys.stderr))
    out, trusted, names = [], None, set()
    for path in paths:
        pkg = read_package(path, "--plugin")
        if pkg.name in names:
            raise UsageError(f"{pkg.source}: a second plugin named {pkg.name!r}")
        names.add(pkg.name)
        if not pkg.signed and allow_unsigned:
            msg = (f"{pkg.source}: plugin {pkg.name!r} is not signed; loaded because of "
                   f"--allow-unsigned")
            warn(msg)
            out.append(Approved(pkg, None, [msg]))
            continue
        if pkg.signed and trusted is None and keys.signature_valid(
                pkg.public_key, pkg.signature, pkg.signed_part):
            trusted = keys.trusted_keys(trust_dir)      # read once, for every package
        out.append(Approved(pkg, verify(pkg, trusted, trust_dir)))
    if len(out) > fmt.MAX_PLUGINS:
        raise UsageError(f"--plugin: at most {fmt.MAX_PLUGINS} plugins")
    return out


def facts(pkg):
    """What `plugin info` shows, as data (its --json). The signature is checked against the
    key the package names; whether that key is trusted is `plugin verify`'s question."""
    return {"package": str(pkg.source), "kind": pkg.kind, "name": pkg.name,
            "plugin_abi_revision": fmt.PLUGIN_ABI_REVISION,
            "sections": {fmt.SECTION_KIND.name_of(k): len(v) for k, v in pkg.sections.items()},
            "signed": pkg.signed,
            "signature_valid": (keys.signature_valid(pkg.public_key, pkg.signature,
                                                     pkg.signed_part) if pkg.signed else None),
            "signer": keys.fingerprint(pkg.public_key) if pkg.signed else None}


def describe(pkg):
    f = facts(pkg)
    lines = [f"{f['package']}: {f['kind']} plugin {f['name']!r}, plugin ABI revision "
             f"{f['plugin_abi_revision']}"]
    for name, size in f["sections"].items():
        lines.append(f"  section {name}: {size} bytes")
    if not f["signed"]:
        lines.append("  not signed")
    elif f["signature_valid"]:
        lines.append(f"  signed by {f['signer']} (signature valid; "
                     f"`suspendos plugin verify` checks the key against a trust folder)")
    else:
        lines.append(f"  signature INVALID: the package was changed after it was signed "
                     f"(the block names {f['signer']})")
    return "\n".join(lines)


def write_package(path, data):
    from ..fileutil import write_atomic
    write_atomic(Path(path), data, what="-o")
