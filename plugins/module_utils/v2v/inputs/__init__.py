# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Source inputs: turn a source spec into a :class:`Source`.

One file per source kind, each exposing ``load(spec) -> Source``:
``disk``, ``ova``, ``vmx`` (local; ``vmx_ssh`` for ``ssh://``),
``libvirtxml``, ``libvirt`` and ``p2v``. :func:`load_source` picks the
file by kind. The input modules are imported inside functions, one import
statement per kind, so that Ansible's module packager ships exactly the
input files that exist; a kind whose file is not there yet fails with
:class:`NotSupportedError` instead of pretending.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import NotSupportedError, SourceError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Source

INPUT_KINDS = ("disk", "ova", "vmx", "libvirtxml", "libvirt", "p2v")


@dataclass
class SourceSpec:
    """What the user asked to convert (the ``source`` option of the modules).

    ``path`` is one path (a .vmx, .ova, OVF directory, libvirt XML file, or
    ``ssh://`` URL of a .vmx) or a list of paths (disk images). ``work_dir``
    is where inputs that must unpack something (a compressed OVA) may write;
    they create a temporary directory under it and never write elsewhere.
    """

    input: str
    path: str | list[str] | None = None
    uri: str | None = None
    domain: str | None = None
    format: str | None = None
    ssh_host_key: str | None = None
    known_hosts: str | None = None
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    root: str | None = None
    luks_keys: list[str] = field(default_factory=list, repr=False)
    work_dir: str | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> SourceSpec:
        """Build a spec from a module's ``source`` dict, ignoring unknown or unset keys."""
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


def input_module_name(spec: SourceSpec) -> str:
    """The file under ``inputs/`` that handles ``spec`` (without ``.py``)."""
    if spec.input not in INPUT_KINDS:
        raise SourceError(f"unknown source input {spec.input!r}",
                          hint=f"Use one of: {', '.join(INPUT_KINDS)}")
    if spec.input == "vmx":
        target = spec.uri or (spec.paths[0] if len(spec.paths) == 1 else "")
        if target.startswith("ssh://"):
            return "vmx_ssh"
    return spec.input


def _import_input(name: str) -> ModuleType:
    # One literal import per module (not importlib by name): Ansible's
    # module packager only ships module_utils it sees imported. Imports
    # inside a function count as optional, so a file added later is shipped
    # and a missing one does not break packaging.
    try:
        if name == "disk":
            from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import disk as module
        elif name == "ova":
            from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import ova as module
        elif name == "vmx":
            from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import vmx as module
        elif name == "vmx_ssh":
            from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import vmx_ssh as module
        elif name == "libvirtxml":
            from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import libvirtxml as module
        elif name == "libvirt":
            from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import libvirt as module
        elif name == "p2v":
            from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import p2v as module
        else:
            raise SourceError(f"no input module {name!r}")
    except ImportError:
        if importlib.util.find_spec(f"{__name__}.{name}") is None:
            raise NotSupportedError(_not_supported_message(name)) from None
        raise
    return module


def _not_supported_message(name: str) -> str:
    if name == "vmx_ssh":
        return "input 'vmx' over ssh:// is not supported yet; copy or NFS-mount the VM directory and give a local path"
    return f"input {name!r} is not supported yet"


def load_source(spec: SourceSpec) -> Source:
    """Read the source described by ``spec`` (no guest inspection)."""
    module = _import_input(input_module_name(spec))
    load = getattr(module, "load", None)
    if not callable(load):
        raise NotSupportedError(_not_supported_message(input_module_name(spec)))
    source = load(spec)
    if not isinstance(source, Source):
        raise SourceError(f"input {spec.input!r} returned {type(source).__name__}, not a Source")
    return source
