# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Storage pools and volumes: the disks of a domain, volume lookup, deletion, creation and upload.

Used by define_domain (``remove_storage``, the check that disks exist), by
``input: libvirt`` (``<source pool= volume=>`` disks) and by
``output: libvirt`` (volumes created in a pool and filled through libvirt's
upload stream, sparse when the daemon supports it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import LibvirtError, OutputError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.libvirt.client import (
    Connection,
    Pool,
    Stream,
    Volume,
    error_code,
    error_text,
    is_local_uri,
    libvirt,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.libvirt.xmlcompare import (
    Element,
    parse_libvirt_xml,
    parse_xml,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.xmlsupport import etree

# Pool types whose volumes are files (any format); the others hold raw volumes only.
FILE_POOL_TYPES = ("dir", "fs", "netfs")
CHUNK = 256 * 1024 - 24  # libvirt's largest stream packet payload (virStorageVol.streamBufSize)


# --- the disks of a domain ---------------------------------------------------------------------

@dataclass
class DiskSource:
    """Where one disk of a domain lives: a pool volume, a file/block path, or something else."""

    dev: str
    device: str
    kind: str
    path: str | None = None
    pool: str | None = None
    volume: str | None = None


def disk_sources(root: Element) -> list[DiskSource]:
    out = []
    for disk in root.findall("devices/disk"):
        source = disk.find("source")
        target = disk.find("target")
        dev = target.get("dev", "?") if target is not None else "?"
        kind = disk.get("type", "file")
        entry = DiskSource(dev=dev, device=disk.get("device", "disk"), kind=kind)
        if source is not None:
            if kind == "volume":
                entry.pool, entry.volume = source.get("pool"), source.get("volume")
            else:
                entry.path = source.get("file") or source.get("dev") or source.get("dir")
        out.append(entry)
    return out


def lookup_volume(conn: Connection, disk: DiskSource) -> Volume | None:
    """The storage volume behind a disk, or None when no pool manages it."""
    try:
        if disk.kind == "volume" and disk.pool and disk.volume:
            return conn.storagePoolLookupByName(disk.pool).storageVolLookupByName(disk.volume)
        if disk.path:
            return conn.storageVolLookupByPath(disk.path)
    except libvirt.libvirtError:
        return None
    return None


def volume_pool(vol: Volume) -> Pool:
    return vol.storagePoolLookupByVolume()


def pool_root(pool: Pool) -> Element:
    """A pool's XML description."""
    return parse_xml(pool.XMLDesc(0), what="the pool XML")


def pool_type(pool: Pool) -> str:
    return str(pool_root(pool).get("type"))


def volume_names(pool: Pool) -> set[str]:
    """The names of a pool's volumes, after a refresh (when the pool allows one)."""
    with contextlib.suppress(libvirt.libvirtError):
        pool.refresh(0)
    return {v.name() for v in pool.listAllVolumes(0)}


def volume_format(vol: Volume) -> str | None:
    """The format libvirt reports for a volume (``raw``, ``qcow2``, ...), if any."""
    node = parse_libvirt_xml(vol.XMLDesc(0)).find("target/format")
    return node.get("type") if node is not None else None


def delete_volume(conn: Connection, vol: Volume, *, uri: str) -> None:
    """Delete a storage volume.

    libvirt (at least up to 10.x) cannot delete a ``disk`` pool volume whose
    device name ends in a digit (``loop0p1``, ``nvme0n1p2``): it runs
    ``parted rm p1``. On a local URI that case falls back to ``parted rm 1``
    and a pool refresh.
    """
    name = vol.name()
    try:
        vol.delete(0)
        return
    except libvirt.libvirtError as exc:
        first = exc
    pool = volume_pool(vol)
    root = pool_root(pool)
    device = root.find("source/device")
    number = re.search(r"p(\d+)$", name)
    text = error_text(first)
    if not (root.get("type") == "disk" and device is not None and number and is_local_uri(uri)
            and ("rm --script p" in text or "Partition doesn't exist" in text)):
        raise LibvirtError(f"cannot delete the volume {pool.name()}/{name}: {error_text(first)}",
                           subject=name) from first
    proc = subprocess.run(["parted", "--script", device.get("path"), "rm", number.group(1)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LibvirtError(f"cannot delete the volume {pool.name()}/{name}: {error_text(first)}; "
                           f"parted rm {number.group(1)} failed too: {proc.stderr.strip()}", subject=name)
    with contextlib.suppress(libvirt.libvirtError):
        pool.refresh(0)


def volumes_in_use(conn: Connection, *, skip_uuid: str | None = None) -> set[str]:
    """Paths and ``pool/volume`` names that the disks of all domains (but one) use."""
    used: set[str] = set()
    for dom in conn.listAllDomains(0):
        if skip_uuid and dom.UUIDString() == skip_uuid:
            continue
        with contextlib.suppress(libvirt.libvirtError):
            for xml in (dom.XMLDesc(0), dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)):
                for disk in disk_sources(parse_libvirt_xml(xml)):
                    if disk.path:
                        used.add(disk.path)
                    if disk.pool and disk.volume:
                        used.add(f"{disk.pool}/{disk.volume}")
    return used


def volume_keys(vol: Volume) -> set[str]:
    """The names :func:`volumes_in_use` knows a volume by: ``pool/volume`` and its path."""
    keys = {f"{volume_pool(vol).name()}/{vol.name()}"}
    with contextlib.suppress(libvirt.libvirtError):
        keys.add(vol.path())
    return keys


# --- creating and uploading ----------------------------------------------------------------------
# Creating and filling a volume is writing a conversion's target: failures here are OutputErrors.

def next_partition_name(pool: Pool, root: Element) -> str:
    """The name libvirt gives the next partition of a ``disk`` pool (it refuses any other)."""
    device = root.find("source/device")
    base = os.path.basename(device.get("path")) if device is not None else ""
    sep = "p" if base[-1:].isdigit() else ""
    used = set()
    for vol in pool.listAllVolumes(0):
        found = re.fullmatch(re.escape(base + sep) + r"(\d+)", vol.name())
        if found:
            used.add(int(found.group(1)))
    number = 1
    while number in used:
        number += 1
    return f"{base}{sep}{number}"


def volume_xml(name: str, capacity: int, fmt: str | None) -> str:
    """The XML of an empty volume of ``capacity`` bytes (``fmt``: its format, when the pool has formats)."""
    vol = etree.Element("volume")
    etree.SubElement(vol, "name").text = name
    etree.SubElement(vol, "capacity", unit="bytes").text = str(capacity)
    etree.SubElement(vol, "allocation", unit="bytes").text = "0"
    if fmt:
        target = etree.SubElement(vol, "target")
        etree.SubElement(target, "format", type=fmt)
    return etree.tostring(vol, encoding="unicode")


def create_volume(conn: Connection, pool: Pool, kind: str, name: str, capacity: int, *, uri: str) -> Volume:
    """Create one empty volume; a failure leaves no partition behind."""
    before = volume_names(pool) if kind == "disk" else set()
    # File pools get a raw file of the exact upload size: the upload overwrites all of
    # it, and a refresh then reads the real format (libvirt never truncates a volume).
    fmt = "raw" if kind in FILE_POOL_TYPES else None
    try:
        return pool.createXML(volume_xml(name, capacity, fmt), 0)
    except libvirt.libvirtError as exc:
        if kind == "disk":
            for leaked in volume_names(pool) - before:
                with contextlib.suppress(Exception):
                    delete_volume(conn, pool.storageVolLookupByName(leaked), uri=uri)
        raise OutputError(f"cannot create the volume {name} ({capacity} bytes) in the storage pool "
                          f"{pool.name()}: {error_text(exc)}", subject=pool.name(),
                          hint="Check the pool's free space (virsh pool-info)") from exc


def _extents(fd: int, size: int) -> Iterator[tuple[bool, int, int]]:
    """(is_data, start, end) of a local file; one data extent when holes cannot be seen."""
    pos = 0
    while pos < size:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                yield True, pos, size
                return
            data = size
        if data > pos:
            yield False, pos, min(data, size)
            pos = data
            continue
        hole = min(os.lseek(fd, pos, os.SEEK_HOLE), size)
        yield True, pos, hole
        pos = hole


def _send(stream: Stream, data: bytes) -> None:
    view = memoryview(data)
    while view:
        sent = stream.send(view.tobytes())
        if sent <= 0:
            raise OutputError("the libvirt upload stream accepted no data")
        view = view[sent:]


def upload_file(conn: Connection, vol: Volume, path: str, *, progress: Callable[[int], None] | None = None) -> int:
    """Upload a local file into a volume from its start; return the data bytes sent (holes excluded)."""
    size = os.path.getsize(path)
    sparse_flag = getattr(libvirt, "VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM", None)
    stream = conn.newStream(0)
    sparse = sparse_flag is not None
    try:
        vol.upload(stream, 0, size, sparse_flag if sparse else 0)
    except libvirt.libvirtError as exc:
        if not sparse or error_code(exc) not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
            raise
        stream = conn.newStream(0)
        sparse = False
        vol.upload(stream, 0, size, 0)
    sent = 0
    done = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        for is_data, start, end in _extents(fd, size):
            if not is_data and sparse:
                stream.sendHole(end - start, 0)
            elif not is_data:
                zeros = bytes(CHUNK)
                for offset in range(start, end, CHUNK):
                    _send(stream, zeros[:min(CHUNK, end - offset)])
            else:
                os.lseek(fd, start, os.SEEK_SET)
                pos = start
                while pos < end:
                    chunk = os.read(fd, min(CHUNK, end - pos))
                    if not chunk:
                        raise OutputError(f"{path} ended early, at byte {pos} of {size}", subject=path)
                    _send(stream, chunk)
                    pos += len(chunk)
                    sent += len(chunk)
                    if progress is not None:
                        progress(done + pos - start)
            done += end - start
            if progress is not None:
                progress(done)
        stream.finish()
    except BaseException:
        with contextlib.suppress(Exception):
            stream.abort()
        raise
    finally:
        os.close(fd)
    return sent
