"""libvirt domain XML parsing details and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import NotSupportedError, SourceError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import SourceSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.libvirtxml import (
    dev_slot,
    drive_index,
    load,
    parse_domain_xml,
)

pytestmark = pytest.mark.unit


def domain(devices: str = "", *, head: str = "", dtype: str = "kvm") -> str:
    return f"<domain type='{dtype}'><name>vm</name>{head}<devices>{devices}</devices></domain>"


@pytest.mark.parametrize(("memory", "mb"), [
    ("<memory>1048576</memory>", 1024),
    ("<memory unit='KiB'>2097152</memory>", 2048),
    ("<memory unit='MiB'>3072</memory>", 3072),
    ("<memory unit='G'>4</memory>", 4096),
    ("<memory unit='GB'>1</memory>", 953),
    ("<memory unit='bytes'>536870912</memory>", 512),
    ("", 1024),
])
def test_memory_units(memory: str, mb: int) -> None:
    assert parse_domain_xml(domain(head=memory)).memory_mb == mb


def test_bad_memory_unit() -> None:
    with pytest.raises(SourceError, match="not a known unit"):
        parse_domain_xml(domain(head="<memory unit='parsecs'>1</memory>"))


def test_vcpus_from_topology_when_vcpu_is_missing() -> None:
    source = parse_domain_xml(domain(head="<cpu><topology sockets='2' cores='3' threads='2'/></cpu>"))
    assert (source.vcpus, source.cpu.sockets, source.cpu.cores, source.cpu.threads) == (12, 2, 3, 2)
    assert parse_domain_xml(domain()).vcpus == 1


@pytest.mark.parametrize(("os_xml", "dtype", "firmware", "secure"), [
    ("<os firmware='efi'><type>hvm</type></os>", "kvm", "uefi", False),
    ("<os><type>hvm</type><loader readonly='yes' secure='yes' type='pflash'>/x/OVMF_CODE.fd</loader></os>",
     "kvm", "uefi", True),
    ("<os><type>hvm</type><loader>/usr/share/OVMF/OVMF_CODE.fd</loader></os>", "kvm", "uefi", False),
    ("<os firmware='bios'><type>hvm</type></os>", "kvm", "bios", False),
    ("<os><type>hvm</type></os>", "kvm", "bios", False),
    ("<os><type>hvm</type><loader>/usr/lib/xen/boot/hvmloader</loader></os>", "xen", "bios", False),
    ("<os><type>linux</type></os>", "xen", "unknown", False),
    ("", "kvm", "unknown", False),
])
def test_firmware(os_xml: str, dtype: str, firmware: str, secure: bool) -> None:
    source = parse_domain_xml(domain(head=os_xml, dtype=dtype))
    assert (source.firmware.type, source.firmware.secure_boot) == (firmware, secure)


@pytest.mark.parametrize(("dev", "slot"), [("hda", 0), ("hdc", 2), ("sdb", 1), ("vdz", 25), ("sdaa", 26),
                                           ("xvdc", 2), ("fdb", 1), ("sr0", 0), ("sr3", 3), ("weird", None),
                                           ("sd1", None), (None, None)])
def test_removable_slot_from_target_dev(dev: str | None, slot: int | None) -> None:
    assert dev_slot(dev) == slot


def test_drive_index() -> None:
    assert [drive_index(n) for n in ("a", "z", "aa", "az", "ba")] == [0, 25, 26, 51, 52]
    with pytest.raises(ValueError):
        drive_index("A1")


def test_disk_kinds_formats_and_buses() -> None:
    devices = """
      <disk type='file' device='disk'><driver name='tap' type='aio'/><source file='/x/a.img'/>
        <target dev='xvda'/></disk>
      <disk type='block'><source dev='/dev/sdz'/><target dev='hdb'/></disk>
      <disk type='network' device='disk'><driver type='raw'/><source protocol='nbd' name='/exp'>
        <host name='conv.example' port='10809'/></source><target dev='sdc' bus='scsi'/>
        <address type='drive' controller='1'/></disk>
      <disk type='network' device='disk'><source protocol='nbd'><host name='::1' port='5000'/></source>
        <target dev='vdb' bus='virtio'/></disk>
      <disk type='network' device='disk'><driver type='qcow2'/><source protocol='https' name='/images/a.qcow2'>
        <host name='images.example' port='443'/></source><target dev='vdc' bus='virtio'/></disk>
      <disk type='file' device='disk'><target dev='vdd' bus='virtio'/></disk>
      <disk type='file' device='lun'><source file='/x/lun'/><target dev='sdd' bus='sata'/></disk>
      <controller type='scsi' index='1' model='lsilogic'/>
    """
    disks = parse_domain_xml(domain(devices)).disks
    assert [(d.path, d.format, d.bus, d.controller) for d in disks] == [
        ("/x/a.img", "raw", "xen", None),
        ("/dev/sdz", None, "ide", None),
        ("nbd://conv.example:10809/exp", "raw", "scsi", "lsilogic"),
        ("nbd://[::1]:5000", None, "virtio", None),
        ("https://images.example/images/a.qcow2", "qcow2", "virtio", None),
        ("/x/lun", None, "sata", None),
    ]


def test_unsupported_disks_are_errors_not_silently_dropped() -> None:
    rbd = "<disk type='network'><source protocol='rbd' name='pool/img'/><target dev='vda'/></disk>"
    with pytest.raises(NotSupportedError, match="disk vda: network disks with protocol 'rbd'"):
        parse_domain_xml(domain(rbd))
    volume = "<disk type='volume'><source pool='default' volume='a.qcow2'/><target dev='vda'/></disk>"
    with pytest.raises(NotSupportedError, match="storage pool volume"):
        parse_domain_xml(domain(volume))
    source = parse_domain_xml(domain(volume), resolve_volume=lambda pool, vol: (f"/pools/{pool}/{vol}", "qcow2"))
    assert (source.disks[0].path, source.disks[0].format) == ("/pools/default/a.qcow2", "qcow2")


def test_interfaces() -> None:
    devices = """
      <interface type='network'><mac address='52:54:00:AA:BB:CC'/><source network='default'/>
        <model type='virtio'/></interface>
      <interface type='bridge'><source bridge=''/><mac address='00:00:00:00:00:00'/></interface>
      <interface type='direct'><source dev='eth0' mode='bridge'/></interface>
      <interface type='user'/>
      <interface type='bridge'><mac address='00:16:3e:00:00:01'/><source bridge='xenbr1'/></interface>
      <interface type='network'><mac address='52:54:00:00:00:09'/></interface>
    """
    nics = [(n.mac, n.model, n.network, n.bridge) for n in parse_domain_xml(domain(devices)).nics]
    assert nics == [("52:54:00:aa:bb:cc", "virtio", "default", None), (None, None, None, "eth1"),
                    ("00:16:3e:00:00:01", None, None, "xenbr1")]


def test_graphics_and_sound_take_the_first_device() -> None:
    devices = "<graphics type='sdl'/><graphics type='vnc'/><sound model='ac97'/><sound model='ich6'/>"
    source = parse_domain_xml(domain(devices))
    assert (source.display, source.sound) == (None, "ac97")
    assert parse_domain_xml(domain("<graphics type='spice'/>")).display == "spice"


def test_required_elements() -> None:
    with pytest.raises(SourceError, match="no type"):
        parse_domain_xml("<domain><name>x</name></domain>")
    with pytest.raises(SourceError, match="no <name>"):
        parse_domain_xml("<domain type='kvm'/>")
    with pytest.raises(SourceError, match="not <domain>"):
        parse_domain_xml("<network/>")
    with pytest.raises(SourceError, match="not valid XML"):
        parse_domain_xml("<domain type='kvm'>")


def test_text_with_encoding_declaration() -> None:
    text = "<?xml version='1.0' encoding='UTF-8'?>\n" + domain()
    assert parse_domain_xml(text).name == "vm"
    assert parse_domain_xml(text.encode()).name == "vm"


def test_load(tmp_path: Path) -> None:
    disk = tmp_path / "a.qcow2"
    disk.write_bytes(b"")
    xml = tmp_path / "vm.xml"
    xml.write_text(domain(f"<disk type='file' device='disk'><driver type='qcow2'/><source file='{disk}'/>"
                          "<target dev='vda' bus='virtio'/></disk>"))
    source = load(SourceSpec(input="libvirtxml", path=str(xml)))
    assert (source.input, source.disks[0].path) == ("libvirtxml", str(disk))
    disk.unlink()
    with pytest.raises(SourceError, match=r"disk '.*a\.qcow2' of domain 'vm' does not exist"):
        load(SourceSpec(input="libvirtxml", path=str(xml)))
    xml.write_text("<domain>")
    with pytest.raises(SourceError, match=r"vm\.xml: the libvirt XML is not valid XML"):
        load(SourceSpec(input="libvirtxml", path=str(xml)))
    with pytest.raises(SourceError, match="does not exist"):
        load(SourceSpec(input="libvirtxml", path=str(tmp_path / "none.xml")))
