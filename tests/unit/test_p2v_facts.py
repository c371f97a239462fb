"""Hardware facts from /proc, /sys and /etc, on a prepared tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.p2v.facts import (
    collect_facts,
    parse_adjtime,
    parse_cpuinfo,
    parse_meminfo,
)

pytestmark = pytest.mark.unit


def _cpu(index: int, physical: int, core: int) -> str:
    return (f"processor\t: {index}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Silver 4210 CPU\n"
            f"physical id\t: {physical}\nsiblings\t: 4\ncore id\t\t: {core}\ncpu cores\t: 2\n"
            "flags\t\t: fpu pae lm vmx\n\n")


CPUINFO = "".join(_cpu(i, i // 4, (i // 2) % 2) for i in range(8))


def test_cpuinfo_topology() -> None:
    cpu = parse_cpuinfo(CPUINFO)
    assert (cpu.vendor, cpu.sockets, cpu.cores, cpu.threads, cpu.logical) == ("Intel", 2, 2, 2, 8)
    assert cpu.model_name.startswith("Intel(R) Xeon") and "pae" in cpu.flags
    amd = parse_cpuinfo("processor : 0\nvendor_id : AuthenticAMD\n\nprocessor : 1\nvendor_id : AuthenticAMD\n")
    assert (amd.vendor, amd.sockets, amd.cores, amd.threads, amd.logical) == ("AMD", 1, 2, 1, 2)


def test_meminfo_and_adjtime() -> None:
    assert parse_meminfo("MemTotal:       16318976 kB\nMemFree: 1 kB\n") == 15936
    assert parse_adjtime("0.0 0 0.0\n0\nLOCAL\n") == "localtime"
    assert parse_adjtime("0.0 0 0.0\n0\nUTC\n") == "utc"
    assert parse_adjtime(None) == "utc"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _tree(root: Path) -> None:
    _write(root / "proc/cpuinfo", CPUINFO)
    _write(root / "proc/meminfo", "MemTotal: 8388608 kB\n")
    _write(root / "proc/sys/kernel/hostname", "db01.example.com\n")
    _write(root / "proc/mounts", "/dev/sdc1 /run/live/medium iso9660 ro 0 0\noverlay / overlay rw 0 0\n")
    _write(root / "etc/adjtime", "0.0 0 0.0\n0\nLOCAL\n")
    (root / "sys/firmware/efi").mkdir(parents=True)
    for name, sectors, model, removable in (("sda", 41943040, "PERC H730", "0"), ("nvme0n1", 2000409264, None, "0"),
                                            ("sdc", 30031872, "USB Stick", "0"), ("sdd", 100, "Card", "1"),
                                            ("loop0", 1000, None, "0"), ("sr0", 0, None, "1"), ("dm-0", 10, None, "0")):
        base = root / "sys/devices/pci0000:00" / name
        _write(base / "size", f"{sectors}\n")
        _write(base / "removable", removable + "\n")
        if model:
            _write(base / "device/model", model + "\n")
        _write(base / "queue/rotational", "1\n")
        (root / "sys/block").mkdir(parents=True, exist_ok=True)
        os.symlink(base, root / "sys/block" / name)
        (root / "sys/class/block").mkdir(parents=True, exist_ok=True)
        os.symlink(base, root / "sys/class/block" / name)
    _write(root / "sys/devices/pci0000:00/sda/device/serial", "ABC123\n")
    part = root / "sys/devices/pci0000:00/sdc/sdc1"
    _write(part / "partition", "1\n")
    os.symlink(part, root / "sys/class/block/sdc1")
    for name, mac, carrier, physical in (("em1", "D4:BE:D9:12:34:56", "1", True), ("lo", "00:00:00:00:00:00", "1",
                                                                                   False),
                                         ("veth0", "02:00:00:00:00:01", "0", False)):
        base = root / "sys/class/net" / name
        _write(base / "address", mac + "\n")
        _write(base / "carrier", carrier + "\n")
        if physical:
            driver = root / "sys/bus/pci/drivers/tg3"
            driver.mkdir(parents=True)
            (base / "device").mkdir()
            os.symlink(driver, base / "device/driver")


def test_collect_facts_on_a_tree(tmp_path: Path) -> None:
    _tree(tmp_path)
    facts = collect_facts(str(tmp_path))
    assert facts.hostname == "db01.example.com"
    assert (facts.memory_mb, facts.firmware, facts.clock) == (8192, "uefi", "localtime")
    assert facts.boot_devices == ["sdc"]
    assert [(d.name, d.size_bytes, d.model, d.serial) for d in facts.disks] == [
        ("nvme0n1", 2000409264 * 512, None, None), ("sda", 41943040 * 512, "PERC H730", "ABC123")]
    assert [(r.name, r.kind) for r in facts.removables] == [("sr0", "cdrom")]
    assert [(n.name, n.mac, n.link, n.driver, n.virtual) for n in facts.nics] == [
        ("em1", "d4:be:d9:12:34:56", True, "tg3", False), ("veth0", "02:00:00:00:00:01", False, None, True)]
    data = facts.to_dict()
    assert data["cpu"]["sockets"] == 2 and data["disks"][1]["device"] == "/dev/sda"


def test_collect_facts_on_this_machine() -> None:
    facts = collect_facts("/")
    assert facts.memory_mb > 0 and facts.cpu.logical >= 1 and facts.firmware in ("bios", "uefi")
