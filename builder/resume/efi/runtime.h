/*
 * The EFI runtime regions around a restore (runtime.c): checked before any saved page is
 * written, handed to SetVirtualAddressMap after the last one.
 */
#ifndef SOS_EFI_RUNTIME_H
#define SOS_EFI_RUNTIME_H
#include "efi_entry.h"
#include "suspendos_abi.h"

/* The entry block the loader was started with (entry.c's copy). */
extern struct sos_efi_entry resume_efi;

/* The firmware's map in `e` against the target's list; refuse(EFI_RUNTIME_MAP) when they
 * differ (back to the firmware from check, halted from start). */
void efi_runtime_check(const struct sos_efi_entry *e);

/* resume_before_return in the EFI build: SetVirtualAddressMap with the target's list. */
void efi_runtime_set_virtual(struct sos_handoff *h);

#endif
