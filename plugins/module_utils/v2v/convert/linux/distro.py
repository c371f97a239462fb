# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Linux facts that inspection and conversion share.

Which installed packages and files are a hypervisor's guest tools, and where
a guest configures Xen paravirtual drivers: inspection reports them (the
``hypervisor-tools`` warning, ``GuestInfo.hypervisor_tools``), conversion
removes them. Works on a launched libguestfs handle with the guest mounted.
"""

from __future__ import annotations

import re
from typing import Any

# Installed packages that are a hypervisor's guest tools, by family. A trailing "*" is a
# prefix: these families ship many sub-packages (open-vm-tools-desktop, -sdmp, ...).
# Not here on purpose: kernel-xen (a kernel: it stays, and conversion boots another one),
# xen-tools (Debian's dom0 tool that creates Xen guests, not a guest tool), and
# vmware-tools-libraries-* (see converter.py: they replace core libraries).
HYPERVISOR_PACKAGES: dict[str, tuple[str, ...]] = {
    "vmware": ("open-vm-tools", "open-vm-tools-*", "vmware-tools-*", "VMwareTools", "kmod-vmware-tools*",
               "vmware-guest-kmp-*", "libvmtools0"),
    "xen": ("kmod-xenpv*", "xenstore-utils", "xe-daemon", "xen-guest-agent"),
    "citrix": ("xe-guest-utilities*",),
    "virtualbox": ("virtualbox-guest-*", "virtualbox-kmp-*", "VirtualBox-guest-additions",
                   "virtualbox-guest-additions"),
    "hyperv": ("hyperv-daemons*", "hypervkvpd", "hypervvssd", "hypervfcopyd", "hyperv-tools",
               "hv-kvp-daemon-init", "linux-cloud-tools-common"),
    "parallels": ("parallels-tools", "prl-tools*"),
}
# Packages the patterns above match that are not removed: they provide core libraries
# whose replacements would have to come from the network.
HYPERVISOR_PACKAGES_KEPT = ("vmware-tools-libraries-*",)
# Tools installed from a tarball or an ISO leave files rather than packages.
HYPERVISOR_FILES: dict[str, tuple[str, ...]] = {
    "vmware": ("/etc/vmware-tools/locations", "/usr/bin/vmware-uninstall-tools.pl"),
    "virtualbox": ("/var/lib/VBoxGuestAdditions/config", "/opt/VBoxGuestAdditions-*/uninstall.sh",
                   "/usr/sbin/vbox-uninstall-guest-additions"),
    "parallels": ("/usr/lib/parallels-tools/install",),
}
# Xen paravirtual drivers: a modprobe alias that names one (``alias eth0 xennet``,
# ``alias scsi_hostadapter xenblk``) loads a driver that finds no device on KVM.
XEN_PV_MODULES = ("xennet", "xen-vnif", "xen_vnif", "xenblk", "xen-vbd", "xen_vbd", "xen-netfront",
                  "xen_netfront", "xen-blkfront", "xen_blkfront", "xen-platform-pci", "xen_platform_pci")
MODPROBE_FILES = ("/etc/modprobe.conf", "/etc/modprobe.conf.local", "/etc/modules.conf", "/etc/conf.modules",
                  "/etc/modprobe.d/*")
XEN_ALIAS = re.compile(r"^[ \t]*alias[ \t]+(\S+)[ \t]+(" + "|".join(re.escape(m) for m in XEN_PV_MODULES)
                       + r")[ \t]*(?:#.*)?$", re.MULTILINE)
# SUSE lists the modules of its initrd here; DOMU_INITRD_MODULES is for Xen guests.
SUSE_KERNEL_SYSCONFIG = "/etc/sysconfig/kernel"
SUSE_INITRD_VARIABLES = ("INITRD_MODULES", "DOMU_INITRD_MODULES")


def hypervisor_family(package: str) -> str | None:
    """The hypervisor whose guest tools ``package`` is, or None."""
    for family, patterns in HYPERVISOR_PACKAGES.items():
        for pattern in patterns:
            if package == pattern or (pattern.endswith("*") and package.startswith(pattern[:-1])):
                return family
    return None


def xen_driver_files(g: Any) -> list[str]:
    """The modprobe and SUSE initrd configuration files that still name a Xen PV driver."""
    found = []
    for pattern in MODPROBE_FILES:
        for path in sorted(guest_glob(g, pattern)):
            if g.is_file(path) and XEN_ALIAS.search(guest_read(g, path) or ""):
                found.append(path)
    text = guest_read(g, SUSE_KERNEL_SYSCONFIG) or ""
    for variable in SUSE_INITRD_VARIABLES:
        match = re.search(rf'^\s*{variable}\s*=\s*"([^"]*)"', text, re.MULTILINE)
        if match and set(match.group(1).split()) & set(XEN_PV_MODULES):
            found.append(SUSE_KERNEL_SYSCONFIG)
            break
    return found


def guest_glob(g: Any, pattern: str) -> list[str]:
    """Paths in the guest matching ``pattern``; none when libguestfs cannot expand it."""
    try:
        return list(g.glob_expand(pattern))
    except RuntimeError:
        return []


def guest_read(g: Any, path: str) -> str | None:
    """A guest file's text, or None when it cannot be read."""
    try:
        return g.cat(path)
    except RuntimeError:
        return None
