# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``input: disk`` — one or more plain disk images.

Nothing but the images is known, so the guest gets virt-v2v's defaults for
``-i disk`` (2 GiB of memory, one vCPU, BIOS unless inspection finds an EFI
system partition, one NIC on the network ``default``). The NIC's MAC is
not known here: conversion takes it from the guest's own configuration, or
makes a stable one up (see ``convert.base.fill_missing_macs``). Each image is
probed safely (see storage.py).
"""

from __future__ import annotations

import os

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v import storage
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import SourceError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import Input, SourceSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Firmware, Source, SourceDisk, SourceNIC

DEFAULT_MEMORY_MB = 2048
_IMAGE_SUFFIXES = (".img", ".raw", ".qcow2", ".vmdk", ".vhd", ".vhdx", ".vdi", ".disk")


def guest_name_from_path(path: str) -> str:
    name = os.path.basename(path.rstrip("/"))
    for suffix in _IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return name


def load(spec: SourceSpec) -> Source:
    paths = spec.paths
    if not paths:
        raise SourceError("input 'disk' needs at least one disk image in path")
    disks = []
    for path in paths:
        info = storage.probe_image(path, spec.format)
        where = path if storage.is_network_uri(path) else os.path.abspath(path)
        disks.append(SourceDisk(path=where, format=info.format, size_bytes=info.virtual_size))
    return Source(name=guest_name_from_path(paths[0]), hypervisor="unknown", input="disk",
                  memory_mb=DEFAULT_MEMORY_MB, vcpus=1, disks=disks, firmware=Firmware(type="unknown"),
                  nics=[SourceNIC(network="default")])


class DiskInput(Input):
    """``input: disk``."""

    def load(self, spec: SourceSpec) -> Source:
        return load(spec)
