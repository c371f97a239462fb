# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Disk images: safe format probing and read-only overlays.

A disk image is untrusted input. Its header can name other files (a qcow2
backing file or external data file, a VMDK's extents or parent) that qemu
would happily open: a guest image could make us read ``/etc/shadow``. So:

* the format is detected from magic bytes here, never by letting qemu guess,
  and always passed on explicitly (``-f`` / ``format=``);
* qcow2 headers naming a backing or data file are refused;
* a VMDK descriptor whose extents are outside its own directory, or which
  names a parent (a snapshot delta), is refused - except the deltas of an
  OVF snapshot chain, whose parents must all sit in the delta's own directory;
* ``qemu-img info`` then double-checks what qemu itself sees.

The source is never opened for writing: all work happens in a qcow2 overlay
whose backing file is the source, opened read-only.

A disk can also be an NBD export (``nbd://host[:port][/export]`` or
``nbd+unix:///[export]?socket=/path``): it is opened through qemu's ``nbd``
block driver with an explicit format (``raw`` unless the disk says
otherwise; an export is never probed), with the same refusal of backing and
data files.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import (
    NotSupportedError,
    SourceError,
    ToolError,
    UnsafeImageError,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.process import run_tool
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.vmdk import read_vmdk_info

SUPPORTED_FORMATS = ("raw", "qcow2", "vmdk", "vhd", "vhdx", "vdi")
# qemu's driver names differ from the names users know for two of them.
_QEMU_DRIVER = {"vhd": "vpc"}
_FROM_QEMU_DRIVER = {"vpc": "vhd"}

_QCOW2_MAGIC = b"QFI\xfb"
_VMDK_SPARSE_MAGIC = b"KDMV"
_VMDK_COWD_MAGIC = b"COWD"
_VHDX_MAGIC = b"vhdxfile"
_VHD_MAGIC = b"conectix"
_VDI_SIGNATURE = 0xBEDA107F
_QCOW2_EXT_DATA_FILE = 0x44415441
_QCOW2_EXT_END = 0
NBD_DEFAULT_PORT = 10809
# Connecting to a host that drops packets takes minutes; fail sooner.
_NETWORK_TIMEOUT = 90
_NBD_HINT = ("Check that the NBD server is running and reachable from this host, "
             "and that the host, port, socket path and export name are right")


@dataclass
class ImageInfo:
    """What is known about one disk image after a safe probe.

    ``path`` is a local file or an NBD URI (see :func:`is_network_uri`).
    """

    path: str
    format: str
    virtual_size: int
    actual_size: int | None = None
    offset: int | None = None
    length: int | None = None

    @property
    def qemu_driver(self) -> str:
        return qemu_driver(self.format)

    @property
    def is_network(self) -> bool:
        return is_network_uri(self.path)

    def qemu_filename(self) -> str:
        """How qemu opens this image: the plain path, or a ``json:`` spec with the format in it."""
        if self.is_network or self.offset is not None:
            return image_json_spec(self.path, self.format, offset=self.offset, length=self.length)
        return os.path.abspath(self.path)


def is_network_uri(path: str) -> bool:
    """Whether a disk path is a URI (read over a network) rather than a local file."""
    return "://" in path


def nbd_block_driver(uri: str) -> dict[str, Any]:
    """qemu's ``nbd`` block driver options for an NBD URI; other URIs are refused."""
    parts = urlsplit(uri)
    export = unquote(parts.path.lstrip("/"))
    if parts.scheme == "nbd":
        if not parts.hostname:
            raise SourceError("the NBD URI has no host", subject=uri, hint="Use nbd://host[:port][/export]")
        try:
            port = parts.port or NBD_DEFAULT_PORT
        except ValueError as exc:
            raise SourceError("the NBD URI has an invalid port", subject=uri) from exc
        server: dict[str, str] = {"type": "inet", "host": parts.hostname, "port": str(port)}
    elif parts.scheme == "nbd+unix":
        sockets = parse_qs(parts.query).get("socket")
        if not sockets:
            raise SourceError("the NBD URI has no socket", subject=uri,
                              hint="Use nbd+unix:///[export]?socket=/path/to/socket")
        server = {"type": "unix", "path": sockets[0]}
    else:
        raise NotSupportedError(f"disks read over {parts.scheme}:// are not supported yet", subject=uri,
                                hint="Serve the disk over NBD (nbd:// or nbd+unix://), or copy it to this host")
    options: dict[str, Any] = {"driver": "nbd", "server": server}
    if export:
        options["export"] = export
    return options


def qemu_driver(fmt: str) -> str:
    """The qemu block driver name for a user-facing format name."""
    return _QEMU_DRIVER.get(fmt, fmt)


def _read_at(path: str, offset: int, size: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(size)


def detect_format(path: str, *, offset: int = 0, length: int | None = None) -> str:
    """Detect the format of an image from its magic bytes; ``raw`` when none match."""
    try:
        head = _read_at(path, offset, 512)
    except OSError as exc:
        raise SourceError(f"cannot read the disk image: {exc.strerror}", subject=path,
                          hint="Check that the path exists and is readable") from exc
    if head.startswith(_QCOW2_MAGIC):
        return "qcow2"
    if head.startswith((_VMDK_SPARSE_MAGIC, _VMDK_COWD_MAGIC)) or _is_vmdk_descriptor(head):
        return "vmdk"
    if head.startswith(_VHDX_MAGIC):
        return "vhdx"
    if head.startswith(_VHD_MAGIC):
        return "vhd"
    if len(head) >= 0x44 and struct.unpack_from("<I", head, 0x40)[0] == _VDI_SIGNATURE:
        return "vdi"
    # A fixed VHD has its only footer in the last 512 bytes.
    end = (offset + length) if length is not None else os.path.getsize(path)
    if end >= 512 and _read_at(path, end - 512, 8) == _VHD_MAGIC:
        return "vhd"
    return "raw"


def _is_vmdk_descriptor(head: bytes) -> bool:
    text = head.decode("latin-1")
    return text.lstrip().startswith("# Disk DescriptorFile") or "createType=" in text[:512]


def _check_qcow2_header(path: str, offset: int) -> None:
    header = _read_at(path, offset, 104)
    if len(header) < 72:
        raise SourceError("qcow2 header is truncated", subject=path)
    version = struct.unpack_from(">I", header, 4)[0]
    backing_offset, backing_size = struct.unpack_from(">QI", header, 8)
    if backing_offset:
        name = _read_at(path, offset + backing_offset, min(backing_size, 1023)).decode("utf-8", "replace")
        raise UnsafeImageError(
            f"the qcow2 header names a backing file ({name!r}); refusing to follow it",
            subject=path,
            hint="Use a standalone image: 'qemu-img convert' the whole chain into one file first")
    if version < 3:
        return
    header_length = struct.unpack_from(">I", header, 100)[0]
    pos = offset + header_length
    for _extension in range(64):
        ext_type, ext_len = struct.unpack(">II", _read_at(path, pos, 8).ljust(8, b"\0"))
        if ext_type == _QCOW2_EXT_END:
            return
        if ext_type == _QCOW2_EXT_DATA_FILE:
            name = _read_at(path, pos + 8, min(ext_len, 1023)).decode("utf-8", "replace")
            raise UnsafeImageError(
                f"the qcow2 header names an external data file ({name!r}); refusing to follow it",
                subject=path, hint="Convert the image to a self-contained qcow2 or raw file first")
        pos += 8 + ((ext_len + 7) & ~7)


# Longest snapshot chain followed (VMware itself allows 32 levels).
MAX_CHAIN_DEPTH = 32


def _beside(path: str, name: str) -> bool:
    """Whether ``name`` (another file, relative to ``path`` or absolute) resolves into ``path``'s own directory."""
    base = os.path.dirname(os.path.realpath(path))
    return os.path.dirname(os.path.realpath(os.path.join(base, name))) == base


def check_vmdk(path: str, offset: int = 0, *, parents_in_dir: bool = False, _depth: int = 0) -> list[str]:
    """Refuse snapshot deltas and extents outside the VMDK's directory; return the extent paths.

    ``parents_in_dir``: accept a snapshot delta whose parent (and the parent's
    parents, each checked the same way) is a plain file in the same directory
    - an OVF snapshot chain that its loader already matched against the OVF.
    """
    if _read_at(path, offset, 4) == _VMDK_COWD_MAGIC:
        raise UnsafeImageError("this is an ESX COWD redo log (a snapshot delta)", subject=path,
                               hint="Consolidate or delete the VM's snapshots first")
    info = read_vmdk_info(path, offset)
    if info is None:
        return []
    base = os.path.dirname(os.path.realpath(path))
    if info.is_delta or info.parent_hint:
        if not parents_in_dir or offset or not info.parent_hint:
            raise UnsafeImageError(
                f"the VMDK is a snapshot delta of {info.parent_hint or 'another disk'!r}; refusing to follow its "
                "parent", subject=path, hint="Consolidate or delete the VM's snapshots first")
        parent = os.path.realpath(os.path.join(base, info.parent_hint))
        if os.path.isabs(info.parent_hint) or not _beside(path, info.parent_hint):
            raise UnsafeImageError(f"the VMDK's parent {info.parent_hint!r} is not in its own directory",
                                   subject=path, hint="Keep every disk of the snapshot chain side by side")
        if not os.path.isfile(parent):
            raise SourceError(f"the parent disk {info.parent_hint!r} of this snapshot delta does not exist",
                              subject=path, hint="Copy the whole snapshot chain")
        if _depth >= MAX_CHAIN_DEPTH:
            raise UnsafeImageError(f"the snapshot chain is longer than {MAX_CHAIN_DEPTH} disks (or loops)",
                                   subject=path, hint="Consolidate the snapshots first")
        check_vmdk(parent, parents_in_dir=True, _depth=_depth + 1)
    extents = []
    for name in info.extents:
        target = os.path.realpath(os.path.join(base, name))
        if os.path.isabs(name) or os.path.commonpath([base, target]) != base:
            raise UnsafeImageError(
                f"the VMDK descriptor names an extent outside its own directory ({name!r})",
                subject=path, hint="Only extents in the same directory as the descriptor are read")
        extents.append(target)
    return extents


def probe_image(path: str, fmt: str | None = None, *, offset: int | None = None,
                length: int | None = None, parents_in_dir: bool = False) -> ImageInfo:
    """Probe an image safely and return its format and size.

    ``fmt`` given by the user is trusted as the format but the header checks
    still run. ``offset``/``length`` describe an image stored inside another
    file (a disk in an uncompressed OVA). ``parents_in_dir`` accepts a VMDK
    snapshot chain kept in one directory (see :func:`check_vmdk`).
    """
    if is_network_uri(path):
        return _probe_network_image(path, fmt)
    if not os.path.exists(path):
        raise SourceError("the disk image does not exist", subject=path)
    if os.path.isdir(path):
        raise SourceError("expected a disk image but found a directory", subject=path)
    if fmt is not None:
        fmt = _FROM_QEMU_DRIVER.get(fmt, fmt)
        if fmt not in SUPPORTED_FORMATS:
            raise SourceError(f"unknown disk format {fmt!r}", subject=path,
                              hint=f"Supported formats: {', '.join(SUPPORTED_FORMATS)}")
    start = offset or 0
    detected = detect_format(path, offset=start, length=length)
    fmt = fmt or detected
    if detected == "qcow2":
        _check_qcow2_header(path, start)
    if detected == "vmdk" or fmt == "vmdk":
        check_vmdk(path, start, parents_in_dir=parents_in_dir)
    info = qemu_img_info(path, fmt, offset=offset, length=length, parents_in_dir=parents_in_dir)
    return ImageInfo(path=path, format=fmt, virtual_size=int(info["virtual-size"]),
                     actual_size=info.get("actual-size"), offset=offset, length=length)


def _probe_network_image(uri: str, fmt: str | None) -> ImageInfo:
    """Probe an NBD export: the format is given (``raw`` by default), never guessed."""
    fmt = _FROM_QEMU_DRIVER.get(fmt or "raw", fmt or "raw")
    if fmt not in SUPPORTED_FORMATS:
        raise SourceError(f"unknown disk format {fmt!r}", subject=uri,
                          hint=f"Supported formats: {', '.join(SUPPORTED_FORMATS)}")
    info = qemu_img_info(uri, fmt)
    return ImageInfo(path=uri, format=fmt, virtual_size=int(info["virtual-size"]),
                     actual_size=info.get("actual-size"))


def image_json_spec(path: str, fmt: str, *, offset: int | None = None, length: int | None = None) -> str:
    """A qemu ``json:`` filename opening ``path`` (a file or NBD URI) with an explicit format (and window)."""
    proto: dict[str, Any] = (nbd_block_driver(path) if is_network_uri(path)
                             else {"driver": "file", "filename": os.path.abspath(path)})
    if offset is not None:
        proto = {"driver": "raw", "offset": offset, "file": proto}
        if length is not None:
            proto["size"] = length
    spec: dict[str, Any] = {"driver": qemu_driver(fmt), "file": proto}
    if fmt == "qcow2" and is_network_uri(path):
        # Never open a backing file named inside a remote image; it is refused anyway.
        spec["backing"] = None
    return "json:" + json.dumps(spec)


def qemu_img_info(path: str, fmt: str, *, offset: int | None = None, length: int | None = None,
                  parents_in_dir: bool = False) -> dict:
    """``qemu-img info`` with an explicit format; refuse anything that points elsewhere.

    ``parents_in_dir``: a VMDK's parent in its own directory (already checked
    by :func:`check_vmdk`) is accepted as its backing file.
    """
    network = is_network_uri(path)
    use_json = network or offset is not None
    target = image_json_spec(path, fmt, offset=offset, length=length) if use_json else path
    argv = ["qemu-img", "info", "--output=json", "-U"]
    if not use_json:
        argv += ["-f", qemu_driver(fmt)]
    argv.append(target)
    try:
        out = run_tool(argv, subject=path, timeout=_NETWORK_TIMEOUT if network else None)
    except ToolError as exc:
        if network:
            raise SourceError(f"cannot read the NBD export as {fmt}: {exc.stderr}", subject=path,
                              hint=_NBD_HINT) from exc
        raise SourceError(f"qemu-img cannot open it as {fmt}: {exc.stderr}", subject=path,
                          hint="Check the file, or pass its real format explicitly") from exc
    info = json.loads(out)
    backing = info.get("full-backing-filename") or info.get("backing-filename")
    if backing and parents_in_dir and fmt == "vmdk" and offset is None and not network and _beside(path, backing):
        backing = None
    if backing:
        raise UnsafeImageError(
            f"the image names a backing file ({info.get('backing-filename')!r}); refusing to follow it",
            subject=path, hint="Use a standalone image: 'qemu-img convert' the whole chain into one file first")
    specific = (info.get("format-specific") or {}).get("data") or {}
    if specific.get("data-file"):
        raise UnsafeImageError(f"the image names an external data file ({specific['data-file']!r})",
                               subject=path, hint="Convert it to a self-contained image first")
    if network:
        for extent in specific.get("extents") or []:
            name = str(extent.get("filename", ""))
            if not name.startswith(("json:", "nbd:", "nbd+unix:")):
                raise UnsafeImageError(f"the remote VMDK names a separate extent file ({name!r})",
                                       subject=path, hint="Serve a self-contained image (raw, qcow2, "
                                       "monolithic sparse VMDK) over NBD")
        return info
    base = os.path.dirname(os.path.realpath(path))
    for extent in specific.get("extents") or []:
        name = _extent_file(extent.get("filename", ""))
        real = os.path.realpath(name)
        if real != os.path.realpath(path) and os.path.commonpath([base, real]) != base:
            raise UnsafeImageError(f"the VMDK names an extent outside its own directory ({name!r})",
                                   subject=path, hint="Only extents in the same directory are read")
    return info


def _extent_file(name: str) -> str:
    """The file behind an extent name; a ``json:`` window names its container inside."""
    if not name.startswith("json:"):
        return name
    try:
        node = json.loads(name[len("json:"):])
    except ValueError:
        return name
    while isinstance(node, dict):
        if "filename" in node:
            return str(node["filename"])
        node = node.get("file")
    return name


@dataclass
class Overlay:
    """A writable qcow2 layer over a read-only source image."""

    path: str
    source: ImageInfo

    def remove(self) -> None:
        Path(self.path).unlink(missing_ok=True)


def create_overlay(source: ImageInfo, overlay_path: str) -> Overlay:
    """Create a qcow2 overlay whose backing (the source) is only ever read.

    The backing is named with an explicit format, so qemu never probes it.
    """
    argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", qemu_driver(source.format),
            "-b", source.qemu_filename(), overlay_path]
    if source.is_network:
        # The size is known: qemu-img need not open the export again.
        argv.append(str(source.virtual_size))
    try:
        run_tool(argv, subject=source.path, timeout=_NETWORK_TIMEOUT if source.is_network else None,
                 hint=_NBD_HINT if source.is_network else "Check free space and permissions of the work directory")
    except BaseException:
        Path(overlay_path).unlink(missing_ok=True)
        raise
    return Overlay(path=overlay_path, source=source)


def allocated_bytes(image: ImageInfo) -> int:
    """Bytes of the image that hold data (what a sparse copy reads at most)."""
    if image.offset is not None or image.is_network:
        # Over NBD, qemu asks the server for block status.
        argv = ["qemu-img", "map", "--output=json", image.qemu_filename()]
    else:
        argv = ["qemu-img", "map", "--output=json", "-f", qemu_driver(image.format), image.path]
    extents = json.loads(run_tool(argv, subject=image.path, hint=_NBD_HINT if image.is_network else None))
    return sum(e["length"] for e in extents if e.get("data") and not e.get("zero"))


_PROGRESS_RE = re.compile(r"\((\d+(?:\.\d+)?)/100%\)")


def copy_image(overlay: str, target: str, *, output_format: str, allocation: str = "sparse",
               progress: Callable[[float], None] | None = None) -> int:
    """Copy only allocated data of ``overlay`` into ``target`` and flush it; return bytes on disk.

    Zero and trimmed clusters are skipped (``-S 64k`` sparse detection), so a
    trimmed overlay copies the data the guest uses, not the disk's size.
    """
    argv = ["qemu-img", "convert", "-p", "-f", "qcow2", "-O", qemu_driver(output_format), "-S", "64k",
            "-t", "writeback"]
    if allocation == "preallocated":
        argv += ["-o", "preallocation=falloc"]
    elif output_format == "qcow2":
        argv += ["-o", "compat=1.1"]
    argv += [overlay, target]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    if proc.stdout is None or proc.stderr is None:
        raise ToolError(argv, -1, "qemu-img's output could not be read", subject=overlay)
    buffer = ""
    while True:
        chunk = proc.stdout.read(64)
        if not chunk:
            break
        buffer = (buffer + chunk)[-256:]
        matches = _PROGRESS_RE.findall(buffer)
        if matches and progress is not None:
            progress(float(matches[-1]))
    stderr = proc.stderr.read()
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    if proc.returncode != 0:
        raise ToolError(argv, proc.returncode, stderr, subject=overlay,
                        hint="Check free space in the output directory")
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return os.stat(target).st_blocks * 512
