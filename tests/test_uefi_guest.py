"""The pieces of the UEFI Debian guest that need no boot (esp.py, qemu/ovmf.py, the
runner's boot timings); the boots themselves are in tests/test_linux_real_qemu.py (`uefi` in
their names). The SMBIOS channel is checked against QEMU's own parser of -smbios: QEMU must
accept the value as one OEM string, commas and `$` included."""
import subprocess

import pytest

from suspendos.linuxvm import debian, esp
from suspendos.linuxvm.runner import boot_seconds
from suspendos.qemu import ovmf


def test_grub_cfg_boots_the_guest_kernel_with_a_literal_dollar():
    cfg = esp.grub_cfg("6.1.0-9-amd64", "sosroot", debian.UEFI_DEFAULT_CMDLINE)
    assert "linux /boot/vmlinuz-6.1.0-9-amd64 $sos_cmdline" in cfg
    assert "initrd /boot/initrd.img-6.1.0-9-amd64" in cfg
    assert "search --no-floppy --label sosroot --set=root" in cfg
    # memmap=2M$0x10000000 single-quoted: GRUB must not expand $0x10000000
    line = next(l for l in cfg.splitlines() if l.startswith("set sos_cmdline="))
    assert line == f"set sos_cmdline='{debian.UEFI_DEFAULT_CMDLINE}'"
    assert "root=LABEL=sosroot" in line and "memmap=2M$0x10000000" in line
    # the SMBIOS string comes after the default, so it wins when present
    assert cfg.index("set sos_cmdline=") < cfg.index("smbios --type 11")


def test_the_cmdline_reaches_qemu_as_one_oem_string(tmp_path):
    line = "root=/dev/sda1 console=ttyS0,115200 memmap=2M$0x10000000 resume_offset=34816"
    args = esp.cmdline_smbios_args(line)
    assert args == ["-smbios", "type=11,value=" + line.replace(",", ",,")]
    # QEMU parses it (and would refuse a stray option after an undoubled comma)
    r = subprocess.run(["qemu-system-x86_64", "-machine", "q35", "-display", "none", *args,
                        "-S", "-no-reboot", "-nodefaults", "-qmp", "stdio"],
                       input='{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n',
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_pflash_uses_a_copy_of_the_variable_store(tmp_path):
    v = ovmf.vars_copy(tmp_path / "vars,1.fd")
    assert v.read_bytes() == ovmf.VARS.read_bytes()
    args = ovmf.pflash_args(v)
    assert args[1].endswith("readonly=on,file=" + str(ovmf.CODE))
    assert args[3] == f"if=pflash,format=raw,unit=1,file={str(v).replace(',', ',,')}"
    v.write_bytes(b"x")                          # a fresh copy replaces what a run wrote
    assert ovmf.vars_copy(v).read_bytes() == ovmf.VARS.read_bytes()


def test_missing_ovmf_is_named(tmp_path):
    from suspendos.errors import UsageError
    with pytest.raises(UsageError, match="apt-get install ovmf"):
        ovmf.vars_copy(tmp_path / "v.fd", template=tmp_path / "nope.fd")
    with pytest.raises(UsageError, match="apt-get install ovmf"):
        ovmf.pflash_args(tmp_path / "v.fd", code=tmp_path / "nope.fd")


def test_boot_seconds_times_each_stage_from_power_on():
    lines = [(0.5, "BdsDxe: loading Boot0001"), (4.25, "\x1b[2J" + esp.GRUB_MARK),
             (9.0, "[    0.000000] Linux version 6.1.0-9-amd64 (debian)"),
             (20.5, "[   11.2] systemd[1]: systemd 252.38-1~deb12u1 running in system mode"),
             (30.0, "@@GUEST ready uptime=21.0 cpus=2")]
    assert boot_seconds(lines, 30.0) == {"loader": 4.25, "kernel": 9.0, "userspace": 20.5,
                                         "ready": 30.0}
    # -kernel: no loader of the disk's; what is not seen is left out, not guessed
    assert boot_seconds(lines[2:], 30.0) == {"kernel": 9.0, "userspace": 20.5, "ready": 30.0}


def test_the_gpt_keeps_the_bios_partition_numbers(tmp_path):
    """p1 root and p2 swap where the MBR had them; p3 the ESP (sfdisk reads it back)."""
    import json
    disk = tmp_path / "d.raw"
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
    debian._gpt(disk, [("root", 2048, 40960), ("swap", 43008, 20480), ("esp", 63488, 20480)],
                tmp_path / "log")
    t = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True,
                                  text=True, check=True).stdout)["partitiontable"]
    assert t["label"] == "gpt" and t["id"] == debian.DISK_GUID
    parts = [(p["start"], p["size"], p["type"]) for p in t["partitions"]]
    assert parts == [(2048, 40960, debian.GPT_TYPES["root"]),
                     (43008, 20480, debian.GPT_TYPES["swap"]),
                     (63488, 20480, debian.GPT_TYPES["esp"])]
