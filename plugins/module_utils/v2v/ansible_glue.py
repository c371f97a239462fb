# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The edge between Ansible modules and the engine: argument specs and error handling."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import V2VError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import INPUT_KINDS, SourceSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Result
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.storage import SUPPORTED_FORMATS

# Mirrors plugins/doc_fragments/source.py.
SOURCE_ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "input": {"type": "str", "required": True, "choices": list(INPUT_KINDS)},
    "path": {"type": "list", "elements": "str"},
    "uri": {"type": "str"},
    "domain": {"type": "str"},
    "format": {"type": "str", "choices": list(SUPPORTED_FORMATS)},
    "ssh_host_key": {"type": "str", "no_log": False},
    "known_hosts": {"type": "path"},
    "password": {"type": "str", "no_log": True},
    "private_key": {"type": "str", "no_log": True},
    "root": {"type": "str", "default": "single"},
    "luks_keys": {"type": "list", "elements": "str", "no_log": True},
    "work_dir": {"type": "path", "default": "/var/tmp"},
}


def source_spec_from_params(params: dict[str, Any]) -> SourceSpec:
    values = {k: params.get(k) for k in SOURCE_ARGUMENT_SPEC}
    if values.get("luks_keys") is None:
        values["luks_keys"] = []
    return SourceSpec.from_params(values)


def run_module(module: Any, action: Callable[[], Result]) -> None:
    """Run an engine action; exit with its result or fail with its error."""
    try:
        result = action()
    except V2VError as exc:
        module.fail_json(**exc.to_dict())
    data = result.to_dict()
    warnings = data.pop("warnings", [])
    for warning in warnings:
        module.warn(warning)
    module.exit_json(**data)
