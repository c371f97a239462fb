"""Phony guests that carry every hypervisor's guest tools, for the tool removal tests.

Each is a copy of a phony guest (see ``phony.py``, ``convertible.py``) with
tools installed the way each vendor installs them: as packages in the guest's
package database, from a tarball (VMware Tools), from an ISO (VirtualBox Guest
Additions), with a vendor installer (Parallels Tools), plus the Xen PV driver
settings a Xen guest has in its modprobe configuration.

Conversion runs the guest's own programs inside the appliance, so the guests
hold small shell scripts in their place. These are RECORDING STAND-INS FOR THE
GUEST'S OWN TOOLS (``dpkg``, ``rpm``, the vendors' uninstallers,
``update-initramfs``), not for libguestfs, which is real: every one appends
its argv to ``TOOL_LOG`` inside the guest, then does what the real tool does
to the files a test checks:

- ``dpkg --purge``: runs the package's ``prerm``, deletes the files in its
  ``.list``, runs ``postrm``, and removes its stanza from
  ``/var/lib/dpkg/status``; a failing ``prerm`` leaves the package installed
  and makes dpkg exit 1, as dpkg does;
- ``rpm -e``: runs the package's %preun/%postun and deletes its files (kept in
  ``RPM_META`` beside the database, because the phony rpm headers hold no
  scripts or file lists), then deletes its rows from ``rpmdb.sqlite`` with the
  host's ``sqlite3`` copied into the guest, so librpm (and libguestfs
  inspection) no longer lists it;
- the uninstallers delete what their vendor's uninstaller deletes.

A shell (the host's ``dash``), ``rm``, ``env`` and ``sqlite3`` with their
libraries are copied in so the scripts run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.appliance import Appliance, DriveSpec

from . import convertible, phony
from .cache import Recipe, ensure_built, qemu_slot
from .phony import ROCKY_PACKAGES, PhonyGuest
from .rpmdb import RpmPackage, write_rpmdb

TOOL_LOG = "/var/log/kvmigrate-phony-tools.log"
RPM_META = "/var/lib/kvmigrate-phony/rpm"
DEBIAN_KERNEL = "6.1.0-18-amd64"
ROCKY_KERNEL = convertible.KERNELS["phony-rocky9"][0]
WANTS = "/etc/systemd/system/multi-user.target.wants"
_VIRTIO_FILES = ("kernel/drivers/block/virtio_blk.ko.xz", "kernel/drivers/scsi/virtio_scsi.ko.xz",
                 "kernel/drivers/net/virtio_net.ko.xz", "kernel/drivers/virtio/virtio_pci.ko.xz")

_LOGGER = (f'#!/bin/sh\n# Recording stand-in for the guest\'s {{tool}} (phony guest).\n'
           f'echo "{{tool}} $*" >> {TOOL_LOG}\n')

_DPKG = f"""#!/bin/sh
# Recording stand-in for the guest's dpkg (phony guest): logs its argv, and for
# --purge/--remove does what dpkg does to the files: prerm, the .list, postrm, status.
INFO=/var/lib/dpkg/info
STATUS=/var/lib/dpkg/status
echo "dpkg $* DEBIAN_FRONTEND=${{DEBIAN_FRONTEND:-unset}}" >> {TOOL_LOG}
[ -x /usr/sbin/policy-rc.d ] && echo "dpkg: policy-rc.d present" >> {TOOL_LOG}
mode=
for a in "$@"; do case "$a" in --purge|-P) mode=purge;; --remove|-r) mode=remove;; esac; done
[ -n "$mode" ] || exit 0
installed() {{
  while IFS= read -r l; do [ "$l" = "Package: $1" ] && return 0; done < $STATUS
  return 1
}}
status=0
removed=
for p in "$@"; do
  case "$p" in -*|*=*) continue;; esac
  if ! installed "$p"; then echo "dpkg: warning: ignoring request to remove $p which isn't installed" >&2; continue; fi
  if [ -f $INFO/$p.prerm ] && ! sh $INFO/$p.prerm remove; then
    echo "dpkg: error processing package $p (--$mode):" >&2
    echo " installed $p package pre-removal script subprocess returned error exit status 1" >&2
    status=1
    continue
  fi
  if [ -f $INFO/$p.list ]; then
    while IFS= read -r f; do
      if [ -d "$f" ] && [ ! -L "$f" ]; then :; else rm -f "$f"; fi
    done < $INFO/$p.list
  fi
  [ -f $INFO/$p.postrm ] && sh $INFO/$p.postrm $mode
  rm -f $INFO/$p.list $INFO/$p.prerm $INFO/$p.postrm
  removed="$removed $p"
done
out=
skip=0
while IFS= read -r l || [ -n "$l" ]; do
  case "$l" in "Package: "*) skip=0; for r in $removed; do [ "$l" = "Package: $r" ] && skip=1; done;; esac
  [ $skip = 1 ] || out="$out$l
"
done < $STATUS
printf '%s' "$out" > $STATUS
[ $status = 0 ] || echo "Errors were encountered while processing packages" >&2
exit $status
"""

_RPM = f"""#!/bin/sh
# Recording stand-in for the guest's rpm (phony guest): logs its argv, and for -e
# runs %preun, deletes the files, the database rows, then runs %postun.
DB=/var/lib/rpm/rpmdb.sqlite
META={RPM_META}
echo "rpm $*" >> {TOOL_LOG}
[ "$1" = "-e" ] || exit 0
status=0
for p in "$@"; do
  case "$p" in -*) continue;; esac
  if [ "$(sqlite3 $DB "SELECT count(*) FROM Name WHERE key='$p'")" = 0 ]; then
    echo "error: package $p is not installed" >&2
    status=1
    continue
  fi
  if [ -f $META/$p.preun ] && ! sh $META/$p.preun 0; then
    echo "error: %preun($p) scriptlet failed, exit status 1" >&2
    status=1
    continue
  fi
  if [ -f $META/$p.files ]; then
    while IFS= read -r f; do rm -f "$f"; done < $META/$p.files
  fi
  sqlite3 $DB "DELETE FROM Packages WHERE hnum IN (SELECT hnum FROM Name WHERE key='$p'); \\
DELETE FROM Name WHERE key='$p';" || status=1
  [ -f $META/$p.postun ] && sh $META/$p.postun 0
  rm -f $META/$p.preun $META/$p.postun $META/$p.files
done
exit $status
"""

_VMWARE_UNINSTALLER = f"""#!/bin/sh
# Recording stand-in for VMware Tools' vmware-uninstall-tools.pl (phony guest).
echo "vmware-uninstall-tools.pl $* rootdev=${{rootdev:-unset}}" >> {TOOL_LOG}
while IFS= read -r l; do
  case "$l" in "remove_answer RESTORE_RAMDISK"*) echo "vmware-uninstall-tools.pl read: $l" >> {TOOL_LOG};; esac
done < /etc/vmware-tools/locations
rm -rf /etc/vmware-tools /usr/lib/vmware-tools /etc/init.d/vmware-tools {WANTS}/vmware-tools.service \\
  /usr/bin/vmware-uninstall-tools.pl
"""

VBOX_DIR = "/opt/VBoxGuestAdditions-7.0.14"
_VBOX_UNINSTALLER = f"""#!/bin/sh
# Recording stand-in for the VirtualBox Guest Additions' uninstall.sh (phony guest).
echo "vbox-uninstall.sh $*" >> {TOOL_LOG}
rm -rf /lib/systemd/system/vboxadd.service /lib/systemd/system/vboxadd-service.service \\
  {WANTS}/vboxadd.service {WANTS}/vboxadd-service.service /lib/modules/*/misc/vbox*.ko \\
  /usr/sbin/VBoxService /var/lib/VBoxGuestAdditions {VBOX_DIR}
"""

_PARALLELS_INSTALLER = f"""#!/bin/sh
# Recording stand-in for Parallels Tools' installer (phony guest).
echo "parallels-install $*" >> {TOOL_LOG}
[ "$1" = "-r" ] || exit 0
rm -rf /usr/lib/systemd/system/prltoolsd.service {WANTS}/prltoolsd.service /usr/bin/prltoolsd \\
  /usr/lib/parallels-tools
"""

# What each tool leaves in a guest, to be gone after conversion.
DEBIAN_TOOL_FILES = {
    "hyperv-daemons": ["/usr/sbin/hv_kvp_daemon", "/usr/sbin/hv_vss_daemon", "/usr/sbin/hv_fcopy_daemon",
                       "/lib/systemd/system/hv-kvp-daemon.service", "/lib/systemd/system/hv-vss-daemon.service"],
    "open-vm-tools": ["/usr/bin/vmtoolsd", "/lib/systemd/system/open-vm-tools.service",
                      "/etc/vmware-tools/tools.conf"],
    "virtualbox-guest-utils": ["/usr/sbin/VBoxControl", "/lib/systemd/system/virtualbox-guest-utils.service"],
}
DEBIAN_ENABLED = {"hyperv-daemons": "hv-kvp-daemon.service", "open-vm-tools": "open-vm-tools.service"}
VBOX_FILES = ["/lib/systemd/system/vboxadd.service", "/lib/systemd/system/vboxadd-service.service",
              f"{WANTS}/vboxadd.service", f"/lib/modules/{DEBIAN_KERNEL}/misc/vboxguest.ko",
              f"/lib/modules/{DEBIAN_KERNEL}/misc/vboxsf.ko", "/var/lib/VBoxGuestAdditions/config",
              f"{VBOX_DIR}/uninstall.sh"]
PARALLELS_FILES = ["/usr/lib/parallels-tools/install", "/usr/bin/prltoolsd",
                   "/usr/lib/systemd/system/prltoolsd.service", f"{WANTS}/prltoolsd.service"]
ROCKY_TOOL_FILES = {
    "xe-guest-utilities": ["/usr/sbin/xe-daemon", "/usr/sbin/xe-linux-distribution",
                           "/usr/lib/systemd/system/xe-linux-distribution.service",
                           f"{WANTS}/xe-linux-distribution.service"],
    "xe-guest-utilities-xenstore": ["/usr/bin/xenstore-read", "/usr/bin/xenstore-write"],
    "kmod-xenpv": [f"/lib/modules/{ROCKY_KERNEL}/extra/xenpv/xen-vbd.ko",
                   f"/lib/modules/{ROCKY_KERNEL}/extra/xenpv/xen-vnif.ko",
                   f"/lib/modules/{ROCKY_KERNEL}/extra/xenpv/xen-platform-pci.ko"],
}
VMWARE_TARBALL_FILES = ["/usr/bin/vmware-uninstall-tools.pl", "/etc/vmware-tools/locations",
                        "/usr/lib/vmware-tools/sbin64/vmtoolsd", "/etc/init.d/vmware-tools"]
MODPROBE_CONF = "alias eth0 xennet\nalias scsi_hostadapter xenblk\noptions loop max_loop=16\n"
MODPROBE_D_XEN = "# Xen PV drivers (kmod-xenpv)\nalias scsi_hostadapter1 xen-vbd\nalias eth1 xen-vnif\n"
INITTAB = ("id:3:initdefault:\n# Run gettys in standard runlevels\n"
           "#1:2345:respawn:/sbin/mingetty tty1\n#2:2345:respawn:/sbin/mingetty tty2\n"
           "co:2345:respawn:/sbin/agetty xvc0 9600 vt100-nav\n")
PREUN_FAILURE = "hyperv-daemons.prerm: cannot download hv-fcopy-fixup from deb.debian.org: no network"


class _Guest:
    """Writes into a mounted guest."""

    def __init__(self, g: Any) -> None:
        self.g = g

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        self.g.mkdir_p(os.path.dirname(path))
        self.g.write(path, text.encode())
        self.g.chmod(mode, path)

    def files(self, paths: list[str]) -> None:
        for path in paths:
            if path.startswith(WANTS):
                unit = os.path.basename(path)
                target = next((f"{d}/{unit}" for d in ("/lib/systemd/system", "/usr/lib/systemd/system")
                               if self.g.exists(f"{d}/{unit}")), f"/lib/systemd/system/{unit}")
                self.g.mkdir_p(WANTS)
                self.g.ln_sf(target, path)
            else:
                self.write(path, f"phony file of a hypervisor tool: {path}\n", 0o755)

    def host_binary(self, host_path: str, guest_path: str) -> None:
        """A host program and its libraries, where a merged-/usr guest's loader finds them."""
        self.g.mkdir_p(os.path.dirname(guest_path))
        self.g.upload(os.path.realpath(host_path), guest_path)
        self.g.chmod(0o755, guest_path)
        for lib in convertible._shared_libraries(host_path):
            for where in ("/usr/lib64", "/usr/lib/x86_64-linux-gnu"):
                target = f"{where}/{os.path.basename(lib)}"
                self.g.mkdir_p(where)
                self.g.upload(os.path.realpath(lib), target)
                self.g.chmod(0o755, target)  # the loader must be executable


def _copy_disks(base: PhonyGuest, tmp: Path) -> list[Path]:
    disks = []
    for disk in base.disks:
        target = tmp / disk.name
        subprocess.run(["cp", "--sparse=always", str(disk), str(target)], check=True)
        os.chmod(target, 0o644)
        disks.append(target)
    return disks


def _edit(name: str, base: PhonyGuest, tmp: Path, work: Any) -> list[Path]:
    disks = _copy_disks(base, tmp)
    drives = [DriveSpec(path=str(d), format=base.format, readonly=False) for d in disks]
    with qemu_slot(f"building {name}"), Appliance(drives) as g:
        root = g.inspect_os()[0]
        for mountpoint, device in sorted(g.inspect_get_mountpoints(root).items(), key=lambda kv: len(kv[0])):
            g.mount(device, mountpoint)
        work(_Guest(g))
        g.umount_all()
        g.sync()
    return disks


def _dpkg_stanza(name: str, version: str, description: str, depends: str | None = None) -> str:
    extra = f"Depends: {depends}\n" if depends else ""
    return (f"Package: {name}\nStatus: install ok installed\nPriority: optional\nSection: misc\n"
            f"Installed-Size: 1024\nMaintainer: Test Maintainer <test@example.org>\nArchitecture: amd64\n"
            f"Version: {version}\n{extra}Description: {description}\n\n")


DEBIAN_TOOL_PACKAGES = [
    ("hyperv-daemons", "6.1.76-1", "Support daemons for Linux running on Hyper-V", "libc6 (>= 2.34)"),
    ("virtualbox-guest-utils", "7.0.14-dfsg-1", "x86 virtualization solution - non-X11 guest utilities", None),
    ("linux-cloud-tools-common", "6.1.76-1", "Linux kernel version specific cloud tools (common)", None),
    ("linux-cloud-tools-6.1.0-18-amd64", "6.1.76-1", "Linux kernel version specific cloud tools",
     "linux-cloud-tools-common"),
]


def _build_debian(tmp: Path, base: PhonyGuest, *, failing: bool) -> dict[str, Any]:
    def work(t: _Guest) -> None:
        t.host_binary(shutil.which("dash") or "/bin/dash", "/usr/bin/sh")
        t.host_binary("/usr/bin/rm", "/usr/bin/rm")
        t.host_binary("/usr/bin/env", "/usr/bin/env")
        t.write("/usr/bin/dpkg", _DPKG, 0o755)
        t.write("/usr/sbin/update-initramfs", _LOGGER.format(tool="update-initramfs"), 0o755)
        t.write(f"/boot/vmlinuz-{DEBIAN_KERNEL}", "phony kernel\n")
        t.write(f"/boot/initrd.img-{DEBIAN_KERNEL}", "phony initramfs\n")
        for rel in _VIRTIO_FILES:
            t.write(f"/lib/modules/{DEBIAN_KERNEL}/{rel}", "")
        status = t.g.cat("/var/lib/dpkg/status")
        status += "".join(_dpkg_stanza(*p) for p in DEBIAN_TOOL_PACKAGES)
        t.write("/var/lib/dpkg/status", status)
        for package, paths in DEBIAN_TOOL_FILES.items():
            t.files(paths)
            unit = DEBIAN_ENABLED.get(package)
            if unit:
                t.files([f"{WANTS}/{unit}"])
            t.write(f"/var/lib/dpkg/info/{package}.list", "\n".join(["/.", "/usr", "/usr/sbin", *paths]) + "\n")
            if unit:  # what deb-systemd-helper does in postrm purge
                t.write(f"/var/lib/dpkg/info/{package}.postrm", f"#!/bin/sh\nrm -f {WANTS}/{unit}\n", 0o755)
        for name, *_rest in DEBIAN_TOOL_PACKAGES[2:]:
            t.write(f"/var/lib/dpkg/info/{name}.list", "/.\n")
        if failing:
            t.write("/var/lib/dpkg/info/hyperv-daemons.prerm", f"#!/bin/sh\necho '{PREUN_FAILURE}' >&2\nexit 1\n",
                    0o755)
        # VirtualBox Guest Additions from the ISO: its config names the install directory.
        t.write("/var/lib/VBoxGuestAdditions/config", f"INSTALL_DIR='{VBOX_DIR}'\nINSTALL_VER='7.0.14'\n")
        t.write(f"{VBOX_DIR}/uninstall.sh", _VBOX_UNINSTALLER, 0o755)
        t.files([p for p in VBOX_FILES if not p.startswith(("/var/lib/VBox", VBOX_DIR, WANTS))])
        t.files([f"{WANTS}/vboxadd.service", f"{WANTS}/vboxadd-service.service"])
        # Parallels Tools from their installer.
        t.write("/usr/lib/parallels-tools/install", _PARALLELS_INSTALLER, 0o755)
        t.files(["/usr/bin/prltoolsd", "/usr/lib/systemd/system/prltoolsd.service", f"{WANTS}/prltoolsd.service",
                 "/usr/lib/parallels-tools/tools/prltoolsd.sh"])

    name = "phony-debian12-tools" + ("-failing" if failing else "")
    disks = _edit(name, base, tmp, work)
    return {"disks": [d.name for d in disks], "format": base.format,
            "expected": None if base.expected is None else base.expected.__dict__,
            "details": {**base.details, "kernel": DEBIAN_KERNEL, "tool_log": TOOL_LOG,
                        "tool_packages": [p[0] for p in DEBIAN_TOOL_PACKAGES]}}


ROCKY_TOOL_PACKAGES = [
    RpmPackage("xe-guest-utilities", "7.30.0", "11.el9", "XenServer Linux guest utilities", vendor="Citrix"),
    RpmPackage("xe-guest-utilities-xenstore", "7.30.0", "11.el9", "XenStore utilities", vendor="Citrix"),
    RpmPackage("kmod-xenpv", "0.1", "75.el9", "Xen PV-on-HVM drivers"),
]


def _build_rocky(tmp: Path, base: PhonyGuest) -> dict[str, Any]:
    packages = [p for p in ROCKY_PACKAGES if p.name != "open-vm-tools"] + ROCKY_TOOL_PACKAGES

    def work(t: _Guest) -> None:
        t.host_binary("/usr/bin/rm", "/usr/bin/rm")
        t.host_binary("/usr/bin/env", "/usr/bin/env")
        t.host_binary("/usr/bin/sqlite3", "/usr/bin/sqlite3")
        t.write("/usr/bin/rpm", _RPM, 0o755)
        local = tmp / "rpmdb.sqlite"
        write_rpmdb(local, packages)
        t.g.upload(str(local), "/var/lib/rpm/rpmdb.sqlite")
        local.unlink()
        t.g.rm_rf("/etc/vmware-tools")
        for package, paths in ROCKY_TOOL_FILES.items():
            t.files(paths)
            t.write(f"{RPM_META}/{package}.files", "\n".join(paths) + "\n")
        # %preun of xe-guest-utilities: what "systemctl disable" does in a chroot.
        t.write(f"{RPM_META}/xe-guest-utilities.preun", f"#!/bin/sh\nrm -f {WANTS}/xe-linux-distribution.service\n")
        t.write("/etc/modprobe.conf", MODPROBE_CONF)
        t.write("/etc/modprobe.d/xen-pv.conf", MODPROBE_D_XEN)
        t.write("/etc/inittab", INITTAB)
        # VMware Tools from the tarball, and the VMware repository that came with them.
        t.write("/etc/vmware-tools/locations", "answer BINDIR /usr/bin\nanswer LIBDIR /usr/lib/vmware-tools\n")
        t.write("/usr/bin/vmware-uninstall-tools.pl", _VMWARE_UNINSTALLER, 0o755)
        t.files(["/usr/lib/vmware-tools/sbin64/vmtoolsd", "/etc/init.d/vmware-tools"])
        t.write("/etc/yum.repos.d/vmware-tools.repo",
                "[vmware-tools]\nname=VMware Tools\nbaseurl=https://packages.vmware.com/tools/esx/latest/rhel9/x86_64\n"
                "enabled=1\ngpgcheck=1\n")

    disks = _edit("phony-rocky9-tools", base, tmp, work)
    return {"disks": [d.name for d in disks], "format": base.format,
            "expected": None if base.expected is None else base.expected.__dict__,
            "details": {**base.details, "tool_log": TOOL_LOG, "packages": [p.name for p in packages],
                        "tool_packages": [p.name for p in ROCKY_TOOL_PACKAGES]}}


def debian_tools(*, failing: bool = False) -> PhonyGuest:
    """Debian 12 with hyperv-daemons, open-vm-tools, virtualbox-guest-utils (packages), VirtualBox Guest
    Additions from the ISO and Parallels Tools; ``failing``: hyperv-daemons' prerm fails (no network)."""
    base = phony.build("phony-debian12")
    name = "phony-debian12-tools" + ("-failing" if failing else "")
    recipe = Recipe(name=name, params={"failing": failing}, inputs=(base.directory.name,),
                    modules=("tool_guests.py",))
    directory, manifest = ensure_built(recipe, lambda tmp: _build_debian(tmp, base, failing=failing))
    return phony._load(directory, manifest)


def rocky_tools() -> PhonyGuest:
    """Rocky 9 (the convertible one) from XenServer: xe-guest-utilities(-xenstore), kmod-xenpv, Xen modprobe
    aliases, gettys commented out in inittab, and VMware Tools from the tarball with a VMware yum repository."""
    base = convertible.build("phony-rocky9")
    recipe = Recipe(name="phony-rocky9-tools", inputs=(base.directory.name,), modules=("tool_guests.py",))
    directory, manifest = ensure_built(recipe, lambda tmp: _build_rocky(tmp, base))
    return phony._load(directory, manifest)
