"""The guest converter seam: one registry picks the converter from the inspected OS."""

from __future__ import annotations

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.convert import (
    CONVERTERS,
    Converter,
    GuestConvertOptions,
    converter_for,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.convert.linux.converter import LinuxConverter
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import NotSupportedError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import (
    GuestInfo,
    GuestNetConfig,
    Source,
    SourceDisk,
    SourceNIC,
)

pytestmark = pytest.mark.unit


def test_a_linux_guest_gets_the_linux_converter() -> None:
    converter = converter_for(GuestInfo(root="/dev/sda1", os_type="linux", distro="debian"))
    assert isinstance(converter, LinuxConverter) and converter.family == "linux"
    assert all(issubclass(c, Converter) and c.family == family for family, c in CONVERTERS.items())


@pytest.mark.parametrize(("guest", "message"), [
    (GuestInfo(root="/dev/sda2", os_type="windows", product_name="Windows Server 2019 Standard"),
     "converting windows guests is not supported yet (the guest is Windows Server 2019 Standard). "
     "This version of kvmigrate.v2v converts linux guests only"),
    (GuestInfo(root="/dev/sda1", os_type="freebsd", distro="freebsd"),
     "converting freebsd guests is not supported yet (the guest is freebsd)"),
    (GuestInfo(root="/dev/sda1"),
     "converting unknown guests is not supported yet (the guest is an unknown operating system)"),
])
def test_a_guest_without_a_converter_is_not_supported(guest: GuestInfo, message: str) -> None:
    with pytest.raises(NotSupportedError) as info:
        converter_for(guest)
    assert str(info.value).startswith(message)
    assert "converts linux guests only" in str(info.value)


def test_linux_planned_steps() -> None:
    guest = GuestInfo(root="/dev/sda1", os_type="linux", hypervisor_tools=["vmware:open-vm-tools", "xen:/etc/x"])
    steps = converter_for(guest).planned_steps(guest, GuestConvertOptions(block_driver="virtio-scsi"))
    assert steps == ["remove hypervisor tools: vmware:open-vm-tools, xen:/etc/x",
                     "rewrite block device names for virtio-scsi",
                     "pin network interface names to their MAC addresses",
                     "add virtio drivers to the initramfs and regenerate the boot menu"]
    guest.hypervisor_tools = []
    assert converter_for(guest).planned_steps(guest, GuestConvertOptions())[0] == (
        "rewrite block device names for virtio-blk")


def test_prepare_source_gives_nics_without_a_mac_one() -> None:
    guest = GuestInfo(root="/dev/sda1", os_type="linux",
                      network=[GuestNetConfig(tool="ifupdown", interface="eth0", mac="00:50:56:ab:cd:ef")])
    source = Source(name="web01", hypervisor="none", input="disk", disks=[SourceDisk(path="/images/web01.img")],
                    nics=[SourceNIC(), SourceNIC(), SourceNIC(mac="00:0c:29:00:00:01")])
    steps = converter_for(guest).prepare_source(source, guest)
    assert steps[0] == "gave NIC 0 the MAC 00:50:56:ab:cd:ef (guest configuration)"
    assert steps[1] == f"gave NIC 1 the MAC {source.nics[1].mac} (generated)" and len(steps) == 2
    assert converter_for(guest).prepare_source(source, guest) == []
