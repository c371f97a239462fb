# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Block device names: what the guest called its disks, and what KVM will call them.

Pure functions over text. The source names depend on the bus each disk was
on (IDE ``hdX``, SATA/SCSI ``sdX``, Xen ``xvdX``, NVMe ``nvmeNnM``, HP Smart
Array ``cciss/cNdM``); the target names on the block driver (virtio-blk
``vdX``, virtio-scsi ``sdX``). Disk N of the source becomes disk N of the
target; partition numbers are kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_NAME_RE = re.compile(
    r"/dev/(?:"
    r"(?P<plain>(?:xvd|sd|hd|vd)[a-z]{1,2})(?P<plainpart>\d*)"
    r"|(?P<nvme>nvme\d+n\d+)(?:p(?P<nvmepart>\d+))?"
    r"|(?P<cciss>cciss/c\d+d\d+)(?:p(?P<ccisspart>\d+))?"
    r")(?![a-z0-9])"
)
# A disk's name prefix by the bus it was on in the source.
_PREFIX_BY_BUS = {"ide": "hd", "sata": "sd", "scsi": "sd", "xen": "xvd", "virtio": "vd", "usb": "sd"}


def drive_letters(index: int) -> str:
    """0 → a, 25 → z, 26 → aa (the kernel's naming)."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("a") + rem) + letters
    return letters


def target_disk_name(index: int, block_driver: str) -> str:
    return ("sd" if block_driver == "virtio-scsi" else "vd") + drive_letters(index)


def source_disk_names(buses: Sequence[str | None]) -> list[str]:
    """The names the source guest most likely gave its disks, in disk order."""
    counters: dict[str, int] = {}
    names = []
    for bus in buses:
        if bus == "nvme":
            n = counters.get("nvme", 0)
            names.append(f"nvme{n}n1")
            counters["nvme"] = n + 1
            continue
        prefix = _PREFIX_BY_BUS.get(bus or "", "sd")
        n = counters.get(prefix, 0)
        names.append(prefix + drive_letters(n))
        counters[prefix] = n + 1
    return names


def _letters_index(letters: str) -> int:
    value = 0
    for char in letters:
        value = value * 26 + (ord(char) - ord("a") + 1)
    return value - 1


def build_name_map(buses: Sequence[str | None], block_driver: str) -> dict[str, str]:
    """Source whole-disk name → target whole-disk name."""
    return {src: target_disk_name(i, block_driver) for i, src in enumerate(source_disk_names(buses))}


def _fallback_target(disk: str, block_driver: str) -> str:
    """A name not in the map keeps its position: sdc → vdc, nvme2n1 → vdc, cciss/c0d1 → vdb."""
    match = re.fullmatch(r"(?:xvd|sd|hd|vd)([a-z]{1,2})", disk)
    if match:
        return target_disk_name(_letters_index(match.group(1)), block_driver)
    match = re.fullmatch(r"nvme(\d+)n\d+", disk)
    if match:
        return target_disk_name(int(match.group(1)), block_driver)
    match = re.fullmatch(r"cciss/c\d+d(\d+)", disk)
    if match:
        return target_disk_name(int(match.group(1)), block_driver)
    return disk


def rewrite_device_names(text: str, name_map: dict[str, str], block_driver: str) -> tuple[str, int]:
    """Rewrite every ``/dev/<disk>[partition]`` in ``text``; return the text and the count."""
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        disk = match.group("plain") or match.group("nvme") or match.group("cciss")
        part = match.group("plainpart") or match.group("nvmepart") or match.group("ccisspart") or ""
        new_disk = name_map.get(disk) or _fallback_target(disk, block_driver)
        new = f"/dev/{new_disk}{part}"
        if new != match.group(0):
            count += 1
        return new

    return _NAME_RE.sub(replace, text), count


_CONSOLE_RE = re.compile(r"\b(?:hvc0|xvc0)\b")


def rewrite_consoles(text: str) -> tuple[str, int]:
    """Xen/Hyper-V paravirtual consoles become the serial port KVM gives."""
    return _CONSOLE_RE.subn("ttyS0", text)
