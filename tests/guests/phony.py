"""Phony guests: OS trees without a kernel, written with libguestfs in seconds.

Each guest has what libguestfs inspection looks at (os-release and the
distribution's release files, hostname, fstab, a real x86-64 binary for the
architecture, the package database where one can be faked honestly) and what
conversion logic edits (network configuration, GRUB defaults, VMware tools in
the package list). None of them boots: there is no kernel.

Every function returns a :class:`PhonyGuest` whose ``expected`` says what
inspection must find. Images are built once and cached (see ``cache.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.appliance import Appliance, DriveSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.process import run_tool

from .cache import Recipe, ensure_built, log, qemu_slot
from .rpmdb import RpmPackage, write_rpmdb

_MODULES = ("phony.py", "rpmdb.py")
MiB = 1024 * 1024
# A real x86-64 ELF from the host: inspection reads the architecture from it.
HOST_BINARY = "/usr/bin/ls"


@dataclass
class ExpectedOS:
    """What ``inspect_os`` and friends must report for a phony guest."""

    distro: str
    major: int
    minor: int
    product_name: str
    hostname: str
    root: str  # the root filesystem as inspection names it
    mountpoints: dict[str, str]  # mount point -> device, as inspect_get_mountpoints reports
    package_format: str
    package_management: str
    osinfo: str
    type: str = "linux"
    arch: str = "x86_64"


@dataclass
class PhonyGuest:
    """A built phony guest: its disk image(s) and the facts it should inspect as."""

    name: str
    directory: Path
    disks: list[Path]
    format: str
    expected: ExpectedOS | None  # None: there is no operating system on it
    details: dict[str, Any] = field(default_factory=dict)  # network, packages, fstab ...

    @property
    def disk(self) -> Path:
        return self.disks[0]

    def drives(self, readonly: bool = True) -> list[DriveSpec]:
        return [DriveSpec(path=str(d), format=self.format, readonly=readonly) for d in self.disks]


# --------------------------------------------------------------------------- helpers

class _Tree:
    """Write files into the filesystem mounted in a libguestfs handle."""

    def __init__(self, g: Any) -> None:
        self.g = g

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        self.g.mkdir_p(path)
        self.g.chmod(mode, path)

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        self.g.mkdir_p(os.path.dirname(path))
        self.g.write(path, text.encode("utf-8"))
        self.g.chmod(mode, path)

    def symlink(self, target: str, path: str) -> None:
        self.g.mkdir_p(os.path.dirname(path))
        self.g.ln_s(target, path)

    def upload(self, host_path: str, path: str, mode: int = 0o755) -> None:
        self.g.mkdir_p(os.path.dirname(path))
        self.g.upload(host_path, path)
        self.g.chmod(mode, path)

    def merged_usr(self) -> None:
        """Debian 12, Ubuntu, RHEL 9 and SLES 15 all have /bin -> usr/bin."""
        for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64"):
            self.mkdir("/" + d)
        for d in ("bin", "sbin", "lib", "lib64"):
            self.symlink(f"usr/{d}", f"/{d}")
        self.upload(HOST_BINARY, "/usr/bin/ls")
        for d in ("boot", "dev", "proc", "sys", "run", "tmp", "var/tmp", "var/log", "home", "root",
                  "mnt", "srv", "opt", "media"):
            self.mkdir("/" + d, 0o1777 if d in ("tmp", "var/tmp") else 0o755)
        self.g.chmod(0o700, "/root")


def _passwd(t: _Tree) -> None:
    t.write("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n"
                           "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
                           "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    t.write("/etc/group", "root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n")
    t.write("/etc/shadow", "root:*:19800:0:99999:7:::\ndaemon:*:19800:0:99999:7:::\n"
                           "nobody:*:19800:0:99999:7:::\n", 0o640)


def _hosts(hostname: str) -> str:
    return f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def _dpkg_status(packages: Iterable[tuple[str, str, str]]) -> str:
    stanzas = []
    for name, version, description in packages:
        # dpkg ends every stanza, the last one too, with an empty line.
        stanzas.append(f"Package: {name}\nStatus: install ok installed\nPriority: optional\n"
                       f"Section: misc\nInstalled-Size: 1024\nMaintainer: Test Maintainer <test@example.org>\n"
                       f"Architecture: amd64\nVersion: {version}\nDescription: {description}\n\n")
    return "".join(stanzas)


def _rpm_database(t: _Tree, dbpath: str, scratch: Path, packages: list[RpmPackage]) -> None:
    """A readable rpm database plus the rpm configuration librpm needs to find it."""
    local = scratch / "rpmdb.sqlite"
    write_rpmdb(local, packages)
    t.upload(str(local), f"{dbpath}/rpmdb.sqlite", 0o644)
    local.unlink()
    t.write("/usr/lib/rpm/rpmrc", "arch_canon:\tx86_64:\tx86_64\t1\nos_canon:\tLinux:\tLinux\t1\n"
                                  "buildarchtranslate: x86_64: x86_64\n")
    t.write("/usr/lib/rpm/macros", f"%_dbpath\t\t{dbpath}\n%_db_backend\t\tsqlite\n")


def _grub_default(cmdline: str) -> str:
    return ("GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\n"
            "GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n"
            'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
            f'GRUB_CMDLINE_LINUX="{cmdline}"\n')


def _new_disk(path: Path, fmt: str, size: int) -> None:
    run_tool(["qemu-img", "create", "-q", "-f", fmt, str(path), str(size)])


def _mbr(g: Any, dev: str, sizes_mib: list[int | None]) -> list[str]:
    """MBR partitions of the given sizes (None: the rest of the disk), starting at 1 MiB."""
    g.part_init(dev, "mbr")
    start = 2048
    parts = []
    for i, size in enumerate(sizes_mib, start=1):
        end = -1 if size is None else start + size * 2048 - 1
        g.part_add(dev, "p", start, end)
        parts.append(f"{dev}{i}")
        start = end + 1
    g.part_set_bootable(dev, 1, True)
    return parts


def _with_disk(path: Path, fmt: str, work: Callable[[Any], None]) -> None:
    with qemu_slot(f"building {path.name}"), \
            Appliance([DriveSpec(path=str(path), format=fmt, readonly=False)]) as g:
        work(g)
        g.umount_all()
        g.sync()


# --------------------------------------------------------------------------- the guests

DEBIAN_PACKAGES = [
    ("base-files", "12.4+deb12u5", "Debian base system miscellaneous files"),
    ("bash", "5.2.15-2+b2", "GNU Bourne Again SHell"),
    ("coreutils", "9.1-1", "GNU core utilities"),
    ("dpkg", "1.21.22", "Debian package management system"),
    ("apt", "2.6.1", "commandline package manager"),
    ("systemd", "252.22-1~deb12u1", "system and service manager"),
    ("systemd-sysv", "252.22-1~deb12u1", "system and service manager - SysV links"),
    ("udev", "252.22-1~deb12u1", "/dev/ and hotplug management daemon"),
    ("ifupdown", "0.8.41", "high level tools to configure network interfaces"),
    ("initramfs-tools", "0.142", "generic modular initramfs generator (automation)"),
    ("grub-pc", "2.06-13+deb12u1", "GRand Unified Bootloader, version 2 (PC/BIOS version)"),
    ("linux-image-6.1.0-18-amd64", "6.1.76-1", "Linux 6.1 for 64-bit PCs (signed)"),
    ("linux-image-amd64", "6.1.76-1", "Linux for 64-bit PCs (meta-package)"),
    ("open-vm-tools", "2:12.2.0-1+deb12u2", "Open VMware Tools for virtual machines hosted on VMware (CLI)"),
    ("openssh-server", "1:9.2p1-2+deb12u2", "secure shell (SSH) server, for secure access from remote machines"),
]

DEBIAN12_OS_RELEASE = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
"""


def _debian_common(t: _Tree, hostname: str, fstab: str, *, cmdline: str, nic: str, address: str) -> None:
    t.merged_usr()
    _passwd(t)
    t.write("/usr/lib/os-release", DEBIAN12_OS_RELEASE)
    t.symlink("../usr/lib/os-release", "/etc/os-release")
    t.write("/etc/debian_version", "12.5\n")
    t.write("/etc/hostname", hostname + "\n")
    t.write("/etc/hosts", _hosts(hostname))
    t.write("/etc/fstab", fstab)
    t.write("/etc/machine-id", "")
    t.write("/etc/default/grub", _grub_default(cmdline))
    t.write("/etc/network/interfaces",
            "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n\n"
            f"allow-hotplug {nic}\niface {nic} inet static\n\taddress {address}\n"
            "\tgateway 192.168.122.1\n\tdns-nameservers 192.168.122.1\n")
    t.mkdir("/etc/network/interfaces.d")
    t.write("/etc/initramfs-tools/initramfs.conf", "MODULES=list\nBUSYBOX=auto\nCOMPRESS=zstd\n")
    t.write("/etc/initramfs-tools/modules", "vmw_pvscsi\nmptspi\nahci\nsd_mod\next4\n")
    t.write("/var/lib/dpkg/status", _dpkg_status(DEBIAN_PACKAGES))
    t.mkdir("/var/lib/dpkg/info")
    for name, _version, _description in DEBIAN_PACKAGES:
        t.write(f"/var/lib/dpkg/info/{name}.list", "/.\n")
    t.write("/usr/bin/apt", "#!/bin/sh\necho 'phony guest: apt is not really here' >&2\nexit 1\n", 0o755)
    t.write("/etc/apt/sources.list", "deb http://deb.debian.org/debian bookworm main\n")
    t.mkdir("/etc/vmware-tools")
    t.write("/etc/vmware-tools/tools.conf", "[logging]\nlog = true\n")


def _build_debian12(tmp: Path) -> dict[str, Any]:
    disk = tmp / "disk.raw"
    hostname = "phony-deb12"
    _new_disk(disk, "raw", 512 * MiB)

    def work(g: Any) -> None:
        root, swap = _mbr(g, "/dev/sda", [440, None])
        g.mkfs("ext4", root)
        g.mkswap(swap)
        g.mount(root, "/")
        fstab = ("# /etc/fstab: static file system information.\n"
                 "/dev/sda1\t/\text4\terrors=remount-ro\t0\t1\n"
                 "/dev/sda2\tnone\tswap\tsw\t0\t0\n"
                 "/dev/sr0\t/media/cdrom0\tudf,iso9660\tuser,noauto\t0\t0\n")
        t = _Tree(g)
        _debian_common(t, hostname, fstab, cmdline="root=/dev/sda1", nic="ens192", address="192.168.122.60/24")
        t.write("/boot/grub/grub.cfg",
                "set default=0\nmenuentry 'Debian GNU/Linux' {\n"
                "\tlinux /boot/vmlinuz-6.1.0-18-amd64 root=/dev/sda1 ro quiet\n"
                "\tinitrd /boot/initrd.img-6.1.0-18-amd64\n}\n", 0o444)

    _with_disk(disk, "raw", work)
    expected = ExpectedOS(distro="debian", major=12, minor=5, product_name="12.5",
                          hostname=hostname, root="/dev/sda1", mountpoints={"/": "/dev/sda1"},
                          package_format="deb", package_management="apt", osinfo="debian12")
    return {"disks": [disk.name], "format": "raw", "expected": asdict(expected),
            "details": {"nic": "ens192", "address": "192.168.122.60/24", "network_config": "/etc/network/interfaces",
                        "fstab_devices": ["/dev/sda1", "/dev/sda2"], "swap": "/dev/sda2",
                        "packages": [p[0] for p in DEBIAN_PACKAGES], "vmware_tools": "open-vm-tools"}}


UBUNTU_PACKAGES = [
    ("base-files", "12ubuntu4.6", "Debian base system miscellaneous files"),
    ("bash", "5.1-6ubuntu1.1", "GNU Bourne Again SHell"),
    ("dpkg", "1.21.1ubuntu2.3", "Debian package management system"),
    ("systemd", "249.11-0ubuntu3.12", "system and service manager"),
    ("netplan.io", "0.106-0ubuntu3", "YAML network configuration abstraction for various backends"),
    ("cloud-init", "23.4.4-0ubuntu0~22.04.1", "initialization and customization tool for cloud instances"),
    ("grub-pc", "2.06-2ubuntu7.2", "GRand Unified Bootloader, version 2 (PC/BIOS version)"),
    ("linux-image-5.15.0-97-generic", "5.15.0-97.107", "Signed kernel image generic"),
    ("linux-image-generic", "5.15.0.97.94", "Generic Linux kernel image"),
    ("open-vm-tools", "2:12.3.0-1~ubuntu0.22.04.1", "Open VMware Tools for virtual machines hosted on VMware (CLI)"),
]


def _build_ubuntu2204(tmp: Path) -> dict[str, Any]:
    disk = tmp / "disk.qcow2"
    hostname = "phony-jammy"
    _new_disk(disk, "qcow2", 512 * MiB)
    facts: dict[str, Any] = {}

    def work(g: Any) -> None:
        # GPT with a BIOS boot partition, as the Ubuntu installer makes on BIOS.
        g.part_init("/dev/sda", "gpt")
        g.part_add("/dev/sda", "p", 2048, 4095)
        g.part_set_gpt_type("/dev/sda", 1, "21686148-6449-6E6F-744E-656564454649")
        g.part_add("/dev/sda", "p", 4096, -34)
        root = "/dev/sda2"
        g.mkfs("ext4", root)
        uuid = g.vfs_uuid(root)
        facts["root_uuid"] = uuid
        g.mount(root, "/")
        t = _Tree(g)
        t.merged_usr()
        _passwd(t)
        t.write("/usr/lib/os-release",
                'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\n'
                'VERSION="22.04.4 LTS (Jammy Jellyfish)"\nVERSION_CODENAME=jammy\nID=ubuntu\nID_LIKE=debian\n'
                'HOME_URL="https://www.ubuntu.com/"\nUBUNTU_CODENAME=jammy\n')
        t.symlink("../usr/lib/os-release", "/etc/os-release")
        t.write("/etc/lsb-release", "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=22.04\nDISTRIB_CODENAME=jammy\n"
                                    'DISTRIB_DESCRIPTION="Ubuntu 22.04.4 LTS"\n')
        t.write("/etc/debian_version", "bookworm/sid\n")
        t.write("/etc/hostname", hostname + "\n")
        t.write("/etc/hosts", _hosts(hostname))
        t.write("/etc/fstab", f"# / was on /dev/sda2 during curtin installation\n"
                              f"/dev/disk/by-uuid/{uuid} / ext4 defaults 0 1\n"
                              "/swap.img\tnone\tswap\tsw\t0\t0\n")
        t.write("/etc/default/grub", _grub_default(""))
        t.write("/etc/netplan/00-installer-config.yaml",
                "# This is the network config written by 'subiquity'\nnetwork:\n  version: 2\n  ethernets:\n"
                "    ens160:\n      addresses:\n      - 192.168.122.61/24\n      routes:\n      - to: default\n"
                "        via: 192.168.122.1\n      nameservers:\n        addresses:\n        - 192.168.122.1\n",
                0o600)
        t.write("/var/lib/dpkg/status", _dpkg_status(UBUNTU_PACKAGES))
        t.mkdir("/var/lib/dpkg/info")
        t.write("/etc/cloud/cloud.cfg.d/99-installer.cfg", "datasource_list: [ None ]\n")

    _with_disk(disk, "qcow2", work)
    expected = ExpectedOS(distro="ubuntu", major=22, minor=4, product_name="Ubuntu 22.04.4 LTS",
                          hostname=hostname, root="/dev/sda2",
                          # libguestfs 1.48 reports /dev/disk/by-uuid/ paths from fstab as written
                          mountpoints={"/": f"/dev/disk/by-uuid/{facts['root_uuid']}"},
                          package_format="deb", package_management="apt", osinfo="ubuntu22.04")
    return {"disks": [disk.name], "format": "qcow2", "expected": asdict(expected),
            "details": {"nic": "ens160", "address": "192.168.122.61/24",
                        "network_config": "/etc/netplan/00-installer-config.yaml", "partition_table": "gpt",
                        "root_uuid": facts["root_uuid"], "packages": [p[0] for p in UBUNTU_PACKAGES],
                        "vmware_tools": "open-vm-tools"}}


_ROCKY = "Rocky Enterprise Software Foundation"
ROCKY_PACKAGES = [
    RpmPackage("bash", "5.1.8", "6.el9_1", "The GNU Bourne Again shell", vendor=_ROCKY),
    RpmPackage("rocky-release", "9.3", "1.2.el9", "Rocky Linux release files", vendor=_ROCKY),
    RpmPackage("systemd", "252", "18.el9", "System and Service Manager", vendor=_ROCKY),
    RpmPackage("rpm", "4.16.1.3", "25.el9", "The RPM package management system", vendor=_ROCKY),
    RpmPackage("dnf", "4.14.0", "8.el9", "Package manager", vendor=_ROCKY),
    RpmPackage("dracut", "057", "44.git20230822.el9", "Initramfs generator using udev", vendor=_ROCKY),
    RpmPackage("grub2-pc", "2.06", "70.el9_3.1", "Bootloader with support for Linux, Multiboot, and more",
               epoch=1, vendor=_ROCKY),
    RpmPackage("kernel-core", "5.14.0", "362.8.1.el9_3", "The Linux kernel", vendor=_ROCKY),
    RpmPackage("NetworkManager", "1.44.0", "3.el9", "Network connection manager and user applications",
               epoch=1, vendor=_ROCKY),
    RpmPackage("open-vm-tools", "12.2.5", "3.el9", "Open Virtual Machine Tools for virtual machines hosted on "
               "VMware", vendor=_ROCKY),
]


def _build_rocky9(tmp: Path) -> dict[str, Any]:
    disk = tmp / "disk.qcow2"
    hostname = "phony-rocky9.example.com"
    mac = "00:50:56:3a:00:62"
    _new_disk(disk, "qcow2", 512 * MiB)
    facts: dict[str, Any] = {}

    def work(g: Any) -> None:
        boot, root = _mbr(g, "/dev/sda", [128, None])
        # RHEL uses XFS by default; this libguestfs appliance may lack xfsprogs, and
        # inspection does not depend on the filesystem type.
        g.mkfs("ext4", boot)
        g.mkfs("ext4", root)
        facts["boot_uuid"], facts["root_uuid"] = g.vfs_uuid(boot), g.vfs_uuid(root)
        g.mount(root, "/")
        g.mkdir("/boot")
        g.mount(boot, "/boot")
        t = _Tree(g)
        t.merged_usr()
        _passwd(t)
        release = "Rocky Linux release 9.3 (Blue Onyx)\n"
        t.write("/etc/rocky-release", release)
        t.symlink("rocky-release", "/etc/redhat-release")
        t.symlink("rocky-release", "/etc/system-release")
        t.write("/usr/lib/os-release",
                'NAME="Rocky Linux"\nVERSION="9.3 (Blue Onyx)"\nID="rocky"\nID_LIKE="rhel centos fedora"\n'
                'VERSION_ID="9.3"\nPLATFORM_ID="platform:el9"\nPRETTY_NAME="Rocky Linux 9.3 (Blue Onyx)"\n'
                'ANSI_COLOR="0;32"\nCPE_NAME="cpe:/o:rocky:rocky:9::baseos"\nHOME_URL="https://rockylinux.org/"\n'
                'ROCKY_SUPPORT_PRODUCT="Rocky-Linux-9"\nROCKY_SUPPORT_PRODUCT_VERSION="9.3"\n')
        t.symlink("../usr/lib/os-release", "/etc/os-release")
        t.write("/etc/hostname", hostname + "\n")
        t.write("/etc/hosts", "127.0.0.1   localhost localhost.localdomain\n::1         localhost\n")
        t.write("/etc/fstab", f"UUID={facts['root_uuid']} /                       ext4    defaults        1 1\n"
                              f"UUID={facts['boot_uuid']} /boot                   ext4    defaults        1 2\n")
        t.write("/etc/default/grub", 'GRUB_TIMEOUT=5\nGRUB_DISTRIBUTOR="$(sed \'s, release .*$,,g\' '
                                     '/etc/system-release)"\nGRUB_DEFAULT=saved\nGRUB_DISABLE_SUBMENU=true\n'
                                     'GRUB_TERMINAL_OUTPUT="console"\nGRUB_CMDLINE_LINUX="crashkernel=1G-4G:192M '
                                     'rhgb quiet"\nGRUB_DISABLE_RECOVERY="true"\nGRUB_ENABLE_BLSCFG=true\n')
        t.write("/etc/selinux/config", "SELINUX=enforcing\nSELINUXTYPE=targeted\n")
        t.write("/etc/NetworkManager/system-connections/ens192.nmconnection",
                "[connection]\nid=ens192\nuuid=5fb06bd0-0bb0-7ffb-45f1-d6edd65f3e03\ntype=ethernet\n"
                "interface-name=ens192\n\n[ethernet]\nmac-address=" + mac.upper() + "\n\n"
                "[ipv4]\naddress1=192.168.122.62/24,192.168.122.1\ndns=192.168.122.1;\nmethod=manual\n\n"
                "[ipv6]\naddr-gen-mode=eui64\nmethod=auto\n\n[proxy]\n", 0o600)
        t.write("/etc/sysconfig/network-scripts/readme-ifcfg-rh.txt",
                "NetworkManager stores new network profiles in keyfile format\n"
                "in the /etc/NetworkManager/system-connections/ directory.\n")
        t.write("/etc/sysconfig/network", "# Created by anaconda\n")
        t.write("/etc/dracut.conf.d/vmware.conf", 'add_drivers+=" vmw_pvscsi vmxnet3 "\n')
        _rpm_database(t, "/var/lib/rpm", tmp, ROCKY_PACKAGES)
        t.write("/usr/bin/dnf", "#!/usr/bin/python3\n# phony guest: dnf is not really here\nraise SystemExit(1)\n",
                0o755)
        t.write("/etc/vmware-tools/tools.conf", "[logging]\nlog = true\n")
        t.mkdir("/boot/loader/entries")
        t.write("/boot/loader/entries/0123456789abcdef-5.14.0-362.8.1.el9_3.x86_64.conf",
                "title Rocky Linux (5.14.0-362.8.1.el9_3.x86_64) 9.3 (Blue Onyx)\n"
                "version 5.14.0-362.8.1.el9_3.x86_64\nlinux /vmlinuz-5.14.0-362.8.1.el9_3.x86_64\n"
                "initrd /initramfs-5.14.0-362.8.1.el9_3.x86_64.img\n"
                f"options root=UUID={facts['root_uuid']} ro crashkernel=1G-4G:192M rhgb quiet\n")

    _with_disk(disk, "qcow2", work)
    expected = ExpectedOS(distro="rocky", major=9, minor=3, product_name="Rocky Linux 9.3 (Blue Onyx)",
                          hostname=hostname, root="/dev/sda2",
                          mountpoints={"/": "/dev/sda2", "/boot": "/dev/sda1"},
                          package_format="rpm", package_management="dnf", osinfo="rocky9")
    return {"disks": [disk.name], "format": "qcow2", "expected": asdict(expected),
            "details": {"nic": "ens192", "mac": mac, "address": "192.168.122.62/24",
                        "network_config": "/etc/NetworkManager/system-connections/ens192.nmconnection",
                        "root_uuid": facts["root_uuid"], "boot_uuid": facts["boot_uuid"],
                        "rpmdb": "/var/lib/rpm/rpmdb.sqlite", "selinux": "enforcing",
                        "packages": [p.name for p in ROCKY_PACKAGES], "vmware_tools": "open-vm-tools"}}


def _build_debian12_lvm(tmp: Path) -> dict[str, Any]:
    disk = tmp / "disk.raw"
    hostname = "phony-deb12-lvm"
    vg = "phony-deb12-lvm-vg"
    _new_disk(disk, "raw", 768 * MiB)
    facts: dict[str, Any] = {}

    def work(g: Any) -> None:
        boot, pv = _mbr(g, "/dev/sda", [128, None])
        g.part_set_mbr_id("/dev/sda", 2, 0x8E)
        g.pvcreate(pv)
        g.vgcreate(vg, [pv])
        g.lvcreate("swap_1", vg, 64)
        g.lvcreate_free("root", vg, 100)
        root = f"/dev/{vg}/root"
        g.mkfs("ext4", boot)
        g.mkfs("ext4", root)
        g.mkswap(f"/dev/{vg}/swap_1")
        facts["boot_uuid"] = g.vfs_uuid(boot)
        g.mount(root, "/")
        g.mkdir("/boot")
        g.mount(boot, "/boot")
        mapper = "/dev/mapper/" + vg.replace("-", "--")
        fstab = ("# /etc/fstab: static file system information.\n"
                 f"{mapper}-root\t/\text4\terrors=remount-ro\t0\t1\n"
                 f"# /boot was on /dev/sda1 during installation\nUUID={facts['boot_uuid']}\t/boot\text4\t"
                 "defaults\t0\t2\n"
                 f"{mapper}-swap_1\tnone\tswap\tsw\t0\t0\n")
        t = _Tree(g)
        _debian_common(t, hostname, fstab, cmdline="", nic="ens192", address="192.168.122.63/24")
        t.write("/etc/lvm/lvm.conf", "devices {\n}\n")
        t.write("/boot/grub/grub.cfg",
                "set default=0\nmenuentry 'Debian GNU/Linux' {\n"
                f"\tlinux /vmlinuz-6.1.0-18-amd64 root={mapper}-root ro quiet\n"
                "\tinitrd /initrd.img-6.1.0-18-amd64\n}\n", 0o444)
        g.umount_all()
        g.vg_activate(False, [vg])

    _with_disk(disk, "raw", work)
    expected = ExpectedOS(distro="debian", major=12, minor=5, product_name="12.5",
                          hostname=hostname, root=f"/dev/{vg}/root",
                          mountpoints={"/": f"/dev/{vg}/root", "/boot": "/dev/sda1"},
                          package_format="deb", package_management="apt", osinfo="debian12")
    return {"disks": [disk.name], "format": "raw", "expected": asdict(expected),
            "details": {"nic": "ens192", "address": "192.168.122.63/24", "volume_group": vg,
                        "logical_volumes": ["root", "swap_1"], "boot_uuid": facts["boot_uuid"],
                        "network_config": "/etc/network/interfaces",
                        "packages": [p[0] for p in DEBIAN_PACKAGES], "vmware_tools": "open-vm-tools"}}


_SUSE = "SUSE LLC <https://www.suse.com/>"
SLES_PACKAGES = [
    RpmPackage("bash", "4.4", "150400.27.3.2", "The GNU Bourne-Again Shell", arch="x86_64", vendor=_SUSE),
    RpmPackage("sles-release", "15.5", "150500.55.1", "SUSE Linux Enterprise Server", vendor=_SUSE),
    RpmPackage("zypper", "1.14.64", "150500.6.3.1", "Command line software manager using libzypp", vendor=_SUSE),
    RpmPackage("wicked", "0.6.73", "150500.3.9.1", "Network configuration infrastructure", vendor=_SUSE),
    RpmPackage("kernel-default", "5.14.21", "150500.55.39.1", "The Standard Kernel", vendor=_SUSE),
    RpmPackage("grub2", "2.06", "150500.29.8.1", "Bootloader with support for Linux, Multiboot and more",
               vendor=_SUSE),
    RpmPackage("open-vm-tools", "12.3.0", "150500.3.6.1", "Open Virtual Machine Tools", vendor=_SUSE),
]


def _build_sles15(tmp: Path) -> dict[str, Any]:
    disk = tmp / "disk.raw"
    hostname = "phony-sles15"
    _new_disk(disk, "raw", 512 * MiB)
    facts: dict[str, Any] = {}

    def work(g: Any) -> None:
        (root,) = _mbr(g, "/dev/sda", [None])
        # SLES defaults to btrfs with subvolumes; ext4 keeps the phony simple.
        g.mkfs("ext4", root)
        facts["root_uuid"] = g.vfs_uuid(root)
        g.mount(root, "/")
        t = _Tree(g)
        t.merged_usr()
        _passwd(t)
        t.write("/usr/lib/os-release",
                'NAME="SLES"\nVERSION="15-SP5"\nVERSION_ID="15.5"\nPRETTY_NAME="SUSE Linux Enterprise Server 15 SP5"\n'
                'ID="sles"\nID_LIKE="suse"\nANSI_COLOR="0;32"\nCPE_NAME="cpe:/o:suse:sles:15:sp5"\n'
                'DOCUMENTATION_URL="https://documentation.suse.com/"\n')
        t.symlink("../usr/lib/os-release", "/etc/os-release")
        t.write("/etc/hostname", hostname + "\n")
        t.write("/etc/hosts", _hosts(hostname))
        t.write("/etc/fstab", f"UUID={facts['root_uuid']}  /  ext4  defaults  0  1\n")
        t.write("/etc/default/grub", _grub_default("net.ifnames=0 splash=silent mitigations=auto quiet"))
        t.write("/etc/sysconfig/network/ifcfg-eth0",
                "BOOTPROTO='static'\nSTARTMODE='auto'\nIPADDR='192.168.122.64/24'\nZONE=''\n")
        t.write("/etc/sysconfig/network/routes", "default 192.168.122.1 - -\n")
        _rpm_database(t, "/usr/lib/sysimage/rpm", tmp, SLES_PACKAGES)
        t.symlink("../../usr/lib/sysimage/rpm", "/var/lib/rpm")
        t.write("/usr/bin/zypper", "#!/bin/sh\necho 'phony guest: zypper is not really here' >&2\nexit 1\n", 0o755)
        t.write("/etc/vmware-tools/tools.conf", "[logging]\nlog = true\n")

    _with_disk(disk, "raw", work)
    expected = ExpectedOS(distro="sles", major=15, minor=5, product_name="SUSE Linux Enterprise Server 15 SP5",
                          hostname=hostname, root="/dev/sda1", mountpoints={"/": "/dev/sda1"},
                          package_format="rpm", package_management="zypper", osinfo="sles15sp5")
    return {"disks": [disk.name], "format": "raw", "expected": asdict(expected),
            "details": {"nic": "eth0", "address": "192.168.122.64/24",
                        "network_config": "/etc/sysconfig/network/ifcfg-eth0", "root_uuid": facts["root_uuid"],
                        "rpmdb": "/usr/lib/sysimage/rpm/rpmdb.sqlite", "packages": [p.name for p in SLES_PACKAGES],
                        "vmware_tools": "open-vm-tools"}}


def _build_blank(tmp: Path) -> dict[str, Any]:
    disk = tmp / "disk.raw"
    _new_disk(disk, "raw", 256 * MiB)
    return {"disks": [disk.name], "format": "raw", "expected": None, "details": {"size": 256 * MiB}}


# --------------------------------------------------------------------------- public API

_BUILDERS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "phony-debian12": _build_debian12,
    "phony-ubuntu2204": _build_ubuntu2204,
    "phony-rocky9": _build_rocky9,
    "phony-debian12-lvm": _build_debian12_lvm,
    "phony-sles15": _build_sles15,
    "blank": _build_blank,
}


def recipe(name: str) -> Recipe:
    if name not in _BUILDERS:
        raise KeyError(f"no phony guest named {name!r}; known: {', '.join(_BUILDERS)}")
    return Recipe(name=name, params={"builder": _BUILDERS[name].__name__}, modules=_MODULES)


def _load(directory: Path, manifest: Mapping[str, Any]) -> PhonyGuest:
    facts = manifest["facts"]
    expected = ExpectedOS(**facts["expected"]) if facts["expected"] else None
    return PhonyGuest(name=manifest["name"], directory=directory,
                      disks=[directory / d for d in facts["disks"]], format=facts["format"],
                      expected=expected, details=dict(facts["details"]))


def build(name: str, *, force: bool = False) -> PhonyGuest:
    """Build (or fetch from the cache) the phony guest called ``name``."""
    directory, manifest = ensure_built(recipe(name), _BUILDERS[name], force=force)
    return _load(directory, manifest)


def phony_debian12() -> PhonyGuest:
    """Debian 12, /dev/sda names in fstab, static IP on ens192, open-vm-tools, raw."""
    return build("phony-debian12")


def phony_ubuntu2204() -> PhonyGuest:
    """Ubuntu 22.04 on GPT, root by UUID, netplan static IP on ens160, qcow2."""
    return build("phony-ubuntu2204")


def phony_rocky9() -> PhonyGuest:
    """Rocky Linux 9.3, separate /boot, NetworkManager keyfile, rpm layout, qcow2."""
    return build("phony-rocky9")


def phony_debian12_lvm() -> PhonyGuest:
    """Debian 12 with LVM root and swap plus a separate /boot partition, raw."""
    return build("phony-debian12-lvm")


def phony_sles15() -> PhonyGuest:
    """SUSE Linux Enterprise Server 15 SP5, ifcfg on eth0, raw."""
    return build("phony-sles15")


def blank_disk() -> PhonyGuest:
    """A 256 MiB raw disk with no partitions and no operating system."""
    return build("blank")


PHONY_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def build_all(names: Iterable[str] = PHONY_NAMES, *, parallel: int = 2) -> dict[str, PhonyGuest]:
    """Build every missing phony guest, at most ``parallel`` appliances at once."""
    names = list(names)
    missing = [n for n in names if not recipe(n).is_built()]
    if missing:
        log(f"phony guests to build: {', '.join(missing)}")
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        guests = dict(zip(names, pool.map(build, names), strict=True))
    return guests


__all__ = ["PHONY_NAMES", "ExpectedOS", "PhonyGuest", "blank_disk", "build", "build_all", "phony_debian12",
           "phony_debian12_lvm", "phony_rocky9", "phony_sles15", "phony_ubuntu2204", "recipe"]

