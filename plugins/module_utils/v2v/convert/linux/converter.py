# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Convert a Linux guest for KVM, inside the libguestfs appliance, on the overlay.

The handle is the same one inspection used (one launch per guest), with the
guest's filesystems mounted read-write. Each step records what it changed so
the module can report it. The order matters: tools are removed and files
rewritten first, then the initramfs and the boot menu are regenerated, so
they include every change.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import posixpath
import re
import tempfile
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.convert.base import (
    ConversionReport,
    Converter,
    GuestConvertOptions,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.convert.linux import devices, initramfs
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.convert.linux.distro import (
    HYPERVISOR_PACKAGES_KEPT,
    SUSE_INITRD_VARIABLES,
    SUSE_KERNEL_SYSCONFIG,
    XEN_ALIAS,
    XEN_PV_MODULES,
    hypervisor_family,
    xen_driver_files,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import ConversionError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import GuestInfo, GuestKernel, Source

# What the initramfs needs on KVM: the PCI transport, both block drivers (the root
# filesystem), and the NIC driver (for guests that bring the network up early:
# NFS/iSCSI root, dracut's ip=, clevis/tang unlocking).
VIRTIO_DRIVERS = ("virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net")
# Files that name block devices; the installed boot menus come last so that a
# regenerated menu is rewritten again after regeneration.
DEVICE_NAME_FILES = (
    "/etc/fstab", "/etc/crypttab", "/etc/default/grub", "/etc/sysconfig/grub",
    "/etc/initramfs-tools/conf.d/resume", "/etc/uswsusp.conf", "/etc/sysconfig/bootloader", "/etc/kernel/cmdline",
    "/etc/grub.conf", "/boot/grub/menu.lst", "/boot/grub/grub.conf",
    "/boot/grub2/grubenv", "/boot/grub/grubenv",
)
BOOT_MENU_FILES = ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg")
BLS_ENTRIES = "/boot/loader/entries/*.conf"
# Where a console is named: getty/securetty, the kernel command line in the GRUB defaults,
# GRUB legacy menus, grubenv's kernelopts (RHEL 8), /etc/kernel/cmdline (kernel-install),
# the installed GRUB 2 menus, and the BLS entries (globbed at run time).
CONSOLE_FILES = ("/etc/inittab", "/etc/securetty", "/etc/default/grub", "/etc/sysconfig/grub",
                 "/boot/grub/menu.lst", "/boot/grub/grub.conf", "/etc/grub.conf", "/etc/kernel/cmdline",
                 "/boot/grub2/grubenv", "/boot/grub/grubenv", "/boot/grub/grub.cfg", "/boot/grub2/grub.cfg")
STALE_CACHES = ("/etc/lvm/devices/system.devices", "/etc/blkid.tab", "/etc/blkid/blkid.tab",
                "/etc/lvm/cache/.cache")
LINK_FILE = "/etc/systemd/network/10-kvmigrate-{name}.link"
UDEV_RULES = "/etc/udev/rules.d/70-kvmigrate-net-names.rules"
FIRSTBOOT_DIR = "/usr/local/lib/kvmigrate"
FIRSTBOOT_UNIT = "/etc/systemd/system/kvmigrate-firstboot.service"
_VERSION_SPLIT = re.compile(r"(\d+)")
# What an initramfs is built from besides the files it copies as they are: a change under one
# of these means a rebuilt initramfs would differ, so the existing one is not kept.
INITRAMFS_INPUTS = (
    "/etc/initramfs-tools/", "/usr/share/initramfs-tools/", "/etc/dracut.conf", "/etc/dracut.conf.d/",
    "/usr/lib/dracut/", "/etc/crypttab", "/etc/modprobe.d/", "/lib/modprobe.d/", "/usr/lib/modprobe.d/",
    "/etc/modules-load.d/", "/etc/udev/", "/lib/udev/", "/usr/lib/udev/", "/etc/lvm/", "/etc/mdadm",
    "/etc/multipath", "/etc/iscsi/", "/etc/sysconfig/kernel", "/etc/sysconfig/mkinitrd", "/etc/kernel/cmdline",
    "/etc/cmdline.d/", "/lib/modules/", "/usr/lib/modules/", "/etc/systemd/network/", "/lib/systemd/network/",
    "/usr/lib/systemd/network/", "/etc/clevis", "/etc/dropbear",
)
# Of a removed package's files, those that make a rebuilt initramfs differ even when it does not
# hold them: the initramfs tools' configuration and hooks, modprobe settings, kernel modules.
INITRAMFS_TOOL_FILES = (
    "/etc/initramfs-tools/", "/usr/share/initramfs-tools/", "/etc/dracut.conf", "/etc/dracut.conf.d/",
    "/usr/lib/dracut/", "/etc/modprobe.d/", "/lib/modprobe.d/", "/usr/lib/modprobe.d/", "/lib/modules/",
    "/usr/lib/modules/", "/etc/mkinitrd", "/lib/mkinitrd/",
)
# What conversion writes that the initramfs need not hold: the virtio driver lists (the
# existing initramfs is kept only when it has those drivers), the interface name pins (udev
# applies them again on the root filesystem), the first-boot agent installation, and
# policy-rc.d (gone again). The pins do matter to an initramfs that brings up the network.
INITRAMFS_NOT_NEEDED = (
    "/etc/initramfs-tools/modules", "/etc/dracut.conf.d/90-kvmigrate-virtio.conf", "/etc/systemd/network/10-kvmigrate-",
    UDEV_RULES, FIRSTBOOT_DIR + "/", FIRSTBOOT_UNIT, "/etc/systemd/system/multi-user.target.wants/kvmigrate-",
    "/usr/sbin/policy-rc.d",
)
# An initramfs that brings up the network (network root, disk unlocking over the network, SSH in
# the initramfs) and the kernel options that make it do so.
# (What the initramfs holds for that, not kernel modules: MODULES=most has iscsi_tcp.ko anyway.)
INITRAMFS_NETWORK_PATHS = ("etc/iscsi/", "sbin/iscsistart", "usr/sbin/iscsistart", "bin/clevis", "usr/bin/clevis",
                           "etc/clevis", "etc/dropbear", "etc/tinyssh", "usr/sbin/dropbear", "sbin/dropbear")
NETWORK_BOOT_OPTION = re.compile(r"(?:^|[\s\"'])(?:ip=|netroot=|rd\.neednet|root=/dev/nfs|nfsroot=|rd\.iscsi)")
# A file removed by the guest's package manager, whose earlier content was not read.
_REMOVED_BY_PACKAGE = b"\0removed by the package manager"


# Hypervisor tools: what their removal reads and runs (what they are is in distro.py).
DPKG_STATUS = "/var/lib/dpkg/status"
POLICY_RC_D = "/usr/sbin/policy-rc.d"
TOOL_REPOSITORY_DIRS = ("/etc/yum.repos.d", "/etc/zypp/repos.d")
INITTAB = "/etc/inittab"
VMWARE_UNINSTALLER = "/usr/bin/vmware-uninstall-tools.pl"
VMWARE_LOCATIONS = "/etc/vmware-tools/locations"
VMWARE_RAMDISK_ANSWERS = ("RESTORE_RAMDISK_CMD", "RESTORE_RAMDISK_KERNELS", "RESTORE_RAMDISK_ONECALL")
VMWARE_LEFTOVERS = (VMWARE_UNINSTALLER, VMWARE_LOCATIONS, "/etc/init.d/vmware-tools",
                    "/usr/lib/vmware-tools", "/etc/systemd/system/vmware-tools.service")
VBOX_CONFIG = "/var/lib/VBoxGuestAdditions/config"
VBOX_UNINSTALL_GLOB = "/opt/VBoxGuestAdditions-*/uninstall.sh"
VBOX_UNINSTALL_LINK = "/usr/sbin/vbox-uninstall-guest-additions"
VBOX_LEFTOVERS = ("/etc/init.d/vboxadd", "/etc/init.d/vboxadd-service", "/lib/systemd/system/vboxadd*.service",
                  "/usr/lib/systemd/system/vboxadd*.service", "/etc/systemd/system/vboxadd*.service",
                  "/lib/modules/*/misc/vbox*.ko*", "/usr/lib/modules/*/misc/vbox*.ko*", VBOX_CONFIG)
PARALLELS_INSTALLER = "/usr/lib/parallels-tools/install"
PARALLELS_LEFTOVERS = ("/usr/lib/parallels-tools", "/etc/init.d/prltoolsd", "/usr/lib/systemd/system/prltoolsd.service",
                       "/etc/systemd/system/prltoolsd.service")
_NET_ALIAS = re.compile(r"(eth|en)\w*$")
_VMWARE_BASEURL = re.compile(r"^\s*(baseurl|mirrorlist)\s*=\s*https?://([^/\s]+\.)?vmware\.com/", re.MULTILINE)
_DEPENDS_FIELD = re.compile(r"^(Pre-Depends|Depends):(.*(?:\n[ \t].*)*)", re.MULTILINE)
_GETTY_COMMENTED = re.compile(r"^#[ \t]*([1-6]:[2-5]+:respawn:.*getty.*)$", re.MULTILINE)


def _rewrite_xen_aliases(text: str, block: str, changes: list[str]) -> tuple[str, int]:
    """NIC aliases to virtio_net, the first SCSI host adapter alias to the virtio block driver, drop the rest.

    ``changes`` collects what was done, across every file: the converted guest has one
    disk controller, so only the first ``scsi_hostadapter`` alias of all files is kept.
    """
    count = 0
    first_adapter = not any(c.startswith("alias scsi_hostadapter") and "→" in c for c in changes)

    def replace(match: re.Match[str]) -> str:
        nonlocal count, first_adapter
        name, module = match.group(1), match.group(2)
        count += 1
        if _NET_ALIAS.match(name):
            changes.append(f"alias {name} {module} → virtio_net")
            return f"alias {name} virtio_net"
        if name.startswith("scsi_hostadapter") and first_adapter:
            first_adapter = False
            changes.append(f"alias {name} {module} → {block}")
            return f"alias {name} {block}"
        changes.append(f"alias {name} {module} removed")
        return "\0"

    new = XEN_ALIAS.sub(replace, text)
    return new.replace("\0\n", "").replace("\0", ""), count


def _drop_xen_initrd_modules(text: str) -> tuple[str, int]:
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        modules = match.group(2).split()
        kept = [m for m in modules if m not in XEN_PV_MODULES]
        count += len(modules) - len(kept)
        return f'{match.group(1)}"{" ".join(kept)}"'

    variables = "|".join(SUSE_INITRD_VARIABLES)
    return re.sub(rf'^(\s*(?:{variables})\s*=\s*)"([^"]*)"', replace, text, flags=re.MULTILINE), count


def _disable_vmware_repositories(text: str) -> tuple[str, int]:
    """``enabled=0`` in each ini section whose baseurl/mirrorlist is on vmware.com."""
    sections = re.split(r"(?m)^(?=\[)", text)
    count = 0
    for index, section in enumerate(sections):
        if not _VMWARE_BASEURL.search(section):
            continue
        if re.search(r"(?m)^\s*enabled\s*=\s*0\s*$", section):
            continue
        count += 1
        if re.search(r"(?m)^\s*enabled\s*=", section):
            sections[index] = re.sub(r"(?m)^(\s*enabled\s*=\s*).*$", r"\g<1>0", section)
        else:
            head, _sep, rest = section.partition("\n")
            sections[index] = f"{head}\nenabled=0\n{rest}"
    return "".join(sections), count


def _dpkg_installed_depends(status: str) -> dict[str, list[set[str]]]:
    """Installed package → its Depends/Pre-Depends as sets of alternatives, from dpkg's status file."""
    result: dict[str, list[set[str]]] = {}
    for stanza in re.split(r"\n\s*\n", status):
        name = re.search(r"^Package:\s*(\S+)", stanza, re.MULTILINE)
        state = re.search(r"^Status:\s*(.*)$", stanza, re.MULTILINE)
        if not name or not state or not state.group(1).strip().endswith(" installed"):
            continue
        groups = []
        for match in _DEPENDS_FIELD.finditer(stanza):
            for group in match.group(2).replace("\n", " ").split(","):
                names = {re.split(r"[\s(:]", alt.strip(), maxsplit=1)[0] for alt in group.split("|")}
                names.discard("")
                if names:
                    groups.append(names)
        result[name.group(1)] = groups
    return result


def _uncomment_gettys(text: str) -> tuple[str, int]:
    return _GETTY_COMMENTED.subn(r"\1", text)


def agent_packages(directory: str, suffix: str) -> list[str]:
    """The package files (``.deb`` or ``.rpm``) in ``directory``, sorted; they must include qemu-guest-agent."""
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(suffix)
                       and os.path.isfile(os.path.join(directory, n)))
    except OSError as exc:
        raise ConversionError(f"cannot read guest_agent_packages: {exc.strerror}", subject=directory) from exc
    if names and not any(n.startswith("qemu-guest-agent") for n in names):
        raise ConversionError(f"guest_agent_packages has {suffix} packages but none is qemu-guest-agent",
                              subject=directory, hint="Add the qemu-guest-agent package for the guest's release")
    return [os.path.join(directory, n) for n in names]


def _version_key(version: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in _VERSION_SPLIT.split(version)]


def _module_name(path: str) -> str:
    """``virtio_blk`` for ``kernel/drivers/block/virtio_blk.ko.xz`` (``-`` and ``_`` are the same to modprobe)."""
    return posixpath.basename(path.strip()).split(".ko", 1)[0].replace("-", "_")


def _initramfs_names(path: str) -> list[str]:
    """Where a guest file would be inside an initramfs (usr-merged or not: /lib and /usr/lib both)."""
    rel = path.lstrip("/")
    for top in ("lib/", "lib64/", "bin/", "sbin/"):
        if rel.startswith(top):
            return [rel, "usr/" + rel]
        if rel.startswith("usr/" + top):
            return [rel, rel[4:]]
    return [rel]


def choose_kernel(kernels: list[GuestKernel]) -> GuestKernel:
    """The newest installed kernel that has virtio drivers: the one that will boot."""
    usable = [k for k in kernels if k.has_virtio_modules and not k.xen_pv_only]
    if not usable:
        raise ConversionError("no installed kernel has virtio drivers",
                              hint="Install a kernel with virtio support in the guest, then convert again")
    return max(usable, key=lambda k: _version_key(k.version))


class LinuxConversion:
    """Edits one mounted Linux guest. ``g`` is a launched libguestfs handle."""

    def __init__(self, g: Any, guest: GuestInfo, source: Source, options: GuestConvertOptions) -> None:
        self.g = g
        self.guest = guest
        self.source = source
        self.options = options
        self.report = ConversionReport()
        self.family = self._family()
        # Every guest file this conversion wrote or removed, with its content before (None: it did
        # not exist), and the changes whose files are not known (package installs, vendor
        # uninstallers): both decide whether an initramfs can be kept as it is.
        self._changed: dict[str, bytes | None] = {}
        self._unknown_changes: list[str] = []

    # -- helpers -------------------------------------------------------
    def _family(self) -> str:
        if self.guest.package_format == "deb" or self.g.exists("/usr/sbin/update-initramfs"):
            return "debian"
        if self.guest.distro in ("sles", "suse-based", "opensuse"):
            return "suse"
        return "redhat"

    def _log(self, line: str) -> None:
        if self.options.log is not None:
            self.options.log(line)

    def _run(self, argv: list[str], what: str) -> str:
        self._log("in the guest: " + " ".join(argv))
        try:
            output = self.g.command(argv)
        except RuntimeError as exc:
            self._log(f"{what} failed: {exc}")
            raise ConversionError(f"{what} failed inside the guest: {exc}", subject=self.source.name,
                                  hint="See the conversion log; the source was not changed") from exc
        if output.strip():
            self._log(output.rstrip())
        return output

    def _exists(self, path: str) -> bool:
        return bool(self.g.exists(path))

    def _read(self, path: str) -> str | None:
        if not self._exists(path) or not self.g.is_file(path):
            return None
        return self.g.read_file(path).decode("utf-8", "surrogateescape")

    def _remember(self, path: str) -> None:
        """Keep a file's content from before its first change (for the initramfs decision)."""
        if path not in self._changed:
            self._changed[path] = (self.g.read_file(path) if self._exists(path) and self.g.is_file(path)
                                   else None)

    def _write(self, path: str, text: str) -> None:
        self._remember(path)
        self.g.mkdir_p(posixpath.dirname(path))
        self.g.write(path, text.encode("utf-8", "surrogateescape"))

    def _edit(self, path: str, edit: Any) -> int:
        text = self._read(path)
        if text is None:
            return 0
        new, count = edit(text)
        if count and new != text:
            self._write(path, new)
            return count
        return 0

    # -- steps ---------------------------------------------------------
    # -- hypervisor tools ------------------------------------------------
    def remove_hypervisor_tools(self) -> None:
        """Remove every hypervisor's guest tools with the guest's own tools, then its Xen PV driver settings.

        Runs first, before any other edit: the VirtualBox uninstaller puts back
        configuration files it saved at install time, and package scripts may
        edit what later steps edit too. Everything runs inside the appliance,
        which has no network: maintainer scripts that need one fail.

        The Xen PV driver settings are not optional (``remove_tools`` does not
        keep them): a modprobe alias to ``xennet`` or ``xenblk`` makes the
        guest load a driver that finds no device on KVM, and keeps the virtio
        one from being loaded in its place.
        """
        if self.options.remove_tools:
            self._disable_vendor_repositories()
            self._remove_tool_packages()
            self._run_tool_uninstallers()
        self._unconfigure_xen_drivers()

    def _applications(self) -> list[dict[str, Any]]:
        """The guest's installed packages, read again now (an earlier step may have removed some)."""
        try:
            return list(self.g.inspect_list_applications2(self.guest.root))
        except RuntimeError:
            return []

    def _disable_vendor_repositories(self) -> None:
        """Turn off yum/zypper repositories on vmware.com: the tools come from there, and they are gone."""
        changed = []
        for directory in TOOL_REPOSITORY_DIRS:
            for path in sorted(self.g.glob_expand(f"{directory}/*.repo")):
                if self._edit(path, _disable_vmware_repositories):
                    changed.append(path)
        if changed:
            self.report.steps.append(f"disabled VMware package repositories in {', '.join(changed)}")

    def _remove_tool_packages(self) -> None:
        installed = sorted({a["app2_name"] for a in self._applications()})
        packages = [p for p in installed if hypervisor_family(p)]
        kept = [p for p in packages if any(fnmatch.fnmatchcase(p, k) for k in HYPERVISOR_PACKAGES_KEPT)]
        for package in kept:
            self.report.warnings.append(
                f"kept {package}: it replaces core libraries, and installing the replacements needs the "
                "network; remove it in the guest after conversion")
        packages = [p for p in packages if p not in kept]
        if packages and self.family == "debian":
            needed = self._dpkg_needed_by_others(packages)
            for package, users in sorted(needed.items()):
                self.report.warnings.append(
                    f"kept {package}: {', '.join(users)} depends on it (it does nothing on KVM; remove both "
                    "in the guest if they are not wanted)")
            packages = [p for p in packages if p not in needed]
        if not packages:
            return
        # A failing package manager is an error, not a warning: its scripts stopped half
        # way (dpkg then marks the package half-configured and every later apt run asks
        # for a repair), and the guest would be delivered with tools that were reported
        # as removed. Conversion works on a throw-away overlay, so stopping costs nothing
        # and leaves the source as it was.
        if self.family == "debian":
            argv = ["/usr/bin/env", "DEBIAN_FRONTEND=noninteractive", "dpkg", "--purge", *packages]
            self._remember_dpkg_files(packages)
            with self._services_held():
                self._remove_with(argv, packages)
            tool = "dpkg --purge"
        else:
            # A Berkeley DB environment left by the source's rpm can make this rpm hang or
            # fail (RHBZ#1143866); rpm recreates it.
            for stale in self.g.glob_expand("/var/lib/rpm/__db.00?"):
                self.g.rm_f(stale)
            # --nodeps: the tools' own sub-packages go in the same transaction, and nothing
            # else in a distribution needs them; a dependency check could only stop the
            # conversion for a package that does nothing on KVM.
            argv = ["rpm", "-e", "--nodeps", *packages]
            self._unknown_changes.append(f"rpm -e {' '.join(packages)}")
            self._remove_with(argv, packages)
            tool = "rpm -e"
        self.report.steps.append(f"removed hypervisor tools: {', '.join(packages)} (with {tool})")
        if any(p.startswith("xe-guest-utilities") for p in packages):
            self._restore_inittab_gettys()

    def _remember_dpkg_files(self, packages: list[str]) -> None:
        """Note the files dpkg is about to remove (its lists); removal scripts that touch boot files are unknown."""
        for package in packages:
            info = "/var/lib/dpkg/info/"
            for listing in [f"{info}{package}.list", *self.g.glob_expand(f"{info}{package}:*.list")]:
                for line in (self._read(listing) or "").splitlines():
                    if line.startswith("/") and line != "/.":
                        self._changed.setdefault(line, _REMOVED_BY_PACKAGE)
            for script in [f"{info}{package}.{s}" for s in ("prerm", "postrm")] + [
                    p for s in ("prerm", "postrm") for p in self.g.glob_expand(f"{info}{package}:*.{s}")]:
                if re.search(r"initramfs|dracut|mkinitrd|modprobe|/etc/udev", self._read(script) or ""):
                    self._unknown_changes.append(f"the removal scripts of {package}")

    def _remove_with(self, argv: list[str], packages: list[str]) -> None:
        try:
            self._run(argv, f"removing {', '.join(packages)}")
        except ConversionError as exc:
            raise ConversionError(
                f"the guest's package manager could not remove the hypervisor tools {', '.join(packages)} "
                f"({' '.join(argv)}): {exc.__cause__ or exc}", subject=self.source.name,
                hint="Its scripts run inside the conversion appliance, without network and without running "
                     "services. Fix or remove the package in the source guest, then convert again; the source "
                     "was not changed") from exc

    def _dpkg_needed_by_others(self, packages: list[str]) -> dict[str, list[str]]:
        """Tool packages that a package staying installed depends on (e.g. ubuntu-server on open-vm-tools)."""
        depends = _dpkg_installed_depends(self._read(DPKG_STATUS) or "")
        removing = set(packages)
        needed: dict[str, list[str]] = {}
        changed = True
        while changed:  # a tool kept for another package keeps the tools it depends on
            changed = False
            for user, groups in depends.items():
                if user in removing:
                    continue
                for group in groups:
                    if group <= removing:  # every alternative would go: keep them
                        for package in sorted(group):
                            needed.setdefault(package, []).append(user)
                        removing -= group
                        changed = True
        return needed

    @contextlib.contextmanager
    def _services_held(self) -> Any:  # an Iterator[None], as contextmanager wants
        """Debian's policy-rc.d 101 while dpkg runs: maintainer scripts then neither start nor stop services."""
        if self._exists(POLICY_RC_D):
            yield
            return
        self._write(POLICY_RC_D, "#!/bin/sh\n# kvmigrate.v2v: no service starts or stops during conversion\nexit 101\n")
        self.g.chmod(0o755, POLICY_RC_D)
        try:
            yield
        finally:
            self._remember(POLICY_RC_D)
            self.g.rm_f(POLICY_RC_D)

    def _restore_inittab_gettys(self) -> None:
        """xe-guest-utilities comments out the gettys of /etc/inittab when it is installed: put them back."""
        if self._edit(INITTAB, _uncomment_gettys):
            self.report.steps.append("re-enabled the gettys in /etc/inittab that xe-guest-utilities had disabled")

    def _run_tool_uninstallers(self) -> None:
        """Run the uninstallers of tools installed from a tarball or an ISO (VMware, VirtualBox, Parallels).

        A failure is a warning, not an error: these vendor scripts are not
        transactional anyway, often fail in a chroot where no service runs,
        and what they leave behind does not stop the guest from booting on
        KVM (their services and modules only start on their own hypervisor).
        The warning says what is left.
        """
        if self.g.is_file(VMWARE_UNINSTALLER, followsymlinks=True):
            locations = self._read(VMWARE_LOCATIONS)
            if locations is not None:
                # The uninstaller would otherwise rebuild the initramfs of every kernel it knew,
                # from saved copies; conversion rebuilds the right one itself afterwards.
                extra = "".join(f"remove_answer {a}\n" for a in VMWARE_RAMDISK_ANSWERS
                                if f"remove_answer {a}\n" not in locations)
                if extra:
                    self._write(VMWARE_LOCATIONS, (locations if locations.endswith("\n") or not locations
                                                   else locations + "\n") + extra)
            # SUSE's mkinitrd, which the uninstaller may run, finds the root device from rootdev.
            argv = (["/usr/bin/env", f"rootdev={self.guest.root}", VMWARE_UNINSTALLER] if self.family == "suse"
                    else [VMWARE_UNINSTALLER])
            self._run_uninstaller("VMware Tools", VMWARE_UNINSTALLER, argv, VMWARE_LEFTOVERS)
        vbox = self._vbox_uninstaller()
        if vbox:
            self._run_uninstaller("VirtualBox Guest Additions", vbox, [vbox], VBOX_LEFTOVERS)
        if self.g.is_file(PARALLELS_INSTALLER, followsymlinks=True):
            self._run_uninstaller("Parallels Tools", PARALLELS_INSTALLER, [PARALLELS_INSTALLER, "-r"],
                                  PARALLELS_LEFTOVERS)

    def _vbox_uninstaller(self) -> str | None:
        """The Guest Additions' uninstall.sh: from INSTALL_DIR in their config, else the usual places."""
        candidates = []
        config = self._read(VBOX_CONFIG) or ""
        match = re.search(r"^INSTALL_DIR=(['\"]?)(/[^'\"\n]*)\1\s*$", config, re.MULTILINE)
        if match:
            candidates.append(posixpath.join(match.group(2), "uninstall.sh"))
        candidates += sorted(self.g.glob_expand(VBOX_UNINSTALL_GLOB), reverse=True)
        candidates.append(VBOX_UNINSTALL_LINK)
        return next((c for c in candidates if self.g.is_file(c, followsymlinks=True)), None)

    def _run_uninstaller(self, tools: str, script: str, argv: list[str], leftovers: tuple[str, ...]) -> None:
        failed = None
        self._unknown_changes.append(f"the {tools} uninstaller")
        try:
            self._run(argv, f"the {tools} uninstaller")
        except ConversionError as exc:
            failed = str(exc.__cause__ or exc)
        left = sorted({p for pattern in leftovers for p in self.g.glob_expand(pattern)})
        if failed is None:
            self.report.steps.append(f"removed {tools} with {' '.join(argv[argv.index(script):])}")
            if left:
                self.report.warnings.append(f"the {tools} uninstaller left {', '.join(left)}; they do nothing on KVM")
            return
        self.report.warnings.append(
            f"{tools} were found but their uninstaller failed ({failed}); left in the guest: "
            f"{', '.join(left) or 'nothing known'}. They only start on their own hypervisor; remove them in the "
            "guest after conversion")

    def _unconfigure_xen_drivers(self) -> None:
        block = "virtio_scsi" if self.options.block_driver == "virtio-scsi" else "virtio_blk"
        changed: list[str] = []
        changes: list[str] = []

        def aliases(text: str) -> tuple[str, int]:
            return _rewrite_xen_aliases(text, block, changes)

        for path in xen_driver_files(self.g):
            if self._edit(path, _drop_xen_initrd_modules if path == SUSE_KERNEL_SYSCONFIG else aliases):
                changed.append(path)
        if changed:
            what = f" ({', '.join(changes)})" if changes else ""
            self.report.steps.append(f"removed the Xen PV drivers from {', '.join(changed)}{what}")

    # -- the other steps -------------------------------------------------
    def rewrite_device_names(self) -> None:
        name_map = devices.build_name_map([d.bus for d in self.source.disks], self.options.block_driver)

        def edit(text: str) -> tuple[str, int]:
            return devices.rewrite_device_names(text, name_map, self.options.block_driver)

        paths = [*DEVICE_NAME_FILES, *BOOT_MENU_FILES, *self.g.glob_expand(BLS_ENTRIES)]
        changed = [p for p in paths if self._edit(p, edit)]
        if changed:
            pairs = ", ".join(f"{k}→{v}" for k, v in name_map.items() if k != v)
            self.report.steps.append(f"rewrote device names ({pairs}) in {', '.join(changed)}")

    def fix_consoles(self) -> None:
        paths = [*CONSOLE_FILES, *self.g.glob_expand(BLS_ENTRIES)]
        changed = [p for p in paths if self._edit(p, devices.rewrite_consoles)]
        if changed:
            self.report.steps.append(f"changed Xen/Hyper-V consoles to ttyS0 in {', '.join(changed)}")

    def remove_stale_caches(self) -> None:
        removed = [p for p in STALE_CACHES if self._exists(p) and self.g.is_file(p)]
        for path in removed:
            self._remember(path)
            self.g.rm(path)
        if removed:
            self.report.steps.append(f"removed stale device caches: {', '.join(removed)}")

    def keep_network_names(self) -> None:
        """Pin each configured interface name to its NIC's MAC, so its configuration still applies."""
        configured = []
        for config in self.guest.network:
            if config.interface and config.interface != "lo" and config.interface not in configured:
                configured.append(config.interface)
        if not configured:
            return
        by_mac = {c.mac: c.interface for c in self.guest.network if c.mac and c.interface}
        nics = [n for n in self.source.nics if n.mac]
        if not nics:
            self.report.warnings.append(
                "the source describes no NIC MAC address, so the interface names "
                f"{', '.join(configured)} cannot be pinned; the guest may need its network configuration "
                "adjusted to the new virtio interface name")
            return
        pins: list[tuple[str, str]] = []
        unmatched = [name for name in configured if name not in by_mac.values()]
        for nic in nics:
            mac = (nic.mac or "").lower()
            name = by_mac.get(mac) or (unmatched.pop(0) if unmatched else None)
            if name:
                pins.append((mac, name))
        systemd = self.guest.init_system == "systemd"
        rules = []
        for mac, name in pins:
            if systemd:
                path = LINK_FILE.format(name=name)
                self._write(path, "# Written by kvmigrate.v2v: keep the interface name the guest had\n"
                            f"[Match]\nMACAddress={mac}\n\n[Link]\nName={name}\n")
            else:
                path = UDEV_RULES
                rules.append(f'SUBSYSTEM=="net", ACTION=="add", ATTR{{address}}=="{mac}", NAME="{name}"')
            self.report.network.append({"interface": name, "mac": mac, "method": "pinned", "file": path})
        if rules:
            self._write(UDEV_RULES, "# Written by kvmigrate.v2v: keep the interface names the guest had\n"
                        + "\n".join(rules) + "\n")
        if pins:
            self.report.steps.append("pinned interface names to their MAC addresses: "
                                     + ", ".join(f"{n}={m}" for m, n in pins))
        for name in unmatched:
            self.report.warnings.append(f"the guest configures {name} but no source NIC is left for it")

    def install_guest_agent(self) -> None:
        apps = {a["app2_name"] for a in self._applications()}
        if "qemu-guest-agent" in apps:
            return
        if self.options.guest_agent_packages:
            self._install_agent_from(self.options.guest_agent_packages)
            return
        cached = []
        if self.family == "debian":
            cached = self.g.glob_expand("/var/cache/apt/archives/qemu-guest-agent_*.deb")
        else:
            cached = (self.g.glob_expand("/var/cache/dnf/*/packages/qemu-guest-agent-*.rpm")
                      + self.g.glob_expand("/var/cache/yum/*/*/packages/qemu-guest-agent-*.rpm"))
        if cached:
            tool = ["dpkg", "-i"] if self.family == "debian" else ["rpm", "-i", "--nodeps"]
            self._unknown_changes.append(f"installing {posixpath.basename(cached[-1])}")
            self._run([*tool, cached[-1]], "installing qemu-guest-agent")
            self.report.steps.append(f"installed qemu-guest-agent from {cached[-1]}")
            return
        if self.guest.init_system != "systemd":
            self.report.warnings.append("qemu-guest-agent is not installed and could not be installed offline")
            return
        installer = {"debian": "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y qemu-guest-agent",
                     "redhat": "(dnf -y install qemu-guest-agent || yum -y install qemu-guest-agent)",
                     "suse": "zypper --non-interactive install qemu-guest-agent"}[self.family]
        self._write(f"{FIRSTBOOT_DIR}/install-guest-agent.sh",
                    "#!/bin/sh\n# Written by kvmigrate.v2v: install the QEMU guest agent once the network works.\n"
                    f"{installer} && systemctl enable --now qemu-guest-agent && "
                    f"systemctl disable kvmigrate-firstboot.service && rm -f {FIRSTBOOT_UNIT}\n")
        self.g.chmod(0o755, f"{FIRSTBOOT_DIR}/install-guest-agent.sh")
        self._write(FIRSTBOOT_UNIT,
                    "[Unit]\nDescription=kvmigrate.v2v first boot: install qemu-guest-agent\n"
                    "Wants=network-online.target\nAfter=network-online.target\n\n"
                    f"[Service]\nType=oneshot\nExecStart={FIRSTBOOT_DIR}/install-guest-agent.sh\n\n"
                    "[Install]\nWantedBy=multi-user.target\n")
        self.g.mkdir_p("/etc/systemd/system/multi-user.target.wants")
        self._remember("/etc/systemd/system/multi-user.target.wants/kvmigrate-firstboot.service")
        self.g.ln_sf(FIRSTBOOT_UNIT, "/etc/systemd/system/multi-user.target.wants/kvmigrate-firstboot.service")
        self.report.steps.append("scheduled qemu-guest-agent installation at first boot")
        self.report.warnings.append("qemu-guest-agent is not cached in the guest: it will be installed at first "
                                    "boot, which needs the guest's package repositories to be reachable")

    def _install_agent_from(self, directory: str) -> None:
        """Install qemu-guest-agent (and the dependencies beside it) from a directory on the conversion host."""
        suffix = ".deb" if self.family == "debian" else ".rpm"
        packages = agent_packages(directory, suffix)
        if not packages:
            raise ConversionError(f"guest_agent_packages has no {suffix} packages for this "
                                  f"{self.family}-family guest", subject=directory,
                                  hint=f"Put qemu-guest-agent{suffix} and its dependencies there, or leave "
                                       "guest_agent_packages unset to install it at first boot")
        staging = "/var/tmp/kvmigrate-guest-agent"
        self.g.mkdir_p(staging)
        try:
            inside = []
            for path in packages:
                target = posixpath.join(staging, os.path.basename(path))
                self.g.upload(path, target)
                inside.append(target)
            tool = (["/usr/bin/env", "DEBIAN_FRONTEND=noninteractive", "dpkg", "-i"] if self.family == "debian"
                    else ["rpm", "-U", "--replacepkgs"])
            self._unknown_changes.append("installing the packages of guest_agent_packages")
            self._run([*tool, *inside], "installing qemu-guest-agent from guest_agent_packages")
        finally:
            self.g.rm_rf(staging)
        names = ", ".join(os.path.basename(p) for p in packages)
        self.report.steps.append(f"installed qemu-guest-agent from {directory} ({names})")

    def ensure_virtio_initramfs(self) -> None:
        """Put the virtio drivers in the initramfs of every kernel that can boot on KVM.

        The newest one boots by default; the others stay in the boot menu as
        fallbacks, and a fallback that cannot find its root disk is a trap.
        The driver lists are also written to the guest's configuration, so a
        later kernel update keeps them (``MODULES=list`` and dracut
        ``hostonly`` included).

        An initramfs is kept as it is when it already holds the virtio drivers
        (with the modules they depend on) and nothing it was built from or
        holds a copy of was changed by this conversion (``initramfs_kept``):
        Debian and Ubuntu's default ``MODULES=most`` has them, and rebuilding
        costs minutes without hardware virtualization. ``rebuild_initramfs``
        rebuilds every one, as virt-v2v does.
        """
        kernel = choose_kernel(self.guest.kernels)
        self.report.kernel = kernel.version
        usable = sorted((k for k in self.guest.kernels if k.has_virtio_modules and not k.xen_pv_only),
                        key=lambda k: _version_key(k.version), reverse=True)
        skipped = [k.version for k in self.guest.kernels if k not in usable]
        drivers = " ".join(VIRTIO_DRIVERS)
        if self.family == "debian":
            modules_file = "/etc/initramfs-tools/modules"
            current = self._read(modules_file) or ""
            missing = [m for m in VIRTIO_DRIVERS if not re.search(rf"^\s*{m}\b", current, re.MULTILINE)]
            if missing:
                text = current if current.endswith("\n") or not current else current + "\n"
                self._write(modules_file, text + "# Added by kvmigrate.v2v for KVM\n" + "\n".join(missing) + "\n")
            tool = "update-initramfs"
        elif self.g.exists("/usr/bin/dracut") or self.g.exists("/sbin/dracut") or self.g.exists("/usr/sbin/dracut"):
            self._write("/etc/dracut.conf.d/90-kvmigrate-virtio.conf",
                        "# Written by kvmigrate.v2v: keep virtio drivers in every initramfs\n"
                        f'add_drivers+=" {drivers} "\n')
            tool = "dracut"
        elif self.g.exists("/sbin/mkinitrd"):
            tool = "mkinitrd"
        else:
            raise ConversionError("the guest has no initramfs tool (update-initramfs, dracut or mkinitrd)",
                                  subject=self.source.name)
        rebuilt, kept = [], []
        for k in usable:
            reason = "rebuild_initramfs is set" if self.options.rebuild_initramfs else self._initramfs_rebuild_reason(k)
            if reason is None:
                kept.append(k.version)
                self._log(f"initramfs of {k.version} kept: it has the virtio drivers and holds nothing this "
                          "conversion changed")
                continue
            self._log(f"initramfs of {k.version} is rebuilt: {reason}")
            rebuilt.append(k.version)
            if tool == "update-initramfs":
                self._run(["update-initramfs", "-u", "-k", k.version], f"update-initramfs for {k.version}")
            elif tool == "dracut":
                initrd = k.initrd or f"/boot/initramfs-{k.version}.img"
                self._run(["dracut", "-f", "--add-drivers", drivers, initrd, k.version], f"dracut for {k.version}")
            else:
                self._run(["/sbin/mkinitrd", "-m", drivers, "-k", k.path or f"/boot/vmlinuz-{k.version}",
                           "-i", k.initrd or f"/boot/initrd-{k.version}"], f"mkinitrd for {k.version}")
        if rebuilt:
            self.report.steps.append(f"rebuilt the initramfs of {', '.join(rebuilt)} with {drivers}")
        if kept:
            self.report.steps.append(f"kept the initramfs of {', '.join(kept)}: it already has the virtio drivers")
        if skipped:
            self.report.warnings.append(
                f"kernel {', '.join(skipped)} has no virtio drivers (or is Xen PV only) and cannot boot on KVM; "
                f"it stays installed: boot {kernel.version} or another kernel with virtio drivers")

    def _virtio_module_files(self, version: str) -> list[str] | None:
        """modules.dep paths of the virtio drivers and what they depend on (None: no modules.dep).

        Built-in drivers need no file; a driver this kernel does not have is
        left out (a rebuild could not add it either).
        """
        moddir = next((d for d in (f"/lib/modules/{version}", f"/usr/lib/modules/{version}")
                       if self._exists(f"{d}/modules.dep")), None)
        if moddir is None:
            return None
        builtin = {_module_name(line) for line in (self._read(f"{moddir}/modules.builtin") or "").split()}
        depends: dict[str, list[str]] = {}
        for line in (self._read(f"{moddir}/modules.dep") or "").splitlines():
            module, _colon, needs = line.partition(":")
            if module.strip():
                depends[_module_name(module)] = [module.strip(), *needs.split()]
        paths = [path for driver in VIRTIO_DRIVERS if driver not in builtin for path in depends.get(driver, [])]
        return list(dict.fromkeys(paths))  # drivers share dependencies (virtio.ko, virtio_ring.ko): each once

    def _removed_file_reason(self, path: str, image: initramfs.Initramfs) -> str | None:
        """Why a file dpkg listed for a removed package needs a rebuild (None: it does not).

        A removed file matters when the initramfs holds it, or when it is part
        of the initramfs tools' own configuration, hooks or kernel modules. A
        udev rule or a unit of the package that the initramfs does not hold
        does not: the initramfs tools copy only the rules they name.
        """
        if self.g.is_dir(path) or self._exists(path):
            return None  # dpkg's lists name shared directories (/lib, /etc) too; what is still there stayed
        if path.startswith(INITRAMFS_TOOL_FILES):
            return f"this conversion removed {path} (with its package), which it is built from"
        for rel in _initramfs_names(path):
            mode = image.files.get(rel)
            if mode is not None and mode & 0o170000 != 0o040000:
                return f"it holds {path}, which this conversion removed with its package"
        return None

    def _initramfs_rebuild_reason(self, kernel: GuestKernel) -> str | None:
        """Why the initramfs of ``kernel`` must be rebuilt, or None when the one installed boots on KVM as it is."""
        if self._unknown_changes:
            return f"{self._unknown_changes[0]} may have changed what it is built from"
        if not kernel.initrd or not self._exists(kernel.initrd):
            return "there is none"
        needed = self._virtio_module_files(kernel.version)
        if needed is None:
            return "the kernel has no modules.dep to check the virtio drivers against"
        wanted = {rel for path in self._changed for rel in _initramfs_names(path)}
        with tempfile.TemporaryDirectory(prefix="kvmigrate-initrd-") as tmp:
            local = os.path.join(tmp, "initrd")
            self.g.download(kernel.initrd, local)
            try:
                image = initramfs.read_initramfs(local, wanted)
            except initramfs.InitramfsUnreadable as exc:
                return f"{kernel.initrd} could not be read ({exc})"
        absent = [posixpath.basename(m) for m in needed if not image.has_module_file(kernel.version, m)]
        if absent:
            return f"it lacks {', '.join(absent)}"
        network = any(path.startswith(INITRAMFS_NETWORK_PATHS) for path in image.files) or any(
            NETWORK_BOOT_OPTION.search(self._read(f) or "") for f in ("/etc/default/grub", "/etc/kernel/cmdline"))
        for path, before in sorted(self._changed.items()):
            if before == _REMOVED_BY_PACKAGE:
                reason = self._removed_file_reason(path, image)
                if reason:
                    return reason
                continue
            pin = path == UDEV_RULES or path.startswith("/etc/systemd/network/10-kvmigrate-")
            if path.startswith(INITRAMFS_NOT_NEEDED) and not (network and pin):
                continue
            if path.startswith(INITRAMFS_INPUTS):
                return f"this conversion changed {path}, which it is built from"
            for rel in _initramfs_names(path):
                mode = image.files.get(rel)
                if mode is None or mode & 0o170000 == 0o040000:
                    continue
                if before is None or image.contents.get(rel) == before:
                    return f"it holds {path}, which this conversion changed"
        return None

    def regenerate_boot_menu(self) -> None:
        if self.guest.bootloader != "grub2":
            return
        for tool, output in (("update-grub", None), ("grub2-mkconfig", "/boot/grub2/grub.cfg"),
                             ("grub-mkconfig", "/boot/grub/grub.cfg")):
            for prefix in ("/usr/sbin/", "/sbin/", "/usr/bin/"):
                if self._exists(prefix + tool):
                    argv = [prefix + tool] + (["-o", output] if output else [])
                    self._run(argv, tool)
                    self.report.steps.append(f"regenerated the boot menu with {tool}")
                    self._remap_appliance_names()
                    return
        self.report.warnings.append("no grub-mkconfig in the guest: the boot menu was edited in place only")

    def _remap_appliance_names(self) -> None:
        """grub-mkconfig probed the appliance kernel's disk names: map them to the target names.

        The appliance's kernel names disks in probe order, which is not always
        the order libguestfs added them. So for every mounted partition, ask
        grub-probe (as grub-mkconfig did) which kernel name it has, and map
        that disk to the target name of the drive libguestfs knows it as.
        """
        name_map = devices.build_name_map(["scsi"] * len(self.source.disks), self.options.block_driver)
        for mountpoint, device in self.guest.mountpoints.items():
            try:
                index = self.g.device_index(self.g.part_to_dev(device))
                probed = self.g.command(["grub-probe", "--target=device", mountpoint]).strip()
            except RuntimeError:
                continue
            match = re.fullmatch(r"/dev/((?:sd|vd|hd)[a-z]+)\d*", probed)
            if match:
                name_map[match.group(1)] = devices.target_disk_name(index, self.options.block_driver)

        def edit(text: str) -> tuple[str, int]:
            return devices.rewrite_device_names(text, name_map, self.options.block_driver)

        for path in BOOT_MENU_FILES:
            self._edit(path, edit)

    def ensure_uefi_fallback(self) -> None:
        if self.guest.firmware != "uefi" or not self._exists("/boot/efi/EFI"):
            return
        fallback = "/boot/efi/EFI/BOOT/BOOTX64.EFI"
        if self._exists(fallback):
            return
        for candidate in ("shimx64.efi", "grubx64.efi"):
            found = self.g.glob_expand(f"/boot/efi/EFI/*/{candidate}")
            if found:
                self.g.mkdir_p("/boot/efi/EFI/BOOT")
                self.g.cp(found[0], fallback)
                if candidate == "shimx64.efi":
                    grub = posixpath.join(posixpath.dirname(found[0]), "grubx64.efi")
                    if self._exists(grub):
                        self.g.cp(grub, "/boot/efi/EFI/BOOT/grubx64.efi")
                self.report.steps.append(f"created the UEFI fallback boot loader from {found[0]}")
                return
        self.report.warnings.append("no EFI boot loader found to create the fallback path EFI/BOOT/BOOTX64.EFI")

    def selinux_relabel(self) -> None:
        config = self._read("/etc/selinux/config") or ""
        if re.search(r"^\s*SELINUX\s*=\s*(enforcing|permissive)", config, re.MULTILINE):
            self.g.touch("/.autorelabel")
            self.report.steps.append("scheduled an SELinux relabel at first boot")

    def convert(self) -> ConversionReport:
        self.remove_hypervisor_tools()
        self.rewrite_device_names()
        self.fix_consoles()
        self.remove_stale_caches()
        self.keep_network_names()
        self.install_guest_agent()
        self.ensure_uefi_fallback()
        self.ensure_virtio_initramfs()
        self.regenerate_boot_menu()
        self.selinux_relabel()
        return self.report


class LinuxConverter(Converter):
    """Linux guests: hypervisor tools out, device names and consoles, network names kept, virtio in the initramfs."""

    family = "linux"

    def planned_steps(self, guest: GuestInfo, options: GuestConvertOptions) -> list[str]:
        steps = []
        if guest.hypervisor_tools:
            steps.append("remove hypervisor tools: " + ", ".join(guest.hypervisor_tools))
        steps += ["rewrite block device names for " + options.block_driver,
                  "pin network interface names to their MAC addresses",
                  "add virtio drivers to the initramfs and regenerate the boot menu"]
        return steps

    def convert(self, handle: Any, guest: GuestInfo, source: Source, options: GuestConvertOptions) -> ConversionReport:
        if guest.os_type != "linux":
            raise ConversionError(f"not a Linux guest ({guest.os_type})")
        return LinuxConversion(handle, guest, source, options).convert()
