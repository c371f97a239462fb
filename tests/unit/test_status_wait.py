"""wait_for_end: the wait of conversion_status ends when a watched conversion's status turns final."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.status import StatusFile, status_path, wait_for_end

pytestmark = pytest.mark.unit


def status(work: Path, name: str, state: str | None = None) -> StatusFile:
    path = Path(status_path(str(work), name))
    path.parent.mkdir(parents=True, exist_ok=True)
    run = StatusFile(str(path), name)
    run.update(phase="convert", state="running")
    if state:
        run.update(state=state)
    return run


def later(seconds: float, action: Callable[[], object]) -> None:
    threading.Thread(target=lambda: (time.sleep(seconds), action()), daemon=True).start()


def test_a_running_conversion_that_ends_ends_the_wait(tmp_path: Path) -> None:
    web, db = status(tmp_path, "web01"), status(tmp_path, "db01")
    later(0.5, lambda: db.update(state="failed", error="copy: disk full"))
    assert wait_for_end([(str(tmp_path), "web01"), (str(tmp_path), "db01")], 60, interval=0.1) == ["db01"]
    assert web.data["state"] == "running"


def test_a_conversion_not_started_yet_ends_when_its_status_appears_final(tmp_path: Path) -> None:
    other = tmp_path / "other"
    status(tmp_path, "web01")
    later(0.5, lambda: status(other, "app01", "done"))
    assert wait_for_end([(str(tmp_path), "web01"), (str(other), "app01")], 60, interval=0.1) == ["app01"]


def test_a_previous_runs_final_status_counts_only_when_written_again(tmp_path: Path) -> None:
    old = status(tmp_path, "web01", "done")
    # unchanged: the time runs out, nothing ended
    assert wait_for_end([(str(tmp_path), "web01")], 0.5, interval=0.1) == []
    later(0.3, lambda: old.update(state="done"))
    assert wait_for_end([(str(tmp_path), "web01")], 60, interval=0.1) == ["web01"]


def test_no_wait_and_nothing_to_watch(tmp_path: Path) -> None:
    status(tmp_path, "web01")
    assert wait_for_end([(str(tmp_path), "web01")], 0) == []
    assert wait_for_end([], 0.2, interval=0.05) == []
