# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Input ``p2v``: a physical machine prepared by ``prepare_p2v_host`` (the conversion server's side).

``source.path`` is the session directory on the conversion server
(``/tmp/virt-p2v-YYYYMMDD-XXXXXXXX``), or its ``physical.xml``. The physical
machine created it over SFTP with ``physical.xml``, ``name``, ``time``,
``p2v-version`` and hardware logs. ``physical.xml`` is read with the
``libvirtxml`` parser; the disks are the NBD ports forwarded from the
physical machine to this host's loopback, and nothing else is accepted:
``physical.xml`` comes from another machine, so it can never make the server
read a local file.

Around the conversion (:meth:`P2VSource.run_context`) the session directory
receives ``status`` (JSON: ``state`` running/done/failed, error, result) and
``virt-v2v-conversion-log.txt``; the physical machine's supervisor watches
``status`` to run ``post`` or ``fail``. The session's ``physical.xml`` and
``time`` are part of the source's identity (a new session is a new source).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import SourceError, V2VError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import (
    Input,
    OpenedSource,
    RunReport,
    SourceSpec,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.libvirtxml import parse_domain_xml
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Result, Source

PHYSICAL_XML = "physical.xml"
STATUS_FILE = "status"
CONVERSION_LOG = "virt-v2v-conversion-log.txt"
# The files that identify a session: the machine's description and the session's start time.
_IDENTITY_FILES = (PHYSICAL_XML, "time")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class NBDEndpoint:
    host: str
    port: int


def session_directory(path: str) -> str:
    """The session directory for ``path`` (the directory itself, or its physical.xml)."""
    if os.path.basename(path) == PHYSICAL_XML and os.path.isfile(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise SourceError("the P2V session directory does not exist", subject=path,
                          hint="Use the remote_dir that prepare_p2v_host returned, on the conversion server")
    if not os.path.isfile(os.path.join(path, PHYSICAL_XML)):
        raise SourceError(f"the directory has no {PHYSICAL_XML}; it is not a P2V session directory", subject=path,
                          hint="Run prepare_p2v_host on the physical machine first")
    return path


def nbd_endpoint(uri: str, what: str) -> NBDEndpoint:
    """Check that a disk of physical.xml is NBD on this host's loopback; return host and port."""
    parts = urlsplit(uri)
    if parts.scheme != "nbd" or not parts.hostname or parts.hostname not in _LOOPBACK or not parts.port:
        raise SourceError(f"{what} is {uri!r}; a P2V disk must be NBD on this host's loopback (nbd://127.0.0.1:PORT)",
                          hint="physical.xml comes from the physical machine; only its forwarded NBD ports are read")
    return NBDEndpoint(host=parts.hostname, port=parts.port)


def port_answers(endpoint: NBDEndpoint, timeout: float = 3.0) -> bool:
    """Whether an NBD server answers its greeting on ``endpoint`` (through the tunnel, so the physical side is up)."""
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(8) == b"NBDMAGIC"
    except OSError:
        return False


def load_p2v_source(path: str) -> Source:
    """The Source described by the session directory's physical.xml."""
    directory = session_directory(path)
    xml_path = os.path.join(directory, PHYSICAL_XML)
    with open(xml_path, "rb") as handle:
        data = handle.read()
    try:
        source = parse_domain_xml(data)
    except V2VError as exc:
        if exc.subject is None:
            exc.subject = xml_path
        raise
    if not source.disks:
        raise SourceError("physical.xml lists no disks", subject=xml_path,
                          hint="Select at least one disk in prepare_p2v_host (disks or test_disk)")
    for index, disk in enumerate(source.disks):
        nbd_endpoint(disk.path, f"disk {index} of {xml_path}")
        disk.format = "raw"  # an NBD export is always the disk's raw contents
    source.input = "p2v"
    return source


def unreachable_disks(source: Source) -> list[str]:
    """The disks of a P2V source whose forwarded NBD port no longer answers."""
    lost = []
    for disk in source.disks:
        try:
            endpoint = nbd_endpoint(disk.path, "disk")
        except SourceError:
            continue
        if not port_answers(endpoint):
            lost.append(disk.path)
    return lost


class SessionReport:
    """``status`` and the conversion log in a session directory, written atomically."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.status: dict[str, Any] = {}

    def write_status(self, **values: Any) -> None:
        self.status.update(values, updated=time.time())
        path = os.path.join(self.directory, STATUS_FILE)
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            json.dump(self.status, handle, indent=1)
        os.replace(path + ".tmp", path)

    def log(self, line: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        with open(os.path.join(self.directory, CONVERSION_LOG), "a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {line}\n")


def _summary(result: Result) -> dict[str, Any]:
    return {"changed": result.changed, "phases": [p.to_dict() for p in result.phases],
            "conversion": result.conversion, "warnings": result.warnings,
            "target": {k: v for k, v in result.target.items() if k != "domain_xml"}}


@contextlib.contextmanager
def reporting(source: Source, directory: str, *, check_mode: bool) -> Iterator[RunReport]:
    """Around a conversion of the session in ``directory``: status running → done or failed, plus the log.

    The caller sets the yielded report's ``result``. A failure whose cause is
    a lost tunnel (the forwarded NBD ports of ``source`` stopped answering) is
    re-raised with a message saying so. Check mode writes nothing.
    """
    report = RunReport()
    if check_mode:
        yield report
        return
    session = SessionReport(directory)
    session.write_status(state="running", started=time.time(), error=None)
    session.log("conversion started")
    try:
        yield report
    except BaseException as exc:
        message = str(exc) or type(exc).__name__
        replacement = None
        if isinstance(exc, V2VError):
            lost = unreachable_disks(source)
            if lost:
                replacement = SourceError(
                    f"the connection to the physical machine was lost: {', '.join(lost)} no longer answer(s) "
                    f"({message})", subject=os.path.basename(directory), phase=exc.phase,
                    hint="Check the physical machine and its network, run prepare_p2v_host again, "
                         "then convert again")
                message = str(replacement)
        session.log(f"conversion failed: {message}")
        session.write_status(state="failed", error=message, finished=time.time())
        if replacement is not None:
            raise replacement from exc
        raise
    result = report.result
    if result is not None:
        for phase in result.phases:
            session.log(f"phase {phase.name}: {phase.seconds} s")
        for step in result.conversion:
            session.log(f"conversion: {step}")
        for warning in result.warnings:
            session.log(f"warning: {warning}")
    session.log("conversion finished")
    session.write_status(state="done", error=None, finished=time.time(),
                         **({"result": _summary(result)} if result is not None else {}))


class P2VSource(OpenedSource):
    """An opened P2V session: its identity is the session's files, its run writes the session's status."""

    def __init__(self, source: Source, directory: str) -> None:
        super().__init__(source)
        self.directory = directory

    def identity(self) -> list[str]:
        parts = []
        for name in _IDENTITY_FILES:
            with contextlib.suppress(OSError), open(os.path.join(self.directory, name), "rb") as handle:
                parts.append(f"{name}:{hashlib.sha256(handle.read()).hexdigest()}")
        return parts

    def run_context(self, check_mode: bool) -> contextlib.AbstractContextManager[RunReport]:
        return reporting(self.source, self.directory, check_mode=check_mode)


class P2VInput(Input):
    """``input: p2v``: the session directory (or its physical.xml)."""

    def load(self, spec: SourceSpec) -> Source:
        return load_p2v_source(spec.single_path())

    def open(self, spec: SourceSpec) -> OpenedSource:
        directory = session_directory(spec.single_path())
        return P2VSource(load_p2v_source(directory), directory)
