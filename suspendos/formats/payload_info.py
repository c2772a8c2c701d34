"""The payload's build-time configuration.

The builder links the payload, then fills this struct (symbol `sos_payload_info` in the
payload's .data) with everything the generated parts of the blob say: where the lists and
page tables are, the scratch area, the disk, the options. The payload reads it, never writes.
"""
import construct as c

from .common import Constants, magic32, u8, u16, u32, u64

PAYLOAD_INFO_MAGIC = magic32("SOSI")
PAYLOAD_INFO_REVISION = 5

# LZ4HC is the payload's slower, more thorough LZ4 search (builder/core/lz4.c,
# lz4_compress_high): the blocks are LZ4 blocks, so the image header says LZ4 for it.
COMPRESSION = Constants("SOS_COMPRESS_", "Chunk encodings.", NONE=0, LZ4=1, LZ4HC=2)
ENCRYPTION = Constants("SOS_ENCRYPT_", "Chunk ciphers.", NONE=0, CHACHA20_POLY1305=1)
CHECKSUM = Constants("SOS_CHECKSUM_", "Checksum algorithms.", XXH64=1)
SELFTEST = Constants("SOS_SELFTEST_", "Deliberate faults that prove the page tables and IDT.",
                     NONE=0, WRITE_SAVED_RAM=1, EXECUTE_DATA=2, DIVIDE_ERROR=3,
                     READ_UNMAPPED=4, WRITE_TEXT=5,
                     AP_WRITE_SAVED_RAM=6)   # the first AP that answers writes saved RAM
DISK_KIND = Constants("SOS_DISK_KIND_", "The disk controller the payload drives ([disk] kind).",
                      AHCI=0, NVME=1, VIRTIO_BLK=2)
IOMMU_KIND = Constants("SOS_IOMMU_", "The IOMMU unit over the disk controller ([disk] iommu).",
                      NONE=0, VTD=1, AMDVI=2)
FB_FORMAT = Constants("SOS_FB_", "Framebuffer pixel formats.", NONE=0, XRGB8888=1, RGB888=2,
                      RGB565=3)

PayloadInfo = c.Struct(
    "magic" / u32,
    "revision" / u16,
    "size" / u16,
    "load_base" / u64,          # start of the reserved region
    "reserved_size" / u64,
    "memory_list" / u64,        # physical address of MemRange[memory_count]
    "memory_count" / u32,
    "sector_count" / u32,
    "sector_list" / u64,        # physical address of Extent[sector_count]
    "image_sectors" / u64,      # sum of the extents, in the disk's logical blocks
    "pml4" / u64,               # the payload's page tables (CR3)
    "scratch_base" / u64,
    "scratch_size" / u64,
    "stack_top" / u64,
    "trampoline_exit" / u64,    # where a fault handler jumps to unwind to the host
    "ahci_abar" / u64,          # the disk controller's BAR the target names: AHCI ABAR (BAR5),
                                # NVMe BAR0, virtio-blk the BAR of its common configuration
    "ahci_pci_bus" / u8,
    "ahci_pci_dev" / u8,
    "ahci_pci_fn" / u8,
    "ahci_port" / u8,           # AHCI port (other kinds: 0)
    "compression" / u32,
    "checksum" / u32,
    "encryption" / u32,
    "chunk_pages" / u32,        # pages per chunk (at most MAX_CHUNK_PAGES)
    "max_command_sectors" / u32,  # in logical blocks, as image_sectors and the sector list
    "memmap_hash" / u64,        # xxh64 of the memory list, checked on resume
    "fb_addr" / u64,
    "fb_width" / u32,
    "fb_height" / u32,
    "fb_pitch" / u32,
    "fb_bpp" / u8,
    "fb_format" / u8,
    "debug_exit_port" / u16,    # 0, or QEMU's isa-debug-exit port: the resume loader ends there
    "key" / c.Bytes(32),        # encryption key; lives only in the reserved region
    "selftest" / u32,           # SELFTEST: make the payload fault on purpose (tests only)
    "disk_kind" / u32,          # DISK_KIND: which driver the build linked
    "block_size" / u32,         # the disk's logical block size: 512 or 4096
    "disk_nsid" / u32,          # NVMe namespace id (other kinds: 0)
    "ap_entry" / u64,           # the AP trampoline: what the payload puts in CpuSlot.entry
    "ap_exit" / u64,            # its way back to the host, where an AP's fault unwinds to
    "ap_start_page" / u64,      # 0, or a page below 1 MiB the host keeps from its own use
                                # (target reserved.ap_start): where CPUs in state OFFLINE
                                # start (STARTUP IPI vector = page number, SDM vol. 3 8.4.4.1)
    "lapic_base" / u64,         # the xAPIC page the payload maps to send those IPIs (0: none)
    "iommu_kind" / u32,         # IOMMU_KIND of the unit that translates the disk's DMA
    "_pad_iommu" / c.Bytes(4),
    "iommu_base" / u64,         # its register page, mapped uncached: the payload and the
                                # resume loader read its status before their first DMA
)
