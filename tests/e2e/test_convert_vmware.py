"""convert_guest end to end: the VMware-style Debian guest converted, then BOOTED on virtio.

Success is the guest's own marker line: root on /dev/vda1, the original static
address on the pinned interface name. The sources are hashed before and after.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.appliance import Appliance, DriveSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.conversion import ConvertOptions, run_convert
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import SourceSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.pipeline import run_inspect
from tests.guests import boot
from tests.hashing import tree_hashes
from tests.playbook import run_tasks

pytestmark = pytest.mark.e2e


def assert_boots_on_virtio(guest, disks: list[str], *, root: str, mac: str | None = None, fmt: str = "raw") -> None:
    mac = mac or guest.mac
    result = boot.boot(disks, fmt, disk_bus="virtio-blk", nic_model="virtio", mac=mac, timeout=300)
    assert result.booted, f"converted guest did not boot: {result.reason}\n{result.log_path.read_text()[-3000:]}"
    marker = result.marker
    assert marker is not None
    assert marker.hostname == guest.hostname
    assert marker.root == root
    nic = marker.nic(guest.nic)
    assert nic is not None, f"no {guest.nic} in {marker.line}"
    assert nic.mac == mac.lower() and guest.address in nic.addresses


def test_ova_through_ansible_idempotent_and_boots(vmware_guest, tmp_path: Path) -> None:
    """check → real → verify (boot + reinspect) → check → real, through ansible-playbook."""
    sources = tree_hashes(vmware_guest.ova)
    out = tmp_path / "out"
    task = {"kvmigrate.v2v.convert_guest": {"input": "ova", "path": str(vmware_guest.ova), "output": "local",
                                            "output_dir": str(out), "work_dir": str(tmp_path / "work"),
                                            "networks": {"VM Network": "default"}}}
    first = run_tasks([{"name": "check", **task, "register": "check1", "check_mode": True},
                       {"name": "real", **task, "register": "real1"}], tmp_path)
    assert first.rc == 0, first.output
    check1, real1 = first.results["check1"], first.results["real1"]
    assert check1["changed"] is True and not check1.get("failed"), check1.get("msg")
    assert check1["plan"]["disks"][0]["path"] == str(out / f"{vmware_guest.name}-vda.raw")
    assert "<domain" in check1["plan"]["domain_xml"]
    assert real1["changed"] is True and not real1.get("failed"), real1.get("msg")
    disk = real1["target"]["disks"][0]
    assert disk["bytes_written"] < vmware_guest.virtual_size
    assert any("open-vm-tools" in step for step in real1["conversion"])
    assert any(f"{vmware_guest.nic}={vmware_guest.mac.lower()}" in step for step in real1["conversion"])
    phases = ["open", "inspect", "preflight", "convert", "trim", "copy", "output"]
    assert [p["name"] for p in real1["phases"]] == phases
    assert Path(real1["target"]["xml_path"]).read_text() == real1["target"]["domain_xml"]
    status = tmp_path / "work" / f"kvmigrate-{vmware_guest.name}" / "status.json"
    assert '"state": "done"' in status.read_text()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{vmware_guest.name}-vda.raw", f"{vmware_guest.name}.xml", f".{vmware_guest.name}.kvmigrate.json"])

    assert_boots_on_virtio(vmware_guest, [disk["path"]], root="/dev/vda1")
    after = run_inspect(SourceSpec(input="disk", path=[disk["path"]], format="raw", work_dir=str(tmp_path)))
    assert after.guest is not None
    assert after.guest.hypervisor_tools == []
    assert all(k.virtio_in_initramfs for k in after.guest.kernels if k.has_virtio_modules)

    second = run_tasks([{"name": "check", **task, "register": "check2", "check_mode": True},
                        {"name": "real", **task, "register": "real2"}], tmp_path)
    assert second.rc == 0, second.output
    assert second.results["check2"]["changed"] is False
    real2 = second.results["real2"]
    assert real2["changed"] is False and [p["name"] for p in real2["phases"]] == ["open"]
    assert tree_hashes(vmware_guest.ova) == sources


@pytest.mark.parametrize("form", ["vmx", "disk"])
def test_vmx_and_raw_disk_convert_and_boot(vmware_guest, tmp_path: Path, form: str) -> None:
    path = vmware_guest.vmx if form == "vmx" else vmware_guest.raw
    sources = tree_hashes(path.parent if form == "vmx" else path)
    result = run_convert(SourceSpec(input=form, path=[str(path)], work_dir=str(tmp_path)),
                         ConvertOptions(output="local", output_dir=str(tmp_path / "out")))
    disks = [d["path"] for d in result.target["disks"]]
    log = Path(result.log_path).read_text()
    assert "update-initramfs" in log and "phase copy" in log
    # the VMware template's MODULES=list initramfs has no virtio driver: it is rebuilt, and the log says why
    reason = re.search(rf"initramfs of {re.escape(vmware_guest.kernel_version)} is rebuilt: it lacks (.*)", log)
    assert reason is not None, log
    lacking = reason.group(1).split(", ")
    # each file once, though virtio_blk, virtio_scsi and virtio_net all depend on virtio.ko
    assert lacking[0] == "virtio_pci.ko" and "virtio.ko" in lacking and len(lacking) == len(set(lacking)), lacking
    if form == "disk":
        # A bare disk has no NIC metadata: the guest's configuration names no MAC, so conversion
        # makes a stable one up, writes it into the domain XML and pins the interface name to it.
        macs = re.findall(r"<mac address=[\"']([0-9a-f:]+)[\"']", result.target["domain_xml"])
        assert len(macs) == 1 and macs[0].startswith("52:54:00:"), result.target["domain_xml"]
        assert f"gave NIC 0 the MAC {macs[0]} (generated)" in result.conversion
        assert result.network == [{"interface": vmware_guest.nic, "mac": macs[0], "method": "pinned",
                                   "file": f"/etc/systemd/network/10-kvmigrate-{vmware_guest.nic}.link"}]
        assert_boots_on_virtio(vmware_guest, disks, root="/dev/vda1", mac=macs[0])
    else:
        assert_boots_on_virtio(vmware_guest, disks, root="/dev/vda1")
    assert tree_hashes(path.parent if form == "vmx" else path) == sources


def test_lvm_guest_with_separate_boot_converts_and_boots(vmware_guest_lvm, tmp_path: Path) -> None:
    sources = tree_hashes(vmware_guest_lvm.ova)
    result = run_convert(SourceSpec(input="ova", path=[str(vmware_guest_lvm.ova)], work_dir=str(tmp_path)),
                         ConvertOptions(output="local", output_dir=str(tmp_path / "out")))
    disks = [d["path"] for d in result.target["disks"]]
    assert_boots_on_virtio(vmware_guest_lvm, disks, root=vmware_guest_lvm.root_device)
    assert tree_hashes(vmware_guest_lvm.ova) == sources


def test_initramfs_with_virtio_drivers_is_kept_and_boots(vmware_guest_most, tmp_path: Path) -> None:
    """Debian's default MODULES=most initramfs already holds the virtio drivers: conversion keeps it
    byte for byte (no update-initramfs: minutes saved under TCG) and the guest boots on virtio-blk with it,
    its interface name pinned by a .link file the kept initramfs does not hold."""
    guest = vmware_guest_most
    sources = tree_hashes(guest.ova)
    result = run_convert(SourceSpec(input="ova", path=[str(guest.ova)], work_dir=str(tmp_path)),
                         ConvertOptions(output="local", output_dir=str(tmp_path / "out")))
    kernel = guest.kernel_version
    assert f"kept the initramfs of {kernel}: it already has the virtio drivers" in result.conversion
    assert not any(step.startswith("rebuilt the initramfs") for step in result.conversion)
    assert any("sda→vda" in step and "/etc/fstab" in step for step in result.conversion)  # changed, not in it
    log = Path(result.log_path).read_text()
    assert f"initramfs of {kernel} kept" in log and "in the guest: update-initramfs" not in log
    disks = [d["path"] for d in result.target["disks"]]
    initrd = f"/boot/initrd.img-{kernel}"
    assert boot_file_sha256(disks[0], initrd) == boot_file_sha256(str(guest.raw), initrd)
    assert_boots_on_virtio(guest, disks, root="/dev/vda1")
    assert tree_hashes(guest.ova) == sources


def boot_file_sha256(disk: str, path: str) -> str:
    """sha256 of a file on the first partition of a raw disk, read with libguestfs (read-only)."""
    with Appliance([DriveSpec(path=disk, format="raw", readonly=True)]) as g:
        g.mount_ro("/dev/sda1", "/")
        return str(g.checksum("sha256", path))
