"""physical.xml: written here, read back by the libvirtxml parser and by input p2v."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import SourceError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import SourceSpec, open_source
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.libvirtxml import parse_domain_xml
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.p2v import SessionReport, session_directory
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.p2v.cmdline import parse_kernel_cmdline
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.p2v.facts import (
    CPUFacts,
    DiskFacts,
    HardwareFacts,
    NICFacts,
    RemovableFacts,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.p2v.physical_xml import (
    PhysicalDisk,
    PhysicalMachine,
    PhysicalNIC,
    build_physical_xml,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.p2v.session import (
    PrepareOptions,
    describe_machine,
    select_hardware,
)

pytestmark = pytest.mark.unit


def _machine(**overrides: object) -> PhysicalMachine:
    values: dict = dict(
        name="db01", memory_mb=8192, vcpus=8, firmware="uefi", clock="localtime", cpu_vendor="Intel",
        sockets=2, cores=2, threads=2, features={"acpi": True, "apic": True, "pae": True},
        disks=[PhysicalDisk(device="/dev/sda", port=40001, size_bytes=1 << 30),
               PhysicalDisk(device="/dev/nvme0n1", port=40002)],
        removables=["sr0"], nics=[PhysicalNIC(name="em1", mac="d4:be:d9:12:34:56", network="prod")],
        generator="test")
    values.update(overrides)
    return PhysicalMachine(**values)


def test_round_trip_through_the_libvirtxml_parser() -> None:
    text = build_physical_xml(_machine())
    assert "type=\"physical\"" in text and "protocol=\"nbd\"" in text
    source = parse_domain_xml(text)
    data = source.to_dict()
    assert (data["name"], data["hypervisor"], data["memory_mb"], data["vcpus"]) == ("db01", "physical", 8192, 8)
    assert (data["firmware"], data["cpu"]["vendor"], data["cpu"]["sockets"], data["cpu"]["threads"]) == (
        "uefi", "Intel", 2, 2)
    assert [(d["path"], d["format"], d["bus"]) for d in data["disks"]] == [
        ("nbd://127.0.0.1:40001", "raw", "scsi"), ("nbd://127.0.0.1:40002", "raw", "scsi")]
    assert [(r["kind"], r["slot"]) for r in data["removables"]] == [("cdrom", 0)]
    assert [(n["mac"], n["network"]) for n in data["nics"]] == [("d4:be:d9:12:34:56", "prod")]


def test_bios_reads_back_as_bios() -> None:
    assert parse_domain_xml(build_physical_xml(_machine(firmware="bios"))).firmware.type == "bios"


def _session(tmp_path: Path, text: str) -> Path:
    directory = tmp_path / "virt-p2v-20260101-abcdefgh"
    directory.mkdir()
    (directory / "physical.xml").write_text(text)
    (directory / "name").write_text("db01\n")
    return directory


def test_input_p2v_loads_the_session_directory(tmp_path: Path) -> None:
    directory = _session(tmp_path, build_physical_xml(_machine()))
    for path in (directory, directory / "physical.xml"):
        source = open_source(SourceSpec(input="p2v", path=str(path))).source
        assert source.input == "p2v" and source.name == "db01"
        assert [d.path for d in source.disks] == ["nbd://127.0.0.1:40001", "nbd://127.0.0.1:40002"]


@pytest.mark.parametrize("xml", [
    "<domain type='physical'><name>x</name><devices><disk type='file' device='disk'>"
    "<source file='/etc/shadow'/><target dev='sda'/></disk></devices></domain>",
    "<domain type='physical'><name>x</name><devices><disk type='network' device='disk'>"
    "<source protocol='nbd'><host name='10.0.0.9' port='10809'/></source><target dev='sda'/></disk></devices></domain>",
])
def test_input_p2v_reads_only_loopback_nbd(tmp_path: Path, xml: str) -> None:
    directory = _session(tmp_path, xml)
    with pytest.raises(SourceError, match="must be NBD on this host's loopback"):
        open_source(SourceSpec(input="p2v", path=str(directory)))


def test_input_p2v_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        session_directory(str(tmp_path / "missing"))
    with pytest.raises(SourceError, match="not a P2V session directory"):
        session_directory(str(tmp_path))
    directory = _session(tmp_path, "<domain type='physical'><name>x</name></domain>")
    with pytest.raises(SourceError, match="lists no disks"):
        open_source(SourceSpec(input="p2v", path=str(directory)))


def test_reporting_writes_status_and_log(tmp_path: Path) -> None:
    import json

    directory = _session(tmp_path, build_physical_xml(_machine(disks=[PhysicalDisk(device="/dev/sda", port=1)])))
    opened = open_source(SourceSpec(input="p2v", path=str(directory)))
    with (pytest.raises(SourceError, match="connection to the physical machine was lost"),
          opened.run_context(check_mode=False)):
        assert json.loads((directory / "status").read_text())["state"] == "running"
        raise SourceError("qemu-img: Could not read image")
    status = json.loads((directory / "status").read_text())
    assert status["state"] == "failed" and "nbd://127.0.0.1:1" in status["error"]
    assert "conversion failed" in (directory / "virt-v2v-conversion-log.txt").read_text()
    SessionReport(str(directory)).write_status(state="x")
    with opened.run_context(check_mode=False) as report:
        assert report.result is None
    assert json.loads((directory / "status").read_text())["state"] == "done"
    (directory / "status").unlink()
    with opened.run_context(check_mode=True):
        pass
    assert not (directory / "status").exists()


def test_a_session_is_identified_by_its_files(tmp_path: Path) -> None:
    directory = _session(tmp_path, build_physical_xml(_machine()))
    (directory / "time").write_text("2026-01-01T00:00:00\n")
    for path in (directory, directory / "physical.xml"):
        with open_source(SourceSpec(input="p2v", path=str(path))) as opened:
            assert [part.split(":")[0] for part in opened.identity()] == ["physical.xml", "time"]
            first = opened.identity()
    (directory / "time").write_text("2026-01-02T00:00:00\n")
    assert open_source(SourceSpec(input="p2v", path=str(directory))).identity() != first


def _facts() -> HardwareFacts:
    cpu = CPUFacts(vendor="AMD", sockets=1, cores=4, threads=2, logical=8, flags=["pae"])
    return HardwareFacts(hostname="db01.example.com", cpu=cpu, memory_mb=16384, firmware="bios", clock="utc",
                         disks=[DiskFacts(name="sda", device="/dev/sda", size_bytes=10),
                                DiskFacts(name="sdb", device="/dev/sdb", size_bytes=20)],
                         removables=[RemovableFacts(name="sr0", device="/dev/sr0")],
                         nics=[NICFacts(name="em1", mac="aa:bb:cc:dd:ee:ff"),
                               NICFacts(name="veth0", mac="02:00:00:00:00:01", virtual=True)],
                         boot_devices=["sdc"])


def test_selection_and_description_from_facts_and_cmdline() -> None:
    settings = parse_kernel_cmdline("p2v.server=c p2v.disks=/dev/sdb p2v.network=em1:prod p2v.memory=2G")
    selection = select_hardware(settings, _facts(), PrepareOptions())
    assert selection.disks == [("/dev/sdb", "raw", 20)] and selection.removables == ["sr0"]
    assert [(n.name, n.network) for n in selection.nics] == [("em1", "prod")]
    machine = describe_machine(settings, _facts(), selection, [40000])
    assert (machine.name, machine.memory_mb, machine.vcpus, machine.cores, machine.threads) == ("db01", 2048, 8, 4, 2)
    assert machine.disks[0].port == 40000 and machine.features["pae"]


@pytest.mark.parametrize(("cmdline", "message"), [
    ("p2v.disks=sdc", "holds the system this machine runs from"),
    ("p2v.disks=sdz", r"not a fixed disk of this machine \(fixed disks: sda, sdb\)"),
    ("p2v.interfaces=em9", "network interface em9 does not exist"),
    ("p2v.removable=sr7", "removable drive sr7 does not exist"),
])
def test_selection_errors(cmdline: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        select_hardware(parse_kernel_cmdline(cmdline), _facts(), PrepareOptions())
