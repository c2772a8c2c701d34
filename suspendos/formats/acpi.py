"""ACPI tables suspendos reads but never writes: the firmware's, as Linux exposes them in
/sys/firmware/acpi/tables. Only the IVRS table for now: Linux has no sysfs file holding an
AMD-Vi unit's register base, so `target linux` takes it from the IVHD block the firmware
wrote for that unit (suspendos/target/linux.py, amd_vi_base).

Layouts: ACPI 6.5, 5.2.6 (System Description Table Header); AMD I/O Virtualization
Technology (IOMMU) Specification (48882), 5.2 (IVRS header, IVHD and IVMD blocks).
Checks that make a table trustworthy (checksum, length, blocks inside it) live here too, so
a caller only ever sees blocks that lie wholly inside a table whose bytes sum to zero.
"""
import construct as c

from ..errors import FormatError
from .common import parse, u8, u16, u32, u64

# ACPI 6.5, 5.2.6: every system description table starts with these 36 bytes, and all of
# the table's `length` bytes, checksum included, sum to zero modulo 256.
AcpiHeader = c.Struct(
    "signature" / c.Bytes(4),
    "length" / u32,             # the whole table, this header included
    "revision" / u8,
    "checksum" / u8,
    "oem_id" / c.Bytes(6),
    "oem_table_id" / c.Bytes(8),
    "oem_revision" / u32,
    "creator_id" / u32,
    "creator_revision" / u32,
)
assert AcpiHeader.sizeof() == 36

IVRS_SIGNATURE = b"IVRS"
IvrsHeader = c.Struct(
    "acpi" / AcpiHeader,
    "iv_info" / u32,            # virtual-address and physical-address sizes, EFR support
    "_reserved" / c.Bytes(8),
)
assert IvrsHeader.sizeof() == 48    # the first block follows

# Every IVRS block (IVHD and IVMD alike) begins with its type and its whole length, so a
# reader skips the ones it does not need by length.
IvrsBlockHeader = c.Struct(
    "type" / u8,
    "flags" / u8,
    "length" / u16,             # the whole block, device entries included
)
IVHD_TYPES = (0x10, 0x11, 0x40)     # one IOMMU unit each; 11h and 40h add EFR copies
IVMD_TYPES = (0x20, 0x21, 0x22)     # memory ranges with special DMA rules: not read here

# What IVHD types 10h, 11h and 40h have in common (10h's header is exactly this; 11h and
# 40h append the EFR registers, then all three list device entries).
IvhdPrefix = c.Struct(
    "block" / IvrsBlockHeader,
    "device_id" / u16,          # the IOMMU's own PCI function: bus << 8 | dev << 3 | fn
    "capability_offset" / u16,  # of its capability block in that function's config space
    "base_address" / u64,       # its MMIO registers
    "pci_segment" / u16,        # the PCI segment (Linux: domain) of device_id
    "iommu_info" / u16,
    "features_or_attributes" / u32,
)
assert IvhdPrefix.sizeof() == 24


def checked_table(data, signature, what):
    """The parsed ACPI header of `data`, after the checks that tell a whole, undamaged
    table of that signature from anything else; a FormatError names `what` otherwise."""
    data = bytes(data)
    if len(data) < AcpiHeader.sizeof():
        raise FormatError(f"{what}: {len(data)} bytes, too short for an ACPI table header")
    header = parse(AcpiHeader, data, what)
    if header.signature != signature:
        raise FormatError(f"{what}: signature {header.signature!r}, not {signature!r}")
    if len(data) < header.length:
        raise FormatError(f"{what}: truncated, {len(data)} of the {header.length} bytes its "
                          "header declares")
    if len(data) > header.length:
        raise FormatError(f"{what}: {len(data)} bytes, but its header declares "
                          f"{header.length} (damaged)")
    if sum(data) % 256:
        raise FormatError(f"{what}: bad checksum (its bytes sum to {sum(data) % 256:#04x} "
                          "modulo 256, not 0)")
    return header


def ivhd_blocks(data, what):
    """The IVHD prefixes of a checked IVRS table, in table order."""
    data = bytes(data)
    header = checked_table(data, IVRS_SIGNATURE, what)
    if header.length < IvrsHeader.sizeof():
        raise FormatError(f"{what}: {header.length} bytes, too short for an IVRS header")
    out, at = [], IvrsHeader.sizeof()
    while at < header.length:
        block = _block_at(data, at, what)
        if block.type in IVHD_TYPES:
            out.append(parse(IvhdPrefix, data[at:at + block.length], f"{what}: IVHD at {at}"))
        at += block.length
    return out


def _block_at(data, at, what):
    """The header of the block at offset `at`, refused unless the whole block (and, for an
    IVHD, at least its common prefix) lies inside the table."""
    if at + IvrsBlockHeader.sizeof() > len(data):
        raise FormatError(f"{what}: block header at offset {at} runs past the table's end")
    block = parse(IvrsBlockHeader, data[at:], what)
    least = IvhdPrefix.sizeof() if block.type in IVHD_TYPES else IvrsBlockHeader.sizeof()
    if block.length < least or at + block.length > len(data):
        raise FormatError(f"{what}: block of type {block.type:#04x} at offset {at} declares "
                          f"{block.length} bytes, which do not fit in the table "
                          f"({len(data) - at} left, {least} at least)")
    return block
