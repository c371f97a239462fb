# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""OVA archives and OVF directories (input ``ova``).

:func:`parse_ovf` is pure: OVF text in, a :class:`Source` plus one
:class:`OvfDisk` (the file reference) per source disk out. It reads the
VMware flavour (``vmw:Config`` firmware, ``vmw:CoresPerSocket``, MAC in
``rasd:Address``) and the VirtualBox flavour (``vbox:Machine``: firmware,
MACs, adapter types), OVF 1.x and 2.x item elements alike. Hardware items
by ``rasd:ResourceType``: 3 CPU, 4 memory (``AllocationUnits``), 5 IDE,
6 SCSI, 20 SATA (NVMe when its sub type says so), 17 disk, 14 floppy,
15/16 CD-ROM, 10 NIC, 35 sound. Disks, CD-ROMs and NICs keep document order,
CD-ROM slot is ``AddressOnParent``, and a NIC's ``Connection`` is its bridge
name, as virt-v2v reports them.

:func:`load` accepts:

- an uncompressed ``.ova`` (tar): each disk is located inside the tar and
  returned as ``SourceDisk(path=<ova>, offset=..., length=...)`` to be read
  in place, nothing is extracted;
- a directory holding an extracted OVF (or the ``.ovf`` file itself);
- a gzip, xz or bzip2 compressed OVA: its regular files are extracted into
  ``<spec.work_dir>/ova-<key>``, the key derived from the OVA's path, size
  and modification time, so loading the same OVA again reuses the
  extraction and returns the same disk paths (the caller owns and cleans
  the work directory). A failed extraction is removed.

Every ``.mf`` manifest next to the OVF is verified entry by entry. Every
``ovf:href`` must name a regular file inside the package: ``..``, absolute
paths, URLs and links (symbolic or hard, in the tar or in the directory)
are refused.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import posixpath
import re
import shutil
import stat
import tarfile
from dataclasses import dataclass, field
from typing import IO, Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.compat import strict_zip
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import (
    NotSupportedError,
    SourceError,
    UnsafeImageError,
    V2VError,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import Input, OpenedSource, SourceSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.manifest import (
    check_relative_name,
    verify_manifest,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import (
    Firmware,
    Removable,
    Source,
    SourceCPU,
    SourceDisk,
    SourceNIC,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.vmdk import read_vmdk_info
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.xmlsupport import etree, safe_parser

_DISK_RE = re.compile(r"^(?:ovf:)?/disk/(.+)$")
_FILE_RE = re.compile(r"^(?:ovf:)?/file/(.+)$")
_UNITS_RE = re.compile(r"^bytes?\s*(?:\*\s*(\d+)\s*\^\s*(\d+))?$", re.IGNORECASE)
_XML_DECL_RE = re.compile(r"^\s*<\?xml[^>]*\?>")
_NAMED_UNITS = {
    "byte": 1, "bytes": 1,
    "kilobytes": 1024, "kb": 1024, "kib": 1024,
    "megabytes": 1024 ** 2, "mb": 1024 ** 2, "mib": 1024 ** 2,
    "gigabytes": 1024 ** 3, "gb": 1024 ** 3, "gib": 1024 ** 3,
    "terabytes": 1024 ** 4, "tb": 1024 ** 4, "tib": 1024 ** 4,
}
_MIB = 1024 ** 2
_CONTROLLER_NAMES = {
    "virtualscsi": "pvscsi", "lsilogicsas": "lsisas1068", "lsilogic": "lsilogic", "buslogic": "buslogic",
    "vmware.sata.ahci": "ahci", "ahci": "ahci", "vmware.nvme.controller": "nvme", "nvme": "nvme",
    "piix3": "piix3", "piix4": "piix4", "ich6": "ich6",
}
_VBOX_NIC_MODELS = {
    "am79c970a": "pcnet", "am79c973": "pcnet", "am79c960": "pcnet",
    "82540em": "e1000", "82543gc": "e1000", "82545em": "e1000", "virtio": "virtio",
}
_SOUND_MODELS = (("hdaudio", "ich6"), ("hda", "ich6"), ("1371", "es1370"), ("1370", "es1370"),
                 ("sb16", "sb16"), ("ac97", "ac97"))
_COMPRESSED_MAGIC = {b"\x1f\x8b": "gzip", b"\xfd7zXZ\x00": "xz", b"BZh": "bzip2"}
_ZIP_MAGIC = b"PK\x03\x04"
_COPY_CHUNK = 1024 * 1024
_EXTRACTED_MARKER = ".kvmigrate-extracted.json"


@dataclass
class OvfDisk:
    """The file behind one source disk, as the OVF names it."""

    href: str
    file_id: str
    compression: str | None = None
    chunked: bool = False
    parents: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------
# Parsing (pure)
# --------------------------------------------------------------------------

def _local(node: Any) -> str:
    tag = node.tag
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _children(node: Any, name: str) -> list[Any]:
    return [c for c in node if _local(c) == name]


def _child(node: Any, name: str) -> Any | None:
    found = _children(node, name)
    return found[0] if found else None


def _attr(node: Any, name: str) -> str | None:
    """Attribute by local name, whatever its namespace (ovf:href, vmw:key, plain)."""
    for key, value in node.attrib.items():
        if key.rsplit("}", 1)[-1] == name:
            return str(value)
    return None


def _int(value: str | None, what: str) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        return int(value.strip())
    except ValueError:
        raise SourceError(f"OVF {what} {value!r} is not a number") from None


def unit_bytes(units: str | None, default: int = 1) -> int:
    """Bytes per unit for OVF ``AllocationUnits`` ("byte * 2^20", "MegaBytes", ...)."""
    if units is None or not units.strip():
        return default
    text = " ".join(units.split())
    match = _UNITS_RE.match(text)
    if match:
        return int(match.group(1)) ** int(match.group(2)) if match.group(1) else 1
    named = _NAMED_UNITS.get(text.lower())
    if named is None:
        raise SourceError(f"OVF allocation units {units!r} are not understood")
    return named


@dataclass
class _Item:
    fields: dict[str, str]
    node: Any

    def get(self, name: str) -> str | None:
        return self.fields.get(name)

    @property
    def resource_type(self) -> int | None:
        return _int(self.get("ResourceType"), "ResourceType")


def _items(hardware: Any) -> list[_Item]:
    items = []
    for node in hardware:
        if _local(node) not in ("Item", "StorageItem", "EthernetPortItem"):
            continue
        fields = {_local(c): (c.text or "").strip() for c in node if _local(c)}
        items.append(_Item(fields, node))
    return items


def _parse_xml(text: str | bytes) -> Any:
    parser = safe_parser(huge_tree=False)
    data = text
    if isinstance(data, str):
        data = _XML_DECL_RE.sub("", data, count=1)
    try:
        return etree.fromstring(data.encode("utf-8") if isinstance(data, str) else data, parser)
    except etree.XMLSyntaxError as exc:
        raise SourceError(f"the OVF is not valid XML: {exc}") from None


def _vmw_configs(hardware: Any) -> dict[str, str]:
    configs: dict[str, str] = {}
    for node in hardware:
        if _local(node) in ("Config", "ExtraConfig"):
            key, value = _attr(node, "key"), _attr(node, "value")
            if key is not None and value is not None:
                configs[key.lower()] = value
    return configs


def _references(envelope: Any) -> dict[str, tuple[str, Any]]:
    refs: dict[str, tuple[str, Any]] = {}
    section = _child(envelope, "References")
    for node in _children(section, "File") if section is not None else []:
        file_id, href = _attr(node, "id"), _attr(node, "href")
        if not file_id or not href:
            raise SourceError("an OVF <File> has no ovf:id or ovf:href")
        check_relative_name(href, what="OVF href")
        refs[file_id] = (href, node)
    return refs


def _disk_format(fmt: str | None, href: str) -> str | None:
    text = (fmt or "").lower()
    for needle, name in (("vmdk", "vmdk"), ("qcow", "qcow2"), ("vhdx", "vhdx"), ("vhd", "vpc"), ("raw", "raw")):
        if needle in text:
            return name
    ext = posixpath.splitext(href.lower())[1]
    return {".vmdk": "vmdk", ".qcow2": "qcow2", ".vhd": "vpc", ".vhdx": "vhdx",
            ".img": "raw", ".raw": "raw"}.get(ext)


class _OvfReader:
    """One parse of one OVF document."""

    def __init__(self, root: Any) -> None:
        if _local(root) != "Envelope":
            raise SourceError(f"the OVF root element is <{_local(root)}>, not <Envelope>")
        self.envelope = root
        if _child(root, "VirtualSystemCollection") is not None:
            raise NotSupportedError("OVF packages with several virtual machines (VirtualSystemCollection) "
                                    "are not supported yet", hint="Export each VM as its own OVA")
        systems = _children(root, "VirtualSystem")
        if len(systems) != 1:
            raise SourceError(f"the OVF has {len(systems)} <VirtualSystem> elements, expected one")
        self.system = systems[0]
        self.hardware = _child(self.system, "VirtualHardwareSection")
        if self.hardware is None:
            raise SourceError("the OVF has no <VirtualHardwareSection>")
        self.items = _items(self.hardware)
        self.by_instance = {i.get("InstanceID"): i for i in self.items if i.get("InstanceID")}
        self.configs = _vmw_configs(self.hardware)
        self.vbox = _child(self.system, "Machine")
        self.references = _references(root)
        section = _child(root, "DiskSection")
        self.disk_defs = {_attr(d, "diskId"): d for d in (_children(section, "Disk") if section is not None else [])}

    def of_type(self, *types: int) -> list[_Item]:
        return [i for i in self.items if i.resource_type in types]

    def name(self) -> str:
        node = _child(self.system, "Name")
        if node is not None and (node.text or "").strip():
            return (node.text or "").strip()
        if self.vbox is not None and _attr(self.vbox, "name"):
            return str(_attr(self.vbox, "name"))
        ident = _attr(self.system, "id")
        if ident:
            return ident
        raise SourceError("the OVF gives the VM no name (no <Name>, no ovf:id)")

    def hypervisor(self) -> str:
        system = _child(self.hardware, "System")
        vtype = ""
        if system is not None:
            vtype = next(((c.text or "").strip().lower() for c in system if _local(c) == "VirtualSystemType"), "")
        return "virtualbox" if self.vbox is not None or vtype.startswith("virtualbox") else "vmware"

    def vbox_hardware(self) -> Any | None:
        return _child(self.vbox, "Hardware") if self.vbox is not None else None

    def memory_mb(self) -> int:
        for item in self.of_type(4):
            quantity = _int(item.get("VirtualQuantity"), "memory VirtualQuantity")
            if quantity is not None:
                return max(1, quantity * unit_bytes(item.get("AllocationUnits"), default=_MIB) // _MIB)
        hardware = self.vbox_hardware()
        memory = _child(hardware, "Memory") if hardware is not None else None
        ram = _int(_attr(memory, "RAMSize"), "RAMSize") if memory is not None else None
        return ram or 1024

    def vcpus(self) -> tuple[int, SourceCPU]:
        vcpus, cores = None, None
        for item in self.of_type(3):
            vcpus = _int(item.get("VirtualQuantity"), "CPU VirtualQuantity")
            cores = _int(item.get("CoresPerSocket"), "vmw:CoresPerSocket")
            break
        if vcpus is None:
            hardware = self.vbox_hardware()
            cpu = _child(hardware, "CPU") if hardware is not None else None
            vcpus = _int(_attr(cpu, "count"), "CPU count") if cpu is not None else None
        vcpus = vcpus or 1
        if cores and cores > 0 and vcpus // cores > 0:
            return vcpus, SourceCPU(sockets=vcpus // cores, cores=cores, threads=1)
        return vcpus, SourceCPU()

    def firmware(self) -> Firmware:
        secure = (self.configs.get("bootoptions.efisecurebootenabled", "").lower() == "true"
                  or self.configs.get("uefi.secureboot.enabled", "").lower() == "true")
        value = self.configs.get("firmware")
        if value is not None:
            kind = {"efi": "uefi", "bios": "bios"}.get(value.strip().lower(), "unknown")
            return Firmware(type=kind, secure_boot=secure and kind == "uefi")
        hardware = self.vbox_hardware()
        if hardware is not None:
            node = _child(hardware, "Firmware")
            efi = node is not None and (_attr(node, "type") or "").upper().startswith("EFI")
            return Firmware(type="uefi" if efi else "bios", secure_boot=False)
        return Firmware(type="unknown")

    def controller_of(self, item: _Item) -> tuple[str | None, str | None]:
        parent = self.by_instance.get(item.get("Parent") or "")
        if parent is None:
            return None, None
        subtype = (parent.get("ResourceSubType") or "").strip().lower()
        rtype = parent.resource_type
        model = _CONTROLLER_NAMES.get(subtype, subtype or None)
        if rtype == 5:
            return "ide", model
        if rtype == 6:
            return "scsi", model
        if rtype == 20:
            return ("nvme" if "nvme" in subtype else "sata"), model
        return None, model

    def file_ref(self, host_resource: str, what: str) -> tuple[str, Any, Any | None]:
        """(file id, <File>, <Disk> or None) for a HostResource."""
        match = _DISK_RE.match(host_resource)
        if match:
            disk_def = self.disk_defs.get(match.group(1))
            if disk_def is None:
                raise SourceError(f"{what} refers to disk {match.group(1)!r}, not in the OVF <DiskSection>")
            file_id = _attr(disk_def, "fileRef")
            if not file_id:
                raise NotSupportedError(f"{what} is an empty disk to be created on import (no ovf:fileRef); "
                                        "this is not supported yet")
        else:
            match = _FILE_RE.match(host_resource)
            if not match:
                raise SourceError(f"{what} has an unknown HostResource {host_resource!r}")
            file_id, disk_def = match.group(1), None
        if file_id not in self.references:
            raise SourceError(f"{what} refers to file id {file_id!r}, not in the OVF <References>")
        return file_id, self.references[file_id][1], disk_def

    def parents(self, disk_def: Any | None, what: str) -> list[str]:
        chain: list[str] = []
        seen: set[str] = set()
        while disk_def is not None and _attr(disk_def, "parentRef"):
            parent_id = str(_attr(disk_def, "parentRef"))
            if parent_id in seen:
                raise SourceError(f"{what}: the disk parentRef chain loops at {parent_id!r}")
            seen.add(parent_id)
            disk_def = self.disk_defs.get(parent_id)
            if disk_def is None:
                raise SourceError(f"{what}: parent disk {parent_id!r} is not in the OVF <DiskSection>")
            file_id = _attr(disk_def, "fileRef")
            if not file_id or file_id not in self.references:
                raise NotSupportedError(f"{what}: parent disk {parent_id!r} has no file in the package")
            chain.append(self.references[file_id][0])
        return chain

    def disks(self) -> tuple[list[SourceDisk], list[OvfDisk]]:
        disks: list[SourceDisk] = []
        refs: list[OvfDisk] = []
        for item in self.of_type(17):
            what = f"OVF disk {item.get('ElementName') or item.get('InstanceID') or len(disks)}"
            host = item.get("HostResource") or ""
            if not host:
                raise SourceError(f"{what} has no rasd:HostResource")
            file_id, file_node, disk_def = self.file_ref(host, what)
            href = self.references[file_id][0]
            size = None
            if disk_def is not None:
                capacity = _attr(disk_def, "capacity")
                if capacity and capacity.strip().isdigit():
                    size = int(capacity) * unit_bytes(_attr(disk_def, "capacityAllocationUnits"))
            compression = (_attr(file_node, "compression") or "").lower() or None
            if compression == "identity":
                compression = None
            if compression not in (None, "gzip"):
                raise NotSupportedError(f"{what}: file {href!r} uses compression {compression!r}, "
                                        "only gzip is supported")
            bus, controller = self.controller_of(item)
            fmt = _disk_format(_attr(disk_def, "format") if disk_def is not None else None, href)
            disks.append(SourceDisk(path=href, format=fmt, bus=bus, size_bytes=size, controller=controller))
            refs.append(OvfDisk(href=href, file_id=file_id, compression=compression,
                                chunked=_attr(file_node, "chunkSize") is not None,
                                parents=self.parents(disk_def, what)))
        return disks, refs

    def removables(self) -> list[Removable]:
        found = []
        for item in self.of_type(14, 15, 16):
            bus, _model = self.controller_of(item)
            kind = "floppy" if item.resource_type == 14 else "cdrom"
            if kind == "floppy" and bus is None:
                bus = "fdc"
            found.append(Removable(kind=kind, bus=bus,
                                   slot=_int(item.get("AddressOnParent"), "AddressOnParent")))
        return found

    def vbox_adapters(self) -> list[Any]:
        hardware = self.vbox_hardware()
        network = _child(hardware, "Network") if hardware is not None else None
        if network is None:
            return []
        adapters = [a for a in _children(network, "Adapter") if (_attr(a, "enabled") or "true").lower() == "true"]
        return sorted(adapters, key=lambda a: _int(_attr(a, "slot"), "Adapter slot") or 0)

    def nics(self) -> list[SourceNIC]:
        adapters = self.vbox_adapters()
        nics = []
        for index, item in enumerate(self.of_type(10)):
            connection = item.get("Connection") or None
            mac = item.get("Address") or None
            model = (item.get("ResourceSubType") or "").lower() or None
            if index < len(adapters):
                adapter = adapters[index]
                raw_mac = _attr(adapter, "MACAddress") or ""
                if not mac and re.fullmatch(r"[0-9A-Fa-f]{12}", raw_mac):
                    mac = ":".join(raw_mac[i:i + 2] for i in range(0, 12, 2))
                if not model:
                    model = _VBOX_NIC_MODELS.get((_attr(adapter, "type") or "").lower())
            nics.append(SourceNIC(mac=mac.lower() if mac else None, model=model,
                                  network=None if connection else f"eth{index}", bridge=connection))
        return nics

    def sound(self) -> str | None:
        names = [(i.get("ResourceSubType") or "").lower() for i in self.of_type(35)]
        hardware = self.vbox_hardware()
        audio = _child(hardware, "AudioAdapter") if hardware is not None else None
        if audio is not None and (_attr(audio, "enabled") or "false").lower() == "true":
            names.append((_attr(audio, "controller") or "ac97").lower())
        for name in names:
            for needle, model in _SOUND_MODELS:
                if needle in name:
                    return model
        return None


def parse_ovf(text: str | bytes) -> tuple[Source, list[OvfDisk]]:
    """Parse OVF text: the Source (disk paths are the OVF hrefs) and each disk's file reference.

    Refuses (UnsafeImageError) any ``ovf:href`` that could point outside the package.
    """
    reader = _OvfReader(_parse_xml(text))
    vcpus, cpu = reader.vcpus()
    disks, refs = reader.disks()
    source = Source(
        name=reader.name(),
        hypervisor=reader.hypervisor(),
        input="ova",
        memory_mb=reader.memory_mb(),
        vcpus=vcpus,
        cpu=cpu,
        firmware=reader.firmware(),
        disks=disks,
        removables=reader.removables(),
        nics=reader.nics(),
        sound=reader.sound(),
    )
    return source, refs


# --------------------------------------------------------------------------
# Packages: a tar read in place, or a directory
# --------------------------------------------------------------------------

def _norm(name: str) -> str:
    name = name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return posixpath.normpath(name) if name else name


def _unsafe_member_name(name: str) -> bool:
    norm = _norm(name)
    return not norm or norm.startswith("/") or norm == ".." or norm.startswith("../")


class _Package:
    """Files of an OVF package, by name relative to the package root."""

    label = ""
    in_place = False

    def names(self) -> list[str]:
        raise NotImplementedError

    def ovf_names(self) -> list[str]:
        """The candidate OVF descriptors."""
        return sorted(n for n in self.names() if n.lower().endswith(".ovf"))

    def open(self, name: str, href: str | None = None) -> IO[bytes] | None:
        raise NotImplementedError

    def locate(self, name: str, href: str) -> tuple[str, int | None, int | None]:
        raise NotImplementedError

    def local_path(self, name: str) -> str | None:
        """A real file path for ``name`` when the package is a directory."""
        return None


class _TarPackage(_Package):
    in_place = True

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.label = path
        self.members: dict[str, tarfile.TarInfo] = {}
        try:
            self.tar = tarfile.open(self.path, "r:")  # noqa: SIM115 - closed by close()
        except (tarfile.TarError, OSError) as exc:
            raise SourceError(f"not a readable OVA (tar) archive: {exc}", subject=path) from None
        try:
            for member in self.tar.getmembers():
                if not _unsafe_member_name(member.name):
                    self.members[_norm(member.name)] = member
        except (tarfile.TarError, OSError) as exc:
            self.tar.close()
            raise SourceError(f"not a readable OVA (tar) archive: {exc}", subject=path) from None

    def close(self) -> None:
        self.tar.close()

    def names(self) -> list[str]:
        return list(self.members)

    def _member(self, name: str, href: str | None) -> tarfile.TarInfo | None:
        member = self.members.get(_norm(name))
        if member is None:
            return None
        shown = href or name
        if member.issym() or member.islnk():
            raise UnsafeImageError(f"OVF href {shown!r} is a {'symbolic' if member.issym() else 'hard'} link "
                                   f"inside the OVA (to {member.linkname!r})",
                                   subject=self.label, hint="Only regular files inside the OVA are read")
        if not member.isfile():
            raise SourceError(f"{shown!r} in the OVA is not a regular file", subject=self.label)
        return member

    def open(self, name: str, href: str | None = None) -> IO[bytes] | None:
        member = self._member(name, href)
        if member is None:
            return None
        return self.tar.extractfile(member)

    def locate(self, name: str, href: str) -> tuple[str, int | None, int | None]:
        member = self._member(name, href)
        if member is None:
            raise _missing(href, self.label)
        if member.issparse():
            raise NotSupportedError(f"disk {href!r} is stored as a sparse tar member, which cannot be read in place",
                                    subject=self.label, hint="Extract the OVA and give the directory")
        return self.path, member.offset_data, member.size


class _DirPackage(_Package):
    def __init__(self, root: str, *, label: str | None = None, ovf: str | None = None,
                 links: set[str] | None = None) -> None:
        self.root = os.path.realpath(root)
        self.label = label or root
        self.only_ovf = ovf
        self.links = links or set()

    def ovf_names(self) -> list[str]:
        return [self.only_ovf] if self.only_ovf else super().ovf_names()

    def names(self) -> list[str]:
        found = []
        for dirpath, _dirs, files in os.walk(self.root):
            rel = os.path.relpath(dirpath, self.root)
            for fname in files:
                found.append(_norm(fname if rel == "." else posixpath.join(rel.replace(os.sep, "/"), fname)))
        return found

    def _path(self, name: str, href: str | None) -> str | None:
        shown = href or name
        if _norm(name) in self.links:
            raise UnsafeImageError(f"OVF href {shown!r} is a link inside the OVA", subject=self.label,
                                   hint="Only regular files inside the OVA are read")
        full = os.path.join(self.root, *_norm(name).split("/"))
        if not os.path.lexists(full):
            return None
        real = os.path.realpath(full)
        if real != self.root and not real.startswith(self.root + os.sep):
            raise UnsafeImageError(f"OVF href {shown!r} resolves to {real!r}, outside {self.root!r}",
                                   subject=self.label, hint="Only files inside the OVF directory are read")
        if not os.path.isfile(real):
            raise SourceError(f"{shown!r} is not a regular file", subject=self.label)
        return real

    def open(self, name: str, href: str | None = None) -> IO[bytes] | None:
        path = self._path(name, href)
        return open(path, "rb") if path else None

    def locate(self, name: str, href: str) -> tuple[str, int | None, int | None]:
        path = self._path(name, href)
        if path is None:
            raise _missing(href, self.label)
        return path, None, None

    def local_path(self, name: str) -> str | None:
        return self._path(name, None)


def _missing(href: str, label: str) -> SourceError:
    return SourceError(f"the OVF references {href!r}, which is not in the package", subject=label,
                       hint="The OVA/OVF is incomplete; export or download it again")


def _find_ovf(package: _Package) -> str:
    ovfs = package.ovf_names()
    if not ovfs:
        raise SourceError("there is no .ovf file in the package", subject=package.label,
                          hint="An OVA must contain exactly one OVF descriptor")
    if len(ovfs) > 1:
        raise SourceError(f"there are {len(ovfs)} .ovf files in the package ({', '.join(ovfs)}), expected one",
                          subject=package.label, hint="Give the directory of one OVF, or the .ovf file itself")
    return ovfs[0]


def _read_all(package: _Package, name: str) -> bytes:
    handle = package.open(name)
    if handle is None:
        raise SourceError(f"{name!r} is missing", subject=package.label)
    with handle:
        return handle.read()


def _verify_manifests(package: _Package, ovf_dir: str) -> None:
    for name in sorted(package.names()):
        if not name.lower().endswith(".mf") or posixpath.dirname(name) != ovf_dir:
            continue
        text = _read_all(package, name).decode("utf-8", "replace")

        def opener(fname: str) -> IO[bytes] | None:
            return package.open(posixpath.join(ovf_dir, fname), fname)

        try:
            verify_manifest(text, opener, name=posixpath.basename(name))
        except SourceError as exc:
            if exc.subject is None:
                exc.subject = package.label
            raise


def _work_subdir(spec: SourceSpec, why: str, origin: str, tag: str) -> str:
    """A directory under ``spec.work_dir`` named after ``origin``'s identity.

    The same file (path, size, modification time) always gets the same
    directory, so a second load reuses the first one's output and the disk
    paths it returns stay the same from run to run.
    """
    if not spec.work_dir:
        raise SourceError(f"{why}, which needs a work directory", subject=spec.single_path(),
                          hint="Set the work directory of the conversion (source.work_dir)")
    origin_stat = os.stat(origin)
    identity = f"{os.path.realpath(origin)}\0{origin_stat.st_size}\0{origin_stat.st_mtime_ns}\0{tag}"
    key = hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    folder = os.path.join(spec.work_dir, f"ova-{key}")
    _drop_if_foreign(folder)
    return folder


def _drop_if_foreign(folder: str) -> None:
    """Forget a cached extraction that another user could have written (the work dir may be /var/tmp).

    Reuse skips the manifest check, so it is only safe for a directory that
    this user made and nobody else can write: anything else is removed, or
    refused when it cannot be.
    """
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022:
        return
    try:
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(folder)
        else:
            os.unlink(folder)
    except OSError as exc:
        raise SourceError(f"{folder} is not this user's own private directory and cannot be removed: {exc}",
                          subject=folder, hint="Remove it, or set another work_dir") from None


def _copy(src: IO[bytes] | gzip.GzipFile, dest_path: str) -> None:
    with open(dest_path, "wb") as dest:
        shutil.copyfileobj(src, dest, _COPY_CHUNK)


def _gunzip_disk(package: _Package, name: str, href: str, spec: SourceSpec) -> str:
    """Decompress a gzip disk file into the work directory (once; reused while its origin is unchanged)."""
    origin = package.local_path(name) or package.label
    folder = _work_subdir(spec, f"disk {href!r} is gzip-compressed in the OVF", origin, f"gunzip:{href}")
    base = posixpath.basename(href)
    dest = os.path.join(folder, base[:-3] if base.lower().endswith(".gz") and len(base) > 3 else base)
    if os.path.isfile(dest):
        return dest
    handle = package.open(name, href)
    if handle is None:
        raise _missing(href, package.label)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    partial = dest + ".part"
    try:
        with handle, gzip.GzipFile(fileobj=handle) as stream:
            _copy(stream, partial)
    except (OSError, EOFError) as exc:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise SourceError(f"disk {href!r} is not valid gzip data: {exc}", subject=package.label) from None
    os.replace(partial, dest)
    return dest


def _check_chain(package: _Package, name: str, ref: OvfDisk, ovf_dir: str) -> None:
    """Accept a snapshot chain only when its files sit side by side in a directory."""
    if package.in_place:
        raise NotSupportedError(f"disk {ref.href!r} is a snapshot delta on {ref.parents[0]!r}; such chains cannot "
                                "be read inside an OVA", subject=package.label,
                                hint="Extract the OVA into a directory and give that directory, or consolidate "
                                     "the snapshots before exporting")
    if ref.compression:
        raise NotSupportedError(f"disk {ref.href!r}: compressed snapshot chains are not supported",
                                subject=package.label)
    for parent in ref.parents:
        package.locate(posixpath.join(ovf_dir, parent), parent)
    child = package.local_path(name)
    info = read_vmdk_info(child) if child else None
    if (info is not None and info.is_delta and info.parent_hint
            and posixpath.basename(info.parent_hint.replace("\\", "/")) != posixpath.basename(ref.parents[0])):
        raise NotSupportedError(f"disk {ref.href!r} names parent {info.parent_hint!r} but the OVF says "
                                f"{ref.parents[0]!r}", subject=package.label,
                                hint="Consolidate the snapshots before exporting")


def load_package(package: _Package, spec: SourceSpec, *, verify: bool = True) -> Source:
    """Source of an OVF package: find the OVF, verify manifests, locate disks."""
    ovf_name = _find_ovf(package)
    ovf_dir = posixpath.dirname(ovf_name)
    try:
        source, refs = parse_ovf(_read_all(package, ovf_name))
    except V2VError as exc:
        if exc.subject is None:
            exc.subject = f"{package.label} ({posixpath.basename(ovf_name)})"
        raise
    if verify:
        _verify_manifests(package, ovf_dir)
    for disk, ref in strict_zip(source.disks, refs):
        if ref.chunked:
            raise NotSupportedError(f"disk {ref.href!r} is split into chunks (ovf:chunkSize); not supported yet",
                                    subject=package.label)
        name = posixpath.join(ovf_dir, _norm(ref.href))
        if ref.parents:
            _check_chain(package, name, ref, ovf_dir)
        if ref.compression == "gzip":
            disk.path, disk.offset, disk.length = _gunzip_disk(package, name, ref.href, spec), None, None
        else:
            disk.path, disk.offset, disk.length = package.locate(name, ref.href)
    return source


def _sniff(path: str) -> str:
    with open(path, "rb") as handle:
        head = handle.read(512)
    for magic, kind in _COMPRESSED_MAGIC.items():
        if head.startswith(magic):
            return kind
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if (len(head) == 512 and head[257:262] == b"ustar") or tarfile.is_tarfile(path):
        return "tar"
    return "unknown"


def extract_ova(path: str, dest: str) -> set[str]:
    """Extract the regular files of a (compressed) tar into ``dest``, safely.

    Members with unsafe names are skipped; links are skipped and their names
    returned so that an href naming one can be refused.
    """
    links: set[str] = set()
    root = os.path.realpath(dest)
    try:
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                if _unsafe_member_name(member.name):
                    continue
                name = _norm(member.name)
                target = os.path.join(root, *name.split("/"))
                if member.isdir():
                    os.makedirs(target, exist_ok=True)
                elif member.isfile():
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    source = tar.extractfile(member)
                    if source is not None:
                        with source:
                            _copy(source, target)
                elif member.issym() or member.islnk():
                    links.add(name)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise SourceError(f"cannot extract the compressed OVA: {exc}", subject=path) from None
    return links


def _load_compressed(path: str, kind: str, spec: SourceSpec) -> Source:
    """Extract once into the work directory; later loads of the same file reuse the extraction."""
    dest = _work_subdir(spec, f"the OVA is {kind}-compressed and must be extracted", path, "extract")
    marker = os.path.join(dest, _EXTRACTED_MARKER)
    if os.path.isfile(marker):
        with open(marker, encoding="utf-8") as handle:
            links = set(json.load(handle).get("links", []))
        # Verified when it was extracted; the marker is written only after that.
        return load_package(_DirPackage(dest, label=path, links=links), spec, verify=False)
    if os.path.lexists(dest):
        shutil.rmtree(dest)
    os.makedirs(dest, mode=0o700)
    try:
        links = extract_ova(path, dest)
        source = load_package(_DirPackage(dest, label=path, links=links), spec)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    with open(marker, "w", encoding="utf-8") as handle:
        json.dump({"ova": os.path.realpath(path), "links": sorted(links)}, handle)
    return source


def load(spec: SourceSpec) -> Source:
    """``load(spec)`` for input ``ova``: a .ova file, an OVF directory or a .ovf file."""
    path = spec.single_path()
    if os.path.isdir(path):
        return load_package(_DirPackage(path), spec)
    if not os.path.isfile(path):
        raise SourceError(f"OVA {path!r} does not exist", hint="Check source.path")
    if path.lower().endswith(".ovf"):
        return load_package(_DirPackage(os.path.dirname(os.path.abspath(path)), label=path,
                                        ovf=_norm(os.path.basename(path))), spec)
    kind = _sniff(path)
    if kind == "tar":
        package = _TarPackage(path)
        try:
            return load_package(package, spec)
        finally:
            package.close()
    if kind in ("gzip", "xz", "bzip2"):
        return _load_compressed(path, kind, spec)
    if kind == "zip":
        raise NotSupportedError("zip-packed OVAs are not supported yet", subject=path,
                                hint="Unzip it and give the directory holding the .ovf")
    raise SourceError("not an OVA: neither a tar archive nor a compressed one", subject=path)


class OvaInput(Input):
    """``input: ova``. A delta disk's parents were matched against the OVF: the chain may be followed."""

    def load(self, spec: SourceSpec) -> Source:
        return load(spec)

    def open(self, spec: SourceSpec) -> OpenedSource:
        return OpenedSource(load(spec), parents_in_dir=True)
