"""A minimal Debian 12 tree made by debootstrap, cached as a tar archive.

This is the slow, network-bound step (about 2-4 minutes), so it is its own
cache entry: editing how the VMware guest is configured or exported
(``vmware_debian.py``) reuses the same tree. Docs, man pages, locales, apt's
caches and kernel modules no server VM needs (sound, media, wireless, ...)
are removed to keep the images small; storage, network, virtio and VMware
drivers all stay, because conversion has to find virtio drivers in the guest.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import ToolError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.process import require_tool, run_tool

from .cache import Recipe, ensure_built, log

MIRROR_ENV = "KVMIGRATE_DEBIAN_MIRROR"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
VARIANT = "minbase"
# dbus lets systemd-logind run, which powers the guest off on an ACPI power-button press, as on any
# real install: define_domain's state: shutdown relies on it.
PACKAGES = ("linux-image-amd64", "grub-pc", "systemd-sysv", "udev", "ifupdown", "iproute2", "open-vm-tools",
            "initramfs-tools", "kmod", "e2fsprogs", "lvm2", "zstd", "util-linux", "dbus")
# Kernel module directories no VMware server guest needs (relative to kernel/).
PRUNED_MODULE_DIRS = ("sound", "drivers/media", "drivers/infiniband", "drivers/staging", "drivers/iio",
                      "drivers/comedi", "drivers/net/wireless", "drivers/bluetooth", "net/bluetooth",
                      "net/mac80211", "net/wireless", "drivers/isdn")
PRUNED_PATHS = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian",
                "var/cache/apt", "var/lib/apt/lists", "var/cache/debconf/templates.dat-old",
                "var/log/bootstrap.log")
ROOTFS_TAR = "rootfs.tar"
CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
TAR_OPTIONS = ("--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls")


def recipe() -> Recipe:
    return Recipe(name="debian12-rootfs",
                  params={"suite": SUITE, "variant": VARIANT, "packages": list(PACKAGES),
                          "pruned_modules": list(PRUNED_MODULE_DIRS), "pruned_paths": list(PRUNED_PATHS)},
                  modules=("rootfs.py",))


def chroot(tree: Path, argv: list[str], *, input_text: str | None = None, timeout: float = 600) -> str:
    """Run a command of the guest inside its tree (no /proc or /dev needed for what we run)."""
    return run_tool(["chroot", str(tree), *argv], env=CHROOT_ENV, input_text=input_text, timeout=timeout,
                    subject=f"chroot {tree}")


def _debootstrap(tree: Path) -> None:
    require_tool("debootstrap", "debootstrap")
    if os.geteuid() != 0:
        raise ToolError(["debootstrap"], 1, "debootstrap needs root to build the test guest")
    mirror = os.environ.get(MIRROR_ENV, DEFAULT_MIRROR)
    argv = ["debootstrap", f"--variant={VARIANT}", f"--include={','.join(PACKAGES)}", "--components=main",
            "--merged-usr", SUITE, str(tree), mirror]
    log(f"debootstrap {SUITE} from {mirror} (a few minutes)")
    try:
        run_tool(argv, timeout=1800)
    except ToolError as exc:
        detail = ""
        debootstrap_log = tree / "debootstrap" / "debootstrap.log"
        if debootstrap_log.is_file():
            detail = "\n--- debootstrap.log (end) ---\n" + "\n".join(
                debootstrap_log.read_text(errors="replace").splitlines()[-30:])
        raise ToolError(exc.argv, exc.returncode, exc.stderr + detail,
                        hint=f"Check that {mirror} is reachable (set {MIRROR_ENV} for another mirror)") from exc


def _kernel_version(tree: Path) -> str:
    kernels = sorted(p.name.removeprefix("vmlinuz-") for p in (tree / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise RuntimeError(f"expected one kernel in {tree}/boot, found {kernels}")
    return kernels[0]


def _shrink(tree: Path, kernel: str) -> None:
    for rel in PRUNED_PATHS:
        path = tree / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
            path.mkdir()
        elif path.exists():
            path.unlink()
    (tree / "var/cache/apt/archives/partial").mkdir(parents=True)
    (tree / "var/lib/apt/lists/partial").mkdir(parents=True)
    moddir = tree / "usr/lib/modules" / kernel / "kernel"
    for rel in PRUNED_MODULE_DIRS:
        shutil.rmtree(moddir / rel, ignore_errors=True)
    chroot(tree, ["depmod", "-a", kernel])
    # Later package installs in the guest (conversion may add some) stay small too.
    (tree / "etc/dpkg/dpkg.cfg.d/01-kvmigrate-nodoc").write_text(
        "path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\n"
        "path-exclude /usr/share/locale/*\npath-include /usr/share/locale/locale.alias\n", encoding="utf-8")


def _build(tmp: Path) -> dict[str, Any]:
    tree = tmp / "tree"
    tree.mkdir()
    _debootstrap(tree)
    kernel = _kernel_version(tree)
    packages = chroot(tree, ["dpkg-query", "-W", "-f", "${Package} ${Version}\\n"])
    (tmp / "packages.txt").write_text(packages, encoding="utf-8")
    _shrink(tree, kernel)
    debian_version = (tree / "etc/debian_version").read_text(encoding="utf-8").strip()
    log("packing the tree into a tar archive")
    run_tool(["tar", "-C", str(tree), *TAR_OPTIONS, "-cf", str(tmp / ROOTFS_TAR), "."], timeout=900)
    shutil.rmtree(tree)
    versions = dict(line.split(" ", 1) for line in packages.splitlines() if " " in line)
    return {"tar": ROOTFS_TAR, "kernel_version": kernel, "debian_version": debian_version,
            "open_vm_tools": versions.get("open-vm-tools"), "package_count": len(versions)}


def build(*, force: bool = False) -> tuple[Path, dict[str, Any]]:
    """Return (path of rootfs.tar, facts), running debootstrap if not cached."""
    directory, manifest = ensure_built(recipe(), _build, force=force)
    facts: dict[str, Any] = manifest["facts"]
    return directory / facts["tar"], facts
