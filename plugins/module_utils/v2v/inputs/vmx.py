# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""VMware ``.vmx`` files (input ``vmx``, local path or NFS mount).

:func:`parse_vmx` is pure: text in, :class:`Source` out. :func:`load` reads
a local file, resolves disk paths relative to the .vmx directory, checks
the disks exist and refuses a VM with snapshots.

What is read, and how it lines up with virt-v2v's ``--print-source``:

- keys are case-insensitive; values are quoted, with ``|XX`` hex escapes;
- ``displayName``, ``memSize`` (MB, default 32), ``numvcpus`` (default 1),
  ``cpuid.coresPerSocket`` (topology), ``firmware = "efi"``,
  ``uefi.secureBoot.enabled``, ``vm.genid``/``vm.genidX`` (VM generation ID);
- hard disks on ``scsiN:M`` (controller model from ``scsiN.virtualDev``),
  ``nvmeN:M``, ``sataN:M`` and ``ideN:M``, in that bus order (virt-v2v's
  order is SCSI, NVMe, IDE; it reads no SATA disks, they go before IDE),
  each bus sorted by controller then unit;
- CD-ROMs (``cdrom-image``, ``atapi-cdrom``, ``cdrom-raw``): IDE ones always,
  as virt-v2v does, in slot ``controller*2 + unit``; SATA (slot
  ``controller*30 + unit``) and SCSI (``controller*16 + unit``) ones, which
  virt-v2v leaves out, only when connected at power-on; floppies
  (``floppyN``) only when connected at power-on to an image or host device,
  not to the remote console client;
- NICs ``ethernetN`` (``virtualDev`` as model; ``networkName``, else
  ``ethernetN``, as bridge when ``connectionType = "bridged"``, else as
  network; MAC from ``address`` when ``addressType = "static"``, else from
  ``generatedAddress``);
- ``sound.virtualDev`` (sb16, es1371 as es1370, hdaudio as ich6), and VNC
  remote display as ``display``. ``svga`` and ``vmci`` are VMware-only devices
  with no counterpart to carry over; the converter chooses the video model.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import NotSupportedError, SourceError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import Input, OpenedSource, SourceSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import (
    Firmware,
    Removable,
    Source,
    SourceCPU,
    SourceDisk,
    SourceNIC,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.vmdk import read_vmdk_info

# key = "value"   |   key = value   (an optional trailing # comment)
_LINE_RE = re.compile(r'^([^\s="#]+)\s*=\s*(?:"([^"]*)"|([^\s"#]*))\s*(?:#.*)?$')
_ESCAPE_RE = re.compile(r"\|([0-9A-Fa-f]{2})")
_DEVICE_RE = re.compile(r"^(scsi|sata|nvme|ide)(\d+):(\d+)$")
_ETHERNET_RE = re.compile(r"^ethernet(\d+)$")
_FLOPPY_RE = re.compile(r"^floppy(\d+)$")
_SNAPSHOT_RE = re.compile(r"^snapshot(\d+)\.")
# VMware names each snapshot's delta of disk.vmdk disk-000001.vmdk, disk-000002.vmdk, ...
_DELTA_RE = re.compile(r"-\d{6}\.vmdk$", re.IGNORECASE)
_WINDOWS_ABS_RE = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")
_ENCODING_RE = re.compile(rb'^\s*\.encoding\s*=\s*"([^"]+)"', re.IGNORECASE | re.MULTILINE)

_BUS_ORDER = ("scsi", "nvme", "sata", "ide")
_DISK_TYPES = {
    "scsi": {None, "disk", "plaindisk", "rawdisk", "scsi-harddisk"},
    "sata": {None, "disk", "plaindisk", "rawdisk", "ata-harddisk", "scsi-harddisk"},
    "nvme": {None, "disk", "plaindisk", "rawdisk"},
    "ide": {None, "disk", "plaindisk", "rawdisk", "ata-harddisk"},
}
_CDROM_TYPES = {"cdrom-image", "atapi-cdrom", "cdrom-raw"}
_SLOTS_PER_CONTROLLER = {"ide": 2, "sata": 30, "scsi": 16}
_BUS_CONTROLLER = {"sata": "ahci", "nvme": "nvme"}
_SOUND_MODELS = {"sb16": "sb16", "es1371": "es1370", "hdaudio": "ich6"}
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


@dataclass
class _Device:
    bus: str
    controller: int
    unit: int

    @property
    def ns(self) -> str:
        return f"{self.bus}{self.controller}:{self.unit}"


class VMX:
    """Parsed VMX keys (lower-cased) with typed getters."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get(self, key: str) -> str | None:
        return self.values.get(key.lower())

    def get_bool(self, key: str) -> bool | None:
        value = self.get(key)
        if value is None:
            return None
        if value.strip().lower() in _TRUE:
            return True
        if value.strip().lower() in _FALSE:
            return False
        raise SourceError(f"{key} = {value!r} is not a boolean (TRUE or FALSE)")

    def get_int(self, key: str) -> int | None:
        value = self.get(key)
        if value is None or value.strip() == "":
            return None
        try:
            return int(value.strip(), 0) if value.strip().lower().startswith("0x") else int(value.strip())
        except ValueError:
            raise SourceError(f"{key} = {value!r} is not a number") from None

    def namespaces(self) -> set[str]:
        """The first component of every key (``scsi0:1`` of ``scsi0:1.fileName``)."""
        return {key.split(".", 1)[0] for key in self.values if "." in key}

    def is_off(self, key: str) -> bool:
        """True only if ``key`` is explicitly FALSE (VMX defaults vary, absent is not off)."""
        return self.get_bool(key) is False


def decode_vmx(data: bytes) -> str:
    """Decode VMX bytes using its ``.encoding`` line (UTF-8 if none)."""
    match = _ENCODING_RE.search(data[:4096])
    if match:
        encoding = match.group(1).decode("ascii", "replace")
        try:
            return data.decode(encoding)
        except LookupError:
            raise SourceError(f".encoding = {encoding!r} is not a known character set") from None
        except UnicodeDecodeError as exc:
            raise SourceError(f"the file is not valid {encoding} as its .encoding line says: {exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # Old VMX files without .encoding were written in the host's code page.
        return data.decode("latin-1")


def parse_vmx_keys(text: str) -> dict[str, str]:
    """Parse VMX (or .vmsd) text into ``{lower-case key: value}``.

    Raises SourceError naming the line number of a malformed line.
    """
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip().lstrip("\ufeff")
        if not line or line.startswith("#"):
            continue
        match = _LINE_RE.match(line)
        if not match:
            shown = line if len(line) <= 80 else line[:77] + "..."
            raise SourceError(f"malformed VMX line {number}: {shown!r}",
                              hint='Each line must be: key = "value"')
        key = match.group(1).lower()
        value = match.group(2) if match.group(2) is not None else match.group(3)
        values[key] = _ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), value)
    return values


def count_snapshots(values: dict[str, str]) -> int:
    """Snapshots recorded in .vmsd (or .vmx) keys: ``snapshot.numSnapshots`` or ``snapshotN.*``."""
    declared = values.get("snapshot.numsnapshots")
    if declared is not None:
        try:
            return int(declared)
        except ValueError:
            raise SourceError(f"snapshot.numSnapshots = {declared!r} is not a number") from None
    return len({m.group(1) for key in values if (m := _SNAPSHOT_RE.match(key))})


def genid_from_vmx(lo: int, hi: int) -> str:
    """VM generation ID (GUID text) from VMware's two signed 64-bit halves.

    The 128 bits are the two halves in hex, rearranged into the GUID's
    mixed-endian text layout (as documented for VM generation IDs across
    hypervisors).
    """
    hexits = f"{lo & 0xFFFFFFFFFFFFFFFF:016x}{hi & 0xFFFFFFFFFFFFFFFF:016x}"

    def swap(start: int, end: int) -> str:
        pairs = [hexits[i:i + 2] for i in range(start, end, 2)]
        return "".join(reversed(pairs))

    return "-".join((hexits[8:16], hexits[4:8], hexits[0:4], swap(28, 32), swap(16, 28)))


def _snapshot_error(name: str, detail: str) -> SourceError:
    return SourceError(
        f"VM {name!r} has snapshots: {detail}; its disks are snapshot deltas, not whole disks",
        hint="Consolidate or delete all snapshots in VMware first (Snapshot Manager > Delete All), "
             "then convert again")


def _resolve(path: str, vmx_dir: str) -> str:
    # Absolute: POSIX, URL, and the Windows forms hosted products write (D:\x, \\server\share).
    if os.path.isabs(path) or "://" in path or _WINDOWS_ABS_RE.match(path):
        return path
    return os.path.normpath(os.path.join(vmx_dir, path))


def _devices(vmx: VMX) -> Iterable[_Device]:
    for ns in vmx.namespaces():
        match = _DEVICE_RE.match(ns)
        if match:
            yield _Device(match.group(1), int(match.group(2)), int(match.group(3)))


def _disks(vmx: VMX, name: str, vmx_dir: str) -> list[SourceDisk]:
    found: list[tuple[int, int, int, SourceDisk]] = []
    for dev in _devices(vmx):
        ns = dev.ns
        device_type = (vmx.get(f"{ns}.deviceType") or "").lower() or None
        filename = vmx.get(f"{ns}.fileName")
        if device_type not in _DISK_TYPES[dev.bus] or not filename:
            continue
        if vmx.is_off(f"{ns}.present") or vmx.is_off(f"{dev.bus}{dev.controller}.present"):
            continue
        if _DELTA_RE.search(filename):
            raise _snapshot_error(name, f"{ns} uses {filename!r}")
        if dev.bus == "scsi":
            controller = (vmx.get(f"scsi{dev.controller}.virtualDev") or "").lower() or None
        else:
            controller = _BUS_CONTROLLER.get(dev.bus)
        disk = SourceDisk(path=_resolve(filename, vmx_dir), format="vmdk", bus=dev.bus, controller=controller)
        found.append((_BUS_ORDER.index(dev.bus), dev.controller, dev.unit, disk))
    found.sort(key=lambda item: item[:3])
    return [item[3] for item in found]


def _removables(vmx: VMX, vmx_dir: str) -> list[Removable]:
    found: list[tuple[int, int, Removable]] = []
    for dev in _devices(vmx):
        ns = dev.ns
        device_type = (vmx.get(f"{ns}.deviceType") or "").lower()
        if device_type not in _CDROM_TYPES or dev.bus not in _SLOTS_PER_CONTROLLER:
            continue
        if vmx.is_off(f"{ns}.present") or vmx.is_off(f"{dev.bus}{dev.controller}.present"):
            continue
        if dev.bus != "ide" and vmx.is_off(f"{ns}.startConnected"):
            continue
        filename = vmx.get(f"{ns}.fileName")
        path = _resolve(filename, vmx_dir) if device_type == "cdrom-image" and filename else None
        slot = dev.controller * _SLOTS_PER_CONTROLLER[dev.bus] + dev.unit
        found.append((_BUS_ORDER.index(dev.bus), slot, Removable(kind="cdrom", bus=dev.bus, slot=slot, path=path)))
    for ns in vmx.namespaces():
        match = _FLOPPY_RE.match(ns)
        if not match or vmx.is_off(f"{ns}.present") or vmx.is_off(f"{ns}.startConnected"):
            continue
        if vmx.get_bool(f"{ns}.clientDevice"):
            continue
        filename = vmx.get(f"{ns}.fileName")
        file_type = (vmx.get(f"{ns}.fileType") or "file").lower()
        if not filename:
            continue
        path = _resolve(filename, vmx_dir) if file_type == "file" else None
        slot = int(match.group(1))
        found.append((len(_BUS_ORDER), slot, Removable(kind="floppy", bus="fdc", slot=slot, path=path)))
    found.sort(key=lambda item: item[:2])
    return [item[2] for item in found]


def _nics(vmx: VMX) -> list[SourceNIC]:
    found: list[tuple[int, SourceNIC]] = []
    for ns in vmx.namespaces():
        match = _ETHERNET_RE.match(ns)
        if not match or vmx.is_off(f"{ns}.present"):
            continue
        address_type = (vmx.get(f"{ns}.addressType") or "").lower()
        if address_type == "static":
            mac = vmx.get(f"{ns}.address") or vmx.get(f"{ns}.generatedAddress")
        else:
            mac = vmx.get(f"{ns}.generatedAddress") or vmx.get(f"{ns}.address")
        model = (vmx.get(f"{ns}.virtualDev") or "").lower() or None
        vnet = vmx.get(f"{ns}.networkName") or ns
        bridged = (vmx.get(f"{ns}.connectionType") or "").lower() == "bridged"
        nic = SourceNIC(mac=mac.lower() if mac else None, model=model,
                        network=None if bridged else vnet, bridge=vnet if bridged else None)
        found.append((int(match.group(1)), nic))
    found.sort(key=lambda item: item[0])
    return [item[1] for item in found]


def _cpu(vmx: VMX, vcpus: int) -> SourceCPU:
    cores = vmx.get_int("cpuid.coresPerSocket")
    if not cores or cores <= 0 or vcpus // cores <= 0:
        return SourceCPU()
    return SourceCPU(sockets=vcpus // cores, cores=cores, threads=1)


def _firmware(vmx: VMX) -> Firmware:
    if (vmx.get("firmware") or "bios").strip().lower() != "efi":
        return Firmware(type="bios")
    return Firmware(type="uefi", secure_boot=bool(vmx.get_bool("uefi.secureBoot.enabled")))


def _sound(vmx: VMX) -> str | None:
    if vmx.is_off("sound.present"):
        return None
    return _SOUND_MODELS.get((vmx.get("sound.virtualDev") or "").lower())


def _genid(vmx: VMX) -> str | None:
    lo, hi = vmx.get_int("vm.genid"), vmx.get_int("vm.genidX")
    if lo is None or hi is None:
        return None
    return genid_from_vmx(lo, hi)


def parse_vmx(text: str, *, vmx_dir: str, default_name: str | None = None) -> Source:
    """Parse VMX text into a Source (pure: nothing is read or checked on disk).

    Relative disk and image paths are resolved against ``vmx_dir``. The name
    is ``displayName``, else ``default_name`` (the .vmx file name).
    """
    vmx = VMX(parse_vmx_keys(text))
    name = vmx.get("displayName") or default_name
    if not name:
        raise SourceError("the VMX has no displayName", hint='Add displayName = "<name>" to the .vmx')
    snapshots = count_snapshots(vmx.values)
    if snapshots > 0:
        raise _snapshot_error(name, f"{snapshots} snapshot(s) recorded")
    vcpus = vmx.get_int("numvcpus") or 1
    return Source(
        name=name,
        hypervisor="vmware",
        input="vmx",
        memory_mb=vmx.get_int("memSize") or 32,
        vcpus=vcpus,
        cpu=_cpu(vmx, vcpus),
        firmware=_firmware(vmx),
        disks=_disks(vmx, name, vmx_dir),
        removables=_removables(vmx, vmx_dir),
        nics=_nics(vmx),
        display="vnc" if vmx.get_bool("RemoteDisplay.vnc.enabled") else None,
        sound=_sound(vmx),
        genid=_genid(vmx),
    )


def _check_vmsd(vmx_path: str, name: str) -> None:
    """Refuse the VM if its .vmsd (snapshot database) lists snapshots."""
    vmsd = os.path.splitext(vmx_path)[0] + ".vmsd"
    if not os.path.isfile(vmsd):
        return
    with open(vmsd, "rb") as handle:
        values = parse_vmx_keys(decode_vmx(handle.read()))
    snapshots = count_snapshots(values)
    if snapshots > 0:
        raise _snapshot_error(name, f"{os.path.basename(vmsd)} lists {snapshots} snapshot(s)")


def load_vmx_file(vmx_path: str) -> Source:
    """Read a local .vmx and check what parsing alone cannot."""
    if not os.path.isfile(vmx_path):
        raise SourceError(f"VMX file {vmx_path!r} does not exist", hint="Check source.path")
    with open(vmx_path, "rb") as handle:
        data = handle.read()
    vmx_dir = os.path.dirname(os.path.abspath(vmx_path))
    default_name = os.path.splitext(os.path.basename(vmx_path))[0]
    try:
        source = parse_vmx(decode_vmx(data), vmx_dir=vmx_dir, default_name=default_name)
    except SourceError as exc:
        if exc.subject is None:
            exc.subject = vmx_path
        raise
    _check_vmsd(vmx_path, source.name)
    for disk in source.disks:
        if not os.path.exists(disk.path) or os.path.isdir(disk.path):
            raise SourceError(f"disk {disk.path!r} of VM {source.name!r} does not exist", subject=vmx_path,
                              hint="Give the .vmx in its datastore directory (local copy or NFS mount) "
                                   "so that its disks are next to it")
        info = read_vmdk_info(disk.path) if os.path.isfile(disk.path) else None
        if info is None:
            continue
        if info.is_delta:
            raise _snapshot_error(source.name, f"{os.path.basename(disk.path)} has parent disk "
                                  f"{info.parent_hint or info.parent_cid!r}")
        disk.size_bytes = info.size_bytes
    return source


def load(spec: SourceSpec) -> Source:
    """``load(spec)`` for input ``vmx``: a local .vmx path."""
    path = spec.single_path()
    if "://" in path:
        raise NotSupportedError(f"VMX {path!r}: only local paths are read by this function",
                                hint="open_source() reads ssh:// paths (inputs/vmx_ssh.py); or use a local/NFS path")
    return load_vmx_file(path)


def is_ssh(spec: SourceSpec) -> bool:
    """Whether the .vmx is in an ESXi datastore read over SSH (``ssh://`` in uri or path)."""
    target = spec.uri or (spec.paths[0] if len(spec.paths) == 1 else "")
    return target.startswith("ssh://")


class VmxInput(Input):
    """``input: vmx``: a local (or NFS) .vmx, or one in an ESXi datastore over SSH (inputs/vmx_ssh.py)."""

    def load(self, spec: SourceSpec) -> Source:
        return load(spec)

    def open(self, spec: SourceSpec) -> OpenedSource:
        if is_ssh(spec):
            # Imported here: vmx_ssh builds on this module's parser.
            from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.vmx_ssh import open_ssh_vmx

            return open_ssh_vmx(spec)
        return OpenedSource(load(spec))
