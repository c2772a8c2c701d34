"""Hibernate Linux through `kexec --load-preserve-context` of the suspendos kexec ELF and resume
it with the resume loader (suspendos/linuxvm/kexec_jump.py), LZ4, on the QEMU test machine.

The kernel is built from Debian's linux-source-6.12 with CONFIG_KEXEC_JUMP the first time
(cached in ~/.cache/suspendos/kexec). One blkdebug write error is injected inside the
extents: the first jump must come back into the kernel with the failure readable from the
handoff page, nothing written outside the extents and no image header; a `kexec -e` without
a reload comes back through the re-entry point with NOT_RUN; userspace loads the ELF again,
the second jump writes the image (equal, page for page, to QEMU's pmemsave of RAM while the
payload waited before reading it), the resume brings userspace back with its tmpfs intact.
"""
import shutil

from suspendos.formats.status import STATUS
from suspendos.linuxvm.kexec_jump import kexec_jump

assert shutil.which("qemu-system-x86_64"), "no QEMU (scripts/setup.sh installs it)"


def test_kexec_jump_lz4_fails_once_then_hibernates_and_resumes(tmp_path):
    s = kexec_jump(256 << 20, "lz4", inject_error=True, ground_truth=True, workdir=tmp_path)
    print(s)
    failed = s["failed_run"]
    assert failed["status"] == STATUS.AHCI_TASKFILE_ERROR, failed
    assert failed["failed_lba"] > 0
    assert failed["outside_extents_unchanged"] is True
    assert failed["image_header"] == "none"
    # a second `kexec -e` without loading again enters through the re-entry point the stub
    # left at 0(%rsp), which returns NOT_RUN at once (and the kernel survives it)
    assert failed["reentry_status"] == STATUS.NOT_RUN
    assert s["written"]["status"] == STATUS.WRITTEN
    assert s["written"]["pages_saved"] > 0
    assert s["image_state"] == "valid"
    # QMP pmemsave while the payload waited before reading RAM: the image equals it
    assert "every checksum matches; every page equals" in s["image_verify"], s["image_verify"]
    assert s["status"] == "resumed", s["resumed"]
    assert s["md5_match"] is True
    assert s["md5_after"] == s["md5_before"]
    assert s["image_state_after"] == "resumed"
