# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The data that flows through the engine.

Dataclasses only. Every module returns these through one ``to_dict()`` so
that inspect_guest, convert_guest and define_domain speak the same result
schema. Field names here are the names users see in results and docs.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any


def _plain(value: Any) -> Any:
    """Turn dataclasses, enums and containers into JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        if callable(to_dict):
            return to_dict()
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class Serializable:
    """Mixin: ``to_dict()`` of every field, recursively."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


class Severity(str, enum.Enum):
    """A finding's weight. Behaves like ``enum.StrEnum`` (3.11+): ``str()`` and formatting give the value."""

    BLOCKER = "blocker"
    WARNING = "warning"

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, format_spec: str) -> str:
        return format(str(self.value), format_spec)


@dataclass
class Firmware(Serializable):
    """Firmware the source VM used: ``bios``, ``uefi`` or ``unknown``."""

    type: str = "bios"
    secure_boot: bool = False


@dataclass
class SourceCPU(Serializable):
    vendor: str | None = None
    model: str | None = None
    sockets: int | None = None
    cores: int | None = None
    threads: int | None = None


@dataclass
class SourceDisk(Serializable):
    """One disk of the source.

    ``path`` is a local file, or a URI (``nbd://``, ``ssh://``) for remote
    disks. ``offset``/``length`` locate a disk stored inside an uncompressed
    tar (an OVA), so it is read in place instead of extracted.
    """

    path: str
    format: str | None = None
    bus: str | None = None
    size_bytes: int | None = None
    controller: str | None = None
    offset: int | None = None
    length: int | None = None


@dataclass
class Removable(Serializable):
    """A CD-ROM or floppy drive (``kind``: ``cdrom`` or ``floppy``)."""

    kind: str
    bus: str | None = None
    slot: int | None = None
    path: str | None = None


@dataclass
class SourceNIC(Serializable):
    mac: str | None = None
    model: str | None = None
    network: str | None = None
    bridge: str | None = None


@dataclass
class Source(Serializable):
    """A guest as its old hypervisor described it, before any inspection."""

    name: str
    hypervisor: str
    input: str
    memory_mb: int = 1024
    vcpus: int = 1
    cpu: SourceCPU = field(default_factory=SourceCPU)
    firmware: Firmware = field(default_factory=Firmware)
    disks: list[SourceDisk] = field(default_factory=list)
    removables: list[Removable] = field(default_factory=list)
    nics: list[SourceNIC] = field(default_factory=list)
    display: str | None = None
    sound: str | None = None
    genid: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        # Results use flat keys: firmware is 'bios'/'uefi', secure boot beside it.
        data["firmware"] = self.firmware.type
        data["secure_boot"] = self.firmware.secure_boot
        return data


@dataclass
class GuestKernel(Serializable):
    version: str
    path: str | None = None
    initrd: str | None = None
    has_virtio_modules: bool = False
    virtio_in_initramfs: bool | None = None
    xen_pv_only: bool = False


@dataclass
class GuestFilesystem(Serializable):
    device: str
    type: str | None = None
    mountpoint: str | None = None
    size_bytes: int | None = None
    free_bytes: int | None = None
    free_inodes: int | None = None
    uuid: str | None = None
    label: str | None = None


@dataclass
class GuestNetConfig(Serializable):
    """One interface configuration found inside the guest."""

    tool: str
    interface: str | None = None
    mac: str | None = None
    method: str | None = None
    addresses: list[str] = field(default_factory=list)
    file: str | None = None


@dataclass
class GuestInfo(Serializable):
    """What inspection found inside the guest."""

    root: str
    os_type: str | None = None
    distro: str | None = None
    version: str | None = None
    major_version: int | None = None
    minor_version: int | None = None
    product_name: str | None = None
    arch: str | None = None
    hostname: str | None = None
    package_format: str | None = None
    package_manager: str | None = None
    init_system: str | None = None
    bootloader: str | None = None
    firmware: str | None = None
    kernels: list[GuestKernel] = field(default_factory=list)
    filesystems: list[GuestFilesystem] = field(default_factory=list)
    mountpoints: dict[str, str] = field(default_factory=dict)
    lvm: dict[str, list[str]] = field(default_factory=dict)
    luks: list[str] = field(default_factory=list)
    hypervisor_tools: list[str] = field(default_factory=list)
    network: list[GuestNetConfig] = field(default_factory=list)


@dataclass
class Finding(Serializable):
    """A preflight result: a ``blocker`` stops the run, a ``warning`` does not."""

    severity: Severity
    code: str
    message: str
    subject: str | None = None

    @property
    def is_blocker(self) -> bool:
        return self.severity is Severity.BLOCKER


@dataclass
class TargetDisk(Serializable):
    path: str
    format: str
    bus: str
    size_bytes: int
    bytes_written: int | None = None


@dataclass
class Phase(Serializable):
    name: str
    seconds: float


@dataclass
class Plan(Serializable):
    """What a conversion would do; returned by check mode."""

    disks: list[TargetDisk] = field(default_factory=list)
    estimated_bytes: int = 0
    steps: list[str] = field(default_factory=list)
    domain_xml: str | None = None


@dataclass
class Result(Serializable):
    """What a module returns (besides Ansible's own keys)."""

    changed: bool = False
    source: Source | None = None
    guest: GuestInfo | None = None
    findings: list[Finding] = field(default_factory=list)
    plan: Plan | None = None
    estimate: dict[str, int] = field(default_factory=dict)
    conversion: list[str] = field(default_factory=list)
    target: dict[str, Any] = field(default_factory=dict)
    phases: list[Phase] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # What conversion did to keep the network: one entry per interface (name, mac, method, file).
    network: list[dict[str, str]] = field(default_factory=list)
    log_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        # Leave out what a module did not produce, so results stay readable; an inspected guest
        # always has its findings, even none (playbooks filter them without a default).
        keep = ("changed", "warnings", "findings") if self.guest is not None else ("changed", "warnings")
        return {k: v for k, v in super().to_dict().items() if v not in (None, [], {}) or k in keep}
