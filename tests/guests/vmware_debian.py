"""A real, bootable Debian 12 guest that looks like it came from VMware.

What makes it "VMware" (and what a converter has to fix):

* the initramfs is built with ``MODULES=list`` and holds only VMware/SATA
  storage drivers (ahci, ata_piix, vmw_pvscsi, mptspi, mptsas, BusLogic,
  sd_mod, ext4) and NO virtio driver, so it does not boot on virtio-blk;
* ``/dev/sdX`` names in ``/etc/fstab`` and ``root=/dev/sda1`` on the kernel
  command line (``GRUB_DISABLE_LINUX_UUID=true``), ``console=ttyS0``;
* a static IP on ``ens192`` (VMware's first NIC, vmxnet3 at PCI slot 192) in
  ``/etc/network/interfaces``; ``open-vm-tools`` installed;
* exports: raw disk, streamOptimized VMDK, OVA, and an ESXi VMX directory.

After boot a systemd unit writes ONE line to ``/dev/ttyS0``::

    KVMIGRATE-MARKER hostname=<h> root=<source of /> nics=<name>:<mac>:<addr>[+<addr>],...

(``<addr>`` is ``a.b.c.d/len`` or ``-`` when the NIC has no IPv4 address).
:func:`tests.guests.boot.parse_marker` reads it back.

Layouts: ``plain`` (sda1 root, sda5 swap in an extended partition, as the
Debian installer makes) and ``lvm`` (sda1 /boot, sda2 an LVM PV with root and
swap LVs). ``most`` is ``plain`` with Debian's default ``MODULES=most``
initramfs, which already holds the virtio drivers (a guest installed from the
Debian installer rather than a trimmed VMware template). The disk is
assembled inside the libguestfs appliance, where the disk is /dev/sda and
device-mapper exists, and the guest's own grub-install and update-grub run
there.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.appliance import Appliance, DriveSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.process import run_tool

from . import rootfs
from .cache import Recipe, ensure_built, log, qemu_slot
from .exports import VMHardware, export_ovf_and_ova, export_vmx

LAYOUTS = ("plain", "lvm", "most")
GiB = 1024 * 1024 * 1024
MiB = 1024 * 1024
MARKER_PREFIX = "KVMIGRATE-MARKER"
# Only what a VMware VM's disks sit on: SATA/IDE, LSI Logic (SPI and SAS),
# PVSCSI, BusLogic. Nothing virtio.
INITRAMFS_MODULES = ("ahci", "ata_piix", "ata_generic", "sd_mod", "sr_mod", "vmw_pvscsi", "mptspi", "mptsas",
                     "BusLogic", "ext4", "crc32c_generic")
KERNEL_CMDLINE = "console=ttyS0"


@dataclass(frozen=True)
class GuestSpec:
    """The recipe parameters of one layout."""

    layout: str
    name: str
    mac: str
    address: str
    gateway: str = "192.168.122.1"
    nic: str = "ens192"
    memory_mb: int = 1024
    vcpus: int = 1
    disk_size: int = 3 * GiB
    swap_mib: int = 256
    controller: str = "sata"
    # "list": the VMware template's MODULES=list initramfs without virtio; "most": Debian's default
    initramfs: str = "list"

    @property
    def vg(self) -> str:
        return f"{self.name}-vg"

    @property
    def root_device(self) -> str:
        if self.layout == "lvm":
            return f"/dev/mapper/{self.vg.replace('-', '--')}-root"
        return "/dev/sda1"

    @property
    def swap_device(self) -> str:
        if self.layout == "lvm":
            return f"/dev/mapper/{self.vg.replace('-', '--')}-swap_1"
        return "/dev/sda5"

    @property
    def boot_device(self) -> str | None:
        return "/dev/sda1" if self.layout == "lvm" else None

    def hardware(self) -> VMHardware:
        return VMHardware(name=self.name, memory_mb=self.memory_mb, vcpus=self.vcpus, mac=self.mac,
                          controller=self.controller)


SPECS = {
    "plain": GuestSpec(layout="plain", name="vmware-deb12", mac="00:50:56:3a:1b:2c", address="192.168.122.50/24"),
    "lvm": GuestSpec(layout="lvm", name="vmware-deb12-lvm", mac="00:50:56:3a:1b:2d", address="192.168.122.51/24"),
    "most": GuestSpec(layout="plain", name="vmware-deb12-most", mac="00:50:56:3a:1b:2e", address="192.168.122.52/24",
                      initramfs="most"),
}


@dataclass
class VMwareGuest:
    """A built VMware-style Debian guest: every export's path and the facts to check after boot."""

    name: str  # the VM's name (displayName, OVF VirtualSystem) and its hostname
    layout: str
    directory: Path
    raw: Path  # the disk as a raw image (the source of truth; never write it)
    vmdk: Path  # streamOptimized VMDK (also inside the OVA)
    ovf: Path  # ovf/<name>.ovf, next to its .mf and the VMDK (an OVF directory)
    ova: Path
    vmx: Path  # vmx/<name>.vmx
    vmx_disk: Path  # vmx/<name>.vmdk, the monolithicFlat descriptor
    vmx_flat: Path  # vmx/<name>-flat.vmdk, its extent
    hostname: str
    nic: str  # interface name the static config is for (VMware's ens192)
    mac: str
    address: str  # static IPv4 with prefix, e.g. 192.168.122.50/24
    gateway: str
    root_device: str  # what findmnt reports for / after boot (and root= on the command line)
    boot_device: str | None  # separate /boot (lvm layout) or None
    swap_device: str
    fstab: str
    kernel_version: str
    kernel_cmdline: str  # as generated in grub.cfg
    initramfs_modules: list[str]  # module file names in the initramfs
    debian_version: str  # /etc/debian_version, e.g. "12.11"
    memory_mb: int
    vcpus: int
    controller: str  # the VMware disk controller in the OVF/VMX: sata
    firmware: str
    virtual_size: int
    build_seconds: float

    format = "raw"

    @property
    def initrd(self) -> str:
        return f"/boot/initrd.img-{self.kernel_version}"


# --------------------------------------------------------------------------- guest files

MARKER_SCRIPT = r"""#!/bin/sh
# kvmigrate test guest: write ONE line describing this boot to the serial port.
# Waits (bounded) until every statically configured NIC that exists has its
# IPv4 address, so the line shows whether the network configuration applied.
# NICs are renamed by udev (eth0 -> ens192) as their drivers load: settle first.
udevadm settle --timeout=30 || true
configured=$(cat /etc/network/interfaces /etc/network/interfaces.d/* 2>/dev/null |
    awk '$1 == "iface" && $3 == "inet" && $4 == "static" { print $2 }')
i=0
while [ "$i" -lt 30 ]; do
    pending=
    for n in $configured; do
        [ -e "/sys/class/net/$n" ] || continue
        ip -4 -o addr show dev "$n" | grep -q ' inet ' || pending="$pending $n"
    done
    [ -z "$pending" ] && break
    sleep 1
    i=$((i + 1))
done
nics=
for path in /sys/class/net/*; do
    n=${path##*/}
    [ "$n" = lo ] && continue
    mac=$(cat "$path/address")
    addrs=$(ip -4 -o addr show dev "$n" | sed -n 's/.* inet \([0-9.]*\/[0-9]*\) .*/\1/p' | tr '\n' '+')
    addrs=${addrs%+}
    nics="${nics:+$nics,}$n:$mac:${addrs:--}"
done
line="KVMIGRATE-MARKER hostname=$(cat /proc/sys/kernel/hostname) root=$(findmnt -n -o SOURCE /) nics=${nics:--}"
echo "$line" > /dev/ttyS0
echo "$line"
"""

MARKER_UNIT = """[Unit]
Description=kvmigrate test guest: write the boot marker to the serial console
After=network.target local-fs.target systemd-udev-settle.service
DefaultDependencies=yes

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/kvmigrate-marker
StandardOutput=journal

[Install]
WantedBy=multi-user.target
"""


def _grub_default() -> str:
    return ("# Written by the kvmigrate test-guest builder, like a VMware template would have it.\n"
            "GRUB_DEFAULT=0\nGRUB_TIMEOUT=1\n"
            "GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n"
            'GRUB_CMDLINE_LINUX_DEFAULT=""\n'
            f'GRUB_CMDLINE_LINUX="{KERNEL_CMDLINE}"\n'
            'GRUB_TERMINAL="serial console"\nGRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"\n'
            "GRUB_DISABLE_LINUX_UUID=true\nGRUB_DISABLE_LINUX_PARTUUID=true\n"
            "GRUB_DISABLE_RECOVERY=true\nGRUB_DISABLE_OS_PROBER=true\n")


def _fstab(spec: GuestSpec) -> str:
    lines = ["# /etc/fstab: static file system information.", "#",
             "# <file system> <mount point>   <type>  <options>       <dump>  <pass>",
             f"{spec.root_device} /               ext4    errors=remount-ro 0       1"]
    if spec.boot_device:
        lines.append(f"{spec.boot_device} /boot           ext4    defaults        0       2")
    lines.append(f"{spec.swap_device} none            swap    sw              0       0")
    lines.append("/dev/sr0        /media/cdrom0   udf,iso9660 user,noauto     0       0")
    return "\n".join(lines) + "\n"


def _write(tree: Path, rel: str, text: str, mode: int = 0o644) -> None:
    path = tree / rel.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


def _configure_tree(tree: Path, spec: GuestSpec, kernel: str) -> list[str]:
    """Turn the debootstrap tree into the VMware guest; return the initramfs's module files."""
    _write(tree, "etc/hostname", spec.name + "\n")
    _write(tree, "etc/hosts", f"127.0.0.1\tlocalhost\n127.0.1.1\t{spec.name}\n\n"
                              "::1     localhost ip6-localhost ip6-loopback\n")
    _write(tree, "etc/fstab", _fstab(spec))
    _write(tree, "etc/resolv.conf", f"nameserver {spec.gateway}\n")
    _write(tree, "etc/network/interfaces",
           "# This file describes the network interfaces available on your system\n"
           "# and how to activate them. For more information, see interfaces(5).\n\n"
           "source /etc/network/interfaces.d/*\n\n# The loopback network interface\nauto lo\niface lo inet loopback\n\n"
           f"# The primary network interface\nallow-hotplug {spec.nic}\niface {spec.nic} inet static\n"
           f"\taddress {spec.address}\n\tgateway {spec.gateway}\n\tdns-nameservers {spec.gateway}\n")
    _write(tree, "etc/apt/sources.list", "deb http://deb.debian.org/debian bookworm main\n"
                                         "deb http://deb.debian.org/debian-security bookworm-security main\n")
    _write(tree, "etc/default/grub", _grub_default())
    if spec.initramfs == "most":
        _write(tree, "etc/initramfs-tools/initramfs.conf",
               "MODULES=most\nBUSYBOX=auto\nKEYMAP=n\nCOMPRESS=zstd\nDEVICE=\nNFSROOT=auto\nRUNSIZE=10%\nFSTYPE=auto\n")
        _write(tree, "etc/initramfs-tools/modules", "# List of modules that you want to include in your initramfs.\n")
    else:
        _write(tree, "etc/initramfs-tools/initramfs.conf",
               "# VMware template: only the drivers listed in /etc/initramfs-tools/modules\n"
               "MODULES=list\nBUSYBOX=auto\nKEYMAP=n\nCOMPRESS=zstd\nDEVICE=\nNFSROOT=auto\nRUNSIZE=10%\nFSTYPE=ext4\n")
        _write(tree, "etc/initramfs-tools/modules",
               "# Storage drivers of VMware virtual hardware\n" + "\n".join(INITRAMFS_MODULES) + "\n")
    _write(tree, "etc/initramfs-tools/conf.d/resume", "RESUME=none\n")
    _write(tree, "usr/local/sbin/kvmigrate-marker", MARKER_SCRIPT, 0o755)
    _write(tree, "etc/systemd/system/kvmigrate-marker.service", MARKER_UNIT)
    wants = tree / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "kvmigrate-marker.service"
    if not link.is_symlink():
        link.symlink_to("/etc/systemd/system/kvmigrate-marker.service")
    # Quieter, faster boots: nothing in this guest needs these timers.
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer"):
        (tree / "etc/systemd/system" / timer).unlink(missing_ok=True)
        (tree / "etc/systemd/system" / timer).symlink_to("/dev/null")
    # A known root password for debugging on the serial console; a test VM only.
    rootfs.chroot(tree, ["chpasswd"], input_text="root:kvmigrate\n")
    log(f"building the initramfs (MODULES={spec.initramfs})")
    rootfs.chroot(tree, ["update-initramfs", "-u", "-k", kernel])
    listing = run_tool(["lsinitramfs", str(tree / "boot" / f"initrd.img-{kernel}")])
    modules = sorted(Path(p).name for p in listing.splitlines() if p.endswith((".ko", ".ko.xz", ".ko.zst")))
    virtio = [m for m in modules if "virtio" in m]
    if spec.initramfs == "most":
        if not {"virtio_blk.ko", "virtio_pci.ko", "virtio_scsi.ko", "virtio_net.ko"} <= set(modules):
            raise RuntimeError(f"the MODULES=most initramfs lacks virtio drivers; it has {virtio}")
    elif virtio:
        raise RuntimeError(f"the VMware-style initramfs must not contain virtio modules, found {virtio}")
    for wanted in ("ahci", "sd_mod", "vmw_pvscsi", "ext4"):
        if f"{wanted}.ko" not in modules:
            raise RuntimeError(f"the initramfs lacks {wanted}.ko; it has {modules}")
    return modules


# --------------------------------------------------------------------------- the disk

def _partition_plain(g: Any, spec: GuestSpec) -> None:
    dev = "/dev/sda"
    total = g.blockdev_getsz(dev)
    swap = spec.swap_mib * 2048
    root_end = total - swap - 2048 - 1
    g.part_init(dev, "mbr")
    g.part_add(dev, "p", 2048, root_end)
    g.part_add(dev, "e", root_end + 1, total - 1)
    g.part_add(dev, "l", root_end + 1 + 2048, total - 1)
    g.part_set_bootable(dev, 1, True)
    g.mkfs("ext4", "/dev/sda1")
    g.mkswap("/dev/sda5")
    g.mount("/dev/sda1", "/")


def _partition_lvm(g: Any, spec: GuestSpec) -> None:
    dev = "/dev/sda"
    g.part_init(dev, "mbr")
    boot_end = 2048 + 512 * 2048 - 1
    g.part_add(dev, "p", 2048, boot_end)
    g.part_add(dev, "p", boot_end + 1, -1)
    g.part_set_bootable(dev, 1, True)
    g.part_set_mbr_id(dev, 2, 0x8E)
    g.pvcreate("/dev/sda2")
    g.vgcreate(spec.vg, ["/dev/sda2"])
    g.lvcreate("swap_1", spec.vg, spec.swap_mib)
    g.lvcreate_free("root", spec.vg, 100)
    g.mkfs("ext4", "/dev/sda1")
    g.mkfs("ext4", f"/dev/{spec.vg}/root")
    g.mkswap(f"/dev/{spec.vg}/swap_1")
    g.mount(f"/dev/{spec.vg}/root", "/")
    g.mkdir("/boot")
    g.mount("/dev/sda1", "/boot")


def _install_bootloader(g: Any) -> str:
    """Run the guest's grub-install and update-grub; return grub.cfg. Raises RuntimeError."""
    g.command(["grub-install", "--target=i386-pc", "/dev/sda"])
    mbr = g.pread_device("/dev/sda", 512, 0)
    if b"GRUB" not in mbr or mbr[510:512] != b"\x55\xaa":
        raise RuntimeError("grub-install reported success but /dev/sda has no GRUB boot sector")
    g.command(["update-grub"])
    cfg: str = g.cat("/boot/grub/grub.cfg")
    return cfg


def _diagnose_grub(g: Any) -> None:
    for probe in ("grub-probe -t partmap -d /dev/sda", "grub-probe -t fs -d /dev/sda",
                  "grub-probe -t drive /boot/grub", "cat /proc/partitions"):
        try:
            output = g.command(["sh", "-c", probe + " 2>&1"]).strip()
        except RuntimeError as err:
            output = str(err)
        log(f"  diagnosis: {probe}: {output}")


def _mount_guest(g: Any, spec: GuestSpec) -> None:
    if spec.layout == "lvm":
        g.mount(f"/dev/{spec.vg}/root", "/")
        g.mount("/dev/sda1", "/boot")
    else:
        g.mount("/dev/sda1", "/")


def _finish_session(g: Any, spec: GuestSpec) -> None:
    g.umount_all()
    if spec.layout == "lvm":
        g.vg_activate(False, [spec.vg])
    g.sync()


def _assemble_disk(disk: Path, tar: Path, spec: GuestSpec, sessions: int = 3) -> str:
    """Partition, fill and make bootable; return the kernel command line in grub.cfg.

    grub-install inside the appliance sometimes (2 builds in 10 here) takes
    /dev/sda for a partition ("File system `ext2' doesn't support embedding
    ... cross-disk install") and keeps doing so for the whole appliance
    session; a fresh session on the same disk then succeeds. So the boot
    loader step is retried in new sessions, with a diagnosis logged.
    """
    run_tool(["qemu-img", "create", "-q", "-f", "raw", str(disk), str(spec.disk_size)])
    drives = [DriveSpec(path=str(disk), format="raw", readonly=False)]
    grub_cfg: str | None = None
    with qemu_slot(f"assembling {spec.name}"), Appliance(drives, memsize_mb=1024) as g:
        (_partition_lvm if spec.layout == "lvm" else _partition_plain)(g, spec)
        log(f"copying the guest tree into the disk ({tar.stat().st_size // MiB} MiB, inside the appliance)")
        g.tar_in(str(tar), "/", xattrs=True, acls=True)
        log("running the guest's grub-install and update-grub")
        try:
            grub_cfg = _install_bootloader(g)
        except RuntimeError as exc:
            log(f"installing the boot loader failed; retrying in a new appliance session: {exc}")
            _diagnose_grub(g)
        _finish_session(g, spec)
    for attempt in range(2, sessions + 1):
        if grub_cfg is not None:
            break
        with qemu_slot(f"installing the boot loader of {spec.name}"), Appliance(drives, memsize_mb=1024) as g:
            _mount_guest(g, spec)
            try:
                grub_cfg = _install_bootloader(g)
            except RuntimeError as exc:
                if attempt == sessions:
                    raise
                log(f"installing the boot loader failed again (session {attempt}): {exc}")
                _diagnose_grub(g)
            _finish_session(g, spec)
    if grub_cfg is None:
        raise RuntimeError(f"could not install the boot loader of {spec.name}")
    match = re.search(r"^\s*linux\s+\S*vmlinuz-\S+\s+(.*)$", grub_cfg, re.MULTILINE)
    if not match:
        raise RuntimeError(f"no kernel entry in the generated grub.cfg:\n{grub_cfg}")
    cmdline = match.group(1).strip()
    if f"root={spec.root_device}" not in cmdline.split() or KERNEL_CMDLINE not in cmdline.split():
        raise RuntimeError(f"grub.cfg has the wrong kernel command line: {cmdline!r}")
    return cmdline


# --------------------------------------------------------------------------- build and load

def recipe(layout: str) -> Recipe:
    if layout not in SPECS:
        raise KeyError(f"no layout {layout!r}; known: {', '.join(LAYOUTS)}")
    spec = asdict(SPECS[layout])
    if spec["initramfs"] == "list":  # the default; left out so that older guests keep their cache key
        del spec["initramfs"]
    return Recipe(name=SPECS[layout].name, params={"spec": spec,
                                                    "initramfs_modules": list(INITRAMFS_MODULES)},
                  modules=("vmware_debian.py", "exports.py"), inputs=(rootfs.recipe().key,))


def _build(tmp: Path, spec: GuestSpec) -> dict[str, Any]:
    rootfs_tar, rootfs_facts = rootfs.build()
    kernel = rootfs_facts["kernel_version"]
    tree = tmp / "tree"
    tree.mkdir()
    log("unpacking the debootstrap tree")
    run_tool(["tar", "-C", str(tree), *rootfs.TAR_OPTIONS, "-xf", str(rootfs_tar)], timeout=900)
    modules = _configure_tree(tree, spec, kernel)
    fstab = (tree / "etc/fstab").read_text(encoding="utf-8")
    configured = tmp / "configured.tar"
    run_tool(["tar", "-C", str(tree), *rootfs.TAR_OPTIONS, "-cf", str(configured), "."], timeout=900)
    shutil.rmtree(tree)
    disk = tmp / "disk.raw"
    cmdline = _assemble_disk(disk, configured, spec)
    configured.unlink()
    hw = spec.hardware()
    paths = export_ovf_and_ova(disk, hw, tmp)
    paths.update(export_vmx(disk, hw, tmp, uuid_seed=spec.name))
    paths["raw"] = disk.name
    for path in tmp.rglob("*"):  # sources are read-only, as a reminder to everyone
        if path.is_file():
            path.chmod(0o444)
    info = json.loads(run_tool(["qemu-img", "info", "--output=json", "-f", "raw", str(disk)]))
    return {"paths": paths, "spec": asdict(spec), "kernel_version": kernel, "kernel_cmdline": cmdline,
            "initramfs_modules": modules, "debian_version": rootfs_facts["debian_version"], "fstab": fstab,
            "virtual_size": int(info["virtual-size"])}


def _load(directory: Path, manifest: dict[str, Any]) -> VMwareGuest:
    facts = manifest["facts"]
    spec = GuestSpec(**facts["spec"])
    paths = {k: directory / v for k, v in facts["paths"].items()}
    return VMwareGuest(name=spec.name, layout=spec.layout, directory=directory, raw=paths["raw"],
                       vmdk=paths["vmdk"], ovf=paths["ovf"], ova=paths["ova"], vmx=paths["vmx"],
                       vmx_disk=paths["vmx_disk"], vmx_flat=paths["vmx_flat"], hostname=spec.name, nic=spec.nic,
                       mac=spec.mac, address=spec.address, gateway=spec.gateway, root_device=spec.root_device,
                       boot_device=spec.boot_device, swap_device=spec.swap_device, fstab=facts["fstab"],
                       kernel_version=facts["kernel_version"], kernel_cmdline=facts["kernel_cmdline"],
                       initramfs_modules=list(facts["initramfs_modules"]), debian_version=facts["debian_version"],
                       memory_mb=spec.memory_mb, vcpus=spec.vcpus, controller=spec.controller, firmware="bios",
                       virtual_size=facts["virtual_size"], build_seconds=manifest["build_seconds"])


def build(layout: str = "plain", *, force: bool = False) -> VMwareGuest:
    """Build (or fetch from the cache) the VMware-style Debian 12 guest with ``layout``."""
    spec = SPECS.get(layout)
    if spec is None:
        raise KeyError(f"no layout {layout!r}; known: {', '.join(LAYOUTS)}")
    directory, manifest = ensure_built(recipe(layout), lambda tmp: _build(tmp, spec), force=force)
    return _load(directory, manifest)


def vmware_debian12(layout: str = "plain") -> VMwareGuest:
    return build(layout)
