"""RHEL-like and SUSE-like guests convert: checked by reopening the output.

The convertible phony guests carry stand-ins for rpm/dracut/grub2-mkconfig
that log their arguments inside the guest; the log and the edited files are
read back from the converted disk with libguestfs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.appliance import Appliance, DriveSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.conversion import ConvertOptions, run_convert
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import SourceSpec
from tests.guests import convertible
from tests.hashing import tree_hashes

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", ["phony-rocky9", "phony-sles15"])
def test_dracut_guest_converts(name: str, tmp_path: Path) -> None:
    guest = convertible.build(name)
    kernel = guest.details["kernel"]
    before = tree_hashes(*guest.disks)
    result = run_convert(SourceSpec(input="disk", path=[str(d) for d in guest.disks], format=guest.format,
                                    work_dir=str(tmp_path / "w")),
                         ConvertOptions(output="local", output_dir=str(tmp_path / "out"), output_format="qcow2"))
    assert tree_hashes(*guest.disks) == before
    assert any("removed hypervisor tools: open-vm-tools" in s for s in result.conversion), result.conversion
    assert any(f"rebuilt the initramfs of {kernel}" in s for s in result.conversion)
    disks = [d["path"] for d in result.target["disks"]]
    with Appliance([DriveSpec(path=p, format="qcow2") for p in disks]) as g:
        root = g.inspect_os()[0]
        for mountpoint, device in sorted(g.inspect_get_mountpoints(root).items(), key=lambda kv: len(kv[0])):
            g.mount_ro(device, mountpoint)
        log = g.cat(guest.details["tool_log"])
        fstab = g.cat("/etc/fstab")
        dracut_conf = g.cat("/etc/dracut.conf.d/90-kvmigrate-virtio.conf")
    assert "rpm -e --nodeps open-vm-tools" in log
    assert "--add-drivers virtio_pci virtio_blk virtio_scsi" in log and kernel in log
    assert "virtio_blk" in dracut_conf
    root_device = guest.details["root_device"].replace("/dev/sd", "/dev/vd")
    assert f"{root_device} /" in fstab and "/dev/sd" not in fstab
