# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Input ``libvirt``: a domain by name on a libvirt URI (``qemu:///system``, ``xen+ssh://root@xen/``, ...).

Like virt-v2v's ``-i libvirt``:

- the connection is opened read-only; the domain's inactive XML (its
  persistent definition) is parsed by :func:`..libvirtxml.parse_domain_xml`,
  with ``<source pool= volume=>`` disks resolved through the same connection;
- a domain that is running, paused or suspended is refused, whatever the
  operation (even ``inspect_os: false``): its disks are changing under us.
  virt-v2v refuses it the same way. Shut it down first;
- disks of a domain on a local URI are read directly (files, block devices,
  NBD);
- on a remote ``+ssh`` URI (``qemu+ssh://``, ``xen+ssh://``) with
  ``password`` or ``private_key`` given, the disk files are read over SSH
  like an ESXi datastore (transport/ssh.py): the host key is verified against
  ``host_key_fingerprint``/``known_hosts``, each disk must be a regular file,
  and ``nbdkit -r ssh`` serves it while the source is open. libvirt's own
  connection uses the system's ssh client and its configuration;
- otherwise disks of a domain on a remote URI cannot be read yet: the
  metadata loads (so ``inspect_guest`` with ``inspect_os: false`` works), and
  opening the disks fails with :class:`NotSupportedError`. Their paths are
  shown as ``<scheme>://[user@]host/path``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v import storage
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import (
    LibvirtError,
    NotSupportedError,
    SourceError,
    V2VError,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import (
    DiskServer,
    Input,
    OpenedSource,
    SourceSpec,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.libvirtxml import parse_domain_xml
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.vmx_ssh import source_ssh_target
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.libvirt.client import (
    Connection,
    connection,
    error_code,
    error_text,
    is_remote_uri,
    libvirt,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.libvirt.volumes import volume_format
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Source
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.transport.ssh import (
    SshDiskServer,
    SshLocation,
    SshSession,
)


def _resolver(conn: Connection, uri: str) -> Any:
    def resolve_volume(pool: str, volume: str, /) -> tuple[str, str | None]:
        try:
            vol = conn.storagePoolLookupByName(pool).storageVolLookupByName(volume)
            fmt = volume_format(vol)
            return vol.path(), fmt if fmt in storage.SUPPORTED_FORMATS else None
        except libvirt.libvirtError as exc:
            raise SourceError(f"cannot resolve the storage volume {pool}/{volume}: {error_text(exc)}",
                              subject=uri, hint="Check that the pool is active and holds that volume") from exc
    return resolve_volume


_RUNNING_STATES = {"running": 1, "blocked": 2, "paused": 3, "shutting down": 4, "pmsuspended": 7}


@dataclass
class RemoteDiskRefusal:
    """The :class:`..inputs.DiskServer` of a disk on a remote libvirt host: reading it is not supported yet."""

    uri: str
    path: str

    def serve(self) -> AbstractContextManager[str]:
        raise NotSupportedError(
            f"disks of remote libvirt domains are not supported yet ({self.path} on {self.uri})",
            hint="Inspect with inspect_os: false for the metadata, or copy the disks to this host and use "
                 "input 'libvirtxml' (virsh dumpxml --inactive) or 'disk'")


def _remote_disk_uri(uri: str, path: str) -> str:
    parts = urlsplit(uri)
    user = f"{quote(parts.username)}@" if parts.username else ""
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else (parts.hostname or "")
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{user}{host}{port}{quote(path)}"


def load_domain(spec: SourceSpec) -> Source:
    """The domain ``spec.domain`` on ``spec.uri`` as its host sees it (disk paths on that host)."""
    if not spec.uri or not spec.domain:
        raise SourceError("input 'libvirt' needs source.uri and source.domain",
                          hint="For example uri: qemu:///system, domain: <name as 'virsh list --all' shows it>")
    uri, name = spec.uri, spec.domain
    with connection(uri, read_only=True) as conn:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError as exc:
            if error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                raise SourceError(f"there is no domain {name!r} on {uri}", subject=uri,
                                  hint=f"'virsh -c {uri} list --all' lists the domain names") from exc
            raise LibvirtError(f"cannot look up domain {name!r}: {error_text(exc)}", subject=uri) from exc
        try:
            state = dom.state()[0]
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        except libvirt.libvirtError as exc:
            raise LibvirtError(f"cannot read domain {name!r}: {error_text(exc)}", subject=uri) from exc
        running = {code: label for label, code in _RUNNING_STATES.items()}
        if state in running:
            raise SourceError(
                f"domain {name!r} on {uri} is {running[state]}; its disks are changing while it runs",
                subject=uri, hint="Shut it down first (virsh shutdown), then inspect or convert it")
        try:
            source = parse_domain_xml(xml, resolve_volume=_resolver(conn, uri))
        except V2VError as exc:
            if exc.subject is None:
                exc.subject = f"{uri} {name}"
            raise
    source.input = "libvirt"
    return source


def attach_remote_disks(source: Source, uri: str, spec: SourceSpec) -> OpenedSource:
    """The opened source of a domain on a remote host: its disks read over SSH, or refused when opened."""
    servers: dict[int, DiskServer] = {}
    remote = [(index, disk) for index, disk in enumerate(source.disks) if "://" not in disk.path]
    if not remote:
        return OpenedSource(source)
    parts = urlsplit(uri)
    if not parts.scheme.endswith("+ssh") or not (spec.password or spec.private_key):
        for index, disk in remote:
            disk.path = _remote_disk_uri(uri, disk.path)
            servers[index] = RemoteDiskRefusal(uri=uri, path=disk.path)
        return OpenedSource(source, servers=servers)
    host = SshLocation(user=unquote(parts.username or "root"), host=str(parts.hostname), port=parts.port or 22,
                       path="/")
    target = source_ssh_target(spec, host)
    with SshSession(target) as session:
        known_hosts_line = session.known_hosts_line()
        for index, disk in remote:
            location = host.with_path(disk.path)
            if session.size(disk.path) is None:
                raise SourceError(f"disk {disk.path!r} of domain {source.name!r} does not exist on {host.host}",
                                  subject=uri, hint="Check the domain's disk paths on that host")
            size = session.regular_file_size(disk.path)
            if size is None:
                raise NotSupportedError(f"disk {disk.path!r} of domain {source.name!r} is not a regular file on "
                                        f"{host.host} (a block device or volume), which cannot be read over SSH yet",
                                        subject=uri, hint="Copy it into a file first")
            disk.path = location.url
            disk.format = disk.format or "raw"
            disk.size_bytes = disk.size_bytes or size
            servers[index] = SshDiskServer(location=location, credentials=target.credentials,
                                           known_hosts_line=known_hosts_line)
    return OpenedSource(source, servers=servers)


class LibvirtInput(Input):
    """``input: libvirt``: ``source.uri`` and ``source.domain``."""

    def open(self, spec: SourceSpec) -> OpenedSource:
        source = load_domain(spec)
        if is_remote_uri(spec.uri or ""):
            return attach_remote_disks(source, spec.uri or "", spec)
        return OpenedSource(source)
