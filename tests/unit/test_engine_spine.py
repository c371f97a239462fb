"""model, errors and the accelerator decision, without system services."""

from __future__ import annotations

import json

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v import appliance
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import (
    PreflightError,
    SourceError,
    ToolError,
    V2VError,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import (
    Finding,
    Firmware,
    GuestInfo,
    Result,
    Severity,
    Source,
    SourceDisk,
    SourceNIC,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.process import run_tool

pytestmark = pytest.mark.unit


def test_source_to_dict_flattens_firmware_and_is_json() -> None:
    source = Source(name="web01", hypervisor="vmware", input="vmx", memory_mb=2048, vcpus=2,
                    firmware=Firmware(type="uefi", secure_boot=True),
                    disks=[SourceDisk(path="/x.vmdk", format="vmdk", bus="scsi", size_bytes=10)],
                    nics=[SourceNIC(mac="00:0c:29:00:00:01", model="vmxnet3", network="VM Network")])
    data = source.to_dict()
    assert data["firmware"] == "uefi" and data["secure_boot"] is True
    assert data["disks"][0] == {"path": "/x.vmdk", "format": "vmdk", "bus": "scsi", "size_bytes": 10,
                                "controller": None, "offset": None, "length": None}
    assert data["nics"][0]["network"] == "VM Network"
    json.dumps(data)


def test_result_drops_empty_parts_but_keeps_changed() -> None:
    finding = Finding(severity=Severity.BLOCKER, code="no-os", message="none")
    data = Result(findings=[finding]).to_dict()
    assert data == {"changed": False, "findings": [
        {"severity": "blocker", "code": "no-os", "message": "none", "subject": None}], "warnings": []}
    assert finding.is_blocker
    clean = Result(guest=GuestInfo(root="/dev/sda1", os_type="linux")).to_dict()
    assert clean["findings"] == [] and clean["guest"]["root"] == "/dev/sda1"


def test_errors_say_what_and_what_to_do() -> None:
    err = SourceError("the disk image does not exist", subject="/a.img", hint="Check the path")
    assert str(err) == "/a.img: the disk image does not exist. Check the path"
    assert err.to_dict() == {"msg": str(err), "error": "SourceError", "subject": "/a.img"}
    blocked = PreflightError([Finding(Severity.BLOCKER, "no-os", "nothing found")], subject="g")
    assert "conversion blocked: no-os: nothing found" in str(blocked)
    assert blocked.to_dict()["phase"] == "preflight"


def test_run_tool_carries_stderr_and_exit_code() -> None:
    assert run_tool(["printf", "hi"]) == "hi"
    with pytest.raises(ToolError) as err:
        run_tool(["sh", "-c", "echo broken >&2; exit 3"])
    assert err.value.returncode == 3 and "broken" in str(err.value) and "exit code 3" in str(err.value)
    with pytest.raises(V2VError, match="'no-such-tool-kvmigrate' is not installed"):
        run_tool(["no-such-tool-kvmigrate"])


@pytest.mark.parametrize("value", ["kvm", "tcg", "TCG"])
def test_accelerator_can_be_forced(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("KVMIGRATE_ACCEL", value)
    decision = appliance.decide_accelerator()
    assert decision.accel == value.lower() and not decision.probed
    expected = "accel=kvm" if value.lower() == "kvm" else "accel=tcg"
    assert expected in appliance.qemu_accel_args(decision)
    env = appliance.libguestfs_env(decision)
    assert env["LIBGUESTFS_BACKEND"] == "direct"
    assert (env.get("LIBGUESTFS_BACKEND_SETTINGS") == "force_tcg") == (value.lower() == "tcg")


def test_invalid_forced_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KVMIGRATE_ACCEL", "hvf")
    with pytest.raises(V2VError, match="KVMIGRATE_ACCEL='hvf' is not valid"):
        appliance.decide_accelerator()


def test_decision_is_cached_per_boot(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("KVMIGRATE_ACCEL", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(appliance, "_decision", None)
    cache = tmp_path / "kvmigrate" / "accel.json"
    cache.parent.mkdir()
    cache.write_text(json.dumps({"boot_id": appliance._boot_id(), "accel": "tcg", "reason": "cached",
                                 "probed": True, "warning": "w"}))
    decision = appliance.decide_accelerator()
    assert (decision.accel, decision.reason, decision.probed) == ("tcg", "cached", False)
