"""The test machine's disk on each bus: the QEMU device for `--disk-bus ahci|nvme|virtio` and
`--sector-size 512|4096`, and how to find its PCI function in QMP query-pci.

QEMU 7.2: ICH9 AHCI is built into q35 (ide-hd on ide.0; IDE drives accept only 512-byte
logical blocks: with logical_block_size=4096 QEMU stops with "discard_granularity must be
a multiple of logical_block_size", and with discard_granularity=4096 "must be 512 for ide"). `-device nvme,serial=S,drive=D` is one controller with namespace 1 on the
drive, registers in BAR0; `-device virtio-blk-pci,drive=D` is a transitional virtio device
whose virtio 1.x structures QEMU puts in BAR4 (its modern memory BAR); the driver checks
that against the vendor capabilities in config space. Extra PCI devices move the firmware's
BAR assignments, so the probe boots the same device set as the run.
"""
from ..errors import UsageError

BUSES = ("ahci", "nvme", "virtio")
KIND_OF_BUS = {"ahci": "ahci", "nvme": "nvme", "virtio": "virtio-blk"}
SECTOR_SIZES = (512, 4096)
NVME_CLASS = 0x0108
VIRTIO_VENDOR, VIRTIO_BLK_IDS = 0x1AF4, (0x1001, 0x1042)
VIRTIO_MODERN_BAR = 4
NVME_SERIAL = "SOSNVME0"


def check(bus, sector_size):
    if bus not in BUSES:
        raise UsageError(f"--disk-bus: {bus!r} is not one of {', '.join(BUSES)}")
    if sector_size not in SECTOR_SIZES:
        raise UsageError(f"--sector-size: {sector_size} is not 512 or 4096")
    if bus == "ahci" and sector_size != 512:
        raise UsageError("--sector-size: QEMU's AHCI disks have 512-byte logical sectors "
                         "only (QEMU 7.2 ide-hd with logical_block_size=4096: \"discard_"
                         "granularity must be 512 for ide\")")


def device_args(bus="ahci", sector_size=512, drive="d0"):
    """The -device for the disk on `bus`, its drive being node `drive`."""
    check(bus, sector_size)
    sizes = (f",logical_block_size={sector_size},physical_block_size={sector_size}"
             if sector_size != 512 else "")
    if bus == "ahci":
        return ["-device", f"ide-hd,drive={drive},bus=ide.0"]
    if bus == "nvme":
        return ["-device", f"nvme,serial={NVME_SERIAL},drive={drive}{sizes}"]
    return ["-device", f"virtio-blk-pci,drive={drive}{sizes}"]


def probe_args(bus="ahci", sector_size=512):
    """A throw-away disk on the same device, for the probe (AHCI is built in)."""
    if bus == "ahci":
        return []
    return ["-blockdev", "driver=null-co,node-name=probe0,size=67108864",
            *device_args(bus, sector_size, "probe0")]


def _assigned(b):
    """A BAR the firmware has placed: query-pci says -1 until then (the probe polls while
    SeaBIOS is still enumerating). 64-bit BARs may lie above 4 GiB."""
    return b is not None and 0 < b[0] < (1 << 64) - 1


def find(dev, addr, bar):
    """(key, (pci address, BAR address)) when query-pci's `dev` is our disk controller,
    once the firmware has assigned its BAR."""
    ident = (dev["id"]["vendor"], dev["id"]["device"])
    cls = dev.get("class_info", {}).get("class")
    if cls == NVME_CLASS:
        b = bar(dev, 0)
        if _assigned(b):
            return "nvme", (addr, b[0])
    if ident[0] == VIRTIO_VENDOR and ident[1] in VIRTIO_BLK_IDS:
        b = bar(dev, VIRTIO_MODERN_BAR)
        if _assigned(b):
            return "virtio", (addr, b[0])
    return None


def add_arguments(parser):
    """--disk-bus and --sector-size, for `target qemu`, `qemu suspend` and `qemu resume`."""
    parser.add_argument("--disk-bus", choices=BUSES, default="ahci",
                        help="the disk's controller: " + ", ".join(BUSES[:-1]) + " or "
                             + BUSES[-1] + " (default ahci)")
    from ..argparser import choice_int
    parser.add_argument("--sector-size", type=choice_int(*SECTOR_SIZES), choices=SECTOR_SIZES,
                        default=512,
                        help="the disk's logical block size in bytes: 512 or 4096 (default "
                             "512; 4096 only on nvme and virtio)")


def check_inject(inject, sectors, what="--inject"):
    """An --inject rule's LBA must lie on the disk (`sectors` of its own blocks): blkdebug
    would never see an access there, and the run would pass without the fault."""
    for rule in inject if isinstance(inject, list) else ():
        if not 0 <= rule["sector"] < sectors:
            raise UsageError(f"{what}: LBA {rule['sector']} is not on the disk, which has "
                             f"{sectors} sectors (LBA 0 to {sectors - 1})")


def scale_inject(inject, sector_size):
    """blkdebug counts 512-byte sectors; --inject names the disk's own blocks."""
    if not isinstance(inject, list) or sector_size == 512:
        return inject
    return [dict(rule, sector=rule["sector"] * (sector_size // 512)) for rule in inject]
