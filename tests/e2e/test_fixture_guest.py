"""The VMware-style Debian 12 test guest is what it claims to be.

It boots on VMware-like virtual hardware (SATA disk, its MAC at PCI slot 192
so the NIC is ens192 as on VMware) and shows its static IP in the marker; it
does NOT boot on virtio-blk (no virtio driver in its initramfs); booting never
changes the source image; its OVA and VMX exports are well formed.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.appliance import Appliance, DriveSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.process import run_tool
from tests.guests.boot import boot
from tests.guests.cache import qemu_slot
from tests.guests.vmware_debian import VMwareGuest

pytestmark = pytest.mark.e2e

OVF_NS = {"ovf": "http://schemas.dmtf.org/ovf/envelope/1",
          "rasd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData",
          "vssd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData",
          "vmw": "http://www.vmware.com/schema/ovf"}


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@pytest.fixture(scope="module")
def source_sha256(vmware_guest: VMwareGuest) -> str:
    """The raw image's hash before any test of this module booted it."""
    return _sha256(vmware_guest.raw)


@pytest.fixture(scope="module")
def guest_files(vmware_guest: VMwareGuest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Files and inspection facts read from the image (read-only appliance)."""
    out = tmp_path_factory.mktemp("guest-files")
    with qemu_slot("reading the vmware guest"), \
            Appliance([DriveSpec(path=str(vmware_guest.raw), format="raw", readonly=True)]) as g:
        roots = g.inspect_os()
        root = roots[0]
        facts: dict[str, object] = {
            "roots": roots, "distro": g.inspect_get_distro(root), "major": g.inspect_get_major_version(root),
            "hostname": g.inspect_get_hostname(root), "mountpoints": g.inspect_get_mountpoints(root)}
        g.mount_ro(root, "/")
        facts["apps"] = {a["app2_name"] for a in g.inspect_list_applications2(root)}
        for name in ("/etc/fstab", "/boot/grub/grub.cfg", "/etc/network/interfaces", "/etc/default/grub",
                     "/etc/initramfs-tools/initramfs.conf"):
            facts[name] = g.cat(name)
        initrd = out / "initrd.img"
        g.download(vmware_guest.initrd, str(initrd))
        facts["initrd"] = initrd
    return facts


def test_image_is_the_vmware_flavoured_debian_12(vmware_guest: VMwareGuest, guest_files: dict[str, object]) -> None:
    assert guest_files["roots"] == ["/dev/sda1"]
    assert guest_files["distro"] == "debian"
    assert guest_files["major"] == 12
    assert guest_files["hostname"] == vmware_guest.hostname
    assert "open-vm-tools" in guest_files["apps"]  # type: ignore[operator]
    fstab = str(guest_files["/etc/fstab"])
    assert re.search(r"^/dev/sda1\s+/\s+ext4", fstab, re.MULTILINE)
    assert re.search(r"^/dev/sda5\s+none\s+swap", fstab, re.MULTILINE)
    assert "UUID=" not in fstab
    grub_cfg = str(guest_files["/boot/grub/grub.cfg"])
    linux_lines = [ln for ln in grub_cfg.splitlines() if ln.strip().startswith("linux")]
    assert linux_lines and all("root=/dev/sda1" in ln and "console=ttyS0" in ln for ln in linux_lines)
    assert "GRUB_DISABLE_LINUX_UUID=true" in str(guest_files["/etc/default/grub"])
    interfaces = str(guest_files["/etc/network/interfaces"])
    assert "iface ens192 inet static" in interfaces
    assert f"address {vmware_guest.address}" in interfaces
    assert "MODULES=list" in str(guest_files["/etc/initramfs-tools/initramfs.conf"])


def test_initramfs_has_vmware_storage_drivers_and_no_virtio(guest_files: dict[str, object]) -> None:
    listing = run_tool(["lsinitramfs", str(guest_files["initrd"])]).splitlines()
    modules = {Path(p).name for p in listing if p.endswith(".ko")}
    assert not [p for p in listing if "virtio" in p], "a VMware guest's initramfs must not have virtio"
    assert {"ahci.ko", "ata_piix.ko", "sd_mod.ko", "vmw_pvscsi.ko", "mptspi.ko", "ext4.ko"} <= modules


def test_boots_on_sata_with_e1000(vmware_guest: VMwareGuest, source_sha256: str, tmp_path: Path) -> None:
    # The NIC sits at PCI slot 192 as on VMware, so the guest names it ens192
    # and its static configuration applies.
    result = boot(vmware_guest.raw, "raw", disk_bus="sata", nic_model="e1000", mac=vmware_guest.mac,
                  nic_slot=192, timeout=300, log_dir=tmp_path)
    assert result.booted, f"{result.reason} (serial log: {result.log_path})"
    assert len(result.markers) == 1
    marker = result.marker
    assert marker is not None
    assert marker.hostname == vmware_guest.hostname
    assert marker.root == "/dev/sda1"
    nic = marker.nic(vmware_guest.nic)
    assert nic is not None, marker.line
    assert nic.mac == vmware_guest.mac
    assert nic.addresses == (vmware_guest.address,)
    assert _sha256(vmware_guest.raw) == source_sha256


def test_does_not_boot_on_virtio_blk(vmware_guest: VMwareGuest, source_sha256: str, tmp_path: Path) -> None:
    result = boot(vmware_guest.raw, "raw", disk_bus="virtio-blk", nic_model="virtio", mac=vmware_guest.mac,
                  timeout=300, log_dir=tmp_path)
    assert not result.booted
    assert result.markers == []
    assert result.reason.startswith("root device not found"), result.reason
    assert "/dev/sda1 does not exist" in result.reason or "Gave up waiting for root" in result.reason
    assert _sha256(vmware_guest.raw) == source_sha256


def test_ova_is_vmware_shaped_and_its_manifest_verifies(vmware_guest: VMwareGuest) -> None:
    with tarfile.open(vmware_guest.ova) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == [f"{vmware_guest.name}.ovf", f"{vmware_guest.name}.mf", f"{vmware_guest.name}-disk1.vmdk"]
        assert all(m.isfile() for m in members)
        digests = {}
        for member in members:
            handle = tar.extractfile(member)
            assert handle is not None
            digests[member.name] = hashlib.file_digest(handle, "sha256").hexdigest()
        mf_handle = tar.extractfile(names[1])
        ovf_handle = tar.extractfile(names[0])
        assert mf_handle is not None and ovf_handle is not None
        manifest = mf_handle.read().decode()
        ovf = ET.fromstring(ovf_handle.read())
    entries = dict(re.findall(r"^SHA256\(([^)]+)\)= ([0-9a-f]{64})$", manifest, re.MULTILINE))
    assert entries == {names[0]: digests[names[0]], names[2]: digests[names[2]]}

    system = ovf.find("ovf:VirtualSystem", OVF_NS)
    assert system is not None
    assert system.findtext("ovf:Name", namespaces=OVF_NS) == vmware_guest.name
    items = system.findall("ovf:VirtualHardwareSection/ovf:Item", OVF_NS)
    by_type: dict[str, list[ET.Element]] = {}
    for item in items:
        by_type.setdefault(item.findtext("rasd:ResourceType", namespaces=OVF_NS) or "", []).append(item)
    assert by_type["3"][0].findtext("rasd:VirtualQuantity", namespaces=OVF_NS) == str(vmware_guest.vcpus)
    assert by_type["4"][0].findtext("rasd:VirtualQuantity", namespaces=OVF_NS) == str(vmware_guest.memory_mb)
    (sata,) = by_type["20"]
    assert sata.findtext("rasd:ResourceSubType", namespaces=OVF_NS) == "vmware.sata.ahci"
    sata_id = sata.findtext("rasd:InstanceID", namespaces=OVF_NS)
    (disk,) = by_type["17"]
    assert disk.findtext("rasd:Parent", namespaces=OVF_NS) == sata_id
    assert disk.findtext("rasd:HostResource", namespaces=OVF_NS) == "ovf:/disk/vmdisk1"
    assert len(by_type["15"]) == 1  # the CD-ROM
    (nic,) = by_type["10"]
    assert nic.findtext("rasd:ResourceSubType", namespaces=OVF_NS) == "VmxNet3"
    assert nic.findtext("rasd:Address", namespaces=OVF_NS) == vmware_guest.mac
    assert nic.findtext("rasd:Connection", namespaces=OVF_NS) == "VM Network"
    disk_el = ovf.find("ovf:DiskSection/ovf:Disk", OVF_NS)
    assert disk_el is not None
    assert disk_el.get(f"{{{OVF_NS['ovf']}}}format", "").endswith("#streamOptimized")
    assert int(disk_el.get(f"{{{OVF_NS['ovf']}}}capacity", "0")) == vmware_guest.virtual_size

    info = json.loads(run_tool(["qemu-img", "info", "--output=json", str(vmware_guest.vmdk)]))
    assert info["format"] == "vmdk"
    assert info["format-specific"]["data"]["create-type"] == "streamOptimized"
    assert info["virtual-size"] == vmware_guest.virtual_size


def test_vmx_directory_is_esxi_shaped(vmware_guest: VMwareGuest) -> None:
    vmx = dict(re.findall(r'^([^=\s]+) = "(.*)"$', vmware_guest.vmx.read_text(), re.MULTILINE))
    assert vmx["displayName"] == vmware_guest.name
    assert vmx["memSize"] == str(vmware_guest.memory_mb)
    assert vmx["numvcpus"] == str(vmware_guest.vcpus)
    assert vmx["firmware"] == "bios"
    assert vmx["guestOS"].startswith("debian")
    assert vmx["sata0.present"] == "TRUE"
    assert vmx["sata0:0.fileName"] == vmware_guest.vmx_disk.name
    assert vmx["ethernet0.virtualDev"] == "vmxnet3"
    assert vmx["ethernet0.addressType"] == "static"
    assert vmx["ethernet0.address"] == vmware_guest.mac
    assert vmx["ethernet0.networkName"] == "VM Network"
    descriptor = vmware_guest.vmx_disk.read_text()
    assert 'createType="monolithicFlat"' in descriptor
    assert f'"{vmware_guest.vmx_flat.name}"' in descriptor
    # The flat extent holds exactly the guest's disk.
    run_tool(["qemu-img", "compare", "-f", "raw", "-F", "vmdk", str(vmware_guest.raw), str(vmware_guest.vmx_disk)],
             timeout=600)


def test_lvm_layout_boots_with_root_on_a_logical_volume(vmware_guest_lvm: VMwareGuest, tmp_path: Path) -> None:
    before = _sha256(vmware_guest_lvm.raw)
    result = boot(vmware_guest_lvm.raw, "raw", disk_bus="sata", nic_model="e1000", mac=vmware_guest_lvm.mac,
                  nic_slot=192, timeout=300, log_dir=tmp_path)
    assert result.booted, f"{result.reason} (serial log: {result.log_path})"
    marker = result.marker
    assert marker is not None
    assert marker.hostname == vmware_guest_lvm.hostname
    assert marker.root == vmware_guest_lvm.root_device
    assert vmware_guest_lvm.root_device.startswith("/dev/mapper/")
    nic = marker.nic(vmware_guest_lvm.nic)
    assert nic is not None and nic.addresses == (vmware_guest_lvm.address,)
    assert _sha256(vmware_guest_lvm.raw) == before
