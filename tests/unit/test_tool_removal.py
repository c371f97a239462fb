"""Hypervisor tool detection and the text edits of their removal, on text."""

from __future__ import annotations

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.convert.linux import converter
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.convert.linux.distro import hypervisor_family

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("package", "family"), [
    ("open-vm-tools", "vmware"), ("open-vm-tools-desktop", "vmware"), ("VMwareTools", "vmware"),
    ("vmware-tools-libraries-nox", "vmware"), ("xe-guest-utilities", "citrix"),
    ("xe-guest-utilities-xenstore", "citrix"), ("kmod-xenpv", "xen"), ("virtualbox-guest-x11", "virtualbox"),
    ("hyperv-daemons-license", "hyperv"), ("hypervkvpd", "hyperv"), ("prl-tools", "parallels"),
    ("kernel-xen", None), ("xen-tools", None), ("bash", None), ("open-vm", None),
])
def test_hypervisor_family(package: str, family: str | None) -> None:
    assert hypervisor_family(package) == family


def test_xen_aliases_become_virtio_and_one_host_adapter_is_kept_across_files() -> None:
    changes: list[str] = []
    first = "alias eth0 xennet\nalias scsi_hostadapter xenblk\nalias eth1 e1000\noptions loop max_loop=16\n"
    second = "alias scsi_hostadapter1 xen-vbd\n  alias eth1 xen-vnif   # PV\nalias xen-foo xen_netfront\n"
    assert converter._rewrite_xen_aliases(first, "virtio_scsi", changes) == (
        "alias eth0 virtio_net\nalias scsi_hostadapter virtio_scsi\nalias eth1 e1000\noptions loop max_loop=16\n", 2)
    assert converter._rewrite_xen_aliases(second, "virtio_scsi", changes) == ("alias eth1 virtio_net\n", 3)
    assert changes == ["alias eth0 xennet → virtio_net", "alias scsi_hostadapter xenblk → virtio_scsi",
                       "alias scsi_hostadapter1 xen-vbd removed", "alias eth1 xen-vnif → virtio_net",
                       "alias xen-foo xen_netfront removed"]


def test_suse_initrd_modules_lose_xen_modules() -> None:
    text = 'INITRD_MODULES="ata_piix xenblk ext3"\nDOMU_INITRD_MODULES="xennet xenblk"\nOTHER="xenblk"\n'
    assert converter._drop_xen_initrd_modules(text) == (
        'INITRD_MODULES="ata_piix ext3"\nDOMU_INITRD_MODULES=""\nOTHER="xenblk"\n', 3)


def test_vmware_repositories_are_disabled_others_kept() -> None:
    text = ("[vmware-tools]\nname=VMware Tools\nbaseurl=https://packages.vmware.com/tools/esx/latest/rhel9/x86_64\n"
            "enabled=1\n\n[vmware-noenabled]\nmirrorlist=http://vmware.com/list\n\n"
            "[baseos]\nbaseurl=https://dl.rockylinux.org/$contentdir/$releasever/BaseOS/$basearch/os/\nenabled=1\n")
    new, count = converter._disable_vmware_repositories(text)
    assert count == 2
    assert new.startswith("[vmware-tools]\nname=VMware Tools\nbaseurl=https://packages.vmware.com/tools/esx/latest/"
                          "rhel9/x86_64\nenabled=0\n")
    assert "[vmware-noenabled]\nenabled=0\nmirrorlist=" in new
    assert new.endswith("BaseOS/$basearch/os/\nenabled=1\n")
    assert converter._disable_vmware_repositories(new) == (new, 0)


def test_dpkg_depends_of_installed_packages() -> None:
    status = ("Package: ubuntu-server\nStatus: install ok installed\nDepends: open-vm-tools (>= 2:12) [amd64],\n"
              " libc6 (>= 2.34), hyperv-daemons | foo\nPre-Depends: dpkg:any\n\n"
              "Package: gone\nStatus: deinstall ok config-files\nDepends: open-vm-tools\n\n"
              "Package: open-vm-tools\nStatus: install ok installed\nDepends: libc6\n")
    assert converter._dpkg_installed_depends(status) == {
        "ubuntu-server": [{"open-vm-tools"}, {"libc6"}, {"hyperv-daemons", "foo"}, {"dpkg"}],
        "open-vm-tools": [{"libc6"}]}


def test_gettys_commented_by_xe_guest_utilities_come_back() -> None:
    text = "#1:2345:respawn:/sbin/mingetty tty1\n# 2:2345:respawn:/sbin/mingetty tty2\n#x:5:respawn:/etc/X11/prefdm\n"
    assert converter._uncomment_gettys(text) == (
        "1:2345:respawn:/sbin/mingetty tty1\n2:2345:respawn:/sbin/mingetty tty2\n#x:5:respawn:/etc/X11/prefdm\n", 2)
