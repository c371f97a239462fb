"""conversion_status's judgement: outcome, wall time and output directory, from the status file and the run's result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import PreflightError, V2VError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Finding, Severity
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.status import (
    StatusError,
    StatusFile,
    StatusQuery,
    judge_conversion,
    read_conversion_status,
    report_status,
    status_path,
)

pytestmark = pytest.mark.unit


def write(work: Path, name: str, phases: list[tuple[str, float]], *, started: float = 1000.0,
          updated: float = 1100.0, **values: Any) -> Path:
    """A status file as the engine writes it, with chosen times."""
    path = Path(status_path(str(work), name))
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"guest": name, "state": "running", "phase": phases[-1][0] if phases else None, "percent": None,
            "started": started, "updated": updated,
            "phases": [{"name": n, "started": t} for n, t in phases], **values}
    path.write_text(json.dumps(data))
    return path


def test_status_alone_says_queued_running_converted_failed_blocked(tmp_path: Path) -> None:
    write(tmp_path, "waiting", [("queued", 1000.0)])
    write(tmp_path, "busy", [("queued", 1000.0), ("open", 1030.0), ("inspect", 1040.0)])
    write(tmp_path, "done", [("queued", 1000.0), ("open", 1030.0), ("copy", 1050.0)], state="done",
          output_dir="/images/done")
    write(tmp_path, "broken", [("open", 1000.0), ("copy", 1050.0)], state="failed", error="copy: disk full",
          error_type="OutputError")
    write(tmp_path, "blocked", [("open", 1000.0), ("preflight", 1050.0)], state="failed",
          error="conversion blocked: no-os", error_type="PreflightError")
    read = {n: read_conversion_status(str(tmp_path), n, now=1200.0)
            for n in ("waiting", "busy", "done", "broken", "blocked", "absent")}
    assert {n: s.outcome for n, s in read.items()} == {
        "waiting": "queued", "busy": "running", "done": "converted", "broken": "failed", "blocked": "blocked",
        "absent": None}
    # wall time without the queue: a running one until now, a finished one until its last update
    assert read["busy"].seconds == 200.0 - 30.0
    assert read["done"].seconds == 100.0 - 30.0 and read["done"].output_dir == "/images/done"
    assert read["broken"].failed_phase == "copy" and read["broken"].seconds == 100.0
    assert read["blocked"].failed_phase == "preflight" and read["done"].failed_phase is None
    assert read["absent"].seconds is None and read["absent"].output_dir is None


def test_the_writer_records_the_kind_of_failure(tmp_path: Path) -> None:
    path = Path(status_path(str(tmp_path), "g"))
    path.parent.mkdir()
    status = StatusFile(str(path), "g")
    status.update(phase="open", state="running", output_dir=str(tmp_path / "out"))
    status.phase("preflight")
    status.fail(PreflightError([Finding(severity=Severity.BLOCKER, code="no-os", message="no OS")], subject="g"))
    read = read_conversion_status(str(tmp_path), "g")
    assert read.state == "failed" and read.outcome == "blocked" and read.failed_phase == "preflight"
    assert read.error == "g: conversion blocked: no-os: no OS" and read.output_dir == str(tmp_path / "out")


def test_the_result_judges_a_run_that_converted(tmp_path: Path) -> None:
    # the run waited 30 s for its slot; its phases leave out the appliance's start, its status does not
    write(tmp_path, "web01", [("queued", 1000.0), ("open", 1030.0), ("copy", 1050.0)], state="done",
          output_dir="/images/web01")
    result = {"changed": True, "phases": [{"name": "open", "seconds": 1.0}, {"name": "queued", "seconds": 30.0},
                                          {"name": "copy", "seconds": 40.0}]}
    judged = judge_conversion(read_conversion_status(str(tmp_path), "web01"), result)
    assert judged.outcome == "converted" and judged.seconds == 70.0 and judged.output_dir == "/images/web01"
    assert judge_conversion(read_conversion_status(str(tmp_path), "web01"), result, check_mode=True).outcome \
        == "planned"


def test_the_result_judges_an_up_to_date_run_by_its_own_phases(tmp_path: Path) -> None:
    # the status file is the earlier conversion's: its times are not this run's
    write(tmp_path, "web01", [("open", 1000.0), ("copy", 1050.0)], state="done", output_dir="/images/web01")
    result = {"changed": False, "phases": [{"name": "open", "seconds": 0.25}],
              "target": {"xml_path": "/images/web01/web01.xml"}}
    judged = judge_conversion(read_conversion_status(str(tmp_path), "web01"), result)
    assert judged.outcome == "up-to-date" and judged.seconds == 0.25 and judged.failed_phase is None
    # without a status file (say a fresh work_dir), the output directory comes from the result
    fresh = judge_conversion(read_conversion_status(str(tmp_path / "other"), "web01"), result)
    assert fresh.outcome == "up-to-date" and fresh.output_dir == "/images/web01" and fresh.seconds == 0.25


def test_the_result_judges_a_blocked_and_a_failed_run(tmp_path: Path) -> None:
    write(tmp_path, "blank", [("queued", 1000.0), ("open", 1010.0), ("preflight", 1040.0)], state="failed",
          error="conversion blocked: no-os")
    blocked = judge_conversion(read_conversion_status(str(tmp_path), "blank"), {
        "failed": True, "error": "PreflightError", "phase": "preflight", "msg": "blank: conversion blocked: no-os"})
    assert blocked.outcome == "blocked" and blocked.failed_phase == "preflight"
    assert blocked.error == "blank: conversion blocked: no-os"
    # a failed result has no phases: the status file's add up to the wall time, without the queue
    assert blocked.seconds == 100.0 - 10.0
    # failed before any status was written (a missing source): phase open, no time
    missing = judge_conversion(read_conversion_status(str(tmp_path), "gone"), {
        "failed": True, "error": "SourceError", "msg": "/srv/gone.img: not found"})
    assert (missing.outcome, missing.failed_phase, missing.error, missing.seconds) == (
        "failed", "open", "/srv/gone.img: not found", 0.0)
    # a job that died without the engine's fields (async timeout) is failed in the phase its status says
    write(tmp_path, "killed", [("open", 1000.0), ("copy", 1050.0)])
    killed = judge_conversion(read_conversion_status(str(tmp_path), "killed", now=1100.0), {"failed": True})
    assert (killed.outcome, killed.failed_phase, killed.error) == ("failed", "copy", "failed")


def test_report_status_fails_with_what_to_check(tmp_path: Path) -> None:
    with pytest.raises(V2VError, match="wait_seconds must be 0 or more, not -1"):
        report_status(StatusQuery(name="web01", work_dir=str(tmp_path), wait_seconds=-1))
    with pytest.raises(StatusError) as missing:
        report_status(StatusQuery(name="web01", work_dir=str(tmp_path), must_exist=True))
    path = status_path(str(tmp_path), "web01")
    assert str(missing.value) == f"web01: no conversion status at {path}. Check name and work_dir against the " \
                                 "convert_guest task"
    assert missing.value.to_dict()["status_file"] == path
    Path(path).parent.mkdir()
    Path(path).write_text("{half a file")
    with pytest.raises(StatusError, match="cannot read the status of web01"):
        report_status(StatusQuery(name="web01", work_dir=str(tmp_path)))


def test_report_status_of_a_guest_without_status(tmp_path: Path) -> None:
    plain = report_status(StatusQuery(name="web01", work_dir=str(tmp_path)))
    assert plain == {"changed": False, "guest": "web01", "status_file": status_path(str(tmp_path), "web01"),
                     "exists": False, "phases": [], "outcome": None, "seconds": None}
    judged = report_status(StatusQuery(name="web01", work_dir=str(tmp_path), result={
        "changed": True, "phases": [{"name": "open", "seconds": 1.0}, {"name": "inspect", "seconds": 9.0}]}),
        check_mode=True)
    assert judged["outcome"] == "planned" and judged["seconds"] == 10.0 and "state" not in judged
