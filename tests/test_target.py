"""Target descriptions: the QEMU machine for every size, and validation that names the field,
exits 2 and writes nothing."""
import pytest
import tomllib

from suspendos.errors import UsageError
from suspendos.target import description
from suspendos.target.qemu import memory_map, qemu_target

MiB, GiB = 1 << 20, 1 << 30


@pytest.mark.parametrize("memory", [64 * MiB, 256 * MiB, 1 * GiB, 2 * GiB + 704 * MiB,
                                    2816 * MiB, 3 * GiB, 8 * GiB])
def test_qemu_target_for_every_size(memory, qemu_pci):
    t = qemu_target(memory, pci=qemu_pci)
    ram = sum(m.end - m.start for m in t.memory if m.type == "ram")
    assert memory - ram < 1 * MiB                      # only firmware holes are missing
    saved = sum(e - s for s, e in t.saved_ranges())
    assert saved >= 0.95 * memory
    if memory >= 2816 * MiB:                           # q35 moves all but 2 GiB above 4 GiB
        assert any(s >= 4 * GiB for s, _ in t.saved_ranges())
        assert max(e for _, e in t.saved_ranges()) == 4 * GiB + memory - 2 * GiB
    assert t.image_capacity() >= t.worst_case_image()
    again = description.loads(description.dumps(t))
    assert again.saved_ranges() == t.saved_ranges()


def test_memory_map_matches_what_the_test_host_sees():
    # Printed by the test host (@@MMAP) under QEMU 7.2 q35 for -m 3G.
    seen = [(0x0, 0x9fc00, 1), (0x9fc00, 0xa0000, 2), (0xf0000, 0x100000, 2),
            (0x100000, 0x7ffdf000, 1), (0x7ffdf000, 0x80000000, 2), (0xb0000000, 0xc0000000, 2),
            (0xfed1c000, 0xfed20000, 2), (0xfffc0000, 0x100000000, 2),
            (0x100000000, 0x140000000, 1)]
    ours = [(m.start, m.end, 1 if m.type == "ram" else 2) for m in memory_map(3 * GiB)]
    assert ours == seen


def _base(qemu_pci):
    return description.from_dict(tomllib.loads(description.dumps(
        qemu_target(256 * MiB, pci=qemu_pci)))).to_dict()


@pytest.mark.parametrize("change, field", [
    (lambda d: d["reserved"].update(load_address=0xE0000000), "reserved"),
    (lambda d: d["reserved"].update(size=0x10000), "reserved.size"),
    (lambda d: d["extents"].append({"lba": d["extents"][0]["lba"] + 8, "count": 8}), "overlaps"),
    (lambda d: d["extents"][0].update(count=d["disk"]["sectors"]), "beyond the end of the disk"),
    (lambda d: d["extents"][0].update(count=1000), "too small for the worst-case image"),
    (lambda d: d["disk"].update(pci="zz:1"), "disk.pci"),
    (lambda d: d["disk"].update(port=40), "disk.port"),
    (lambda d: d["memory"][0].update(type="banana"), "memory[0].type"),
    (lambda d: d["options"].update(compress="zstd"), "options.compress"),
    (lambda d: d.pop("disk"), "disk: missing"),
    (lambda d: d["disk"].update(ahci_base="high"), "disk.ahci_base"),
    (lambda d: d["reserved"].update(ap_start=0x100000), "reserved.ap_start"),   # not < 1 MiB
    (lambda d: d["reserved"].update(ap_start=0xB0000), "reserved.ap_start"),    # SIPI A0-BF
    (lambda d: d["reserved"].update(ap_start=0x9FC00), "reserved.ap_start"),    # not a page
])
def test_validation_names_the_field(qemu_pci, change, field):
    d = _base(qemu_pci)
    change(d)
    with pytest.raises(UsageError) as e:
        description.from_dict(d)
    assert field in str(e.value)
    assert "\n" not in str(e.value)


def _one_line_exit_2(p, output):
    assert p.returncode == 2, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not output.exists()


def test_cli_garbage_target_file(tmp_path, cli):
    bad = tmp_path / "garbage.toml"
    bad.write_bytes(b"\x00\xff not toml [[[")
    out = tmp_path / "p.blob"
    p = cli("build", "--target", bad, "-o", out)
    _one_line_exit_2(p, out)
    assert "garbage.toml" in p.stderr


@pytest.mark.parametrize("memory", ["0", "12M", "9G", "lots"])
def test_cli_bad_memory(tmp_path, cli, memory):
    out = tmp_path / "t.toml"
    p = cli("target", "qemu", "--memory", memory, "-o", out)
    _one_line_exit_2(p, out)
    assert "--memory" in p.stderr


def test_cli_target_with_small_disk_refused(tmp_path, cli):
    out = tmp_path / "t.toml"
    p = cli("target", "qemu", "--memory", "256M", "--disk-size", "64M", "-o", out)
    _one_line_exit_2(p, out)
    assert "--disk-size" in p.stderr


def test_cli_invalid_target_refused_by_build(tmp_path, cli, qemu_pci):
    d = _base(qemu_pci)
    d["extents"][0]["count"] = 1000
    import tomli_w
    t = tmp_path / "t.toml"
    t.write_text(tomli_w.dumps(d))
    out = tmp_path / "p.blob"
    p = cli("build", "--target", t, "-o", out)
    _one_line_exit_2(p, out)
    assert "extents" in p.stderr


def test_the_probe_takes_a_disk_bar_only_once_the_firmware_placed_it():
    """query-pci reports an unassigned BAR as address -1 while SeaBIOS is still enumerating;
    the probe (suspendos/qemu/probe.py) polls, so -1 must read as "not yet", never as a BAR
    (a loaded machine once built a target with disk.bar -1 from it)."""
    from suspendos.qemu import disks

    def _bar(dev, index):
        return next(((r["address"], r["size"]) for r in dev["regions"] if r["bar"] == index),
                    None)

    def dev(address, virtio):
        ident = ({"vendor": disks.VIRTIO_VENDOR, "device": sorted(disks.VIRTIO_BLK_IDS)[0]}
                 if virtio else {"vendor": 0x1b36, "device": 0x0010})
        index = disks.VIRTIO_MODERN_BAR if virtio else 0
        return {"id": ident, "class_info": {"class": 0 if virtio else disks.NVME_CLASS},
                "regions": [{"bar": index, "type": "memory", "address": address,
                             "size": 16384}]}

    for virtio, key in ((True, "virtio"), (False, "nvme")):
        assert disks.find(dev(-1, virtio), "00:03.0", _bar) is None
        assert disks.find(dev(0, virtio), "00:03.0", _bar) is None
        assert disks.find(dev(0xFE000000, virtio), "00:03.0", _bar) == (key, ("00:03.0",
                                                                             0xFE000000))
        high = 0x800000000                       # a 64-bit BAR above 4 GiB is a BAR
        assert disks.find(dev(high, virtio), "00:03.0", _bar) == (key, ("00:03.0", high))
