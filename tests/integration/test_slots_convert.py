"""convert_guest's max_concurrent through the engine: a real run waits for its slot before it opens anything.

The slot is held by the test (a slot lock file under the work directory, as another
conversion would hold it); the run is a real run_convert of the blank disk in a
process of its own (libguestfs, qemu-img), which preflight then blocks.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.conversion import ConvertOptions, run_convert
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import V2VError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import SourceSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.slots import SlotQueue, slot_dir_for
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.status import read_conversion_status

pytestmark = pytest.mark.integration

# spawn, not fork: a forked child would inherit (and so keep) the slot the test holds.
SPAWN = multiprocessing.get_context("spawn")


def _convert(disk: str, fmt: str, work: str, outcome: str) -> None:
    os.environ["KVMIGRATE_ACCEL"] = "tcg"
    spec = SourceSpec(input="disk", path=[disk], format=fmt, work_dir=work)
    try:
        result = run_convert(spec, ConvertOptions(output="null", name="slotted", max_concurrent=1))
        data = {"ok": True, "phases": [p.name for p in result.phases]}
    except V2VError as exc:
        data = {"ok": False, "error": type(exc).__name__, "phase": exc.phase}
    Path(outcome).write_text(json.dumps(data))


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _opened(work: Path) -> list[str]:
    return [p.name for p in work.iterdir() if p.name.startswith("kvmigrate-open-")]


def test_a_run_waits_queued_for_its_slot_and_then_runs(blank_disk, tmp_path: Path) -> None:
    work, outcome = tmp_path / "work", tmp_path / "outcome.json"
    work.mkdir()
    queue = SlotQueue(slot_dir_for(str(work)), 1)
    with queue.hold():
        proc = SPAWN.Process(target=_convert, args=(str(blank_disk.disks[0]), blank_disk.format, str(work),
                                                    str(outcome)))
        proc.start()
        _wait_for(lambda: read_conversion_status(str(work), "slotted").exists)
        time.sleep(3)
        status = read_conversion_status(str(work), "slotted")
        # queued, still being rewritten, and nothing opened: no overlay, no appliance
        assert status.state == "running" and status.phase == "queued", status
        assert status.age_seconds is not None and status.age_seconds < 10
        assert _opened(work) == []
    proc.join(300)
    assert proc.exitcode == 0
    assert json.loads(outcome.read_text()) == {"ok": False, "error": "PreflightError", "phase": "preflight"}
    final = read_conversion_status(str(work), "slotted")
    assert final.state == "failed"
    names = [p.name for p in final.phases]
    assert names[:2] == ["queued", "open"] and "inspect" in names, names
    assert final.phases[0].seconds >= 3
    assert _opened(work) == []


def test_a_run_killed_while_queued_leaves_the_queue_usable(blank_disk, tmp_path: Path) -> None:
    work, outcome = tmp_path / "work", tmp_path / "outcome.json"
    work.mkdir()
    slots = Path(slot_dir_for(str(work)))
    queue = SlotQueue(str(slots), 1)
    with queue.hold():
        proc = SPAWN.Process(target=_convert, args=(str(blank_disk.disks[0]), blank_disk.format, str(work),
                                                    str(outcome)))
        proc.start()
        _wait_for(lambda: list(slots.glob("ticket-*.lock")))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)
    assert _opened(work) == [] and not outcome.exists()
    # the next run is not held up by the dead one's ticket
    with SlotQueue(str(slots), 1).hold(poll_seconds=0.05) as index:
        assert index == 0
    assert list(slots.glob("ticket-*.lock")) == []
