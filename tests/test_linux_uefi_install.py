"""install-resume, hibernate and uninstall-resume on a UEFI machine: the synthetic sysroot of
tests/test_linux_hibernate_refusals.py booted through UEFI, with its ESP (sda3, vfat) at
/boot/efi and a folder standing in for efivarfs. Boot entries are made by a fake efibootmgr
(the firmware's variables cannot be written here) that writes the EFI_LOAD_OPTIONs Debian's
libefiboot makes, as efibootmgr does; the argv it gets is checked against Debian's real
efibootmgr."""
import ctypes
import fcntl
import json
import os
import struct
import subprocess
import sys

import pytest

from suspendos.errors import RunError, UsageError
from suspendos.linuxhost import efivars, guard, uefi
from suspendos.linuxhost.hibernate import Request, hibernate, plan
from suspendos.linuxhost.install import InstallRequest, install_resume
from suspendos.linuxhost.uninstall import UninstallRequest, uninstall_resume
from suspendos.target import linux as tl
from test_linux_hibernate_refusals import host, root  # noqa: F401  (the fixture)

GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
SDA = "devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda"
EFI_MOUNTS = ("30 22 8:3 / /boot/efi rw,relatime shared:9 - vfat /dev/sda3 rw,fmask=0077\n"
              "31 24 0:27 / /sys/firmware/efi/efivars rw,nosuid shared:8 - efivarfs efivarfs "
              "rw\n")


def load_option(label, path, active=True):
    """The EFI_LOAD_OPTION (UEFI 2.10 §3.1.3) efibootmgr writes for `--disk D --part 3
    --loader PATH --label LABEL`, made by the libraries it makes it with (Debian's libefivar1
    and libefiboot1, efivar 37): a hard drive node (§10.3.5.1) for the partition, a file path
    node (§10.3.5.4) and the end node (§10.3.1), then efi_loadopt_create."""
    size = ctypes.c_ssize_t
    efivar, efiboot = ctypes.CDLL("libefivar.so.1"), ctypes.CDLL("libefiboot.so.1")
    for f in (efivar.efidp_make_hd, efivar.efidp_make_file, efivar.efidp_make_generic,
              efiboot.efi_loadopt_create):
        f.restype = size
    dp, at = ctypes.create_string_buffer(1024), 0
    signature = (ctypes.c_uint8 * 16)(*range(16))              # the partition's GPT GUID
    for make, *args in ((efivar.efidp_make_hd, ctypes.c_uint32(3), ctypes.c_uint64(2048),
                         ctypes.c_uint64(204800), signature, ctypes.c_uint8(2),
                         ctypes.c_uint8(2)),
                        (efivar.efidp_make_file, path.encode()),
                        (efivar.efidp_make_generic, ctypes.c_uint8(0x7F), ctypes.c_uint8(0xFF),
                         size(4))):
        n = make(ctypes.byref(dp, at), size(len(dp) - at), *args)
        assert n > 0, make
        at += n
    out = ctypes.create_string_buffer(2048)
    n = efiboot.efi_loadopt_create(out, size(len(out)), ctypes.c_uint32(int(active)), dp,
                                   size(at), label.encode(), None, ctypes.c_size_t(0))
    assert n > 0
    return out.raw[:n]


def put_var(vardir, name, data, attrs=7):
    (vardir / f"{name}-{GUID}").write_bytes(struct.pack("<I", attrs) + data)


class FakeEfibootmgr:
    """What efibootmgr 17 does to the variables for the two commands we run: --create-only
    takes the lowest free Boot#### and leaves BootOrder alone; --delete-bootnum removes it."""

    def __init__(self, vardir):
        self.vardir, self.calls = vardir, []

    def __call__(self, argv):
        self.calls.append(argv)
        assert argv[0] == "efibootmgr"
        if argv[1] == "--create-only":
            opts = dict(zip(argv[2::2], argv[3::2]))
            taken = {f.name[4:8] for f in self.vardir.glob("Boot????-*")}
            num = next(n for n in range(0x10000) if f"{n:04X}" not in taken)
            put_var(self.vardir, f"Boot{num:04X}", load_option(opts["--label"], opts["--loader"]))
            return 0, ""
        if argv[1] == "--delete-bootnum":
            (self.vardir / f"Boot{argv[3]}-{GUID}").unlink()
            return 0, ""
        raise AssertionError(argv)


@pytest.fixture
def uefi_root(root):  # noqa: F811
    """The machine booted through UEFI: efivarfs with Debian's entry (Boot0000) and BootOrder,
    the ESP sda3 at /boot/efi."""
    vardir = root / "sys/firmware/efi/efivars"
    vardir.mkdir(parents=True)
    put_var(vardir, "Boot0000", load_option("debian", "\\EFI\\debian\\shimx64.efi"))
    put_var(vardir, "BootOrder", struct.pack("<H", 0))
    sda3 = root / "sys" / SDA / "sda3"
    sda3.mkdir()
    (sda3 / "partition").write_text("3\n")
    (sda3 / "dev").write_text("8:3\n")
    os.symlink(f"../../{SDA}/sda3", root / "sys/dev/block/8:3")
    os.symlink(f"../../{SDA}/sda3", root / "sys/class/block/sda3")
    (root / "boot/efi").mkdir(parents=True)
    with open(root / "proc/self/mountinfo", "a") as f:
        f.write(EFI_MOUNTS)
    return root


def uefi_host(root, tmp_path):
    h = host(root, tmp_path)
    h.run = FakeEfibootmgr(root / "sys/firmware/efi/efivars")
    return h


def entries(root):
    return efivars.boot_entries(None, root / "sys/firmware/efi/efivars")


def boot_next(root):
    path = root / f"sys/firmware/efi/efivars/BootNext-{GUID}"
    return path.read_bytes() if path.exists() else None


# ---- the pieces ----------------------------------------------------------------------------
def test_efibootmgr_argv_is_what_debians_efibootmgr_takes():
    """Debian 12's efibootmgr (17) parses every option and value of both commands: with
    --version last it checks them all (a bad one exits non-zero with its usage) and then
    exits 0 without opening a variable, so this is safe on any machine."""
    esp = uefi.Esp("/boot/efi", "/dev/nvme0n1", 3)
    create = uefi.create_argv(esp)
    assert create == ["efibootmgr", "--create-only", "--disk", "/dev/nvme0n1", "--part", "3",
                      "--loader", "\\EFI\\suspendos\\resume.efi", "--label", "suspendos resume"]
    delete = uefi.delete_argv(0x1A)
    assert delete == ["efibootmgr", "--delete-bootnum", "--bootnum", "001A"]
    for argv in (create, delete):
        r = subprocess.run(argv + ["--version"], capture_output=True, text=True)
        assert (r.returncode, r.stdout.strip()) == (0, "version 17"), r.stderr
    # the check is real: a misspelled option or a bad number is refused the same way
    for bad in (["efibootmgr", "--create-onyl"], ["efibootmgr", "--part", "x"],
                ["efibootmgr", "--bootnum", "zz"]):
        assert subprocess.run(bad + ["--version"], capture_output=True).returncode != 0


def test_boot_next_is_written_in_one_write_read_back_and_cleared(tmp_path):
    """The efivarfs file: attributes NV|BS|RT (7) then the UINT16, 6 bytes."""
    assert efivars.read_boot_next(None, tmp_path) is None
    efivars.write_boot_next(None, 0x1A, tmp_path)
    assert (tmp_path / f"BootNext-{GUID}").read_bytes() == b"\x07\x00\x00\x00\x1a\x00"
    assert efivars.read_boot_next(None, tmp_path) == 0x1A
    efivars.write_boot_next(None, 0x0004, tmp_path)          # replaced whole
    assert (tmp_path / f"BootNext-{GUID}").read_bytes() == b"\x07\x00\x00\x00\x04\x00"
    assert efivars.clear_boot_next(None, tmp_path) is True
    assert efivars.read_boot_next(None, tmp_path) is None
    assert efivars.clear_boot_next(None, tmp_path) is False
    (tmp_path / f"BootNext-{GUID}").write_bytes(b"\x07\x00\x00\x00\x04")
    with pytest.raises(UsageError, match="not the attributes and a UINT16"):
        efivars.read_boot_next(None, tmp_path)


def set_immutable(path, on):
    """`chattr +i` / `chattr -i`: what efivarfs does to the files of variables it does not
    know (FS_IMMUTABLE_FL; root may set it on the ext4 of tmp_path)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        flags = bytearray(4)
        fcntl.ioctl(fd, efivars.FS_IOC_GETFLAGS, flags)
        value = struct.unpack("i", flags)[0]
        value = value | efivars.FS_IMMUTABLE_FL if on else value & ~efivars.FS_IMMUTABLE_FL
        fcntl.ioctl(fd, efivars.FS_IOC_SETFLAGS, struct.pack("i", value))
    finally:
        os.close(fd)


def test_an_immutable_boot_next_is_made_mutable_and_deleted(tmp_path):
    efivars.write_boot_next(None, 4, tmp_path)
    path = tmp_path / f"BootNext-{GUID}"
    set_immutable(path, True)
    try:
        with pytest.raises(PermissionError):
            os.unlink(path)                       # what a plain unlink meets
        assert efivars.clear_boot_next(None, tmp_path) is True
        assert not path.exists()
    finally:
        if path.exists():
            set_immutable(path, False)


def test_disarm_leaves_other_entries_and_only_warns(uefi_root, tmp_path, capsys):
    """After the handoff BootNext is cleared only when it names our entry, and a variable
    that cannot be read is a warning (the cleanup goes on), not an exception."""
    h = host(uefi_root, tmp_path)
    vardir = uefi_root / "sys/firmware/efi/efivars"
    efivars.write_boot_next(None, 0, vardir)
    assert uefi.disarm(h, 1) is False and boot_next(uefi_root) == b"\x07\x00\x00\x00\x00\x00"
    efivars.write_boot_next(None, 1, vardir)
    assert uefi.disarm(h, 1) is True and boot_next(uefi_root) is None
    assert capsys.readouterr().err == ""
    (vardir / f"BootNext-{GUID}").write_bytes(b"\x07\x00")
    assert uefi.disarm(h, 1) is False
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("suspendos: warning: BootNext could not be")
    assert "efibootmgr --delete-bootnext" in err


def test_load_options_are_read_and_ours_told_apart(tmp_path):
    put_var(tmp_path, "Boot0000", load_option("debian", "\\EFI\\debian\\shimx64.efi"))
    put_var(tmp_path, "Boot000A", load_option("suspendos resume", "\\EFI\\suspendos\\resume.efi"))
    put_var(tmp_path, "Boot000B", load_option("suspendos resume", "\\EFI\\other\\resume.efi"))
    put_var(tmp_path, "BootOrder", b"\x00\x00")
    put_var(tmp_path, "Boot000C", b"\x01")                         # too short: not listed
    found = efivars.boot_entries(None, tmp_path)
    assert found == {0: ("debian", "\\EFI\\debian\\shimx64.efi"),
                     0xA: ("suspendos resume", "\\EFI\\suspendos\\resume.efi"),
                     0xB: ("suspendos resume", "\\EFI\\other\\resume.efi")}
    assert [n for n, e in found.items() if uefi.is_ours(e)] == [0xA]


def test_the_esp_is_found_by_mount_point_or_type(uefi_root, tmp_path):
    h = host(uefi_root, tmp_path)
    assert uefi.find_esp(h) == uefi.Esp("/boot/efi", "/dev/sda", 3)
    # elsewhere than /boot/efi: the partition type GUID in udev's database says it is one
    info = uefi_root / "proc/self/mountinfo"
    info.write_text(info.read_text().replace(" /boot/efi ", " /efi "))
    with pytest.raises(UsageError, match="no EFI System Partition is mounted"):
        uefi.find_esp(h)
    db = uefi_root / "run/udev/data/b8:3"
    db.parent.mkdir(parents=True)
    db.write_text("S:disk/by-label/SOSESP\nE:ID_PART_ENTRY_TYPE=c12a7328-f81f-11d2-ba4b-"
                  "00a0c93ec93b\nE:ID_FS_TYPE=vfat\n")
    assert uefi.find_esp(h) == uefi.Esp("/efi", "/dev/sda", 3)
    # efivarfs must be mounted for anything to be read or armed
    info.write_text(info.read_text().replace("efivarfs efivarfs", "tmpfs tmpfs"))
    with pytest.raises(UsageError, match="efivarfs is not mounted"):
        efivars.folder(h)


# ---- install-resume ------------------------------------------------------------------------
def install(root, tmp_path, capsys, **kw):
    h = uefi_host(root, tmp_path)
    assert install_resume(InstallRequest(swap="/dev/sda1", boot_dir=str(tmp_path / "boot"),
                                         **kw), h) == 0
    return h, capsys.readouterr().out


def test_install_resume_on_uefi_and_again(uefi_root, tmp_path, capsys):
    (tmp_path / "boot").mkdir()
    h, out = install(uefi_root, tmp_path, capsys)
    loader = uefi_root / "boot/efi/EFI/suspendos/resume.efi"
    data = loader.read_bytes()
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    assert data[:2] == b"MZ" and data[pe:pe + 4] == b"PE\0\0"
    assert struct.unpack_from("<H", data, pe + 24 + 68)[0] == 10      # EFI application
    assert h.run.calls == [["efibootmgr", "--create-only", "--disk", "/dev/sda", "--part", "3",
                            "--loader", "\\EFI\\suspendos\\resume.efi",
                            "--label", "suspendos resume"]]
    assert entries(uefi_root)[1] == ("suspendos resume", "\\EFI\\suspendos\\resume.efi")
    conf = guard.parse((uefi_root / "etc/suspendos/efi-boot.conf").read_text())
    assert conf == {"SOS_EFI_BOOTNUM": "0001", "SOS_EFI_ESP": "/boot/efi"}
    assert (uefi_root / "etc/suspendos/resume.conf").exists()
    assert not list((tmp_path / "boot").iterdir())                    # no multiboot loader
    assert not (uefi_root / "etc/grub.d").exists()
    assert (uefi_root / f"sys/firmware/efi/efivars/BootOrder-{GUID}").read_bytes()[4:] == \
        b"\x00\x00"                                                    # not in BootOrder
    assert boot_next(uefi_root) is None                               # not armed by install
    assert "installed: resume loader /boot/efi/EFI/suspendos/resume.efi (EFI application, " \
           "/dev/sda partition 3)" in out
    assert "installed: boot entry Boot0001 'suspendos resume' (not in BootOrder" in out
    # again, with BootNext left pointing at the old entry: replaced, not piled up
    efivars.write_boot_next(None, 1, uefi_root / "sys/firmware/efi/efivars")
    h, out = install(uefi_root, tmp_path, capsys)
    assert h.run.calls[1:] == [["efibootmgr", "--delete-bootnum", "--bootnum", "0001"]]
    assert sorted(entries(uefi_root)) == [0, 2]
    assert guard.parse((uefi_root / "etc/suspendos/efi-boot.conf").read_text())[
        "SOS_EFI_BOOTNUM"] == "0002"
    assert "Boot0002 'suspendos resume'" in out and "replacing Boot0001" in out
    assert boot_next(uefi_root) is None
    assert not [p for p in loader.parent.iterdir() if p.name != "resume.efi"]   # no .partial


def test_install_without_an_esp_writes_nothing(uefi_root, tmp_path, capsys):
    """No ESP mounted: one line naming the fix, nothing written."""
    info = uefi_root / "proc/self/mountinfo"
    info.write_text(info.read_text().replace(" - vfat ", " - ext4 "))
    before = sorted(p for p in uefi_root.rglob("*"))
    with pytest.raises(UsageError, match="no EFI System Partition is mounted.*mount /boot/efi"):
        install(uefi_root, tmp_path, capsys)
    assert sorted(p for p in uefi_root.rglob("*")) == before


def test_firmware_uefi_is_refused_on_a_bios_boot(root, tmp_path, capsys):  # noqa: F811
    with pytest.raises(UsageError, match="did not boot through UEFI"):
        install(root, tmp_path, capsys, firmware="uefi")
    assert not (root / "etc").exists()


# ---- hibernate -----------------------------------------------------------------------------
def fake_module(root, status):
    sysfs = root / "sys/class/misc/suspendos"
    sysfs.mkdir(parents=True)
    (sysfs / "stats").write_text(f"status={status:#x} pages_saved=100 free_pages_skipped=50 "
                                 "bytes_written=409600 cpus_used=1 error=0\n")
    (sysfs / "status").write_text(f"status {status:#x}\n")
    drop = root / "proc/sys/vm/drop_caches"
    drop.parent.mkdir(parents=True)
    drop.write_text("0\n")


# resumed; written but not powered off; a disk error
@pytest.mark.parametrize("status", [0x2, 0x1, 0x118])
def test_hibernate_arms_boot_next_for_the_handoff_only(uefi_root, tmp_path, monkeypatch,
                                                       capsys, status):
    from suspendos.linuxhost import hibernate as hib
    (tmp_path / "boot").mkdir()
    h, _ = install(uefi_root, tmp_path, capsys)
    _, _, steps, _, state = plan(h, Request(swap="/dev/sda1"))
    assert state["boot_entry"] == 1
    assert steps[-3] == "arm: BootNext = Boot0001 ('suspendos resume'), so the next boot " \
                        "starts the resume loader"
    assert "BootNext cleared" in steps[-1]
    fake_module(uefi_root, status)
    monkeypatch.setattr(hib.kmodule, "cached_module", lambda host: tmp_path / "suspendos.ko")
    monkeypatch.setattr(hib.kmodule, "load", lambda host, ko: "loaded")
    seen = {}
    real = hib.handoff

    def handoff(host, blob, serial, keep_caches, arm=None):
        seen["before"] = boot_next(uefi_root)
        out = real(host, blob, serial, keep_caches, arm=arm)
        seen["at go"] = boot_next(uefi_root)        # what the firmware would see at power-off
        seen["go"] = (uefi_root / "sys/class/misc/suspendos/hibernate").read_text()
        return out
    monkeypatch.setattr(hib, "handoff", handoff)
    if status in (1, 2):
        assert hibernate(Request(swap="/dev/sda1", json=True), h) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["payload_status"] == ("resumed" if status == 2 else "written")
        assert out["boot_next"] == "Boot0001"
    else:
        with pytest.raises(RunError):
            hibernate(Request(swap="/dev/sda1", json=True), h)
    assert seen == {"before": None, "at go": b"\x07\x00\x00\x00\x01\x00", "go": "go\n"}
    assert boot_next(uefi_root) is None                     # the next boot is a normal one
    assert tl.read_swap_magic(uefi_root / "dev/sda1") == b"SWAPSPACE2"


def test_hibernate_does_not_hand_off_when_boot_next_cannot_be_set(uefi_root, tmp_path,
                                                                  monkeypatch, capsys):
    """The firmware refusing the variable (efivarfs answers EIO): no `go`, the swap area
    given back, nothing armed."""
    from suspendos.linuxhost import hibernate as hib
    (tmp_path / "boot").mkdir()
    h, _ = install(uefi_root, tmp_path, capsys)
    fake_module(uefi_root, 0x2)
    monkeypatch.setattr(hib.kmodule, "cached_module", lambda host: tmp_path / "suspendos.ko")
    monkeypatch.setattr(hib.kmodule, "load", lambda host, ko: "loaded")

    def refused(host, num, where=None):
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(efivars, "write_boot_next", refused)
    with pytest.raises(OSError):
        hibernate(Request(swap="/dev/sda1", json=True), h)
    assert not (uefi_root / "sys/class/misc/suspendos/hibernate").exists()
    assert tl.read_swap_magic(uefi_root / "dev/sda1") == b"SWAPSPACE2"
    assert boot_next(uefi_root) is None


def test_hibernate_refuses_when_the_entry_is_gone(uefi_root, tmp_path, capsys):
    (tmp_path / "boot").mkdir()
    h, _ = install(uefi_root, tmp_path, capsys)
    (uefi_root / f"sys/firmware/efi/efivars/Boot0001-{GUID}").unlink()     # efibootmgr -B
    for req in (Request(swap="/dev/sda1"), Request(swap="/dev/sda1", dry_run=True)):
        with pytest.raises(UsageError) as e:
            hibernate(req, h)
        assert "Boot0001 that install-resume made for the resume loader is gone" in str(e.value)
        assert "run suspendos install-resume again" in str(e.value) and "\n" not in str(e.value)
    # someone else's entry under the same number is no better
    put_var(uefi_root / "sys/firmware/efi/efivars", "Boot0001", load_option("usb", "\\x.efi"))
    with pytest.raises(UsageError, match="is another one now"):
        plan(h, Request(swap="/dev/sda1"))
    assert boot_next(uefi_root) is None
    assert not (tmp_path / "cache").exists()                # refused before any work


# ---- uninstall-resume ----------------------------------------------------------------------
def test_uninstall_resume_on_uefi_is_idempotent(uefi_root, tmp_path, capsys):
    (tmp_path / "boot").mkdir()
    h, _ = install(uefi_root, tmp_path, capsys)
    vardir = uefi_root / "sys/firmware/efi/efivars"
    put_var(vardir, "Boot0005", load_option("suspendos resume", "\\EFI\\suspendos\\resume.efi"))
    efivars.write_boot_next(None, 1, vardir)                  # armed, as if hibernate died
    h.run.calls.clear()
    assert uninstall_resume(UninstallRequest(boot_dir=str(tmp_path / "boot")), h) == 0
    out = capsys.readouterr().out.splitlines()
    etc = uefi_root / "etc"
    assert out == ["removed: BootNext (Boot0001)",
                   "removed: boot entry Boot0001 'suspendos resume'",
                   "removed: boot entry Boot0005 'suspendos resume'",
                   "removed: resume loader /boot/efi/EFI/suspendos/resume.efi",
                   f"removed: {etc}/suspendos/efi-boot.conf",
                   f"removed: {etc}/initramfs-tools/hooks/suspendos",
                   f"removed: {etc}/initramfs-tools/scripts/local-premount/suspendos",
                   f"removed: {etc}/suspendos/resume.conf"]
    assert h.run.calls == [["efibootmgr", "--delete-bootnum", "--bootnum", "0001"],
                           ["efibootmgr", "--delete-bootnum", "--bootnum", "0005"]]
    assert sorted(entries(uefi_root)) == [0] and boot_next(uefi_root) is None
    assert not (uefi_root / "boot/efi/EFI/suspendos").exists()
    assert not (etc / "suspendos").exists()
    assert uninstall_resume(UninstallRequest(boot_dir=str(tmp_path / "boot")), h) == 0
    assert capsys.readouterr().out.startswith("nothing to remove")
    assert h.run.calls[2:] == []
    # someone else's BootNext is left alone
    efivars.write_boot_next(None, 0, vardir)
    uninstall_resume(UninstallRequest(boot_dir=str(tmp_path / "boot")), h)
    assert boot_next(uefi_root) == b"\x07\x00\x00\x00\x00\x00"


def test_uninstall_resume_after_a_bios_install(root, tmp_path):  # noqa: F811
    boot = tmp_path / "boot"
    boot.mkdir()
    cli = [sys.executable, "-m", "suspendos.cli"]
    r = subprocess.run(cli + ["install-resume", "--sysroot", str(root), "--swap", "/dev/sda1",
                              "--boot-dir", str(boot)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(cli + ["uninstall-resume", "--sysroot", str(root), "--boot-dir",
                              str(boot)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    etc = root / "etc"
    assert r.stdout.splitlines() == [
        f"removed: {etc}/grub.d/42_suspendos",
        f"removed: resume loader {boot}/suspendos-resume.elf",
        f"removed: {etc}/initramfs-tools/hooks/suspendos",
        f"removed: {etc}/initramfs-tools/scripts/local-premount/suspendos",
        f"removed: {etc}/suspendos/resume.conf"]
    assert not list(boot.iterdir()) and not (etc / "suspendos").exists()
    r = subprocess.run(cli + ["uninstall-resume", "--sysroot", str(root), "--boot-dir",
                              str(boot)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("nothing to remove"), r.stderr


# ---- hostile machines: refused before anything is written or removed -----------------------
def tree(root):
    """Every path under `root` with its kind and contents: what a refusal must leave."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            data = None
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    data = f.read()
            out[os.path.relpath(p, root)] = (os.lstat(p).st_mode, data)
    return out


@pytest.mark.parametrize("data", [b"\x07\x00\x00\x00\x04", b"", b"\x07\x00\x00\x00\x04\x00\x00"])
def test_install_refuses_a_damaged_boot_next_before_any_write(uefi_root, tmp_path, capsys,
                                                              data):
    """It was read only after the loader was on the ESP and the new entry made."""
    (tmp_path / "boot").mkdir()
    (uefi_root / f"sys/firmware/efi/efivars/BootNext-{GUID}").write_bytes(data)
    before = tree(uefi_root)
    with pytest.raises(UsageError, match="not the attributes and a UINT16.*--delete-bootnext"):
        install(uefi_root, tmp_path, capsys)
    assert tree(uefi_root) == before


@pytest.mark.parametrize("where", ["boot/efi/EFI/suspendos/resume.efi",
                                   "etc/suspendos/efi-boot.conf", "etc/suspendos/resume.conf",
                                   "etc/initramfs-tools/hooks/suspendos"])
def test_install_refuses_a_folder_where_its_file_goes(uefi_root, tmp_path, capsys, where):
    """A folder in the loader's place once ended in a raw IsADirectoryError; in
    efi-boot.conf's place, a refusal after the loader and a new boot entry were made."""
    (tmp_path / "boot").mkdir()
    (uefi_root / where).mkdir(parents=True)
    before = tree(uefi_root)
    with pytest.raises(UsageError, match=f"{where}: is a folder"):
        install(uefi_root, tmp_path, capsys)
    assert tree(uefi_root) == before


@pytest.mark.parametrize("where", ["boot/efi/EFI/suspendos/resume.efi",
                                   "etc/suspendos/efi-boot.conf"])
def test_uninstall_refuses_a_folder_where_its_file_was(uefi_root, tmp_path, capsys, where):
    """It once deleted the boot entry, then stopped on the folder with a raw error."""
    (tmp_path / "boot").mkdir()
    h, _ = install(uefi_root, tmp_path, capsys)
    (uefi_root / where).unlink()
    (uefi_root / where).mkdir()
    before = tree(uefi_root)
    with pytest.raises(UsageError, match=f"{where}: is a folder"):
        uninstall_resume(UninstallRequest(boot_dir=str(tmp_path / "boot")), h)
    assert tree(uefi_root) == before


@pytest.mark.parametrize("conf", [b"\xff\xfe SOS_EFI_BOOTNUM=\"0001\"\n",
                                  b'SOS_EFI_BOOTNUM="0001"\nSOS_EFI_ESP="/boot/efi/../../../x"\n',
                                  b'SOS_EFI_BOOTNUM="0001; rm -rf /"\nSOS_EFI_ESP="/boot/efi"\n'])
def test_a_damaged_efi_boot_conf_is_named_and_uninstalled(uefi_root, tmp_path, capsys, conf):
    """Bytes that are not UTF-8 once crashed hibernate and uninstall-resume; an ESP that
    climbs out with .. had uninstall-resume delete EFI/suspendos/resume.efi outside the ESP
    (here: outside the sysroot) and leave the real one."""
    (tmp_path / "boot").mkdir()
    h, _ = install(uefi_root, tmp_path, capsys)
    (uefi_root / "etc/suspendos/efi-boot.conf").write_bytes(conf)
    outside = tmp_path / "x/EFI/suspendos/resume.efi"
    outside.parent.mkdir(parents=True)
    outside.write_bytes(b"someone else's")
    with pytest.raises(UsageError, match="efi-boot.conf is damaged"):
        plan(h, Request(swap="/dev/sda1"))
    assert uninstall_resume(UninstallRequest(boot_dir=str(tmp_path / "boot")), h) == 0
    assert "removed: resume loader /boot/efi/EFI/suspendos/resume.efi" in capsys.readouterr().out
    assert outside.read_bytes() == b"someone else's"
    assert not (uefi_root / "etc/suspendos").exists() and sorted(entries(uefi_root)) == [0]


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_an_efi_boot_conf_that_is_no_file_is_refused_not_waited_on(uefi_root, tmp_path, capsys,
                                                                  kind):
    (tmp_path / "boot").mkdir()
    h, _ = install(uefi_root, tmp_path, capsys)
    conf = uefi_root / "etc/suspendos/efi-boot.conf"
    conf.unlink()
    conf.mkdir() if kind == "folder" else os.mkfifo(conf)
    with pytest.raises(UsageError, match="efi-boot.conf"):
        plan(h, Request(swap="/dev/sda1"))


@pytest.mark.parametrize("text", ["\u0663\n", "99999999999\n", "x\n", "\n"])
def test_a_partition_number_is_ascii_digits_within_uint32(uefi_root, tmp_path, text):
    """int() reads "٣" as 3: the ESP's partition number once went to efibootmgr from it."""
    (uefi_root / "sys" / SDA / "sda3/partition").write_text(text)
    with pytest.raises(UsageError, match="not a partition number"):
        uefi.find_esp(host(uefi_root, tmp_path))


@pytest.mark.parametrize("point", [r"/boot/efi\012x", '/boot/"efi'])
def test_an_esp_mount_point_efi_boot_conf_cannot_hold_is_refused(uefi_root, tmp_path, capsys,
                                                                 point):
    """A newline in the mount point (mountinfo's \\012) once went into efi-boot.conf and
    broke it: hibernate then called it damaged."""
    (tmp_path / "boot").mkdir()
    info = uefi_root / "proc/self/mountinfo"
    info.write_text(info.read_text().replace(" /boot/efi ", f" {point} "))
    db = uefi_root / "run/udev/data/b8:3"
    db.parent.mkdir(parents=True)
    db.write_text(f"E:ID_PART_ENTRY_TYPE={uefi.ESP_TYPE}\n")
    before = tree(uefi_root)
    with pytest.raises(UsageError, match="cannot be recorded"):
        install(uefi_root, tmp_path, capsys)
    assert tree(uefi_root) == before


@pytest.mark.parametrize("argv, option", [
    (["install-resume", "--swap", "/dev/sda1", "--boot-dir", ""], "--boot-dir"),
    (["uninstall-resume", "--boot-dir", ""], "--boot-dir"),
    (["install-resume", "--swap", ""], "--swap"),
    (["hibernate", "--swap", "", "--dry-run"], "--swap"),
    (["target", "linux", "--swap", "", "-o", "t.toml"], "--swap"),
])
def test_an_empty_boot_dir_or_swap_is_refused(root, tmp_path, argv, option):  # noqa: F811
    """--boot-dir "" once put the loader in (and uninstall-resume took it out of) the current
    folder; --swap "" was taken for "not given" (the only active swap area)."""
    work = tmp_path / "w"
    work.mkdir()
    (work / "suspendos-resume.elf").write_bytes(b"someone's")
    with open(root / "proc/swaps", "w") as f:      # one active swap area to fall back on
        f.write("Filename\tType\tSize\tUsed\tPriority\n/dev/sda1\tpartition\t655356\t0\t-2\n")
    before = tree(tmp_path)
    r = subprocess.run([sys.executable, "-m", "suspendos.cli", *argv, "--sysroot", str(root)],
                       cwd=work, capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and option in r.stderr, r
    assert tree(tmp_path) == before
