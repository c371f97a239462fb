"""The modules' shared edge through ansible-playbook: the source as one dict (secrets still hidden), the
mutual exclusion with the flat options, errors through the one edge, and conversion_status judging a
registered result. No appliance starts here (metadata only, or failures before the disks are opened).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.playbook import run_tasks

pytestmark = pytest.mark.integration

SECRETS = {"password": "pw-Secret-4711", "private_key": "key-Secret-2342", "luks_keys": ["luks-Secret-0815"]}


def raw_disk(tmp_path: Path) -> str:
    disk = tmp_path / "edge01.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(disk), "64M"], check=True)
    return str(disk)


def test_source_as_one_dict_keeps_its_secrets_hidden(tmp_path: Path) -> None:
    disk = raw_disk(tmp_path)
    work = tmp_path / "work"
    run = run_tasks([
        {"name": "nested", "kvmigrate.v2v.inspect_guest": {
            "source": {"input": "disk", "path": disk, "format": "raw", "work_dir": str(work), **SECRETS},
            "inspect_os": False}, "register": "nested"},
        {"name": "flat", "kvmigrate.v2v.inspect_guest": {
            "input": "disk", "path": [disk], "format": "raw", "work_dir": str(work), "inspect_os": False},
         "register": "flat"},
        {"name": "both", "kvmigrate.v2v.inspect_guest": {
            "source": {"input": "disk", "path": [disk]}, "path": [disk], "inspect_os": False}, "register": "both"},
        {"name": "neither", "kvmigrate.v2v.inspect_guest": {"path": [disk], "inspect_os": False},
         "register": "neither"},
        {"name": "no input", "kvmigrate.v2v.convert_guest": {
            "source": {"path": [disk]}, "output": "null"}, "register": "no_input"},
        {"name": "convert both", "kvmigrate.v2v.convert_guest": {
            "source": {"input": "disk", "path": [disk]}, "password": "pw-Secret-4711", "output": "null"},
         "register": "convert_both"},
        # fails reading its source, before any disk is opened: the edge turns the engine's error into fail_json
        {"name": "convert missing", "kvmigrate.v2v.convert_guest": {
            "source": {"input": "disk", "path": [str(tmp_path / "nope.img")], "work_dir": str(work), **SECRETS},
            "output": "null", "name": "edge01"}, "register": "missing"},
    ], tmp_path, extra_args=["-vvv"])
    r = run.results
    nested, flat = r["nested"], r["flat"]
    assert not nested.get("failed"), run.output
    assert nested["source"] == flat["source"] and nested["changed"] is False
    assert [p["name"] for p in nested["phases"]] == ["open"]
    # -vvv prints the module's invocation: the nested secrets are masked there
    invocation = run.output[run.output.index("module_args"):]
    assert "password: VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in invocation, invocation[:3000]
    assert "private_key: VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in invocation, invocation[:3000]
    assert r["both"]["failed"] and r["both"]["msg"] == "parameters are mutually exclusive: source|path"
    assert r["neither"]["failed"] and r["neither"]["msg"] == "one of the following is required: source, input"
    assert r["no_input"]["failed"] and "input" in r["no_input"]["msg"] and "source" in r["no_input"]["msg"]
    assert r["convert_both"]["failed"] and "source|password" in r["convert_both"]["msg"]
    missing = r["missing"]
    assert missing["failed"] and missing["error"] == "SourceError" and "nope.img" in missing["msg"], missing
    assert "Traceback" not in json.dumps(missing)
    # the secrets appear nowhere: not in -vvv output, not in any result, not in the work directory
    texts = {"output": run.output, "results": json.dumps(r)}
    texts.update({str(f): f.read_text(errors="replace") for f in work.rglob("*") if f.is_file()})
    for marker in ("pw-Secret-4711", "key-Secret-2342", "luks-Secret-0815"):
        assert [name for name, text in texts.items() if marker in text] == [], marker


def test_conversion_status_judges_a_registered_result(tmp_path: Path) -> None:
    work = tmp_path / "work"
    run = run_tasks([
        {"name": "convert missing", "kvmigrate.v2v.convert_guest": {
            "input": "disk", "path": [str(tmp_path / "nope.img")], "work_dir": str(work), "output": "null",
            "name": "edge02"}, "register": "conversion"},
        {"name": "judge", "kvmigrate.v2v.conversion_status": {
            "name": "edge02", "work_dir": str(work), "result": "{{ conversion }}"}, "register": "judged"},
        {"name": "plain", "kvmigrate.v2v.conversion_status": {"name": "edge02", "work_dir": str(work)},
         "register": "plain"},
        {"name": "negative wait", "kvmigrate.v2v.conversion_status": {
            "name": "edge02", "work_dir": str(work), "wait_seconds": -1}, "register": "negative"},
    ], tmp_path)
    r = run.results
    assert r["conversion"]["failed"], run.output
    judged = r["judged"]
    assert judged["changed"] is False and judged["exists"] is False, judged
    assert judged["outcome"] == "failed" and judged["failed_phase"] == "open" and judged["seconds"] == 0
    assert judged["error"] == r["conversion"]["msg"]
    assert r["plain"]["outcome"] is None and r["plain"]["seconds"] is None and "error" not in r["plain"]
    assert r["negative"]["failed"] and r["negative"]["msg"] == "wait_seconds must be 0 or more, not -1"
    assert r["negative"]["error"] == "V2VError"
