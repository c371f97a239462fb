# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guest converter interface: what every guest family's converter provides.

The run orchestrator knows only this interface; ``convert/__init__.py`` picks
the converter from the inspected guest. A converter is stateless: each call
gets the guest, and ``convert`` the launched libguestfs handle with the
guest's filesystems mounted read-write on the overlays.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import (
    GuestInfo,
    GuestNetConfig,
    Source,
    SourceNIC,
)


@dataclass
class GuestConvertOptions:
    """What the user chose that changes what is done inside the guest."""

    block_driver: str = "virtio-blk"
    # A directory on the conversion host with qemu-guest-agent packages (.deb or .rpm,
    # with their dependencies) to install offline.
    guest_agent_packages: str | None = None
    # Rebuild every initramfs, even one that has the virtio drivers and holds nothing conversion changed.
    rebuild_initramfs: bool = False
    remove_tools: bool = True
    # Where each command run inside the guest and its output are written (the conversion log).
    log: Callable[[str], None] | None = None


@dataclass
class ConversionReport:
    """What conversion did: one named step per change, plus warnings."""

    steps: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # How the network was kept: one entry per interface (interface, mac, method, file).
    network: list[dict[str, str]] = field(default_factory=list)
    # The kernel the converted guest boots (Linux).
    kernel: str | None = None


class Converter(abc.ABC):
    """Converts the guests of one family (``GuestInfo.os_type``) for KVM."""

    family: str = ""

    def prepare_source(self, source: Source, guest: GuestInfo) -> list[str]:
        """Complete the source from what inspection found, before the target is planned; return the steps.

        A NIC the source describes without a MAC (``input: disk``, some OVFs)
        gets one (see :func:`fill_missing_macs`): the target's NICs, the
        interface names conversion pins and the domain all use it.
        """
        seed = "\n".join(d.path for d in source.disks)
        return [f"gave NIC {index} the MAC {mac} ({origin})"
                for index, mac, origin in fill_missing_macs(source.nics, guest.network, seed)]

    @abc.abstractmethod
    def planned_steps(self, guest: GuestInfo, options: GuestConvertOptions) -> list[str]:
        """What ``convert`` would do to this guest, for check mode (no handle, nothing changes)."""

    @abc.abstractmethod
    def convert(self, handle: Any, guest: GuestInfo, source: Source, options: GuestConvertOptions) -> ConversionReport:
        """Convert the mounted guest on ``handle``; raise ConversionError on failure."""


def fill_missing_macs(nics: list[SourceNIC], configs: list[GuestNetConfig], seed: str) -> list[tuple[int, str, str]]:
    """Give a MAC to each NIC the source describes without one (``input: disk``, some OVFs).

    The guest's own configuration names MACs (``hwaddress``, ``HWADDR``,
    netplan ``match``, udev naming rules): those are the guest's identity, so
    unused ones are taken first, in the order the guest lists them. Otherwise
    the MAC is made up, stable for the same source (``seed``) and NIC index,
    in QEMU's locally administered range 52:54:00. Returns (index, mac, where
    it came from) for each NIC changed.
    """
    used = {n.mac.lower() for n in nics if n.mac}
    from_guest = []
    for config in configs:
        if config.mac and config.mac not in used and config.mac not in from_guest:
            from_guest.append(config.mac)
    filled = []
    for index, nic in enumerate(nics):
        if nic.mac:
            continue
        if from_guest:
            nic.mac, origin = from_guest.pop(0), "guest configuration"
        else:
            digest = hashlib.sha256(f"{seed}\0{index}".encode()).digest()
            nic.mac, origin = "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3]), "generated"
        used.add(nic.mac)
        filled.append((index, nic.mac, origin))
    return filled
