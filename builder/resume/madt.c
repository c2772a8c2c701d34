/*
 * Which other CPUs this machine has: the local APIC ids in the ACPI MADT (ACPI 6.5, 5.2.12:
 * entries 0 "Processor Local APIC" and 9 "Processor Local x2APIC"), found through the RSDP and
 * the XSDT or RSDT. The RSDP is the one the EFI entry found in the EFI configuration table
 * (cpus_rsdp; ACPI 6.5, 5.2.5.2 "Finding the RSDP on UEFI Enabled Systems"), else the BIOS
 * areas' (5.2.5.1: on a 16-byte boundary in the first KiB of the EBDA or in 0xE0000-0xFFFFF). Every table is
 * checked (signature, length, checksum) before it is believed; only Enabled CPUs are
 * started (Online Capable alone means not present yet). Without ACPI, under QEMU,
 * fw_cfg's CPU count (docs/specs/fw_cfg.rst, FW_CFG_NB_CPUS) with QEMU's numbering 0..N-1.
 */
#include "cpus.h"
#include "port_io.h"
#include "string.h"

#define FW_CFG_PORT_SEL   0x510
#define FW_CFG_PORT_DATA  0x511
#define FW_CFG_SIGNATURE  0x00
#define FW_CFG_NB_CPUS    0x05
#define SDT_HEADER        36
#define MAX_TABLE         (1u << 20)      /* no MADT or RSDT is a MiB long */

static uint8_t sum(const uint8_t *p, uint32_t n)
{
    uint8_t s = 0;
    while (n--)
        s += *p++;
    return s;
}

static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

uint64_t cpus_rsdp;

static const uint8_t *find_rsdp(void)
{
    if (cpus_rsdp) {            /* handed to us: believed only with its signature and sum */
        const uint8_t *r = (const uint8_t *)(uintptr_t)cpus_rsdp;
        return cpus_rsdp < (1ull << 39) && !memcmp(r, "RSD PTR ", 8) && !sum(r, 20) ? r : 0;
    }
    uint64_t ebda = (uint64_t)*(const volatile uint16_t *)(uintptr_t)0x40E << 4;
    uint64_t areas[2][2] = { { ebda, ebda + 1024 }, { 0xE0000, 0x100000 } };
    for (int a = 0; a < 2; a++) {
        if (areas[a][0] < 0x400 || areas[a][1] > 0x100000)
            continue;
        for (uint64_t p = areas[a][0]; p + 20 <= areas[a][1]; p += 16) {
            const uint8_t *r = (const uint8_t *)(uintptr_t)p;
            if (!memcmp(r, "RSD PTR ", 8) && !sum(r, 20))
                return r;
        }
    }
    return 0;
}

static const uint8_t *table(uint64_t addr, const char *sig)
{
    if (!addr || addr >= (1ull << 39))          /* beyond the loader's identity map */
        return 0;
    const uint8_t *t = (const uint8_t *)(uintptr_t)addr;
    uint32_t len = get32(t + 4);
    if ((sig && memcmp(t, sig, 4)) || len < SDT_HEADER || len > MAX_TABLE || sum(t, len))
        return 0;
    return t;
}

static const uint8_t *find_madt(void)
{
    const uint8_t *rsdp = find_rsdp();
    if (!rsdp)
        return 0;
    /* Revision 2+: the XSDT's 64-bit entries (checksummed over the 36-byte RSDP). */
    const uint8_t *sdt = 0;
    unsigned entry = 4;
    if (rsdp[15] >= 2 && get32(rsdp + 20) >= 36 && !sum(rsdp, 36) &&
        (sdt = table(get64(rsdp + 24), "XSDT")))
        entry = 8;
    else
        sdt = table(get32(rsdp + 16), "RSDT");
    if (!sdt)
        return 0;
    uint32_t len = get32(sdt + 4);
    for (uint32_t o = SDT_HEADER; o + entry <= len; o += entry) {
        uint64_t a = entry == 8 ? get64(sdt + o) : get32(sdt + o);
        const uint8_t *t = table(a, "APIC");
        if (t)
            return t;
    }
    return 0;
}

static unsigned from_madt(const uint8_t *madt, uint32_t self, uint32_t *ids, unsigned max)
{
    unsigned n = 0;
    uint32_t len = get32(madt + 4);
    for (uint32_t o = SDT_HEADER + 8; o + 2 <= len;) {
        uint8_t type = madt[o], elen = madt[o + 1];
        if (elen < 2 || o + elen > len)
            break;
        uint32_t id = ~0u, flags = 0;
        if (type == 0 && elen >= 8) {
            id = madt[o + 3];
            flags = get32(madt + o + 4);
        } else if (type == 9 && elen >= 16) {
            id = get32(madt + o + 4);
            flags = get32(madt + o + 8);
        }
        o += elen;
        if (id == ~0u || id == self || !(flags & 1))
            continue;
        int dup = 0;
        for (unsigned k = 0; k < n; k++)
            dup |= ids[k] == id;
        if (!dup && n < max)
            ids[n++] = id;
    }
    return n;
}

static unsigned from_fw_cfg(uint32_t self, uint32_t *ids, unsigned max)
{
    char sig[4];
    outw(FW_CFG_PORT_SEL, FW_CFG_SIGNATURE);
    for (int i = 0; i < 4; i++)
        sig[i] = (char)inb(FW_CFG_PORT_DATA);
    if (memcmp(sig, "QEMU", 4))
        return 0;
    outw(FW_CFG_PORT_SEL, FW_CFG_NB_CPUS);
    unsigned cpus = inb(FW_CFG_PORT_DATA);
    cpus |= (unsigned)inb(FW_CFG_PORT_DATA) << 8;
    unsigned n = 0;
    for (uint32_t id = 0; id < cpus && n < max; id++)
        if (id != self)
            ids[n++] = id;
    return n;
}

unsigned cpus_find(uint32_t self, uint32_t *ids, unsigned max, const char **source)
{
    const uint8_t *madt = find_madt();
    if (madt) {
        *source = "madt";
        return from_madt(madt, self, ids, max);
    }
    unsigned n = from_fw_cfg(self, ids, max);
    *source = n ? "fw_cfg" : "none";
    return n;
}
