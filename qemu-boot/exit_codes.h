/*
 * Exit codes of the QEMU test host: the value written to the isa-debug-exit port
 * (-device isa-debug-exit,iobase=0xf4,iosize=0x04). QEMU then exits with status
 * (V << 1) | 1, so 0x10 becomes 33. All codes start at 0x10 so that no status they
 * produce (33..49) can be confused with QEMU's own 0 or 1 (a triple fault under -no-reboot
 * exits 0): the Python side can tell "the host decided" from "something else happened".
 *
 *   V     QEMU  meaning
 *   0x10  33    payload returned a success status (SOS_STATUS_WRITTEN or RESUMED) and
 *               memory + CPU state are intact
 *   0x11  35    payload returned a failure status, memory + CPU intact (an orderly abort)
 *   0x12  37    host memory changed outside the reserved region (@@CHANGED lines say where)
 *   0x13  39    CPU state not restored by the handoff (@@CPU lines say what)
 *   0x14  41    bad blob: magic, version, size, CRC32, segment table or handoff block
 *   0x15  43    no multiboot module (the blob is module 0: -initrd blob.bin)
 *   0x16  45    bad command line (-append) or unusable multiboot information
 *   0x17  47    exception taken by the host's IDT (in the host, or in a payload that had not
 *               installed its own IDT yet); @@EXCEPTION says which
 *   0x18  49    reserved region not in usable RAM, or overlapping the host's own pages
 *   0x19  51    an AP did not start, or was not parked with its state intact after the
 *               handoff (@@AP lines say which)
 *
 * When memory changed AND the CPU state is wrong, 0x12 wins (memory is the invariant the
 * project is about); both are still printed.
 * Keep in sync with qemu-boot/README.md and the Python side that reads these.
 */
#ifndef HOST_EXIT_CODES_H
#define HOST_EXIT_CODES_H

#define EXIT_OK             0x10
#define EXIT_PAYLOAD_FAILED 0x11
#define EXIT_MEMORY_CHANGED 0x12
#define EXIT_CPU_STATE      0x13
#define EXIT_BAD_BLOB       0x14
#define EXIT_NO_MODULE      0x15
#define EXIT_BAD_BOOT_INFO  0x16
#define EXIT_HOST_EXCEPTION 0x17
#define EXIT_BAD_RESERVED   0x18
#define EXIT_AP_STATE       0x19

#define DEBUG_EXIT_PORT 0xf4

/* Print "@@EXIT <code>" and write the code to isa-debug-exit; halts forever if the device
 * is missing, so a run without it still stops (and the log still says why). */
void host_exit(unsigned code) __attribute__((noreturn));

/* "@@ERROR <message>" then host_exit(code). */
void host_fail(unsigned code, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 2, 3)));

#endif
