"""Read the PCI addresses the firmware assigned in the test machine (QMP query-pci).

BARs move with the device set, so `suspendos target qemu` asks QEMU instead of assuming.
"""
import asyncio
import time

from . import disks
from .machine import QemuMachine, machine_args

AHCI_ID = (0x8086, 0x2922)       # ICH9 AHCI, built into q35
VGA_ID = (0x1234, 0x1111)        # Bochs VBE (-vga std)
PROBE_DEADLINE = 30.0


def _devices(pci):
    for bus in pci:
        for dev in bus["devices"]:
            yield dev


def _bar(dev, index):
    for region in dev.get("regions", []):
        if region.get("bar") == index and region.get("type") == "memory":
            return region["address"], region["size"]
    return None


async def _probe(memory, bus, sector_size, firmware_args):
    m = QemuMachine(machine_args(memory) + disks.probe_args(bus, sector_size)
                    + list(firmware_args))
    try:
        await m.start()
        deadline = time.monotonic() + PROBE_DEADLINE
        while True:
            found = {}
            for dev in _devices(await m.execute("query-pci")):
                ident = (dev["id"]["vendor"], dev["id"]["device"])
                addr = f"{dev['bus']:02x}:{dev['slot']:02x}.{dev['function']:x}"
                if ident == AHCI_ID:
                    bar = _bar(dev, 5)
                    if bar and 0 < bar[0] < 0xFFFFFFFF:
                        found["ahci"] = (addr, bar[0])
                elif ident == VGA_ID:
                    bar = _bar(dev, 0)
                    if bar and 0 < bar[0] < 0xFFFFFFFF:
                        found["vga"] = (addr, bar[0], bar[1])
                else:
                    ours = disks.find(dev, addr, _bar)
                    if ours:
                        found[ours[0]] = ours[1]
            if bus in found and "vga" in found:
                return found
            if time.monotonic() > deadline:
                raise m.failure(f"the firmware did not assign the {bus} and VGA BARs within "
                                f"{PROBE_DEADLINE:.0f} s")
            await asyncio.sleep(0.2)
    finally:
        await m.stop()


def probe_pci(memory, bus="ahci", sector_size=512, firmware_args=()):
    """{'ahci': (pci address, ABAR), 'vga': (pci address, framebuffer base, size)}, and with
    another bus its controller: 'nvme' / 'virtio': (pci address, BAR). `firmware_args`:
    another firmware than QEMU's SeaBIOS (ovmf.pflash_args), which places BARs its own way."""
    return asyncio.run(_probe(memory, bus, sector_size, firmware_args))
