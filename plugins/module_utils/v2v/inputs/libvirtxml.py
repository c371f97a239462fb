# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt domain XML (input ``libvirtxml``; also the parser behind ``libvirt``).

:func:`parse_domain_xml` is pure. It reads the hypervisor (``<domain
type>``), name, genid, memory (with its unit), vCPUs, CPU vendor/model/
topology, firmware (``<os firmware>``, a pflash or OVMF ``<loader>``,
``secure='yes'``), disks (file, block, network: ``nbd`` becomes
``nbd://host:port/export`` or ``nbd+unix:///export?socket=...``,
``http(s)`` a URL; ``volume`` through an optional resolver), CD-ROMs and
floppies with the slot from the target device name (``hdc`` is 2, ``sr0`` is 0),
``network`` and ``bridge`` interfaces, the first graphics device and the
first sound card. Xen's ``<driver type='aio'>`` means raw.
"""

from __future__ import annotations

import os
import re
from typing import Any, Protocol
from urllib.parse import quote

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import NotSupportedError, SourceError, V2VError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import Input, SourceSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import (
    Firmware,
    Removable,
    Source,
    SourceCPU,
    SourceDisk,
    SourceNIC,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.xmlsupport import etree, safe_parser


class VolumeResolver(Protocol):
    """Resolves a storage pool volume to (path, format or None), e.g. through a libvirt connection."""

    def __call__(self, pool: str, volume: str, /) -> tuple[str, str | None]: ...


_MEMORY_UNITS = {
    "b": 1, "bytes": 1,
    "kb": 1000, "k": 1024, "kib": 1024,
    "mb": 1000 ** 2, "m": 1024 ** 2, "mib": 1024 ** 2,
    "gb": 1000 ** 3, "g": 1024 ** 3, "gib": 1024 ** 3,
    "tb": 1000 ** 4, "t": 1024 ** 4, "tib": 1024 ** 4,
}
_DEV_PREFIX_BUS = (("xvd", "xen"), ("hd", "ide"), ("sd", "scsi"), ("vd", "virtio"), ("fd", "fdc"))
_XML_DECL_RE = re.compile(r"^\s*<\?xml[^>]*\?>")
_EMPTY_MAC = "00:00:00:00:00:00"


def _parse_xml(text: str | bytes) -> Any:
    parser = safe_parser()
    data = _XML_DECL_RE.sub("", text, count=1).encode("utf-8") if isinstance(text, str) else text
    try:
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise SourceError(f"the libvirt XML is not valid XML: {exc}") from None


def _text(node: Any, path: str) -> str | None:
    found = node.find(path)
    if found is None or found.text is None or not found.text.strip():
        return None
    return str(found.text.strip())


def _attr(node: Any, path: str, name: str) -> str | None:
    found = node if path == "." else node.find(path)
    if found is None:
        return None
    value = found.get(name)
    return None if value is None else str(value)


def _int(value: str | None, what: str) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        return int(value.strip())
    except ValueError:
        raise SourceError(f"libvirt XML {what} {value!r} is not a number") from None


def drive_index(name: str) -> int:
    """``a`` is 0, ``z`` 25, ``aa`` 26 ... (the letters after hd/sd/vd/xvd/fd)."""
    if not name or not name.isalpha() or not name.islower():
        raise ValueError(name)
    index = 0
    for char in name:
        index = index * 26 + (ord(char) - ord("a") + 1)
    return index - 1


def dev_slot(dev: str | None) -> int | None:
    """Slot of a target device name: ``hdc`` is 2, ``sdb`` 1, ``xvda`` 0, ``sr0`` 0."""
    if not dev:
        return None
    if dev.startswith("sr") and dev[2:].isdigit():
        return int(dev[2:])
    for prefix, _bus in _DEV_PREFIX_BUS:
        if dev.startswith(prefix):
            try:
                return drive_index(dev[len(prefix):])
            except ValueError:
                return None
    return None


def _bus(disk: Any) -> str | None:
    bus = _attr(disk, "target", "bus")
    if bus:
        return bus
    dev = _attr(disk, "target", "dev") or ""
    for prefix, guess in _DEV_PREFIX_BUS:
        if dev.startswith(prefix):
            return guess
    return None


def _memory_mb(domain: Any) -> int:
    node = domain.find("memory")
    if node is None:
        node = domain.find("currentMemory")
    if node is None or not (node.text or "").strip():
        return 1024
    unit = (node.get("unit") or "KiB").lower()
    if unit not in _MEMORY_UNITS:
        raise SourceError(f"libvirt XML <memory unit={unit!r}> is not a known unit")
    amount = _int(node.text, "<memory>") or 0
    return max(1, amount * _MEMORY_UNITS[unit] // (1024 ** 2))


def _cpu(domain: Any) -> tuple[int, SourceCPU]:
    cpu = SourceCPU(
        vendor=_text(domain, "cpu/vendor"),
        model=_text(domain, "cpu/model"),
        sockets=_int(_attr(domain, "cpu/topology", "sockets"), "topology sockets"),
        cores=_int(_attr(domain, "cpu/topology", "cores"), "topology cores"),
        threads=_int(_attr(domain, "cpu/topology", "threads"), "topology threads"),
    )
    vcpus = _int(_text(domain, "vcpu"), "<vcpu>")
    if vcpus is None:
        parts = (cpu.sockets, cpu.cores, cpu.threads)
        vcpus = 1
        if any(p is not None for p in parts):
            for part in parts:
                vcpus *= part or 1
    return vcpus, cpu


def _firmware(domain: Any) -> Firmware:
    os_node = domain.find("os")
    if os_node is None:
        return Firmware(type="unknown")
    loader = os_node.find("loader")
    secure = loader is not None and loader.get("secure") == "yes"
    for feature in os_node.findall("firmware/feature"):
        if feature.get("name") == "secure-boot" and feature.get("enabled") == "yes":
            secure = True
    declared = (os_node.get("firmware") or "").lower()
    if declared == "efi":
        return Firmware(type="uefi", secure_boot=secure)
    if declared == "bios":
        return Firmware(type="bios")
    if loader is not None:
        path = (loader.text or "").lower()
        if loader.get("type") == "pflash" or any(n in path for n in ("ovmf", "edk2", "efi", "aavmf")):
            return Firmware(type="uefi", secure_boot=secure)
        if "hvmloader" in path or "seabios" in path or "bios" in path:
            return Firmware(type="bios")
    os_type = (_text(os_node, "type") or "").lower()
    if os_type == "hvm" and (domain.get("type") or "") in ("kvm", "qemu"):
        return Firmware(type="bios")
    return Firmware(type="unknown")


def _network_path(disk: Any, what: str) -> str:
    source = disk.find("source")
    protocol = (source.get("protocol") if source is not None else None) or ""
    name = (source.get("name") or "").lstrip("/") if source is not None else ""
    host = source.find("host") if source is not None else None
    host_name = host.get("name") if host is not None else None
    port = host.get("port") if host is not None else None
    transport = (host.get("transport") if host is not None else None) or "tcp"
    if protocol == "nbd":
        if transport == "unix":
            socket = host.get("socket") if host is not None else None
            if not socket:
                raise SourceError(f"{what}: NBD over a unix socket without a socket path")
            return f"nbd+unix:///{quote(name)}?socket={quote(socket, safe='/')}"
        if not host_name:
            raise SourceError(f"{what}: NBD disk without a <host name>")
        hostport = f"[{host_name}]" if ":" in host_name else host_name
        hostport += f":{port}" if port else ""
        return f"nbd://{hostport}/{quote(name)}" if name else f"nbd://{hostport}"
    if protocol in ("http", "https"):
        if not host_name:
            raise SourceError(f"{what}: {protocol} disk without a <host name>")
        default = {"http": "80", "https": "443"}[protocol]
        hostport = host_name + (f":{port}" if port and port != default else "")
        return f"{protocol}://{hostport}/{quote(name)}"
    raise NotSupportedError(f"{what}: network disks with protocol {protocol or '(none)'!r} are not supported yet",
                            hint="Only nbd, http and https network disks can be read")


def _disk_source(disk: Any, what: str, resolve_volume: VolumeResolver | None) -> tuple[str, str | None] | None:
    """(path, format from the volume) of one <disk>, or None if it has no media."""
    kind = disk.get("type") or "file"
    source = disk.find("source")
    if kind == "file":
        path = source.get("file") if source is not None else None
        return (path, None) if path else None
    if kind == "block":
        path = source.get("dev") if source is not None else None
        return (path, None) if path else None
    if kind == "network":
        if source is None:
            return None
        return _network_path(disk, what), None
    if kind == "volume":
        if source is None or not source.get("pool") or not source.get("volume"):
            return None
        if resolve_volume is None:
            raise NotSupportedError(f"{what} is a storage pool volume ({source.get('pool')}/{source.get('volume')}), "
                                    "which needs a libvirt connection to resolve",
                                    hint="Use input 'libvirt', or put the volume's path in the XML")
        return resolve_volume(str(source.get("pool")), str(source.get("volume")))
    raise NotSupportedError(f"{what} has type {kind!r}, which is not supported yet")


def _scsi_models(domain: Any) -> dict[str, str]:
    models = {}
    for controller in domain.findall("devices/controller[@type='scsi']"):
        models[controller.get("index") or "0"] = controller.get("model") or ""
    return models


def _format(disk: Any) -> str | None:
    fmt = _attr(disk, "driver", "type")
    if fmt == "aio":
        return "raw"
    if fmt is None and _attr(disk, "driver", "name") == "phy":
        return "raw"
    return fmt


def _disks(domain: Any, resolve_volume: VolumeResolver | None) -> list[SourceDisk]:
    scsi_models = _scsi_models(domain)
    disks: list[SourceDisk] = []
    for node in domain.findall("devices/disk"):
        if (node.get("device") or "disk") not in ("disk", "lun"):
            continue
        what = f"disk {_attr(node, 'target', 'dev') or len(disks)}"
        found = _disk_source(node, what, resolve_volume)
        if found is None:
            continue
        path, volume_format = found
        bus = _bus(node)
        controller = None
        if bus == "scsi":
            controller = scsi_models.get(_attr(node, "address", "controller") or "0") or None
        disks.append(SourceDisk(path=path, format=volume_format or _format(node), bus=bus, controller=controller))
    return disks


def _removables(domain: Any) -> list[Removable]:
    found = []
    for node in domain.findall("devices/disk"):
        device = node.get("device")
        if device not in ("cdrom", "floppy"):
            continue
        source = node.find("source")
        path = None
        if source is not None:
            path = source.get("file") or source.get("dev")
        found.append(Removable(kind=device, bus=_bus(node), slot=dev_slot(_attr(node, "target", "dev")), path=path))
    return found


def _nics(domain: Any) -> list[SourceNIC]:
    nics = []
    for index, node in enumerate(domain.findall("devices/interface")):
        kind = node.get("type")
        if kind not in ("network", "bridge"):
            continue
        vnet = _attr(node, "source", kind)
        if vnet is None:
            continue
        vnet = vnet or f"eth{index}"
        mac = _attr(node, "mac", "address")
        mac = None if not mac or mac == _EMPTY_MAC else mac.lower()
        nics.append(SourceNIC(mac=mac, model=_attr(node, "model", "type"),
                              network=vnet if kind == "network" else None,
                              bridge=vnet if kind == "bridge" else None))
    return nics


def _display(domain: Any) -> str | None:
    graphics = domain.find("devices/graphics")
    kind = graphics.get("type") if graphics is not None else None
    return kind if kind in ("vnc", "spice") else None


def _sound(domain: Any) -> str | None:
    sound = domain.find("devices/sound")
    return sound.get("model") if sound is not None else None


def parse_domain_xml(text: str | bytes, *, resolve_volume: VolumeResolver | None = None) -> Source:
    """Parse a libvirt domain XML into a Source (pure unless ``resolve_volume`` does I/O)."""
    domain = _parse_xml(text)
    if domain.tag != "domain":
        raise SourceError(f"the libvirt XML root element is <{domain.tag}>, not <domain>")
    hypervisor = domain.get("type")
    if not hypervisor:
        raise SourceError("the libvirt XML <domain> has no type (kvm, xen, ...)")
    name = _text(domain, "name")
    if not name:
        raise SourceError("the libvirt XML has no <name>")
    vcpus, cpu = _cpu(domain)
    return Source(
        name=name,
        hypervisor=hypervisor,
        input="libvirtxml",
        memory_mb=_memory_mb(domain),
        vcpus=vcpus,
        cpu=cpu,
        firmware=_firmware(domain),
        disks=_disks(domain, resolve_volume),
        removables=_removables(domain),
        nics=_nics(domain),
        display=_display(domain),
        sound=_sound(domain),
        genid=_text(domain, "genid"),
    )


def load(spec: SourceSpec) -> Source:
    """``load(spec)`` for input ``libvirtxml``: a domain XML file on the conversion host."""
    path = spec.single_path()
    if not os.path.isfile(path):
        raise SourceError(f"libvirt XML file {path!r} does not exist", hint="Check source.path")
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        source = parse_domain_xml(data)
    except V2VError as exc:
        if exc.subject is None:
            exc.subject = path
        raise
    missing = [d.path for d in source.disks if "://" not in d.path and not os.path.exists(d.path)]
    if missing:
        raise SourceError(f"disk {missing[0]!r} of domain {source.name!r} does not exist on this host",
                          subject=path, hint="Copy the disks to the paths in the XML, or edit the XML")
    return source


class LibvirtXmlInput(Input):
    """``input: libvirtxml``."""

    def load(self, spec: SourceSpec) -> Source:
        return load(spec)
