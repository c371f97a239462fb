# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The edge between Ansible modules and the engine.

Three things live here and nowhere else: the source options every source-reading
module shares (flat, or nested in one ``source`` dict), the one generic mapping
from module parameters to the engine's option dataclasses, and the one error
edge (:func:`run_module`) that turns an engine result into ``exit_json`` and an
engine error into ``fail_json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import V2VError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import INPUT_KINDS, SourceSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inspect import InspectOptions
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.storage import SUPPORTED_FORMATS

OptionsT = TypeVar("OptionsT")

# The source options, flat at the top of a module's parameters. Mirrors plugins/doc_fragments/source.py.
# ``input`` is required through SOURCE_REQUIRED_ONE_OF (or inside ``source``), not here.
SOURCE_ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "input": {"type": "str", "choices": list(INPUT_KINDS)},
    "path": {"type": "list", "elements": "str"},
    "uri": {"type": "str"},
    "domain": {"type": "str"},
    "format": {"type": "str", "choices": list(SUPPORTED_FORMATS)},
    "host_key_fingerprint": {"type": "list", "elements": "str", "no_log": False, "aliases": ["ssh_host_key"]},
    "known_hosts": {"type": "path"},
    "password": {"type": "str", "no_log": True},
    "private_key": {"type": "str", "no_log": True},
    "root": {"type": "str", "default": "single"},
    "luks_keys": {"type": "list", "elements": "str", "no_log": True},
    "work_dir": {"type": "path", "default": "/var/tmp"},
}

# The same options nested in one ``source`` dict (as the migrate role's guests carry them); secrets stay
# no_log inside it.
SOURCE_OPTION: dict[str, Any] = {
    "type": "dict",
    "options": {**{name: dict(spec) for name, spec in SOURCE_ARGUMENT_SPEC.items()},
                "input": {**SOURCE_ARGUMENT_SPEC["input"], "required": True}},
}

# For AnsibleModule(..., mutually_exclusive=..., required_one_of=...) of a module with both forms.
# Ansible checks these before it fills in defaults, so the flat defaults never clash with ``source``.
SOURCE_MUTUALLY_EXCLUSIVE: list[tuple[str, str]] = [("source", name) for name in SOURCE_ARGUMENT_SPEC]
SOURCE_REQUIRED_ONE_OF: list[tuple[str, str]] = [("source", "input")]


def source_argument_spec() -> dict[str, dict[str, Any]]:
    """The argument spec of the source: the flat options and the nested ``source``."""
    return {**{name: dict(spec) for name, spec in SOURCE_ARGUMENT_SPEC.items()}, "source": SOURCE_OPTION}


def source_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The source options of a module: its nested ``source`` dict when given, else its flat options."""
    nested = params.get("source")
    if nested is not None:
        return dict(nested)
    return {name: params.get(name) for name in SOURCE_ARGUMENT_SPEC}


def without_source_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A module's parameters without the source ones (flat or nested): its secrets go to the input only."""
    return {name: value for name, value in params.items() if name not in SOURCE_ARGUMENT_SPEC and name != "source"}


def source_spec_from_params(params: Mapping[str, Any]) -> SourceSpec:
    return SourceSpec.from_params(source_params(params))


def inspect_options_from_params(params: Mapping[str, Any]) -> InspectOptions:
    """The inspection options (``root``, ``luks_keys``) among the source options (flat or nested)."""
    values = source_params(params)
    return InspectOptions(root=values.get("root") or "single", luks_keys=list(values.get("luks_keys") or []))


def options_from_params(cls: type[OptionsT], params: Mapping[str, Any]) -> OptionsT:
    """Build the engine option dataclass ``cls`` from module parameters.

    Every parameter named like a field of ``cls`` is taken as it is; a parameter that is
    None (not set) leaves the field's default; parameters that are not fields are ignored.
    """
    names = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    return cls(**{name: value for name, value in params.items() if name in names and value is not None})


def os_error_to_dict(exc: OSError) -> dict[str, Any]:
    """``fail_json`` arguments for an operating system error the engine let through: what, on which file."""
    reason = exc.strerror or str(exc)
    data: dict[str, Any] = {"error": type(exc).__name__}
    if exc.filename is not None:
        where = str(exc.filename)
        if exc.filename2 is not None:
            where = f"{where} -> {exc.filename2}"
        data["msg"] = f"cannot use {where}: {reason}"
        data["subject"] = str(exc.filename)
    else:
        data["msg"] = f"operating system error: {reason}"
    if exc.errno is not None:
        data["errno"] = exc.errno
    return data


def error_to_dict(exc: Exception) -> dict[str, Any]:
    """``fail_json`` arguments for an expected error (an engine error or an OSError)."""
    if isinstance(exc, V2VError):
        return exc.to_dict()
    if isinstance(exc, OSError):
        return os_error_to_dict(exc)
    raise TypeError(f"not an expected error: {type(exc).__name__}")


def result_to_dict(result: Any) -> dict[str, Any]:
    """A module's return values: an engine result's ``to_dict()``, or a plain mapping as it is."""
    if hasattr(result, "to_dict"):
        return dict(result.to_dict())
    if isinstance(result, Mapping):
        return dict(result)
    raise TypeError(f"a module action returned {type(result).__name__}, not a result")


def run_module(module: Any, action: Callable[[], Any]) -> None:
    """The one error edge of every module: run ``action``; exit with its result or fail with its error.

    ``action`` returns an engine result (anything with ``to_dict()``, such as ``model.Result``) or a
    dict; its ``warnings`` become Ansible warnings. A :class:`V2VError` fails the module with the
    error's own fields (``msg``, ``error``, ``phase``, ``subject``, ...), an ``OSError`` with the file
    and the reason; anything else is a bug and keeps its traceback.
    """
    try:
        result = action()
    except (V2VError, OSError) as exc:
        module.fail_json(**error_to_dict(exc))
        return
    data = result_to_dict(result)
    for warning in data.pop("warnings", None) or []:
        module.warn(warning)
    module.exit_json(**data)
