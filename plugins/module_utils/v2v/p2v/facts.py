# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hardware facts of the physical machine, read from /proc, /sys and /etc.

Every reader takes the text it parses (pure, unit-tested on samples), and
:func:`collect_facts` reads the files under a ``root`` (``/`` on a real
machine, a prepared tree in tests). No tool is run here; the hardware logs
(``lscpu``, ``lspci`` ...) are collected separately, as text for the
conversion server.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Serializable

# Block devices that are never a machine's fixed disk.
_VIRTUAL_BLOCK = re.compile(r"^(loop|ram|zram|dm-|md|nbd|sr|fd|drbd|rbd|mtdblock)\d*")
_VENDORS = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD", "HygonGenuine": "Hygon",
            "CentaurHauls": "Centaur", "Shanghai": "Zhaoxin"}
# Places where live and rescue systems mount the medium they booted from.
_LIVE_MOUNTS = ("/", "/run/live/medium", "/run/initramfs/live", "/cdrom", "/lib/live/mount/medium",
                "/run/archiso/bootmnt")


@dataclass
class CPUFacts(Serializable):
    vendor: str | None = None
    model_name: str | None = None
    sockets: int = 1
    cores: int = 1  # per socket
    threads: int = 1  # per core
    logical: int = 1
    flags: list[str] = field(default_factory=list)


@dataclass
class DiskFacts(Serializable):
    name: str  # sda, nvme0n1, vdb
    device: str  # /dev/sda
    size_bytes: int
    model: str | None = None
    serial: str | None = None
    rotational: bool | None = None


@dataclass
class RemovableFacts(Serializable):
    name: str  # sr0
    device: str
    kind: str = "cdrom"


@dataclass
class NICFacts(Serializable):
    name: str
    mac: str | None = None
    link: bool | None = None
    driver: str | None = None
    virtual: bool = False


@dataclass
class HardwareFacts(Serializable):
    hostname: str
    cpu: CPUFacts
    memory_mb: int
    firmware: str  # bios or uefi
    clock: str  # utc or localtime
    disks: list[DiskFacts] = field(default_factory=list)
    removables: list[RemovableFacts] = field(default_factory=list)
    nics: list[NICFacts] = field(default_factory=list)
    boot_devices: list[str] = field(default_factory=list)  # excluded: the medium this system runs from


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def _read_line(path: str) -> str | None:
    text = _read(path)
    if text is None:
        return None
    text = text.strip()
    return text or None


def parse_cpuinfo(text: str) -> CPUFacts:
    """Vendor, model and topology from /proc/cpuinfo (x86 field names)."""
    processors: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                processors.append(current)
                current = {}
            continue
        key, _sep, value = line.partition(":")
        current[key.strip()] = value.strip()
    if current:
        processors.append(current)
    if not processors:
        return CPUFacts()
    first = processors[0]
    vendor_id = first.get("vendor_id")
    sockets = len({p.get("physical id", "0") for p in processors}) or 1
    cores = int(first.get("cpu cores", "0") or 0)
    siblings = int(first.get("siblings", "0") or 0)
    logical = len(processors)
    if not cores:
        cores = max(1, logical // sockets)
    threads = max(1, siblings // cores) if siblings else max(1, logical // (sockets * cores))
    return CPUFacts(vendor=_VENDORS.get(vendor_id or "", vendor_id), model_name=first.get("model name"),
                    sockets=sockets, cores=cores, threads=threads, logical=logical,
                    flags=sorted(set((first.get("flags") or "").split())))


def parse_meminfo(text: str) -> int:
    """MemTotal from /proc/meminfo, in MiB."""
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
    return int(match.group(1)) // 1024 if match else 0


def parse_adjtime(text: str | None) -> str:
    """The hardware clock basis from /etc/adjtime (third line UTC or LOCAL); UTC when unknown."""
    if not text:
        return "utc"
    lines = text.splitlines()
    if len(lines) >= 3 and lines[2].strip().upper() == "LOCAL":
        return "localtime"
    return "utc"


def parse_mounts(text: str) -> dict[str, str]:
    """/proc/mounts as mount point → source device (the last mount of a point wins)."""
    mounts = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            mounts[parts[1].replace("\\040", " ")] = parts[0]
    return mounts


def _parent_disk(root: str, device: str) -> str | None:
    """The whole-disk name under /sys/block holding ``device`` (/dev/sdb1 → sdb)."""
    if not device.startswith("/dev/"):
        return None
    name = os.path.basename(device)
    sys_class = os.path.join(root, "sys/class/block", name)
    if not os.path.exists(sys_class):
        return None
    if os.path.exists(os.path.join(sys_class, "partition")):
        return os.path.basename(os.path.dirname(os.path.realpath(sys_class)))
    return name


def boot_medium_disks(root: str, mounts: dict[str, str]) -> list[str]:
    """Disks this system itself runs from (a live USB stick, the rescue disk), never to be converted."""
    found = []
    for point in _LIVE_MOUNTS:
        disk = _parent_disk(root, mounts.get(point, ""))
        if disk and disk not in found:
            found.append(disk)
    return found


def read_disks(root: str) -> tuple[list[DiskFacts], list[RemovableFacts]]:
    """Fixed disks and removable drives from /sys/block."""
    disks, removables = [], []
    block = os.path.join(root, "sys/block")
    try:
        names = sorted(os.listdir(block))
    except OSError:
        return [], []
    for name in names:
        base = os.path.join(block, name)
        if name.startswith("sr"):
            removables.append(RemovableFacts(name=name, device=f"/dev/{name}", kind="cdrom"))
            continue
        if name.startswith("fd"):
            removables.append(RemovableFacts(name=name, device=f"/dev/{name}", kind="floppy"))
            continue
        if _VIRTUAL_BLOCK.match(name):
            continue
        if _read_line(os.path.join(base, "removable")) == "1":
            continue
        sectors = _read_line(os.path.join(base, "size"))
        size = int(sectors) * 512 if sectors and sectors.isdigit() else 0
        if size == 0:
            continue
        serial = (_read_line(os.path.join(base, "device/serial")) or _read_line(os.path.join(base, "serial"))
                  or _read_line(os.path.join(base, "device/wwid")))
        rotational = _read_line(os.path.join(base, "queue/rotational"))
        disks.append(DiskFacts(name=name, device=f"/dev/{name}", size_bytes=size,
                               model=_read_line(os.path.join(base, "device/model")), serial=serial,
                               rotational=None if rotational is None else rotational == "1"))
    return disks, removables


def read_nics(root: str) -> list[NICFacts]:
    """Network interfaces from /sys/class/net; ``virtual`` ones (no device behind them) are marked."""
    net = os.path.join(root, "sys/class/net")
    try:
        names = sorted(os.listdir(net))
    except OSError:
        return []
    nics = []
    for name in names:
        if name == "lo":
            continue
        base = os.path.join(net, name)
        carrier = _read_line(os.path.join(base, "carrier"))
        driver_link = os.path.join(base, "device/driver")
        driver = os.path.basename(os.path.realpath(driver_link)) if os.path.exists(driver_link) else None
        mac = _read_line(os.path.join(base, "address"))
        nics.append(NICFacts(name=name, mac=mac.lower() if mac else None,
                             link=None if carrier is None else carrier == "1", driver=driver,
                             virtual=not os.path.exists(os.path.join(base, "device"))))
    return nics


def collect_facts(root: str = "/") -> HardwareFacts:
    """Everything about this machine that the conversion needs, read from ``root``."""
    cpu = parse_cpuinfo(_read(os.path.join(root, "proc/cpuinfo")) or "")
    memory = parse_meminfo(_read(os.path.join(root, "proc/meminfo")) or "")
    firmware = "uefi" if os.path.isdir(os.path.join(root, "sys/firmware/efi")) else "bios"
    clock = parse_adjtime(_read(os.path.join(root, "etc/adjtime")))
    hostname = _read_line(os.path.join(root, "proc/sys/kernel/hostname")) if root != "/" else socket.gethostname()
    mounts = parse_mounts(_read(os.path.join(root, "proc/mounts")) or "")
    boot = boot_medium_disks(root, mounts)
    disks, removables = read_disks(root)
    return HardwareFacts(hostname=hostname or "localhost", cpu=cpu, memory_mb=memory, firmware=firmware,
                         clock=clock, disks=[d for d in disks if d.name not in boot], removables=removables,
                         nics=read_nics(root), boot_devices=boot)
