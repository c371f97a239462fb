"""conversion_status: reads what convert_guest's status file says, through ansible-playbook.

The status files here are written by the engine's own writer (``StatusFile``),
phase by phase, as convert_guest writes them; a real conversion watched with
conversion_status under async is in tests/integration/test_fleet.py.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.status import (
    StatusFile,
    read_conversion_status,
    status_path,
)
from tests.playbook import run_tasks

pytestmark = pytest.mark.integration


def write_run(work_dir: Path, name: str, *, finish: str | None) -> StatusFile:
    path = Path(status_path(str(work_dir), name))
    path.parent.mkdir(parents=True)
    status = StatusFile(str(path), name)
    status.update(phase="open", state="running")
    for phase in ("inspect", "preflight", "convert", "trim", "copy"):
        time.sleep(0.05)
        status.phase(phase)
    status.update(percent=42.5)
    if finish == "done":
        status.update(state="done", percent=100.0)
    elif finish == "failed":
        status.update(state="failed", error="copy: disk full")
    return status


def test_reader_works_out_phase_durations(tmp_path: Path) -> None:
    status = write_run(tmp_path, "web01", finish=None)
    now = status.data["updated"] + 5
    read = read_conversion_status(str(tmp_path), "web01", now=now)
    assert read.exists and read.state == "running" and read.phase == "copy" and read.percent == 42.5
    assert [p.name for p in read.phases] == ["open", "inspect", "preflight", "convert", "trim", "copy"]
    assert all(p.seconds >= 0.04 for p in read.phases[1:-1])
    # the current phase of a running conversion lasts until now
    assert read.phases[-1].seconds >= 5 and read.age_seconds == pytest.approx(5, abs=0.01)
    assert read.elapsed_seconds == pytest.approx(now - status.data["started"], abs=0.01)
    assert not read.finished
    missing = read_conversion_status(str(tmp_path), "nobody")
    assert not missing.exists and missing.phases == []


def test_module_running_done_failed_missing_and_check_mode(tmp_path: Path) -> None:
    work = tmp_path / "work"
    write_run(work, "running", finish=None)
    write_run(work, "done", finish="done")
    write_run(work, "failed", finish="failed")
    before = {p: p.read_bytes() for p in work.rglob("*") if p.is_file()}
    tasks = [{"name": f"status of {n}", "kvmigrate.v2v.conversion_status": {"name": n, "work_dir": str(work)},
              "register": n.replace("-", "_")} for n in ("running", "done", "failed", "absent")]
    tasks.append({"name": "must exist", "kvmigrate.v2v.conversion_status": {
        "name": "absent", "work_dir": str(work), "must_exist": True}, "register": "required"})
    for check in (False, True):
        run = run_tasks(tasks, tmp_path, check=check)
        r = run.results
        assert r["running"]["state"] == "running" and r["running"]["phase"] == "copy", run.output
        assert r["running"]["percent"] == 42.5
        assert r["done"]["state"] == "done" and r["done"]["percent"] == 100.0
        assert [p["name"] for p in r["done"]["phases"]][-1] == "copy"
        assert r["failed"]["state"] == "failed" and r["failed"]["error"] == "copy: disk full"
        # what became of each, from the status file alone
        assert [r[k]["outcome"] for k in ("running", "done", "failed", "absent")] == [
            "running", "converted", "failed", None]
        assert r["failed"]["failed_phase"] == "copy" and r["done"]["seconds"] == r["done"]["elapsed_seconds"]
        assert r["absent"]["exists"] is False and "state" not in r["absent"]
        assert r["absent"]["status_file"] == str(work / "kvmigrate-absent" / "status.json")
        assert all(r[k]["changed"] is False for k in ("running", "done", "failed", "absent"))
        assert r["required"]["failed"] and "no conversion status" in r["required"]["msg"]
        assert "work_dir" in r["required"]["msg"]
    assert {p: p.read_bytes() for p in work.rglob("*") if p.is_file()} == before
    assert not (work / "kvmigrate-absent").exists()
    assert json.loads((work / "kvmigrate-done" / "status.json").read_text())["state"] == "done"


def test_wait_ends_when_a_watched_conversion_ends(tmp_path: Path) -> None:
    """wait_seconds: the task returns when db01 (in another work_dir) ends, not after its 300 s."""
    work, other = tmp_path / "work", tmp_path / "other"
    write_run(work, "web01", finish=None)
    db01 = write_run(other, "db01", finish=None)
    stop = threading.Event()

    def finish_db01() -> None:
        # Ends a few seconds in; written again every second, as a status written once would be
        # missed by a wait that began after it (that case: the unit test of wait_for_end).
        time.sleep(3)
        while not stop.is_set():
            db01.update(state="done", percent=100.0)
            stop.wait(1)

    writer = threading.Thread(target=finish_db01, daemon=True)
    writer.start()
    try:
        run = run_tasks([
            {"name": "wait for web01 or db01", "kvmigrate.v2v.conversion_status": {
                "name": "web01", "work_dir": str(work), "wait_seconds": 300,
                "watch": [{"name": "db01", "work_dir": str(other)}]}, "register": "first"},
            {"name": "time runs out", "kvmigrate.v2v.conversion_status": {
                "name": "web01", "work_dir": str(work), "wait_seconds": 1}, "register": "timeout"},
            {"name": "negative", "kvmigrate.v2v.conversion_status": {
                "name": "web01", "work_dir": str(work), "wait_seconds": -1}, "register": "negative"},
        ], tmp_path)
    finally:
        stop.set()
        writer.join()
    r = run.results
    assert r["first"]["ended"] == ["db01"] and r["first"]["waited_seconds"] < 300, run.output
    # the status returned is still web01's
    assert r["first"]["guest"] == "web01" and r["first"]["state"] == "running" and r["first"]["changed"] is False
    assert r["timeout"]["ended"] == [] and r["timeout"]["waited_seconds"] >= 1
    assert r["negative"]["failed"] and "wait_seconds must be 0 or more" in r["negative"]["msg"]
