# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Just enough of VMDK to describe a source disk without qemu-img.

A VMDK is either a small text *descriptor* naming extent files, or a
*monolithic sparse* file (magic ``KDMV``) with the descriptor embedded. The
descriptor says the virtual size (sum of extent sectors) and, through
``parentCID``/``parentFileNameHint``, whether the disk is a snapshot delta.
Anything else (raw ``-flat`` extents, streamOptimized pieces without an
embedded descriptor, empty placeholder files) gives ``None``.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

SECTOR = 512
_SPARSE_MAGIC = b"KDMV"
_DESCRIPTOR_MAX = 1024 * 1024
# '<access> <sectors> <type> ["file" [offset]]'
_EXTENT_RE = re.compile(r'^(RW|RDONLY|NOACCESS)\s+(\d+)\s+(\w+)(?:\s+"([^"]*)")?', re.IGNORECASE)
_KV_RE = re.compile(r'^\s*([A-Za-z][\w.]*)\s*=\s*"?([^"]*)"?\s*$')
_NO_PARENT = "ffffffff"


@dataclass
class VmdkInfo:
    """What a VMDK descriptor says about the disk."""

    create_type: str | None = None
    size_bytes: int | None = None
    parent_cid: str | None = None
    parent_hint: str | None = None
    extents: list[str] = field(default_factory=list)

    @property
    def is_delta(self) -> bool:
        """True for a snapshot delta: the disk has a parent it writes over."""
        return bool(self.parent_cid and self.parent_cid.lower() != _NO_PARENT)


def parse_descriptor(text: str) -> VmdkInfo:
    """Parse VMDK descriptor text (pure)."""
    info = VmdkInfo()
    sectors = 0
    saw_extent = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        extent = _EXTENT_RE.match(line)
        if extent:
            saw_extent = True
            sectors += int(extent.group(2))
            if extent.group(4):
                info.extents.append(extent.group(4))
            continue
        kv = _KV_RE.match(line)
        if not kv:
            continue
        key, value = kv.group(1).lower(), kv.group(2)
        if key == "createtype":
            info.create_type = value
        elif key == "parentcid":
            info.parent_cid = value
        elif key == "parentfilenamehint":
            info.parent_hint = value
    if saw_extent:
        info.size_bytes = sectors * SECTOR
    return info


def read_vmdk_info(path: str, offset: int = 0) -> VmdkInfo | None:
    """Read the descriptor of the VMDK at ``path`` (starting ``offset`` bytes in); ``None`` if it has none."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        head = handle.read(SECTOR)
        if head.startswith(_SPARSE_MAGIC) and len(head) >= 56:
            # magic, version, flags, capacity, grainSize, descriptorOffset, descriptorSize
            _magic, _version, _flags, capacity, _grain, desc_off, desc_size = struct.unpack_from("<4sIIQQQQ", head)
            info = VmdkInfo()
            if desc_off and 0 < desc_size * SECTOR <= _DESCRIPTOR_MAX:
                handle.seek(offset + desc_off * SECTOR)
                text = handle.read(desc_size * SECTOR).split(b"\0", 1)[0].decode("utf-8", "replace")
                info = parse_descriptor(text)
            info.size_bytes = capacity * SECTOR
            return info
        if b"# Disk DescriptorFile" not in head and b"createType" not in head:
            return None
        body = head + handle.read(_DESCRIPTOR_MAX - len(head))
        # Descriptor files are often NUL-padded to a sector; anything but NULs after the text is not one.
        raw_text, _nul, padding = body.partition(b"\0")
        if padding.strip(b"\0"):
            return None
        return parse_descriptor(raw_text.decode("utf-8", "replace"))
