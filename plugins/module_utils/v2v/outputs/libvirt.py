# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``output: libvirt``: converted disks uploaded into a libvirt storage pool, the domain defined there.

Works for any pool type that can create volumes, on local and remote URIs,
because the disks travel through libvirt's volume upload stream (sparse when
the daemon supports it: holes are sent as holes, and libvirt writes zeros for
them on block devices). Volume names and formats:

- file pools (``dir``, ``fs``, ``netfs``): ``NAME-vda.raw`` / ``NAME-vda.qcow2``,
  in the format of the converted disk; when that name is taken (a previous
  conversion of the same guest), ``NAME-vda-FINGERPRINT8.EXT``;
- ``disk`` pools: the partition libvirt creates (``sdb1``, ``loop0p2``), raw;
- other pools (``logical``, ``rbd``, ...): ``NAME-vda`` (or the fallback), raw.

The domain's disks become ``<disk type='volume'>`` (pool + volume), which
libvirt resolves to a file or block device for every pool type.

Idempotency record: the domain's ``<metadata>`` (in the collection's XML
namespace, inside ``kvmigrate:conversion``) gets
``<kvmigrate:output kind='libvirt' pool='POOL' fingerprint='F'>`` with one
``<kvmigrate:volume dev='vda' name='VOL'/>`` per disk. A re-run with the same
fingerprint, finding that domain and those volumes, is ``changed: false``
(the guest may have run since: its disks are its own now). A new fingerprint
uploads new volumes first, redefines the domain (UUID and MACs kept), and only
then deletes the volumes of the previous conversion.

A failed upload deletes the volumes it created (including a partition that a
failed volume creation leaves behind in a ``disk`` pool).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.domain_xml import METADATA_NS, METADATA_PREFIX
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import LibvirtError, OutputError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.libvirt.client import (
    DEFAULT_URI,
    Connection,
    Pool,
    Volume,
    connection,
    error_text,
    is_local_uri,
    is_test_driver,
    libvirt,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.libvirt.domain import (
    DomainRequest,
    DomainResult,
    domain_info,
    ensure_domain,
    inactive_xml,
    lookup,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.libvirt.volumes import (
    FILE_POOL_TYPES,
    create_volume,
    delete_volume,
    next_partition_name,
    pool_root,
    pool_type,
    upload_file,
    volume_format,
    volume_names,
    volumes_in_use,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.libvirt.xmlcompare import Element, parse_xml
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Serializable, TargetDisk
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.outputs.base import Output, OutputJob
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.target import DomainOptions, TargetHardware
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.xmlsupport import etree

FORMATS = ("raw", "qcow2")
_NS = f"{{{METADATA_NS}}}"

Progress = Callable[[float], None]


@dataclass
class LibvirtOutputOptions(Serializable):
    """Where ``output: libvirt`` writes: ``uri``, storage ``pool``; ``start`` the domain after
    (re)defining it; ``force`` converts again even when the pool already holds this conversion,
    and replaces the definition of a same-named domain not written by this output."""

    uri: str = DEFAULT_URI
    pool: str = "default"
    start: bool = False
    force: bool = False


@dataclass
class PoolVolume(Serializable):
    """One uploaded disk: the volume (``pool``/``name``), its ``path`` on the libvirt host."""

    pool: str
    name: str
    path: str
    format: str
    capacity: int
    dev: str | None = None
    bytes_uploaded: int | None = None


@dataclass
class LibvirtTarget(Serializable):
    """What ``output: libvirt`` wrote; ``to_dict()`` is convert_guest's ``target``."""

    uri: str
    pool: str
    fingerprint: str
    volumes: list[PoolVolume] = field(default_factory=list)
    domain: dict[str, Any] = field(default_factory=dict)
    domain_xml: str = ""
    actions: list[str] = field(default_factory=list)
    bus: str = "virtio"

    def to_dict(self) -> dict[str, Any]:
        disks = [{"path": v.path, "format": v.format, "bus": self.bus, "size_bytes": v.capacity,
                  "bytes_written": v.bytes_uploaded, "pool": v.pool, "volume": v.name} for v in self.volumes]
        return {"uri": self.uri, "pool": self.pool, "fingerprint": self.fingerprint, "disks": disks,
                "volumes": [v.to_dict() for v in self.volumes], "domain": self.domain,
                "domain_xml": self.domain_xml, "actions": self.actions}


@dataclass
class LibvirtOutputPlan(Serializable):
    """What :func:`write_libvirt_output` will do, decided before anything is converted or copied.

    ``disk_format``: the format the local converted disks must have (block
    pools hold raw only). ``domain_type``: ``kvm`` or ``qemu`` for the XML.
    ``current``: the output as it already is, when this conversion is there
    (then there is nothing to do: ``changed: false``).
    """

    uri: str
    pool: str
    pool_type: str
    disk_format: str
    domain_type: str
    steps: list[str] = field(default_factory=list)
    current: LibvirtTarget | None = None


# --- pools ---------------------------------------------------------------------------------------

def _pool(conn: Connection, name: str) -> Pool:
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError as exc:
        raise OutputError(f"the storage pool {name!r} does not exist: {error_text(exc)}", subject=name,
                          hint="Create and start it (virsh pool-define-as, pool-start), or choose another pool") \
            from exc
    if not pool.isActive():
        raise OutputError(f"the storage pool {name!r} is not active", subject=name,
                          hint=f"Start it first: virsh pool-start {name}")
    return pool


def volume_format_for(pool_kind: str, wanted: str) -> str:
    """The disk format a pool of ``pool_kind`` can hold for a disk converted to ``wanted``."""
    if wanted not in FORMATS:
        raise OutputError(f"disk format {wanted!r} is not supported", hint=f"Use one of: {', '.join(FORMATS)}")
    if pool_kind in FILE_POOL_TYPES:
        return wanted
    if wanted != "raw":
        raise OutputError(f"a {pool_kind!r} storage pool holds raw volumes only, not {wanted}",
                          hint="Use output_format: raw, or a directory pool for qcow2")
    return "raw"


def choose_domain_type(conn: Connection, uri: str) -> str:
    """``kvm`` when KVM works on the libvirt host, else ``qemu`` (TCG).

    The host's domain capabilities say whether it offers KVM; on a local
    URI the conversion host's own KVM probe (``KVMIGRATE_ACCEL`` forces it)
    must agree, because some hosts offer a /dev/kvm that cannot run guests.
    """
    if is_test_driver(uri):
        return "qemu"
    if is_local_uri(uri):
        from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.appliance import decide_accelerator

        if decide_accelerator().accel != "kvm":
            return "qemu"
    try:
        conn.getDomainCapabilities(None, "x86_64", None, "kvm", 0)
    except libvirt.libvirtError:
        return "qemu"
    return "kvm"


# --- uploads -------------------------------------------------------------------------------------

def _qcow2_virtual_size(path: str) -> int | None:
    """The virtual size in a qcow2 header (bytes 24..32, big-endian), or None for other files."""
    with open(path, "rb") as handle:
        head = handle.read(32)
    if len(head) < 32 or head[:4] != b"QFI\xfb":
        return None
    return int.from_bytes(head[24:32], "big")


def _pick_name(taken: set[str], base: str, ext: str, suffix: str | None) -> str:
    for candidate in (f"{base}{ext}", f"{base}-{suffix}{ext}" if suffix else None):
        if candidate and candidate not in taken:
            return candidate
    raise OutputError(f"the volume names {base}{ext} and {base}-{suffix}{ext} are both taken", subject=base,
                      hint="Remove the stale volumes, or choose another name for the guest")


def upload_to_pool(conn: Connection, pool_name: str, disks: list[TargetDisk], base_names: list[str], *,
                   uri: str, suffix: str | None = None, devs: list[str] | None = None,
                   progress: Progress | None = None) -> list[PoolVolume]:
    """Create one volume per local disk image in ``pool_name`` and upload it.

    ``disks`` are local files (``path``, ``format`` raw or qcow2). Volumes are
    named ``base_names[i]`` plus ``.raw``/``.qcow2`` in file pools (or
    ``base-suffix.ext`` when taken), as libvirt decides in ``disk`` pools,
    ``base_names[i]`` (or ``base-suffix``) in others. ``progress`` gets the
    percentage of all bytes done. On any failure, the volumes created so far
    are deleted and the error is raised.
    """
    if len(base_names) != len(disks):
        raise OutputError(f"{len(disks)} disks but {len(base_names)} volume names")
    pool = _pool(conn, pool_name)
    root = pool_root(pool)
    kind = str(root.get("type"))
    sizes = []
    for disk in disks:
        volume_format_for(kind, disk.format)
        try:
            sizes.append(os.path.getsize(disk.path))
        except OSError as exc:
            raise OutputError(f"cannot read the converted disk {disk.path}: {exc.strerror}", subject=disk.path) \
                from exc
    check_space(pool, kind, disks)
    total = sum(sizes) or 1
    done_before = 0
    created: list[Volume] = []
    out: list[PoolVolume] = []
    try:
        taken = volume_names(pool)
        for index, disk in enumerate(disks):
            if kind == "disk":
                name = next_partition_name(pool, root)
            else:
                name = _pick_name(taken, base_names[index], f".{disk.format}" if kind in FILE_POOL_TYPES else "",
                                  suffix)
            taken.add(name)
            vol = create_volume(conn, pool, kind, name, sizes[index], uri=uri)
            created.append(vol)

            def report(done: int, offset: int = done_before) -> None:
                if progress is not None:
                    progress(round(100.0 * (offset + done) / total, 1))

            sent = upload_file(conn, vol, disk.path, progress=report)
            done_before += sizes[index]
            capacity = _qcow2_virtual_size(disk.path) if disk.format == "qcow2" else None
            out.append(PoolVolume(pool=pool_name, name=vol.name(), path=vol.path(), format=disk.format,
                                  capacity=capacity or vol.info()[1], dev=devs[index] if devs else None,
                                  bytes_uploaded=sent))
        if any(d.format != "raw" for d in disks):
            pool.refresh(0)  # libvirt reads the uploaded qcow2 headers
    except BaseException as exc:
        for vol in reversed(created):
            with contextlib.suppress(Exception):
                delete_volume(conn, vol, uri=uri)
        if isinstance(exc, libvirt.libvirtError):
            raise OutputError(f"uploading into the storage pool {pool_name} failed: {error_text(exc)}",
                              subject=pool_name) from exc
        raise
    return out


def check_space(pool: Pool, kind: str, disks: list[TargetDisk]) -> None:
    """Fail before the upload when the pool cannot hold the disks."""
    with contextlib.suppress(libvirt.libvirtError):
        pool.refresh(0)
    _state, _capacity, _allocation, available = pool.info()
    if kind in FILE_POOL_TYPES:
        needed = sum(os.stat(d.path).st_blocks * 512 for d in disks)
    else:
        needed = sum(os.path.getsize(d.path) for d in disks)
    if available and needed > available:
        raise OutputError(f"the storage pool {pool.name()} has {available} bytes free, the disks need {needed}",
                          subject=pool.name(), hint="Free space in the pool or choose another pool")


# --- the domain ----------------------------------------------------------------------------------

def _record(root: Element) -> Element | None:
    return root.find(f"metadata/{_NS}conversion/{_NS}output")


def volume_domain_xml(domain_xml: str, volumes: list[PoolVolume], *, pool: str, fingerprint: str) -> str:
    """The converted guest's XML with its disks on pool volumes, and the output record in its metadata."""
    root = parse_xml(domain_xml)
    disks = [d for d in root.findall("devices/disk") if d.get("device", "disk") == "disk"]
    if len(disks) != len(volumes):
        raise OutputError(f"the domain XML has {len(disks)} disks but {len(volumes)} volumes were uploaded")
    for disk, vol in zip(disks, volumes):  # lengths checked above
        disk.set("type", "volume")
        source = disk.find("source")
        if source is None:
            source = etree.SubElement(disk, "source")
        source.attrib.clear()
        source.set("pool", vol.pool)
        source.set("volume", vol.name)
        driver = disk.find("driver")
        if driver is not None:
            driver.set("type", vol.format)
    metadata = root.find("metadata")
    if metadata is None:
        metadata = etree.Element("metadata")
        anchor = root.find("genid") if root.find("genid") is not None else root.find("uuid")
        (anchor if anchor is not None else root.find("name")).addnext(metadata)
    conversion = metadata.find(f"{_NS}conversion")
    if conversion is None:
        conversion = etree.SubElement(metadata, f"{_NS}conversion", nsmap={METADATA_PREFIX: METADATA_NS})
    for old in conversion.findall(f"{_NS}output"):
        conversion.remove(old)
    record = etree.SubElement(conversion, f"{_NS}output", kind="libvirt", pool=pool, fingerprint=fingerprint)
    for vol in volumes:
        entry = etree.SubElement(record, f"{_NS}volume", name=vol.name)
        if vol.dev:
            entry.set("dev", vol.dev)
    etree.indent(root, space="  ")
    return etree.tostring(root, encoding="unicode", pretty_print=True)


def _disk_devs(domain_xml: str) -> list[str]:
    root = parse_xml(domain_xml)
    return [d.find("target").get("dev", "") if d.find("target") is not None else f"disk{i}"
            for i, d in enumerate(d for d in root.findall("devices/disk") if d.get("device", "disk") == "disk")]


def _bus(domain_xml: str) -> str:
    target = parse_xml(domain_xml).find("devices/disk/target")
    return target.get("bus", "virtio") if target is not None else "virtio"


def current_output(conn: Connection, name: str, pool: str, fingerprint: str, *, uri: str) -> LibvirtTarget | None:
    """The output of this conversion when the domain and its volumes are already there, else None."""
    dom = lookup(conn, name=name)
    if dom is None or not dom.isPersistent():
        return None
    xml = inactive_xml(dom)
    root = parse_xml(xml)
    record = _record(root)
    if record is None or record.get("fingerprint") != fingerprint or record.get("pool") != pool:
        return None
    volumes = []
    for entry in record.findall(f"{_NS}volume"):
        try:
            vol = conn.storagePoolLookupByName(pool).storageVolLookupByName(entry.get("name"))
            _kind, capacity, _allocation = vol.info()
        except libvirt.libvirtError:
            return None
        fmt = volume_format(vol)
        volumes.append(PoolVolume(pool=pool, name=vol.name(), path=vol.path(),
                                  format=fmt if fmt in FORMATS else "raw",
                                  capacity=capacity, dev=entry.get("dev")))
    if not volumes:
        return None
    return LibvirtTarget(uri=uri, pool=pool, fingerprint=fingerprint, volumes=volumes, domain=domain_info(dom),
                         domain_xml=xml, bus=_bus(xml))


def _previous_volumes(conn: Connection, name: str) -> tuple[Any, list[tuple[str, str]]]:
    """The same-named domain and the (pool, volume) pairs its output record lists."""
    dom = lookup(conn, name=name)
    if dom is None:
        return None, []
    record = _record(parse_xml(inactive_xml(dom) if dom.isPersistent() else dom.XMLDesc(0)))
    if record is None:
        return dom, []
    return dom, [(record.get("pool", ""), v.get("name", "")) for v in record.findall(f"{_NS}volume")]


def _check_replaceable(conn: Connection, name: str, options: LibvirtOutputOptions) -> list[tuple[str, str]]:
    dom, previous = _previous_volumes(conn, name)
    if dom is None:
        return []
    if not previous and not options.force:
        raise OutputError(f"a domain named {name} already exists at {options.uri} and was not written by "
                          "output: libvirt", subject=name,
                          hint="Choose another name, remove that domain, or set force: true to replace its "
                               "definition (its disks are kept)")
    if dom.isActive():
        raise OutputError(f"the domain {name} is running; converting again would replace its disks",
                          subject=name, hint="Shut it down first (define_domain state: shutdown)")
    return previous


def plan_libvirt_output(options: LibvirtOutputOptions, name: str, disks: list[TargetDisk], fingerprint: str, *,
                        output_format: str = "raw", estimated_bytes: int | None = None,
                        conn: Connection | None = None) -> LibvirtOutputPlan:
    """Decide, before converting, what the libvirt output will do; raise what would fail.

    ``disks`` are the planned target disks (``size_bytes`` = virtual size;
    their paths are not used here). Checks: URI reachable, pool present and
    active, format possible in that pool, free space (block pools: the full
    virtual size; file pools: ``estimated_bytes`` when given), a same-named
    domain that may not be replaced.
    """
    with connection(options.uri, conn) as c:
        pool = _pool(c, options.pool)
        kind = pool_type(pool)
        fmt = volume_format_for(kind, output_format)
        plan = LibvirtOutputPlan(uri=options.uri, pool=options.pool, pool_type=kind, disk_format=fmt,
                                 domain_type=choose_domain_type(c, options.uri))
        if not options.force:
            plan.current = current_output(c, name, options.pool, fingerprint, uri=options.uri)
            if plan.current is not None:
                return plan
        _check_replaceable(c, name, options)
        needed = sum(d.size_bytes for d in disks) if kind not in FILE_POOL_TYPES else estimated_bytes
        if needed:
            _state, _capacity, _allocation, available = pool.info()
            if available and needed > available:
                raise OutputError(f"the storage pool {options.pool} has {available} bytes free, the disks need "
                                  f"{needed}", subject=options.pool, hint="Free space in the pool or choose another")
        where = f"{options.pool} ({kind} pool) at {options.uri}"
        plan.steps = [f"upload {len(disks)} disk{'s' if len(disks) != 1 else ''} as {fmt} volumes into {where}",
                      f"define the domain {name} (type {plan.domain_type}) with its disks on those volumes"]
        if options.start:
            plan.steps.append(f"start {name}")
        return plan


def start_current_output(options: LibvirtOutputOptions, current: LibvirtTarget, *, check_mode: bool = False,
                         conn: Connection | None = None) -> bool:
    """Start the domain of an up-to-date output when ``options.start`` asks for it; True when it was (or would be).

    ``start`` is not part of the conversion's fingerprint: asking for a start
    of a domain that is already converted starts it, without converting again.
    """
    if not options.start:
        return False
    started = ensure_domain(DomainRequest(uri=options.uri, name=current.domain.get("name") or "", state="running",
                                          check_mode=check_mode), conn=conn)
    if started.changed:
        current.actions = list(started.actions)
        current.domain = started.domain
    return started.changed


def write_libvirt_output(options: LibvirtOutputOptions, name: str, disks: list[TargetDisk], domain_xml: str,
                         fingerprint: str, *, progress: Progress | None = None,
                         conn: Connection | None = None) -> LibvirtTarget:
    """Upload the converted ``disks`` (local files, in the order of the XML's disks) and define the domain.

    ``domain_xml`` is the converted guest's XML (``build_domain_xml``; its
    disk paths are replaced by the volumes). The domain is defined with
    define_domain's engine (an existing one keeps its UUID and MACs), then
    started when ``options.start``. Volumes of a previous conversion of this
    domain are deleted once the new definition is in place. A failure before
    the definition deletes the new volumes; a failure to start leaves the
    defined domain and its volumes, and raises.
    """
    with connection(options.uri, conn) as c:
        previous = _check_replaceable(c, name, options)
        devs = _disk_devs(domain_xml)
        if len(devs) != len(disks):
            raise OutputError(f"the domain XML has {len(devs)} disks but {len(disks)} converted disks were given",
                              subject=name)
        volumes = upload_to_pool(c, options.pool, disks, [f"{name}-{dev}" for dev in devs], uri=options.uri,
                                 suffix=fingerprint[:8], devs=devs, progress=progress)
        actions = [f"upload volume {v.pool}/{v.name}" for v in volumes]
        try:
            final_xml = volume_domain_xml(domain_xml, volumes, pool=options.pool, fingerprint=fingerprint)
            result: DomainResult = ensure_domain(DomainRequest(uri=options.uri, xml=final_xml, name=name), conn=c)
        except BaseException:
            for vol in volumes:
                with contextlib.suppress(Exception):
                    delete_volume(c, c.storagePoolLookupByName(vol.pool).storageVolLookupByName(vol.name),
                                  uri=options.uri)
            raise
        actions += result.actions
        actions += _delete_previous(c, previous, volumes, uri=options.uri)
        if options.start:
            started = ensure_domain(DomainRequest(uri=options.uri, name=name, state="running"), conn=c)
            actions += started.actions
        dom = lookup(c, name=name)
        return LibvirtTarget(uri=options.uri, pool=options.pool, fingerprint=fingerprint, volumes=volumes,
                             domain=domain_info(dom), domain_xml=inactive_xml(dom), actions=actions,
                             bus=_bus(domain_xml))


def _delete_previous(conn: Connection, previous: list[tuple[str, str]], volumes: list[PoolVolume], *,
                     uri: str) -> list[str]:
    """Delete the volumes of the conversion this one replaced, unless a domain still uses them."""
    if not previous:
        return []
    keep = {(v.pool, v.name) for v in volumes}
    used = volumes_in_use(conn)
    done = []
    for pool, name in previous:
        if (pool, name) in keep or f"{pool}/{name}" in used:
            continue
        try:
            vol = conn.storagePoolLookupByName(pool).storageVolLookupByName(name)
        except libvirt.libvirtError:
            continue
        if vol.path() in used:
            continue
        try:
            delete_volume(conn, vol, uri=uri)
        except LibvirtError:
            continue
        done.append(f"delete volume {pool}/{name} (previous conversion)")
    return done


# --- the output ----------------------------------------------------------------------------------

class LibvirtOutput(Output):
    """``output: libvirt``: see the module docstring. Options: ``output_uri``, ``pool``, ``start``."""

    kind = "libvirt"
    plan: LibvirtOutputPlan | None = None

    def validate(self) -> None:
        for key in ("output_uri", "pool"):
            value = self.option(key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise OutputError(f"{key} must be a non-empty string", hint=f"Set {key}, or leave it unset")

    @property
    def libvirt_options(self) -> LibvirtOutputOptions:
        return LibvirtOutputOptions(uri=self.option("output_uri", DEFAULT_URI), pool=self.option("pool", "default"),
                                    start=bool(self.option("start", False)), force=self.options.force)

    def fingerprint_fields(self) -> dict[str, Any]:
        # ``start`` is not part of the conversion: asking for a start of a converted guest only starts it.
        return {"output_uri": self.libvirt_options.uri, "pool": self.libvirt_options.pool}

    def _fingerprint(self, job: OutputJob) -> str:
        fields = {**self.options.fingerprint_fields(), **self.fingerprint_fields()}
        return hashlib.sha256(json.dumps([job.fingerprint, fields], sort_keys=True).encode()).hexdigest()

    def current(self, job: OutputJob) -> tuple[dict[str, Any], list[str], bool] | None:
        options = self.libvirt_options
        self.plan = plan_libvirt_output(options, job.name, self.target_disks(job), self._fingerprint(job),
                                        output_format=self.options.output_format)
        if self.plan.current is None:
            return None
        changed = start_current_output(options, self.plan.current, check_mode=job.check_mode)
        return self.plan.current.to_dict(), [], changed

    def disk_dir(self, job: OutputJob) -> str:
        # Converted disks wait in the run's work directory until they are uploaded into the pool.
        return os.path.join(job.work_dir, f"kvmigrate-{job.name}")

    def disk_format(self) -> str:
        return self.plan.disk_format if self.plan is not None else str(self.options.output_format)

    def domain_options(self, job: OutputJob) -> DomainOptions:
        options = super().domain_options(job)
        if self.plan is not None:
            options.domain_type = self.plan.domain_type
        # The guest's console history, where libvirt keeps its own logs.
        options.serial_log = f"/var/log/libvirt/qemu/{job.name}-serial.log"
        return options

    def prepare(self, job: OutputJob, hardware: TargetHardware, domain_xml: str) -> list[str]:
        self.domain_xml = domain_xml
        return list(self.plan.steps) if self.plan is not None else []

    def write(self, job: OutputJob, disks: list[TargetDisk]) -> dict[str, Any]:
        local = [TargetDisk(path=d.path + ".part", format=d.format, bus=d.bus, size_bytes=d.size_bytes,
                            bytes_written=d.bytes_written) for d in disks]
        try:
            written = write_libvirt_output(self.libvirt_options, job.name, local, self.domain_xml,
                                           self._fingerprint(job))
        finally:
            for disk in local:
                if os.path.exists(disk.path):
                    os.unlink(disk.path)
        return written.to_dict()
