# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Input ``vmx`` over SSH: a .vmx in an ESXi datastore, ``ssh://root@esxi[:port]/vmfs/volumes/ds/vm/vm.vmx``.

Like virt-v2v's ``-i vmx -it ssh``, over the one SSH layer (transport/ssh.py):

- the .vmx, its .vmsd and the VMDK descriptors are read with SFTP and
  parsed by the same pure parser as local files (:func:`..vmx.parse_vmx`);
- the SSH server's host key is verified before any credential is sent:
  against ``host_key_fingerprint`` (``SHA256:...`` fingerprints as
  ``ssh-keygen -l`` prints them) and/or ``known_hosts``. An unknown or
  different key is refused with the server's fingerprint in the message;
  nothing is ever auto-accepted;
- each disk must be a flat VMDK (ESXi's ``vmfs`` or ``monolithicFlat``
  descriptor with one ``-flat.vmdk`` extent in the VM's directory). Its
  extent is read as raw through ``nbdkit -r ssh`` on a private unix socket
  (:class:`..transport.ssh.SshDiskServer`), started when the disks are first
  read and stopped when the source is closed. Sparse, seSparse, raw device
  mappings and snapshot deltas are refused.

Secrets: ``password`` and ``private_key`` (key text, or the path of a key
file on the conversion host) stay in memory; see transport/ssh.py for how
nbdkit gets them. Neither is logged or put in results.
"""

from __future__ import annotations

import posixpath
from urllib.parse import unquote, urlsplit

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import (
    NotSupportedError,
    SourceError,
    UnsafeImageError,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import DiskServer, OpenedSource, SourceSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.vmx import (
    _snapshot_error,
    count_snapshots,
    decode_vmx,
    parse_vmx,
    parse_vmx_keys,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.transport.ssh import (
    SshCredentials,
    SshDiskServer,
    SshLocation,
    SshSession,
    SshTarget,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.vmdk import parse_descriptor

# Descriptors whose one extent is the disk's bytes, readable as raw.
_FLAT_TYPES = {"vmfs": "VMFS", "monolithicflat": "FLAT"}
_SPARSE_MAGICS = (b"KDMV", b"COWD")


def parse_ssh_url(url: str) -> SshLocation:
    """``ssh://[user@]host[:port]/absolute/path`` (the user defaults to root, as for ESXi)."""
    parts = urlsplit(url)
    if parts.scheme != "ssh" or not parts.hostname:
        raise SourceError(f"not an ssh:// URL: {url!r}", hint="Use ssh://root@esxi/vmfs/volumes/datastore/vm/vm.vmx")
    if parts.password is not None:
        raise SourceError("the ssh:// URL contains a password", hint="Put it in source.password instead")
    try:
        port = parts.port or 22
    except ValueError as exc:
        raise SourceError(f"the ssh:// URL has an invalid port: {url!r}") from exc
    path = unquote(parts.path)
    if not path.startswith("/") or path == "/":
        raise SourceError(f"the ssh:// URL needs an absolute path to the .vmx: {url!r}")
    return SshLocation(user=unquote(parts.username or "root"), host=parts.hostname, port=port, path=path)


def source_ssh_target(spec: SourceSpec, location: SshLocation) -> SshTarget:
    """The SSH server of a remote source, trusted and logged into as the source options say."""
    credentials = SshCredentials(password=spec.password, private_key=spec.private_key)
    return SshTarget(host=location.host, port=location.port, user=location.user, credentials=credentials,
                     host_key_fingerprint=list(spec.host_key_fingerprint), known_hosts=spec.known_hosts,
                     option_prefix="source.")


def _flat_extent(session: SshSession, descriptor_path: str, vm: str, url: str) -> tuple[str, int]:
    """The flat extent a disk's descriptor names, and the disk's size; anything else is refused."""
    name = posixpath.basename(descriptor_path)
    data = session.read(descriptor_path) or b""
    if data[:4] in _SPARSE_MAGICS:
        raise NotSupportedError(f"disk {name!r} of VM {vm!r} is a sparse (hosted) VMDK, which cannot be read "
                                "over SSH yet", subject=url,
                                hint="Convert it to a flat disk on the ESXi host ('vmkfstools -i in.vmdk -d thin "
                                     "out.vmdk' gives a vmfs flat disk), or copy the VM directory and use a local path")
    # Descriptors are often padded with NULs to a sector; anything after the text must be padding.
    data, _nul, padding = data.partition(b"\0")
    if padding.strip(b"\0") or b"createType" not in data:
        raise SourceError(f"disk {name!r} of VM {vm!r} is not a VMDK descriptor", subject=url,
                          hint="Point the .vmx at the descriptor (<vm>.vmdk), not at the -flat.vmdk extent")
    info = parse_descriptor(data.decode("utf-8", "replace"))
    if info.is_delta or info.parent_hint:
        raise _snapshot_error(vm, f"{name} has parent disk {info.parent_hint or info.parent_cid!r}")
    kind = (info.create_type or "").lower()
    if kind not in _FLAT_TYPES:
        raise NotSupportedError(
            f"disk {name!r} of VM {vm!r} has createType {info.create_type!r}; only flat disks (vmfs, "
            "monolithicFlat) are read over SSH, not sparse, seSparse, split or raw device mappings",
            subject=url,
            hint="Clone it to a flat disk with vmkfstools on the ESXi host, or copy the VM and use a local path")
    if len(info.extents) != 1:
        raise NotSupportedError(f"disk {name!r} of VM {vm!r} has {len(info.extents)} extents; only one "
                                "is supported over SSH", subject=url)
    extent = info.extents[0]
    if "/" in extent or extent in ("", ".", ".."):
        raise UnsafeImageError(f"the VMDK descriptor {name!r} names an extent outside its own directory "
                               f"({extent!r})", subject=url,
                               hint="Only extents in the same directory as the descriptor are read")
    extent_path = posixpath.join(posixpath.dirname(descriptor_path), extent)
    remote_size = session.size(extent_path)
    if remote_size is None:
        raise SourceError(f"the extent {extent!r} of disk {name!r} does not exist on the SSH server",
                          subject=url)
    return extent_path, info.size_bytes or remote_size


def _check_vmsd(session: SshSession, vmx_path: str, vm: str) -> None:
    vmsd = posixpath.splitext(vmx_path)[0] + ".vmsd"
    data = session.read(vmsd, missing_ok=True)
    if data is None:
        return
    snapshots = count_snapshots(parse_vmx_keys(decode_vmx(data)))
    if snapshots > 0:
        raise _snapshot_error(vm, f"{posixpath.basename(vmsd)} lists {snapshots} snapshot(s)")


def open_ssh_vmx(spec: SourceSpec) -> OpenedSource:
    """Input ``vmx`` with an ``ssh://`` path: read it over SFTP; its disks are served by nbdkit while open."""
    url = spec.uri if spec.uri and spec.uri.startswith("ssh://") else spec.single_path()
    location = parse_ssh_url(url)
    if not location.path.lower().endswith(".vmx"):
        raise SourceError(f"the ssh:// path must name a .vmx file: {location.path!r}", subject=url)
    target = source_ssh_target(spec, location)
    servers: dict[int, DiskServer] = {}
    with SshSession(target) as session:
        data = session.read(location.path) or b""
        vmx_dir = posixpath.dirname(location.path)
        default_name = posixpath.splitext(posixpath.basename(location.path))[0]
        try:
            source = parse_vmx(decode_vmx(data), vmx_dir=vmx_dir, default_name=default_name)
        except SourceError as exc:
            if exc.subject is None:
                exc.subject = url
            raise
        _check_vmsd(session, location.path, source.name)
        known_hosts_line = session.known_hosts_line()
        for index, disk in enumerate(source.disks):
            if "://" in disk.path:
                raise NotSupportedError(f"disk {disk.path!r} of VM {source.name!r} is not a datastore path",
                                        subject=url)
            extent_path, size = _flat_extent(session, disk.path, source.name, url)
            extent = location.with_path(extent_path)
            disk.path = extent.url
            disk.format = "raw"
            disk.size_bytes = size
            servers[index] = SshDiskServer(location=extent, credentials=target.credentials,
                                           known_hosts_line=known_hosts_line)
    return OpenedSource(source, servers=servers)
