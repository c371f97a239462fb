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

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.convert import devices
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import ConversionError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import GuestInfo, GuestKernel, Source

# Storage drivers only: the root filesystem needs them in the initramfs. The
# NIC driver loads from the real root, where the interface-name pins apply.
VIRTIO_DRIVERS = ("virtio_pci", "virtio_blk", "virtio_scsi")
# Files that name block devices; the installed boot menus come last so that a
# regenerated menu is rewritten again after regeneration.
DEVICE_NAME_FILES = (
    "/etc/fstab", "/etc/crypttab", "/etc/default/grub", "/etc/sysconfig/grub",
    "/etc/initramfs-tools/conf.d/resume", "/etc/uswsusp.conf", "/etc/sysconfig/bootloader",
    "/etc/grub.conf", "/boot/grub/menu.lst", "/boot/grub/grub.conf",
    "/boot/grub2/grubenv", "/boot/grub/grubenv",
)
BOOT_MENU_FILES = ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg")
BLS_ENTRIES = "/boot/loader/entries/*.conf"
CONSOLE_FILES = ("/etc/inittab", "/etc/securetty", "/etc/default/grub", "/boot/grub/menu.lst",
                 "/boot/grub/grub.conf", "/etc/grub.conf")
STALE_CACHES = ("/etc/lvm/devices/system.devices", "/etc/blkid.tab", "/etc/blkid/blkid.tab",
                "/etc/lvm/cache/.cache")
LINK_FILE = "/etc/systemd/network/10-kvmigrate-{name}.link"
UDEV_RULES = "/etc/udev/rules.d/70-kvmigrate-net-names.rules"
FIRSTBOOT_DIR = "/usr/local/lib/kvmigrate"
FIRSTBOOT_UNIT = "/etc/systemd/system/kvmigrate-firstboot.service"
_VERSION_SPLIT = re.compile(r"(\d+)")


@dataclass
class LinuxConvertOptions:
    block_driver: str = "virtio-blk"
    guest_agent_packages: str | None = None
    remove_tools: bool = True


@dataclass
class ConversionReport:
    """What conversion did: one named step per change, plus warnings."""

    steps: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    network: list[dict[str, str]] = field(default_factory=list)
    kernel: str | None = None


def _version_key(version: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in _VERSION_SPLIT.split(version)]


def choose_kernel(kernels: list[GuestKernel]) -> GuestKernel:
    """The newest installed kernel that has virtio drivers: the one that will boot."""
    usable = [k for k in kernels if k.has_virtio_modules and not k.xen_pv_only]
    if not usable:
        raise ConversionError("no installed kernel has virtio drivers",
                              hint="Install a kernel with virtio support in the guest, then convert again")
    return max(usable, key=lambda k: _version_key(k.version))


class LinuxConverter:
    """Edits one mounted Linux guest. ``g`` is a launched libguestfs handle."""

    def __init__(self, g: Any, guest: GuestInfo, source: Source, options: LinuxConvertOptions) -> None:
        self.g = g
        self.guest = guest
        self.source = source
        self.options = options
        self.report = ConversionReport()
        self.family = self._family()

    # -- helpers -------------------------------------------------------
    def _family(self) -> str:
        if self.guest.package_format == "deb" or self.g.exists("/usr/sbin/update-initramfs"):
            return "debian"
        if self.guest.distro in ("sles", "suse-based", "opensuse"):
            return "suse"
        return "redhat"

    def _run(self, argv: list[str], what: str) -> str:
        try:
            return self.g.command(argv)
        except RuntimeError as exc:
            raise ConversionError(f"{what} failed inside the guest: {exc}", subject=self.source.name,
                                  hint="See the conversion log; the source was not changed") from exc

    def _exists(self, path: str) -> bool:
        return bool(self.g.exists(path))

    def _read(self, path: str) -> str | None:
        if not self._exists(path) or not self.g.is_file(path):
            return None
        return self.g.read_file(path).decode("utf-8", "surrogateescape")

    def _write(self, path: str, text: str) -> None:
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
    def remove_hypervisor_tools(self) -> None:
        tools = self.guest.hypervisor_tools
        if not tools or not self.options.remove_tools:
            return
        packages = sorted({t.split(":", 1)[1] for t in tools if "." not in t.split(":", 1)[1]
                           and "/" not in t and not t.endswith(".sh")})
        installed = {a["app2_name"] for a in self._applications()}
        packages = [p for p in packages if p in installed]
        if packages:
            if self.family == "debian":
                self._run(["/usr/bin/env", "DEBIAN_FRONTEND=noninteractive", "dpkg", "--purge", *packages],
                          f"removing {', '.join(packages)}")
            else:
                self._run(["rpm", "-e", "--nodeps", *packages], f"removing {', '.join(packages)}")
            self.report.steps.append(f"removed hypervisor tools: {', '.join(packages)}")
        for uninstaller in ("/usr/bin/vmware-uninstall-tools.pl",
                            *self.g.glob_expand("/opt/VBoxGuestAdditions-*/uninstall.sh")):
            if self._exists(uninstaller):
                self._run([uninstaller], f"running {uninstaller}")
                self.report.steps.append(f"ran the tools uninstaller {uninstaller}")

    def _applications(self) -> list[dict[str, Any]]:
        try:
            return list(self.g.inspect_list_applications2(self.guest.root))
        except RuntimeError:
            return []

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
        changed = [p for p in CONSOLE_FILES if self._edit(p, devices.rewrite_consoles)]
        if changed:
            self.report.steps.append(f"changed Xen/Hyper-V consoles to ttyS0 in {', '.join(changed)}")

    def remove_stale_caches(self) -> None:
        removed = [p for p in STALE_CACHES if self._exists(p) and self.g.is_file(p)]
        for path in removed:
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
        cached = []
        if self.family == "debian":
            cached = self.g.glob_expand("/var/cache/apt/archives/qemu-guest-agent_*.deb")
        else:
            cached = (self.g.glob_expand("/var/cache/dnf/*/packages/qemu-guest-agent-*.rpm")
                      + self.g.glob_expand("/var/cache/yum/*/*/packages/qemu-guest-agent-*.rpm"))
        if cached:
            tool = ["dpkg", "-i"] if self.family == "debian" else ["rpm", "-i", "--nodeps"]
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
        self.g.ln_sf(FIRSTBOOT_UNIT, "/etc/systemd/system/multi-user.target.wants/kvmigrate-firstboot.service")
        self.report.steps.append("scheduled qemu-guest-agent installation at first boot")
        self.report.warnings.append("qemu-guest-agent is not cached in the guest: it will be installed at first "
                                    "boot, which needs the guest's package repositories to be reachable")

    def ensure_virtio_initramfs(self) -> None:
        kernel = choose_kernel(self.guest.kernels)
        self.report.kernel = kernel.version
        drivers = " ".join(VIRTIO_DRIVERS)
        if self.family == "debian":
            modules_file = "/etc/initramfs-tools/modules"
            current = self._read(modules_file) or ""
            missing = [m for m in VIRTIO_DRIVERS if not re.search(rf"^\s*{m}\b", current, re.MULTILINE)]
            if missing:
                text = current if current.endswith("\n") or not current else current + "\n"
                self._write(modules_file, text + "# Added by kvmigrate.v2v for KVM\n" + "\n".join(missing) + "\n")
            self._run(["update-initramfs", "-u", "-k", kernel.version], "update-initramfs")
        elif self.g.exists("/usr/bin/dracut") or self.g.exists("/sbin/dracut") or self.g.exists("/usr/sbin/dracut"):
            self._write("/etc/dracut.conf.d/90-kvmigrate-virtio.conf",
                        "# Written by kvmigrate.v2v: keep virtio drivers in every initramfs\n"
                        f'add_drivers+=" {drivers} "\n')
            initrd = kernel.initrd or f"/boot/initramfs-{kernel.version}.img"
            self._run(["dracut", "-f", "--add-drivers", drivers, initrd, kernel.version], "dracut")
        elif self.g.exists("/sbin/mkinitrd"):
            self._run(["/sbin/mkinitrd", "-m", drivers, "-k", kernel.path or f"/boot/vmlinuz-{kernel.version}",
                       "-i", kernel.initrd or f"/boot/initrd-{kernel.version}"], "mkinitrd")
        else:
            raise ConversionError("the guest has no initramfs tool (update-initramfs, dracut or mkinitrd)",
                                  subject=self.source.name)
        self.report.steps.append(f"rebuilt the initramfs of {kernel.version} with {drivers}")

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


def convert_linux(g: Any, guest: GuestInfo, source: Source, options: LinuxConvertOptions) -> ConversionReport:
    """Convert the mounted guest on ``g``; raise ConversionError on failure."""
    if guest.os_type != "linux":
        raise ConversionError(f"not a Linux guest ({guest.os_type})")
    return LinuxConverter(g, guest, source, options).convert()
