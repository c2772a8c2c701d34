/*
 * disk.h over the polled AHCI driver (ahci.h): one port, 512-byte logical sectors.
 */
#include "disk.h"
#include "ahci.h"

const char disk_driver_name[] = "AHCI";
const char disk_detail_name[] = "TFD";

static struct ahci hba;
static struct disk_error err;

int disk_open(const struct disk_config *cfg, void *dma, uint64_t dma_size)
{
    struct ahci_config c = {
        .abar = cfg->bar, .bus = cfg->bus, .dev = cfg->dev, .fn = cfg->fn, .port = cfg->port,
    };
    if (cfg->kind != SOS_DISK_KIND_AHCI) {
        err = (struct disk_error){ .what = "the payload info names another disk kind" };
        return SOS_STATUS_BAD_PAYLOAD_INFO;
    }
    if (cfg->block_size && cfg->block_size != 512) {
        err = (struct disk_error){ .what = "AHCI: only 512-byte logical sectors are supported" };
        return SOS_STATUS_DISK_BLOCK_SIZE;
    }
    return ahci_open(&hba, &c, dma, dma_size);
}

int disk_identify(uint64_t *blocks, char model[41])
{
    return ahci_identify(&hba, blocks, model);
}

uint32_t disk_block_size(void)
{
    return 512;
}

int disk_write(uint64_t lba, const struct disk_sg *sg, unsigned n)
{
    return ahci_write(&hba, lba, sg, n);
}

int disk_read(uint64_t lba, const struct disk_sg *sg, unsigned n)
{
    return ahci_read(&hba, lba, sg, n);
}

int disk_write_async(uint64_t lba, const struct disk_sg *sg, unsigned n)
{
    return ahci_write_async(&hba, lba, sg, n);
}

int disk_wait_calls(unsigned left)
{
    return ahci_wait_calls(&hba, left);
}

int disk_wait(void)
{
    return ahci_wait(&hba);
}

unsigned disk_write_depth(void)
{
    return ahci_depth(&hba);
}

int disk_flush(void)
{
    return ahci_flush(&hba);
}

void disk_close(enum disk_give_back how)
{
    if (how == DISK_GIVE_BACK_RESET)
        ahci_close_reset(&hba);
    else
        ahci_close(&hba);
}

const struct disk_error *disk_last_error(void)
{
    if (err.what)
        return &err;
    const struct ahci_error *e = ahci_last_error(&hba);
    static struct disk_error view;
    view = (struct disk_error){ .what = e->what, .lba = e->lba, .detail = e->tfd };
    return &view;
}

int disk_media_error(int rc)
{
    return rc == SOS_STATUS_AHCI_TASKFILE_ERROR;
}
