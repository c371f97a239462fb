# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Source inputs: open a source spec as a :class:`Source` plus one read-only endpoint per disk.

One file per source kind, each with an :class:`Input`; the registry below
names them once (:data:`INPUT_KINDS` is derived from it). :func:`open_source`
picks the input by kind and returns an :class:`OpenedSource`, a context
manager: whatever serves the disks (nbdkit over SSH for ``vmx`` in an ESXi
datastore or ``libvirt`` on a ``+ssh`` URI, the forwarded ports of ``p2v``)
is started by the input when the endpoints are first used and stopped when
the context ends. Nothing outside ``inputs/`` asks which kind of input it
handles: the pipeline reads :attr:`OpenedSource.endpoints`, idempotency adds
:meth:`OpenedSource.identity`, and the conversion runs inside
:meth:`OpenedSource.run_context`.

Adding an input: a new file with an ``Input`` subclass (``load(spec)``, or
``open(spec)`` when it serves disks or hooks the run) and one registry entry.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import NotSupportedError, SourceError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Result, Source, SourceDisk


@dataclass
class SourceSpec:
    """What the user asked to convert (the source options of the modules).

    ``path`` is one path (a .vmx, .ova, OVF directory, libvirt XML file, P2V
    session directory or ``ssh://`` URL of a .vmx) or a list of paths (disk
    images). ``host_key_fingerprint`` and ``known_hosts`` verify the SSH
    server of a remote source (see transport/ssh.py). ``work_dir`` is where
    inputs that must unpack something (a compressed OVA) may write; they
    create a temporary directory under it and never write elsewhere.
    """

    input: str
    path: str | list[str] | None = None
    uri: str | None = None
    domain: str | None = None
    format: str | None = None
    host_key_fingerprint: list[str] = field(default_factory=list)
    known_hosts: str | None = None
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    work_dir: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.host_key_fingerprint, str):
            self.host_key_fingerprint = [self.host_key_fingerprint]

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> SourceSpec:
        """Build a spec from a module's source options, ignoring unknown or unset keys."""
        names = set(cls.__dataclass_fields__)
        values = {k: v for k, v in params.items() if k in names and v is not None}
        if "input" not in values:
            raise SourceError("the source has no 'input' kind",
                              hint=f"Set source.input to one of: {', '.join(INPUT_KINDS)}")
        return cls(**values)

    @property
    def paths(self) -> list[str]:
        """``path`` as a list (empty when unset)."""
        if self.path is None:
            return []
        if isinstance(self.path, str):
            return [self.path]
        return [str(p) for p in self.path]

    def single_path(self) -> str:
        """The one path this kind of input needs, or a SourceError saying so."""
        paths = self.paths
        if len(paths) != 1:
            raise SourceError(f"input {self.input!r} needs exactly one path, got {len(paths)}",
                              hint="Set source.path to a single file or directory")
        return paths[0]


@dataclass
class DiskEndpoint:
    """Where one source disk is read while its source is open.

    ``path`` is a local file or an NBD URI; ``offset``/``length`` a window
    inside a file (a disk in an uncompressed OVA); ``parents_in_dir`` accepts
    a VMDK snapshot chain kept in one directory (the OVA loader matched each
    delta's parent against the OVF; see storage.check_vmdk).
    """

    path: str
    format: str | None = None
    offset: int | None = None
    length: int | None = None
    parents_in_dir: bool = False

    @classmethod
    def of(cls, disk: SourceDisk, *, path: str | None = None, parents_in_dir: bool = False) -> DiskEndpoint:
        """The endpoint of ``disk`` read where the Source says it is (or at ``path``, an NBD URI serving it)."""
        return cls(path=path or disk.path, format=disk.format, offset=disk.offset, length=disk.length,
                   parents_in_dir=parents_in_dir)


class DiskServer(Protocol):
    """Serves one source disk over NBD while the source is open (nbdkit over SSH, ...).

    Credentials stay in memory, in the server object.
    """

    def serve(self) -> AbstractContextManager[str]:
        """A context whose value is the NBD URI the disk can be read from while it lasts."""


@dataclass
class RunReport:
    """What :meth:`OpenedSource.run_context` yields: the caller sets ``result`` when the run succeeded."""

    result: Result | None = None


class OpenedSource:
    """A source opened by its input; a context manager (``with open_source(spec) as opened:``).

    ``source`` is the metadata. :attr:`endpoints` has one entry per disk of
    ``source.disks``, in order; disks served by a :class:`DiskServer` (given
    by index in ``servers``) are served from the first use of the endpoints
    until the context ends, so reading only the metadata starts nothing.
    Inputs with more to do (P2V) subclass it.
    """

    def __init__(self, source: Source, *, servers: Mapping[int, DiskServer] | None = None,
                 parents_in_dir: bool = False) -> None:
        self.source = source
        self.servers = dict(servers or {})
        self.parents_in_dir = parents_in_dir
        self._stack = contextlib.ExitStack()
        self._entered = False
        self._endpoints: list[DiskEndpoint] | None = None

    def __enter__(self) -> OpenedSource:
        self._stack.__enter__()
        self._entered = True
        return self

    def __exit__(self, *exc_info: Any) -> bool:
        # The exception (if any) passes through each disk server, which may add its own side of the story.
        self._entered = False
        self._endpoints = None
        return bool(self._stack.__exit__(*exc_info))

    @property
    def endpoints(self) -> list[DiskEndpoint]:
        """One endpoint per disk; the first use starts the disk servers (inside the context only)."""
        if self._endpoints is None:
            if not self._entered:
                raise RuntimeError("the endpoints of a source are used inside 'with open_source(...)' only")
            endpoints = []
            for index, disk in enumerate(self.source.disks):
                server = self.servers.get(index)
                path = self._stack.enter_context(server.serve()) if server is not None else None
                endpoints.append(DiskEndpoint.of(disk, path=path, parents_in_dir=self.parents_in_dir))
            self._endpoints = endpoints
        return self._endpoints

    def identity(self) -> list[str]:
        """Extra parts of the source's fingerprint (idempotency), beyond its files' stat and disk URIs."""
        return []

    def run_context(self, check_mode: bool) -> AbstractContextManager[RunReport]:
        """A hook around the whole run (after the open); the caller sets ``result`` on what it yields."""
        return contextlib.nullcontext(RunReport())


class Input:
    """One kind of source.

    Implement :meth:`load` (metadata only; its disks are read where the
    Source says), or override :meth:`open` to return an :class:`OpenedSource`
    with disk servers, or a subclass of it with an identity or a run hook.
    """

    def load(self, spec: SourceSpec) -> Source:
        raise NotImplementedError

    def open(self, spec: SourceSpec) -> OpenedSource:
        return OpenedSource(self.load(spec))


# ----------------------------------------------------------------------------- the registry
# One literal import per input (not importlib by name): Ansible's module
# packager only ships module_utils it sees imported. Imports inside a
# function count as optional, so a missing file does not break packaging,
# and a run imports only the input it uses.

def _disk() -> Input:
    from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.disk import DiskInput
    return DiskInput()


def _ova() -> Input:
    from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.ova import OvaInput
    return OvaInput()


def _vmx() -> Input:
    from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.vmx import VmxInput
    return VmxInput()


def _libvirtxml() -> Input:
    from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.libvirtxml import LibvirtXmlInput
    return LibvirtXmlInput()


def _libvirt() -> Input:
    from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.libvirt import LibvirtInput
    return LibvirtInput()


def _p2v() -> Input:
    from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.p2v import P2VInput
    return P2VInput()


_INPUTS: dict[str, Callable[[], Input]] = {
    "disk": _disk,
    "ova": _ova,
    "vmx": _vmx,
    "libvirtxml": _libvirtxml,
    "libvirt": _libvirt,
    "p2v": _p2v,
}
INPUT_KINDS = tuple(_INPUTS)


def input_for(kind: str) -> Input:
    """The input that handles source kind ``kind``."""
    factory = _INPUTS.get(kind)
    if factory is None:
        raise SourceError(f"unknown source input {kind!r}", hint=f"Use one of: {', '.join(INPUT_KINDS)}")
    try:
        return factory()
    except ImportError:
        if importlib.util.find_spec(f"{__name__}.{kind}") is None:
            raise NotSupportedError(f"input {kind!r} is not supported yet") from None
        raise


def open_source(spec: SourceSpec) -> OpenedSource:
    """Open the source described by ``spec``: ``with open_source(spec) as opened: ...``.

    The metadata is read now (no guest inspection); disk servers start when
    the endpoints are first used and stop when the context ends.
    """
    opened = input_for(spec.input).open(spec)
    if not isinstance(opened, OpenedSource) or not isinstance(opened.source, Source):
        raise SourceError(f"input {spec.input!r} did not return an opened Source")
    return opened
