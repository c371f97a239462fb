# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Look inside a guest with libguestfs: ``GuestInfo`` plus preflight findings.

Works on a launched handle whose drives are the read-only overlays of the
source; nothing here writes to the guest. Conversion reuses the same handle
(one appliance launch per guest) after ``inspect_guest_os``.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.convert.linux import guestnet
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.convert.linux.distro import (
    HYPERVISOR_FILES,
    guest_glob,
    guest_read,
    hypervisor_family,
    xen_driver_files,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.convert.linux.initramfs import (
    InitramfsUnreadable,
    read_initramfs,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import (
    Finding,
    GuestFilesystem,
    GuestInfo,
    GuestKernel,
    GuestNetConfig,
    Severity,
)

MiB = 1024 * 1024
# virt-v2v's thresholds: conversion needs room to rebuild the initramfs etc.
FREE_SPACE_NEEDED = {"/": 100 * MiB, "/boot": 50 * MiB}
FREE_SPACE_OTHER = 10 * MiB
FREE_INODES_NEEDED = 100
ESP_GPT_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
VIRTIO_MODULES = ("virtio_blk", "virtio_scsi", "virtio_net", "virtio_pci")


@dataclass
class InspectOptions:
    """``root``: ``single`` (the default: fail if several OSes), ``first`` or a device."""

    root: str = "single"
    luks_keys: list[str] = field(default_factory=list, repr=False)


@dataclass
class Inspection:
    guest: GuestInfo | None
    findings: list[Finding]


def _blocker(code: str, message: str, subject: str | None = None) -> Finding:
    return Finding(severity=Severity.BLOCKER, code=code, message=message, subject=subject)


def _warning(code: str, message: str, subject: str | None = None) -> Finding:
    return Finding(severity=Severity.WARNING, code=code, message=message, subject=subject)


def open_luks(g: Any, keys: list[str], fs: dict[str, str]) -> tuple[list[str], list[Finding]]:
    """Open every LUKS device with one of the keys; report those left closed."""
    findings: list[Finding] = []
    opened: list[str] = []
    luks_devices = [dev for dev, kind in fs.items() if kind == "crypto_LUKS"]
    for index, device in enumerate(luks_devices):
        for key in keys:
            try:
                g.cryptsetup_open(device, key, f"luks{index}")
            except RuntimeError:
                continue
            opened.append(device)
            break
        else:
            findings.append(_blocker(
                "encrypted-no-key",
                "the volume is encrypted with LUKS and no key given opens it; pass luks_keys", device))
    if opened:
        g.lvm_scan(True)
    return opened, findings


def choose_root(g: Any, roots: list[str], root: str) -> tuple[str | None, list[Finding]]:
    if not roots:
        return None, [_blocker("no-os", "no operating system was found on the disks "
                               "(a blank or data-only disk, or an encrypted root without a key)")]
    if root == "first":
        return roots[0], []
    if root == "single":
        if len(roots) > 1:
            names = ", ".join(f"{r} ({g.inspect_get_product_name(r)})" for r in roots)
            return None, [_blocker("multiple-os", f"several operating systems were found: {names}; "
                                   "choose one with root: first or root: <device>")]
        return roots[0], []
    canon = g.canonical_device_name(root) if root.startswith("/dev/") else root
    for candidate in roots:
        if candidate in (root, canon) or g.canonical_device_name(candidate) == canon:
            return candidate, []
    return None, [_blocker("root-not-found", f"root {root!r} is not one of the operating systems "
                           f"found: {', '.join(roots)}")]


def mount_guest(g: Any, root: str, *, readonly: bool = True) -> dict[str, str]:
    """Mount the guest's filesystems as its fstab does (shortest mount point first)."""
    mountpoints: dict[str, str] = g.inspect_get_mountpoints(root)
    for mountpoint, device in sorted(mountpoints.items(), key=lambda kv: len(kv[0])):
        try:
            if readonly:
                g.mount_ro(device, mountpoint)
            else:
                g.mount(device, mountpoint)
        except RuntimeError:
            # A mount point the appliance cannot mount (e.g. a missing disk) is
            # skipped; inspection reports what it did see.
            continue
    return mountpoints


def _exists(g: Any, path: str) -> bool:
    try:
        return bool(g.exists(path))
    except RuntimeError:
        return False


def initramfs_modules(g: Any, initrd: str) -> list[str] | None:
    """Kernel module names inside an initramfs (None when it cannot be read)."""
    if not _exists(g, initrd):
        return None
    with tempfile.TemporaryDirectory(prefix="kvmigrate-initrd-") as tmp:
        local = os.path.join(tmp, "initrd")
        g.download(initrd, local)
        try:
            return sorted(read_initramfs(local).module_names())
        except InitramfsUnreadable:
            return None


def _kernel_has_module(g: Any, moddir: str, module: str) -> bool:
    if (guest_glob(g, f"{moddir}/kernel/drivers/*/{module}.ko*")
            or guest_glob(g, f"{moddir}/kernel/drivers/*/*/{module}.ko*")):
        return True
    builtin = guest_read(g, f"{moddir}/modules.builtin") or ""
    return f"/{module}.ko" in builtin


def find_kernels(g: Any, *, look_in_initramfs: bool = True) -> list[GuestKernel]:
    kernels: list[GuestKernel] = []
    seen: set[str] = set()
    for moddir in sorted(guest_glob(g, "/lib/modules/*") + guest_glob(g, "/usr/lib/modules/*")):
        version = posixpath.basename(moddir.rstrip("/"))
        if version in seen or not g.is_dir(moddir):
            continue
        seen.add(version)
        image = next((p for p in (f"/boot/vmlinuz-{version}", f"/boot/vmlinux-{version}",
                                  f"/boot/bzImage-{version}", f"{moddir}/vmlinuz") if _exists(g, p)), None)
        initrd = next((p for p in (f"/boot/initrd.img-{version}", f"/boot/initramfs-{version}.img",
                                   f"/boot/initrd-{version}", f"/boot/initrd-{version}.img") if _exists(g, p)), None)
        has_virtio = all(_kernel_has_module(g, moddir, m) for m in ("virtio_blk", "virtio_net"))
        in_initramfs: bool | None = None
        if look_in_initramfs and initrd:
            modules = initramfs_modules(g, initrd)
            if modules is not None:
                builtin = guest_read(g, f"{moddir}/modules.builtin") or ""
                in_initramfs = "virtio_blk" in modules or "/virtio_blk.ko" in builtin
        kernels.append(GuestKernel(version=version, path=image, initrd=initrd,
                                   has_virtio_modules=has_virtio, virtio_in_initramfs=in_initramfs,
                                   xen_pv_only="xen" in version and not has_virtio))
    return kernels


def _bootloader(g: Any) -> str | None:
    for path, name in (("/boot/grub/grub.cfg", "grub2"), ("/boot/grub2/grub.cfg", "grub2"),
                       ("/boot/grub/menu.lst", "grub-legacy"), ("/boot/grub/grub.conf", "grub-legacy"),
                       ("/etc/grub.conf", "grub-legacy"), ("/boot/extlinux/extlinux.conf", "extlinux"),
                       ("/boot/syslinux/syslinux.cfg", "syslinux"), ("/boot/loader/loader.conf", "systemd-boot")):
        if _exists(g, path):
            return name
    if guest_glob(g, "/boot/efi/EFI/*/grub.cfg"):
        return "grub2"
    return None


def _init_system(g: Any) -> str | None:
    if _exists(g, "/sbin/init") and g.is_symlink("/sbin/init"):
        target = g.readlink("/sbin/init")
        if "systemd" in target:
            return "systemd"
    if _exists(g, "/lib/systemd/systemd") or _exists(g, "/usr/lib/systemd/systemd"):
        return "systemd"
    if _exists(g, "/sbin/upstart") or _exists(g, "/sbin/initctl"):
        return "upstart"
    if _exists(g, "/etc/inittab"):
        return "sysvinit"
    return None


def _firmware_in_use(g: Any, mountpoints: dict[str, str]) -> str:
    if "/boot/efi" in mountpoints or "/efi" in mountpoints:
        return "uefi"
    # parted is slow in the appliance (seconds per call under TCG): ask once per disk, not per partition.
    table_types: dict[str, str | None] = {}
    for partition in g.list_partitions():
        try:
            device = g.part_to_dev(partition)
            if device not in table_types:
                table_types[device] = g.part_get_parttype(device)
            if table_types[device] != "gpt":
                continue
            if g.part_get_gpt_type(device, g.part_to_partnum(partition)).upper() == ESP_GPT_TYPE:
                return "uefi"
        except RuntimeError:
            table_types.setdefault(partition, None)
            continue
    return "bios"


def _hypervisor_tools(g: Any, root: str) -> list[str]:
    """``family:name`` for each tool package, tarball uninstaller and Xen driver configuration found."""
    found: set[str] = set()
    try:
        apps = g.inspect_list_applications2(root)
    except RuntimeError:
        apps = []
    for app in apps:
        family = hypervisor_family(app["app2_name"])
        if family:
            found.add(f"{family}:{app['app2_name']}")
    for family, patterns in HYPERVISOR_FILES.items():
        for pattern in patterns:
            if guest_glob(g, pattern):
                found.add(f"{family}:{pattern.rsplit('/', 1)[-1]}")
    for path in xen_driver_files(g):
        found.add(f"xen:{path}")
    return sorted(found)


def guest_network(g: Any) -> list[GuestNetConfig]:
    configs: list[GuestNetConfig] = []
    for tool, patterns in guestnet.NET_CONFIG_GLOBS.items():
        for pattern in patterns:
            for path in sorted(guest_glob(g, pattern)):
                if not g.is_file(path):
                    continue
                text = guest_read(g, path)
                if text is not None:
                    configs.extend(guestnet.PARSERS[tool](text, path))
    return configs


def _filesystems(g: Any, mountpoints: dict[str, str], fs_types: dict[str, str]) -> list[GuestFilesystem]:
    by_device = {g.canonical_device_name(dev): mp for mp, dev in mountpoints.items()}
    result = []
    for device, kind in sorted(fs_types.items()):
        fs = GuestFilesystem(device=device, type=kind or None,
                             mountpoint=by_device.get(g.canonical_device_name(device)))
        if kind not in ("", "unknown", "swap", "crypto_LUKS", "LVM2_member"):
            for attr, getter in (("uuid", g.vfs_uuid), ("label", g.vfs_label)):
                with contextlib.suppress(RuntimeError):
                    setattr(fs, attr, getter(device) or None)
        if fs.mountpoint:
            try:
                st = g.statvfs(fs.mountpoint)
                fs.size_bytes = st["blocks"] * st["frsize"]
                fs.free_bytes = st["bavail"] * st["frsize"]
                fs.free_inodes = st["favail"]
            except RuntimeError:
                pass
        result.append(fs)
    return result


def _lvm(g: Any) -> dict[str, list[str]]:
    layout: dict[str, list[str]] = {vg: [] for vg in g.vgs()}
    for lv in g.lvs():
        vg = lv.split("/")[2] if lv.startswith("/dev/") else lv.split("/")[0]
        layout.setdefault(vg, []).append(lv)
    return layout


def preflight(guest: GuestInfo) -> list[Finding]:
    """Findings about a guest that inspection found (before anything is copied)."""
    findings: list[Finding] = []
    if guest.os_type == "windows":
        findings.append(_blocker("unsupported-os", "Windows guests cannot be converted yet: "
                                 "this version of kvmigrate.v2v converts Linux guests only"))
    elif guest.os_type != "linux":
        findings.append(_blocker("unsupported-os", f"the operating system type {guest.os_type!r} "
                                 "cannot be converted"))
    for fs in guest.filesystems:
        if not fs.mountpoint or fs.free_bytes is None:
            continue
        needed = FREE_SPACE_NEEDED.get(fs.mountpoint, FREE_SPACE_OTHER)
        if fs.free_bytes < needed:
            findings.append(_blocker(
                "not-enough-space",
                f"{fs.mountpoint} has {fs.free_bytes // MiB} MiB free; conversion needs at least "
                f"{needed // MiB} MiB there. Free space in the guest before converting", fs.device))
        if fs.free_inodes is not None and fs.free_inodes < FREE_INODES_NEEDED:
            findings.append(_blocker(
                "not-enough-inodes", f"{fs.mountpoint} has {fs.free_inodes} free inodes; conversion needs "
                f"at least {FREE_INODES_NEEDED}", fs.device))
    if guest.os_type == "linux":
        if not guest.kernels:
            findings.append(_blocker("no-kernel", "no installed kernel was found in the guest "
                                     "(/lib/modules is empty)"))
        elif not any(k.has_virtio_modules for k in guest.kernels):
            if all(k.xen_pv_only for k in guest.kernels):
                findings.append(_blocker("xen-pv-only", "the guest only has Xen paravirtualised kernels ("
                                         + ", ".join(k.version for k in guest.kernels)
                                         + "); install a regular kernel in the guest first"))
            else:
                findings.append(_blocker("no-virtio-kernel", "no installed kernel has virtio drivers ("
                                         + ", ".join(k.version for k in guest.kernels)
                                         + "); install a kernel with virtio support in the guest first"))
        elif any(k.virtio_in_initramfs is False for k in guest.kernels if k.has_virtio_modules):
            findings.append(_warning("virtio-not-in-initramfs", "the initramfs has no virtio drivers: "
                                     "the guest will not boot on virtio until it is converted"))
    if guest.hypervisor_tools:
        findings.append(_warning("hypervisor-tools", "hypervisor tools are installed and will be removed "
                                 "by conversion: " + ", ".join(guest.hypervisor_tools)))
    return findings


def _filesystem_state_findings(g: Any, fs_types: dict[str, str]) -> list[Finding]:
    findings: list[Finding] = []
    for device, kind in fs_types.items():
        if kind in ("ext2", "ext3", "ext4"):
            try:
                state = g.tune2fs_l(device).get("Filesystem state", "clean")
            except RuntimeError:
                continue
            if state.strip() != "clean":
                findings.append(_warning(
                    "dirty-filesystem", f"the filesystem was not unmounted cleanly (state {state!r}): was the "
                    "guest running or did it crash? Shut it down cleanly before converting", device))
        elif kind == "swap":
            try:
                signature = g.pread_device(device, 10, 4086)
            except RuntimeError:
                continue
            if signature.startswith(b"S1SUSPEND") or signature.startswith(b"S2SUSPEND"):
                findings.append(_blocker(
                    "hibernated", "the guest is hibernated (a resume image is in its swap); boot it and "
                    "shut it down fully before converting", device))
    return findings


def _vfs_type(g: Any, device: str) -> str:
    try:
        return g.vfs_type(device)
    except RuntimeError:
        return ""


def list_filesystems(g: Any) -> dict[str, str]:
    """Every filesystem-like device and its type, like ``guestfs.list_filesystems`` but cheaper.

    libguestfs' own call also scans for Windows dynamic disks and btrfs
    subvolumes and costs tens of seconds under TCG; ``inspect_os`` does that
    scan anyway. Here: whole disks without partitions, partitions (extended
    ones have no type and are left out), opened LUKS volumes, MD arrays and
    logical volumes when a device says it holds them. Types are blkid's (``crypto_LUKS``, ``swap``,
    ``LVM2_member``, ...); an unrecognised device is ``unknown``.
    """
    partitions = list(g.list_partitions())
    partitioned = {g.part_to_dev(p) for p in partitions}
    candidates = [d for d in g.list_devices() if d not in partitioned] + partitions
    found: dict[str, str] = {}
    for device in candidates:
        kind = _vfs_type(g, device)
        if kind or device not in partitions:
            found[device] = kind or "unknown"
    # Stacked devices, only when something says they exist: opened LUKS volumes
    # (device-mapper), MD arrays, then logical volumes on any of those.
    for kind, lister in (("crypto_LUKS", g.list_dm_devices), ("linux_raid_member", g.list_md_devices),
                         ("LVM2_member", g.lvs)):
        if kind in found.values():
            for device in lister():
                found[device] = _vfs_type(g, device) or "unknown"
    return found


def inspect_guest_os(g: Any, options: InspectOptions, *, mount_readonly: bool = True,
                     look_in_initramfs: bool = True) -> Inspection:
    """Inspect the launched handle: find, choose and mount the root, collect facts and findings."""
    findings: list[Finding] = []
    # Listing filesystems probes every device: slow under TCG, so once (again after LUKS opens).
    fs_types = list_filesystems(g)
    if any(k == "crypto_LUKS" for k in fs_types.values()):
        opened, luks_findings = open_luks(g, options.luks_keys, fs_types)
        findings.extend(luks_findings)
        luks_devices = [dev for dev, kind in fs_types.items() if kind == "crypto_LUKS"]
        if opened:
            fs_types = list_filesystems(g)
    else:
        luks_devices = []
    roots = list(g.inspect_os())
    root, root_findings = choose_root(g, roots, options.root)
    findings.extend(root_findings)
    if root is None:
        return Inspection(guest=None, findings=findings)
    guest = GuestInfo(
        root=root,
        os_type=g.inspect_get_type(root),
        distro=g.inspect_get_distro(root),
        major_version=g.inspect_get_major_version(root),
        minor_version=g.inspect_get_minor_version(root),
        product_name=g.inspect_get_product_name(root),
        arch=g.inspect_get_arch(root),
        hostname=g.inspect_get_hostname(root),
        package_format=g.inspect_get_package_format(root),
        package_manager=g.inspect_get_package_management(root),
    )
    guest.version = f"{guest.major_version}.{guest.minor_version}"
    for attr in ("distro", "arch", "hostname", "package_format", "package_manager", "product_name"):
        if getattr(guest, attr) == "unknown":
            setattr(guest, attr, None)
    findings.extend(_filesystem_state_findings(g, fs_types))
    guest.mountpoints = mount_guest(g, root, readonly=mount_readonly)
    guest.filesystems = _filesystems(g, guest.mountpoints, fs_types)
    guest.lvm = _lvm(g)
    guest.luks = luks_devices
    guest.firmware = _firmware_in_use(g, guest.mountpoints)
    if guest.os_type == "linux":
        guest.kernels = find_kernels(g, look_in_initramfs=look_in_initramfs)
        guest.bootloader = _bootloader(g)
        guest.init_system = _init_system(g)
        guest.network = guest_network(g)
    guest.hypervisor_tools = _hypervisor_tools(g, root)
    findings.extend(preflight(guest))
    return Inspection(guest=guest, findings=findings)
