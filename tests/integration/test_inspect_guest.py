"""inspect_guest against phony guests made with libguestfs: real appliance, no mocks."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.appliance import Appliance, DriveSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import SourceSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.pipeline import run_inspect
from tests.guests import phony
from tests.hashing import sha256
from tests.playbook import run_tasks
from tests.unit.inputs.test_inputs_ova import ovf

pytestmark = pytest.mark.integration


def codes(result) -> dict[str, str]:
    return {f.code: f.severity.value for f in result.findings}


def test_debian_guest_details(tmp_path: Path) -> None:
    guest = phony.build("phony-debian12")
    before = sha256(guest.disks[0])
    result = run_inspect(SourceSpec(input="disk", path=[str(guest.disks[0])], work_dir=str(tmp_path)))
    info = result.guest
    assert info is not None
    assert (info.distro, info.major_version, info.hostname) == ("debian", 12, guest.expected.hostname)
    assert "vmware:open-vm-tools" in info.hypervisor_tools
    assert codes(result).get("hypervisor-tools") == "warning"
    static = [n for n in info.network if n.method == "static"]
    assert static and static[0].interface == "ens192" and static[0].tool == "ifupdown"
    assert static[0].addresses == [guest.details["address"]]
    assert info.bootloader == "grub2" and info.firmware == "bios"
    root_fs = next(fs for fs in info.filesystems if fs.mountpoint == "/")
    assert root_fs.free_bytes and root_fs.size_bytes and root_fs.free_inodes
    assert 0 < result.estimate["estimated_bytes"] <= result.estimate["allocated_bytes"]
    assert [p.name for p in result.phases] == ["open", "inspect"]
    # these phony guests have no kernel: inspection says so as a blocker
    assert codes(result).get("no-kernel") == "blocker"
    assert sha256(guest.disks[0]) == before
    assert list(tmp_path.iterdir()) == [], "the overlays were not cleaned up"


def test_lvm_layout_reported(tmp_path: Path) -> None:
    guest = phony.build("phony-debian12-lvm")
    result = run_inspect(SourceSpec(input="disk", path=[str(d) for d in guest.disks], work_dir=str(tmp_path)))
    assert result.guest is not None and result.guest.lvm
    assert "/boot" in result.guest.mountpoints


def test_blank_disk_is_a_blocker(tmp_path: Path) -> None:
    guest = phony.build("blank")
    result = run_inspect(SourceSpec(input="disk", path=[str(guest.disks[0])], work_dir=str(tmp_path)))
    assert result.guest is None
    assert codes(result) == {"no-os": "blocker"}
    assert "no operating system was found" in result.findings[0].message


def test_module_through_ansible(tmp_path: Path) -> None:
    guest = phony.build("phony-rocky9")
    disk = str(guest.disks[0])
    run = run_tasks([
        {"name": "inspect", "kvmigrate.v2v.inspect_guest": {"input": "disk", "path": disk,
                                                            "work_dir": str(tmp_path / "w")},
         "register": "full"},
        {"name": "metadata only", "kvmigrate.v2v.inspect_guest": {"input": "disk", "path": disk,
                                                                  "inspect_os": False}, "register": "meta"},
        {"name": "missing", "kvmigrate.v2v.inspect_guest": {"input": "disk", "path": str(tmp_path / "nope.img")},
         "register": "missing"},
        {"name": "not yet", "kvmigrate.v2v.inspect_guest": {"input": "libvirt", "uri": "test:///default",
                                                            "domain": "test"}, "register": "libvirt"},
    ], tmp_path, check=True)
    assert run.rc == 0, run.output
    full, meta = run.results["full"], run.results["meta"]
    assert full["changed"] is False and full["guest"]["distro"] == guest.expected.distro
    assert full["source"]["disks"][0]["format"] == guest.format
    assert "guest" not in meta and meta["source"]["name"] == Path(disk).stem
    assert [p["name"] for p in meta["phases"]] == ["open"]
    missing = run.results["missing"]
    assert missing["failed"] and "does not exist" in missing["msg"] and "nope.img" in missing["msg"]
    # test:///default's sample domain runs: a running source is refused, as virt-v2v -i libvirt does
    running = run.results["libvirt"]
    assert running["failed"] and "is running" in running["msg"] and "Shut it down first" in running["msg"]


def test_ova_snapshot_chain_inspects_the_snapshot(tmp_path: Path) -> None:
    """An OVF whose disk is a snapshot delta over its parent, side by side in a directory: the guest as
    the snapshot left it is inspected (the delta's hostname), through one read-only chain."""
    guest = phony.build("phony-debian12")
    folder = tmp_path / "exported"
    folder.mkdir()
    subprocess.run(["qemu-img", "convert", "-q", "-f", guest.format, "-O", "vmdk", str(guest.disks[0]),
                    str(folder / "base.vmdk")], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", "-F", "vmdk", "-b", "base.vmdk", "base-000001.vmdk"],
                   check=True, cwd=folder)
    # What the VM wrote after the snapshot lives only in the delta.
    with Appliance([DriveSpec(path=str(folder / "base-000001.vmdk"), format="vmdk", readonly=False)]) as g:
        root = g.inspect_os()[0]
        g.mount(root, "/")
        g.write("/etc/hostname", "after-snapshot\n")
        g.shutdown()
    (folder / "vm.ovf").write_bytes(ovf("base.vmdk", "base-000001.vmdk", extra_disk="skip-first",
                                        parent_ref=' ovf:parentRef="vmdisk1"'))
    before = {f.name: sha256(f) for f in folder.iterdir()}
    result = run_inspect(SourceSpec(input="ova", path=str(folder), work_dir=str(tmp_path / "work")))
    assert [Path(d.path).name for d in result.source.disks] == ["base-000001.vmdk"]
    assert result.guest is not None and result.guest.hostname == "after-snapshot"
    assert {f.name: sha256(f) for f in folder.iterdir()} == before
    assert list((tmp_path / "work").iterdir()) == []
