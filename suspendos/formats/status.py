"""Status codes the payload returns in the handoff block (and the resume loader reports)."""
from .common import Constants

STATUS = Constants(
    "SOS_STATUS_", "Run outcome, handoff.status. Values below 0x100 are successes.",
    NOT_RUN=0x000,          # the payload never touched the block
    WRITTEN=0x001,          # image and header written and flushed
    RESUMED=0x002,          # returned from a resume (resume loader)
    BAD_HANDOFF=0x100,      # magic/revision/size of the handoff block wrong
    BAD_PAYLOAD_INFO=0x101, # the build-time configuration inside the blob is damaged
    CPU_FAULT=0x102,        # an exception: fault_vector, fault_rip, fault_address
    PCI_MISMATCH=0x110,     # the PCI function is not an AHCI HBA at the target's ABAR
    AHCI_NO_DEVICE=0x111,   # no device present on the named port
    AHCI_TIMEOUT=0x112,     # a named wait ran out (message names it)
    AHCI_TASKFILE_ERROR=0x113,  # the device reported ERR (failed_lba, detail = PxTFD)
    AHCI_BAD_PORT=0x114,    # the port number is not implemented by the HBA
    DISK_TOO_SMALL=0x115,   # the extents reach past the end of the disk IDENTIFY reports
    AHCI_BAD_REQUEST=0x116, # a transfer the driver cannot express (alignment, size)
    DISK_BLOCK_SIZE=0x117,  # the disk's logical block size is not the target's block_size
    DISK_IO_ERROR=0x118,    # NVMe / virtio-blk: the device failed a command (message names the
                            # command and LBA; failed_lba, detail = CQE status / status byte)
    DISK_TIMEOUT=0x119,     # NVMe / virtio-blk: a named wait ran out (message names it)
    DISK_FATAL=0x11A,       # NVMe CSTS.CFS / virtio DEVICE_NEEDS_RESET (message names the command)
    DISK_UNSUPPORTED=0x11B, # the device lacks what the driver needs (namespace, feature, queue)
    DISK_BAD_REQUEST=0x11C, # NVMe / virtio-blk: a transfer the driver cannot express
    IOMMU_TRANSLATING=0x11D,  # the IOMMU unit over the disk controller translates DMA: the
                            # physical addresses the driver would hand out mean something
                            # else (message names the unit and its status register)
    IMAGE_FULL=0x120,       # the sector list is exhausted before all memory was written
    MEMORY_MISMATCH=0x121,  # the memory list does not match the machine
    PLUGIN_FAULT=0x130,     # a plugin faulted (message names it)
)

SUCCESS = {STATUS.WRITTEN, STATUS.RESUMED}


def describe(code):
    return STATUS.name_of(code)
