"""The edge between modules and the engine: the generic option mapping, the source options, the error edge."""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Any

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.ansible_glue import (
    SOURCE_ARGUMENT_SPEC,
    SOURCE_MUTUALLY_EXCLUSIVE,
    SOURCE_REQUIRED_ONE_OF,
    options_from_params,
    run_module,
    source_argument_spec,
    source_params,
    source_spec_from_params,
    without_source_params,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import PreflightError, SourceError, ToolError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Finding, Phase, Result, Severity

pytestmark = pytest.mark.unit


@dataclass
class Options:
    name: str
    count: int = 1
    labels: dict[str, str] = field(default_factory=dict)
    flag: bool = False


def test_options_from_params_takes_fields_by_name_and_none_keeps_the_default() -> None:
    options = options_from_params(Options, {"name": "web01", "count": None, "labels": {"a": "b"}, "other": 7,
                                            "flag": False})
    assert options == Options(name="web01", count=1, labels={"a": "b"}, flag=False)
    # a falsy value that is set is kept; only None means "not set"
    assert options_from_params(Options, {"name": "", "count": 0}) == Options(name="", count=0)
    with pytest.raises(TypeError):
        options_from_params(Options, {"count": 2})  # a required field without a value is a bug, not a user error


class FakeModule:
    """What run_module uses of AnsibleModule; exit_json and fail_json end the module, as the real ones do."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.exited: dict[str, Any] | None = None
        self.failed: dict[str, Any] | None = None

    def warn(self, warning: str) -> None:
        self.warnings.append(warning)

    def exit_json(self, **kwargs: Any) -> None:
        self.exited = kwargs
        raise SystemExit(0)

    def fail_json(self, **kwargs: Any) -> None:
        self.failed = kwargs
        raise SystemExit(1)


def run(action: Any) -> FakeModule:
    module = FakeModule()
    with pytest.raises(SystemExit):
        run_module(module, action)
    return module


def test_an_engine_result_exits_with_its_dict_and_its_warnings_become_warnings() -> None:
    module = run(lambda: Result(changed=True, phases=[Phase(name="open", seconds=0.5)], warnings=["TCG, slow"]))
    assert module.failed is None and module.warnings == ["TCG, slow"]
    assert module.exited == {"changed": True, "phases": [{"name": "open", "seconds": 0.5}]}


def test_a_plain_dict_result_exits_as_it_is() -> None:
    module = run(lambda: {"changed": False, "ansible_facts": {"x": 1}, "warnings": []})
    assert module.exited == {"changed": False, "ansible_facts": {"x": 1}} and module.warnings == []


def test_every_engine_error_fails_with_its_own_fields() -> None:
    def blocked() -> Result:
        raise PreflightError([Finding(code="no-os", message="no operating system found",
                                      severity=Severity.BLOCKER)], subject="web01")

    module = run(blocked)
    assert module.exited is None and module.failed is not None
    assert module.failed["error"] == "PreflightError" and module.failed["phase"] == "preflight"
    assert module.failed["msg"] == "web01: conversion blocked: no-os: no operating system found"

    def tool() -> Result:
        raise ToolError(["qemu-img", "info", "x"], 1, "no such file\n", hint="Check the path")

    failed = run(tool).failed
    assert failed is not None and failed["error"] == "ToolError" and failed["rc"] == 1
    assert failed["cmd"] == ["qemu-img", "info", "x"] and "no such file" in failed["msg"]

    def source() -> Result:
        error = SourceError("disk not found", subject="/srv/web01.img", phase="open")
        error.log_path = "/var/tmp/kvmigrate-web01/conversion.log"
        raise error

    failed = run(source).failed
    assert failed == {"msg": "/srv/web01.img: disk not found", "error": "SourceError", "phase": "open",
                      "subject": "/srv/web01.img", "log_path": "/var/tmp/kvmigrate-web01/conversion.log"}


def test_an_os_error_fails_naming_the_file_and_the_reason() -> None:
    def denied() -> Result:
        raise PermissionError(errno.EACCES, "Permission denied", "/var/lib/images/web01")

    failed = run(denied).failed
    assert failed == {"msg": "cannot use /var/lib/images/web01: Permission denied", "error": "PermissionError",
                      "subject": "/var/lib/images/web01", "errno": errno.EACCES}

    def moved() -> Result:
        raise OSError(errno.EXDEV, "Invalid cross-device link", "/a/x.part", None, "/b/x")

    failed = run(moved).failed
    assert failed is not None and failed["msg"] == "cannot use /a/x.part -> /b/x: Invalid cross-device link"

    def no_file() -> Result:
        raise OSError(errno.ENOSPC, "No space left on device")

    failed = run(no_file).failed
    assert failed is not None and failed["msg"] == "operating system error: No space left on device"


def test_a_bug_keeps_its_traceback() -> None:
    module = FakeModule()
    with pytest.raises(KeyError):
        run_module(module, lambda: {}["missing"])
    assert module.failed is None and module.exited is None


def validate(params: dict[str, Any]) -> Any:
    validator = ArgumentSpecValidator(source_argument_spec(), mutually_exclusive=SOURCE_MUTUALLY_EXCLUSIVE,
                                      required_one_of=SOURCE_REQUIRED_ONE_OF)
    return validator.validate(params)


def test_the_source_nested_or_flat_gives_the_same_spec() -> None:
    secrets = {"password": "pw-4711", "private_key": "key-2342", "luks_keys": ["luks-0815"]}
    flat = validate({"input": "vmx", "path": ["ssh://root@esxi/vmfs/volumes/ds/vm/vm.vmx"], **secrets})
    nested = validate({"source": {"input": "vmx", "path": "ssh://root@esxi/vmfs/volumes/ds/vm/vm.vmx", **secrets}})
    assert not flat.error_messages and not nested.error_messages
    assert source_spec_from_params(flat.validated_parameters) == source_spec_from_params(nested.validated_parameters)
    spec = source_spec_from_params(nested.validated_parameters)
    assert spec.input == "vmx" and spec.work_dir == "/var/tmp" and spec.password == "pw-4711"
    assert source_params(nested.validated_parameters)["root"] == "single"  # nested defaults as the flat ones
    # the secrets are no_log in both forms
    for result in (flat, nested):
        assert {"pw-4711", "key-2342", "luks-0815"} <= set(result._no_log_values)
    assert source_params(nested.validated_parameters)["luks_keys"] == ["luks-0815"]
    assert set(source_params(flat.validated_parameters)) == set(SOURCE_ARGUMENT_SPEC)


def test_source_and_a_flat_source_option_together_fail_naming_both() -> None:
    result = validate({"source": {"input": "disk", "path": ["/a.img"]}, "path": ["/b.img"]})
    assert [str(e) for e in result.errors] == ["parameters are mutually exclusive: source|path"]
    # the flat defaults (root, work_dir) never count as given
    assert not validate({"source": {"input": "disk", "path": ["/a.img"]}}).error_messages
    missing = validate({"path": ["/a.img"]})
    assert [str(e) for e in missing.errors] == ["one of the following is required: source, input"]
    no_input = validate({"source": {"path": ["/a.img"]}})
    assert any("input" in str(e) and "source" in str(e) for e in no_input.errors), no_input.error_messages


def test_without_source_params_leaves_out_every_source_option() -> None:
    params = {"input": "disk", "password": "pw", "source": {"input": "disk"}, "work_dir": "/w", "output": "local",
              "name": "web01", "pool": "default"}
    assert without_source_params(params) == {"output": "local", "name": "web01", "pool": "default"}
