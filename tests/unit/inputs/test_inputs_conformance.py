"""Conformance with virt-v2v: each sample gives the facts virt-v2v prints for it.

The samples and their ``.expected`` files (virt-v2v's ``--print-source``
text) come from the virt-v2v test suite; see
tests/unit/data/conformance/virt-v2v/README.md for their origin and licence.
Every sample is checked twice: parsed from text, and loaded from files the
way a user would give them (dummy disks beside the .vmx; an OVA tar with
dummy disks and a manifest, whose disks are then read back in place).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.compat import strict_zip
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import SourceSpec, open_source
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.ova import parse_ovf
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.vmx import parse_vmx
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Source

pytestmark = pytest.mark.unit

CONFORMANCE = Path(__file__).resolve().parent.parent / "data" / "conformance" / "virt-v2v"
MIB = 1024 * 1024

_NIC_RE = re.compile(r'^(Network|Bridge) "(.*)"(?: mac: (\S+))?(?: \[(.*)\])?$')
_REMOVABLE_RE = re.compile(r"^(CD-ROM|Floppy) \[(.*)\](?: in slot (\d+))?$")
_DISK_RE = re.compile(r"^(.*?)(?: \((\w+)\))? \[(.*)\]$")
_SIZE_RE = re.compile(r'"size": (\d+)')


@dataclass
class Expected:
    """The facts of one ``--print-source`` listing."""

    fields: dict[str, str] = field(default_factory=dict)
    disks: list[tuple[str, int | None]] = field(default_factory=list)
    removables: list[tuple[str, str, int | None]] = field(default_factory=list)
    nics: list[tuple[str, str, str | None, str | None]] = field(default_factory=list)


def parse_expected(text: str) -> Expected:
    expected = Expected()
    section = None
    for raw in text.splitlines():
        if not raw.strip() or raw.startswith("Source guest information"):
            continue
        if raw.startswith("\t"):
            line = raw.strip()
            if section == "disks":
                match = _DISK_RE.match(line)
                assert match, line
                size = _SIZE_RE.search(match.group(1))
                expected.disks.append((match.group(3), int(size.group(1)) if size else None))
            elif section == "removable media":
                match = _REMOVABLE_RE.match(line)
                assert match, line
                kind = "cdrom" if match.group(1) == "CD-ROM" else "floppy"
                slot = int(match.group(3)) if match.group(3) is not None else None
                expected.removables.append((kind, match.group(2), slot))
            elif section == "NICs":
                match = _NIC_RE.match(line)
                assert match, line
                expected.nics.append((match.group(1), match.group(2), match.group(3), match.group(4)))
            continue
        key, _sep, value = raw.strip().partition(":")
        if key in ("disks", "removable media", "NICs") and not value.strip():
            section = key
        else:
            expected.fields[key] = value.strip()
    return expected


def assert_conforms(source: Source, expected: Expected) -> None:
    f = expected.fields
    assert source.name == f["source name"]
    assert source.hypervisor == f["hypervisor type"]
    assert (source.genid or "") == f["VM genid"]
    assert source.memory_mb * MIB == int(f["memory"].split()[0])
    assert source.vcpus == int(f["nr vCPUs"])
    assert (source.cpu.vendor or "") == f["CPU vendor"]
    assert (source.cpu.model or "") == f["CPU model"]
    if f["CPU topology"]:
        numbers = [int(n) for n in re.findall(r"\d+", f["CPU topology"])]
        assert [source.cpu.sockets, source.cpu.cores, source.cpu.threads] == numbers
    else:
        assert source.cpu.sockets is None
    assert source.firmware.type == f["firmware"]
    if "UEFI secureboot" in f:
        assert source.firmware.secure_boot == (f["UEFI secureboot"] == "true")
    assert (source.display or "") == f["display"]
    assert (source.sound or "") == f["sound"]
    assert [d.bus for d in source.disks] == [bus for bus, _size in expected.disks]
    assert [(r.kind, r.bus, r.slot) for r in source.removables] == expected.removables
    actual_nics = [("Bridge" if n.bridge else "Network", n.bridge or n.network, n.mac, n.model)
                   for n in source.nics]
    assert actual_nics == expected.nics


def _expected_files(pattern: str) -> list[Path]:
    return sorted(CONFORMANCE.glob(pattern))


def _sample_for(expected: Path) -> Path:
    stem = expected.name.split(".")[0]
    return next(p for p in CONFORMANCE.glob(f"{stem}.*") if p.suffix in (".vmx", ".ovf"))


ALL_EXPECTED = _expected_files("*.expected*")
VMX_EXPECTED = _expected_files("test-i-vmx-*.expected")
OVA_EXPECTED = _expected_files("test-i-ova-*.expected*")


def test_parse_expected_reads_every_section() -> None:
    expected = parse_expected((CONFORMANCE / "test-i-vmx-1.expected").read_text())
    assert expected.fields["source name"] == "BZ1308535_21disks"
    assert len(expected.disks) == 21
    assert expected.removables == [("cdrom", "ide", 2)]
    assert expected.nics == [("Network", "VM Network", "00:0c:29:36:ef:31", "vmxnet3")]
    two = parse_expected((CONFORMANCE / "test-i-ova-two-disks.expected2").read_text())
    assert two.disks == [("scsi", 10240), ("scsi", 102400)]


@pytest.mark.parametrize("expected_path", ALL_EXPECTED, ids=[p.name for p in ALL_EXPECTED])
def test_parsed_sample_conforms(expected_path: Path) -> None:
    sample = _sample_for(expected_path)
    if sample.suffix == ".vmx":
        source = parse_vmx(sample.read_text(), vmx_dir="/vmfs/volumes/ds/vm")
    else:
        source, _refs = parse_ovf(sample.read_bytes())
    assert_conforms(source, parse_expected(expected_path.read_text()))


@pytest.mark.parametrize("expected_path", VMX_EXPECTED, ids=[p.name for p in VMX_EXPECTED])
def test_crlf_vmx_conforms(expected_path: Path, tmp_path: Path) -> None:
    # test-i-vmx-5.vmx has CRLF line endings upstream (stored here with LF for
    # ansible-test's line-endings check): every sample must read the same with CRLF.
    sample = _sample_for(expected_path)
    vmx = tmp_path / sample.name
    vmx.write_bytes(sample.read_bytes().replace(b"\n", b"\r\n"))
    for disk in parse_vmx(sample.read_text(), vmx_dir=str(tmp_path)).disks:
        Path(disk.path).write_bytes(b"")
    source = open_source(SourceSpec(input="vmx", path=str(vmx))).source
    assert_conforms(source, parse_expected(expected_path.read_text()))
    assert source.to_dict() == parse_vmx(sample.read_text(), vmx_dir=str(tmp_path)).to_dict()


@pytest.mark.parametrize("expected_path", VMX_EXPECTED, ids=[p.name for p in VMX_EXPECTED])
def test_loaded_vmx_conforms(expected_path: Path, tmp_path: Path) -> None:
    sample = _sample_for(expected_path)
    vmx = tmp_path / sample.name
    shutil.copy(sample, vmx)
    for disk in parse_vmx(sample.read_text(), vmx_dir=str(tmp_path)).disks:
        Path(disk.path).write_bytes(b"")
    source = open_source(SourceSpec(input="vmx", path=str(vmx))).source
    assert_conforms(source, parse_expected(expected_path.read_text()))
    assert all(Path(d.path).parent == tmp_path for d in source.disks)


@pytest.mark.parametrize("expected_path", OVA_EXPECTED, ids=[p.name for p in OVA_EXPECTED])
def test_loaded_ova_conforms_and_reads_disks_in_place(expected_path: Path, build_ova) -> None:
    sample = _sample_for(expected_path)
    _source, refs = parse_ovf(sample.read_bytes())
    expected = parse_expected(expected_path.read_text())
    sizes = [size or 10240 * (10 ** i) for i, (_bus, size) in enumerate(expected.disks)]
    contents = {ref.href: bytes([65 + i]) * size for i, (ref, size) in enumerate(strict_zip(refs, sizes))}
    ova = build_ova({"test.ovf": sample.read_bytes(), **contents})
    source = open_source(SourceSpec(input="ova", path=str(ova))).source
    assert_conforms(source, expected)
    with open(ova, "rb") as handle:
        for disk, ref, size in strict_zip(source.disks, refs, sizes):
            assert (disk.path, disk.length, disk.format) == (str(ova), size, "vmdk")
            handle.seek(disk.offset)
            assert handle.read(disk.length) == contents[ref.href]
