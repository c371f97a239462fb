"""Conversion removes every hypervisor's guest tools: checked by reopening the output.

The guests (``tests/guests/tool_guests.py``) carry the tools as packages, as a
tarball install, from the VirtualBox ISO and from the Parallels installer, and
the Xen PV driver aliases of a Xen guest. Their ``dpkg``/``rpm`` and the
vendors' uninstallers are recording stand-ins for the guest's own tools (not
for libguestfs): they log their argv in the guest and delete what the real
tool deletes, so the converted disk shows both the command that ran and what
is gone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.appliance import Appliance, DriveSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.conversion import ConvertOptions, run_convert
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import ConversionError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import SourceSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Result
from tests.guests import tool_guests as tg
from tests.guests.phony import PhonyGuest
from tests.hashing import tree_hashes

pytestmark = pytest.mark.integration


def _convert(guest: PhonyGuest, tmp_path: Path) -> Result:
    return run_convert(SourceSpec(input="disk", path=[str(d) for d in guest.disks], format=guest.format,
                                  work_dir=str(tmp_path / "w")),
                       ConvertOptions(output="local", output_dir=str(tmp_path / "out"), output_format="qcow2"))


def _reopen(result: Result, read: list[str], probe: list[str]) -> dict[str, Any]:
    """Read files and test paths in the converted disks, read-only."""
    disks = [d["path"] for d in result.target["disks"]]
    facts: dict[str, Any] = {"files": {}, "exists": {}}
    with Appliance([DriveSpec(path=p, format="qcow2", readonly=True) for p in disks]) as g:
        root = g.inspect_os()[0]
        for mountpoint, device in sorted(g.inspect_get_mountpoints(root).items(), key=lambda kv: len(kv[0])):
            g.mount_ro(device, mountpoint)
        facts["applications"] = {a["app2_name"] for a in g.inspect_list_applications2(root)}
        for path in read:
            facts["files"][path] = g.cat(path) if g.is_file(path) else None
        for path in probe:
            try:
                g.lstatns(path)  # a dangling symlink (a service still enabled) counts too
            except RuntimeError:
                facts["exists"][path] = False
            else:
                facts["exists"][path] = True
    return facts


def _step(result: Result, text: str) -> str:
    found = [s for s in result.conversion if text in s]
    assert found, f"no step with {text!r} in {result.conversion}"
    return found[0]


def test_rpm_guest_loses_citrix_xen_and_vmware_tarball_tools(tmp_path: Path) -> None:
    guest = tg.rocky_tools()
    before = tree_hashes(*guest.disks)
    result = _convert(guest, tmp_path)
    assert tree_hashes(*guest.disks) == before

    assert result.guest is not None
    detected = set(result.guest.hypervisor_tools)
    assert {"citrix:xe-guest-utilities", "citrix:xe-guest-utilities-xenstore", "xen:kmod-xenpv",
            "vmware:vmware-uninstall-tools.pl", "xen:/etc/modprobe.conf", "xen:/etc/modprobe.d/xen-pv.conf"} <= detected

    packages = "kmod-xenpv, xe-guest-utilities, xe-guest-utilities-xenstore"
    assert f"removed hypervisor tools: {packages} (with rpm -e)" in result.conversion
    assert "removed VMware Tools with /usr/bin/vmware-uninstall-tools.pl" in result.conversion
    _step(result, "disabled VMware package repositories in /etc/yum.repos.d/vmware-tools.repo")
    _step(result, "re-enabled the gettys in /etc/inittab")
    xen = _step(result, "removed the Xen PV drivers from /etc/modprobe.conf, /etc/modprobe.d/xen-pv.conf")
    assert "alias eth0 xennet → virtio_net" in xen and "alias scsi_hostadapter xenblk → virtio_blk" in xen

    gone = [p for paths in tg.ROCKY_TOOL_FILES.values() for p in paths] + tg.VMWARE_TARBALL_FILES
    facts = _reopen(result, [tg.TOOL_LOG, "/etc/modprobe.conf", "/etc/modprobe.d/xen-pv.conf", "/etc/inittab",
                             "/etc/yum.repos.d/vmware-tools.repo"], gone)
    log = facts["files"][tg.TOOL_LOG]
    assert f"rpm -e --nodeps {packages.replace(', ', ' ')}" in log, log
    # The uninstaller ran once, told not to restore its saved initramfs images.
    assert log.count("vmware-uninstall-tools.pl  rootdev=unset") == 1, log
    for answer in ("RESTORE_RAMDISK_CMD", "RESTORE_RAMDISK_KERNELS", "RESTORE_RAMDISK_ONECALL"):
        assert f"vmware-uninstall-tools.pl read: remove_answer {answer}" in log
    assert not facts["applications"] & set(guest.details["tool_packages"]), facts["applications"]
    assert "bash" in facts["applications"], "the rpm database is no longer readable"
    assert [p for p, exists in facts["exists"].items() if exists] == []

    modprobe = facts["files"]["/etc/modprobe.conf"]
    assert modprobe == "alias eth0 virtio_net\nalias scsi_hostadapter virtio_blk\noptions loop max_loop=16\n"
    assert facts["files"]["/etc/modprobe.d/xen-pv.conf"] == "# Xen PV drivers (kmod-xenpv)\nalias eth1 virtio_net\n"
    inittab = facts["files"]["/etc/inittab"]
    assert "\n1:2345:respawn:/sbin/mingetty tty1\n2:2345:respawn:/sbin/mingetty tty2\n" in inittab, inittab
    assert "enabled=0" in facts["files"]["/etc/yum.repos.d/vmware-tools.repo"]


def test_deb_guest_loses_hyperv_vmware_virtualbox_and_parallels_tools(tmp_path: Path) -> None:
    guest = tg.debian_tools()
    before = tree_hashes(*guest.disks)
    result = _convert(guest, tmp_path)
    assert tree_hashes(*guest.disks) == before

    assert result.guest is not None
    assert {"hyperv:hyperv-daemons", "vmware:open-vm-tools", "virtualbox:virtualbox-guest-utils",
            "virtualbox:config", "virtualbox:uninstall.sh", "parallels:install"} <= set(result.guest.hypervisor_tools)
    packages = "hyperv-daemons, open-vm-tools, virtualbox-guest-utils"
    assert f"removed hypervisor tools: {packages} (with dpkg --purge)" in result.conversion
    assert f"removed VirtualBox Guest Additions with {tg.VBOX_DIR}/uninstall.sh" in result.conversion
    assert "removed Parallels Tools with /usr/lib/parallels-tools/install -r" in result.conversion
    # linux-cloud-tools-common stays: another installed package depends on it.
    assert any(w.startswith("kept linux-cloud-tools-common: linux-cloud-tools-6.1.0-18-amd64 depends on it")
               for w in result.warnings), result.warnings

    gone = [p for paths in tg.DEBIAN_TOOL_FILES.values() for p in paths]
    gone += [f"{tg.WANTS}/{unit}" for unit in tg.DEBIAN_ENABLED.values()]
    gone += [*tg.VBOX_FILES, f"{tg.WANTS}/vboxadd-service.service", *tg.PARALLELS_FILES]
    facts = _reopen(result, [tg.TOOL_LOG, "/var/lib/dpkg/status"], [*gone, "/usr/sbin/policy-rc.d"])
    log = facts["files"][tg.TOOL_LOG]
    assert (f"dpkg --purge {packages.replace(', ', ' ')} DEBIAN_FRONTEND=noninteractive\n"
            "dpkg: policy-rc.d present\n") in log, log
    assert "vbox-uninstall.sh \n" in log and "parallels-install -r\n" in log
    assert [p for p, exists in facts["exists"].items() if exists] == []
    apps = facts["applications"]
    assert not apps & {"hyperv-daemons", "open-vm-tools", "virtualbox-guest-utils"}, apps
    assert {"linux-cloud-tools-common", "bash", "systemd"} <= apps
    assert "Package: hyperv-daemons" not in facts["files"]["/var/lib/dpkg/status"]


def test_failing_package_removal_stops_the_conversion(tmp_path: Path) -> None:
    guest = tg.debian_tools(failing=True)
    before = tree_hashes(*guest.disks)
    out = tmp_path / "out"
    with pytest.raises(ConversionError) as err:
        _convert(guest, tmp_path)
    message = str(err.value)
    assert err.value.phase == "convert"
    assert "could not remove the hypervisor tools hyperv-daemons, open-vm-tools, virtualbox-guest-utils" in message
    assert "dpkg --purge" in message and tg.PREUN_FAILURE in message, message
    assert "pre-removal script subprocess returned error exit status 1" in message
    assert "without network" in message and "the source was not changed" in message
    assert not out.exists() or list(out.iterdir()) == [], "a failed conversion left output behind"
    assert not list((tmp_path / "w").glob("kvmigrate-open-*")), "overlays left behind"
    assert tree_hashes(*guest.disks) == before
