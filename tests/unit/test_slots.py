"""Conversion slots (module_utils/v2v/slots.py): a sliding window of N runs, with real processes and flock."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.conversion import ConvertOptions
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.pipeline import PhaseClock
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.slots import SlotQueue, conversion_slot
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.status import StatusFile

pytestmark = pytest.mark.unit

# spawn, not fork: a forked child would inherit (and so keep) the locks the test process holds.
SPAWN = multiprocessing.get_context("spawn")


def _hold(directory: str, limit: int, seconds: float, log: str, name: str) -> None:
    with SlotQueue(directory, limit).hold(poll_seconds=0.05) as index:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"name": name, "event": "start", "slot": index, "t": time.time()}) + "\n")
        time.sleep(seconds)
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"name": name, "event": "end", "slot": index, "t": time.time()}) + "\n")


def _events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _tickets(directory: Path) -> int:
    return len(list(directory.glob("ticket-*.lock"))) if directory.exists() else 0


def _start(directory: Path, limit: int, seconds: float, log: Path, name: str):
    proc = SPAWN.Process(target=_hold, args=(str(directory), limit, seconds, str(log), name))
    proc.start()
    return proc


def test_no_limit_yields_at_once_and_creates_nothing(tmp_path: Path) -> None:
    status = StatusFile(str(tmp_path / "status.json"), "g")
    with conversion_slot(None, str(tmp_path / "slots"), status, PhaseClock()) as index:
        assert index is None
    assert not (tmp_path / "slots").exists() and not (tmp_path / "status.json").exists()


def test_a_limit_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_concurrent must be 1 or more"):
        SlotQueue(str(tmp_path), 0)


def test_sliding_window_the_next_run_starts_when_any_one_ends(tmp_path: Path) -> None:
    """Two slots, a long run and three short ones: the short ones follow each other in the second slot
    while the long one still runs (a batch would have waited for the long one)."""
    slots, log = tmp_path / "slots", tmp_path / "events.jsonl"
    procs = [_start(slots, 2, 10.0, log, "long")]
    _wait_for(lambda: len(_events(log)) == 1)
    procs += [_start(slots, 2, 0.5, log, name) for name in ("a", "b", "c")]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    events = _events(log)
    times = {(e["name"], e["event"]): e["t"] for e in events}
    # never more than two at once
    running = peak = 0
    for event in sorted(events, key=lambda e: (e["t"], e["event"] == "start")):
        running += 1 if event["event"] == "start" else -1
        peak = max(peak, running)
    assert peak == 2, events
    # the three short runs followed each other in the other slot while the long one held its slot
    short = sorted(("a", "b", "c"), key=lambda n: times[(n, "start")])
    assert all(e["slot"] == 1 for e in events if e["name"] in short), events
    assert times[(short[-1], "end")] < times[("long", "end")], events
    for before, after in zip(short, short[1:]):
        # each started promptly once the one before it ended (polling, not batching)
        assert 0 <= times[(after, "start")] - times[(before, "end")] < 1.5, events


def test_waiting_runs_start_in_the_order_they_arrived(tmp_path: Path) -> None:
    slots, log = tmp_path / "slots", tmp_path / "events.jsonl"
    queue = SlotQueue(str(slots), 1)
    procs = []
    with queue.hold():
        for index, name in enumerate(("first", "second", "third", "fourth")):
            procs.append(_start(slots, 1, 0.1, log, name))
            _wait_for(lambda n=index + 1: _tickets(slots) == n)
    for proc in procs:
        proc.join(20)
        assert proc.exitcode == 0
    starts = [e["name"] for e in _events(log) if e["event"] == "start"]
    assert starts == ["first", "second", "third", "fourth"]
    assert _tickets(slots) == 0


def _ticket_then_slot(directory: str, opening_seconds: float, log: str, name: str) -> None:
    """A run that takes its ticket at its start and asks for its slot after opening its source."""
    with SlotQueue(directory, 1).ticket() as ticket:
        time.sleep(opening_seconds)
        with ticket.slot(poll_seconds=0.05) as index:
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"name": name, "event": "start", "slot": index, "t": time.time()}) + "\n")
            time.sleep(0.2)
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"name": name, "event": "end", "slot": index, "t": time.time()}) + "\n")


def test_a_run_keeps_its_place_while_it_opens_its_source(tmp_path: Path) -> None:
    """The slow-to-open run started first, so it converts first, though the other asked for a slot earlier."""
    slots, log = tmp_path / "slots", tmp_path / "events.jsonl"
    slow = SPAWN.Process(target=_ticket_then_slot, args=(str(slots), 1.5, str(log), "slow-to-open"))
    slow.start()
    _wait_for(lambda: _tickets(slots) == 1)
    quick = SPAWN.Process(target=_ticket_then_slot, args=(str(slots), 0.0, str(log), "quick-to-open"))
    quick.start()
    for proc in (slow, quick):
        proc.join(20)
        assert proc.exitcode == 0
    events = [(e["name"], e["event"]) for e in _events(log)]
    assert events == [("slow-to-open", "start"), ("slow-to-open", "end"), ("quick-to-open", "start"),
                      ("quick-to-open", "end")], events
    assert _tickets(slots) == 0


def test_a_ticket_given_up_without_a_slot_lets_the_next_run_go(tmp_path: Path) -> None:
    """A run that ends before its slot (its output was up to date, its source failed to open) leaves the queue."""
    slots, log = tmp_path / "slots", tmp_path / "events.jsonl"
    queue = SlotQueue(str(slots), 1)
    with queue.ticket() as ticket:
        waiter = _start(slots, 1, 0.1, log, "next")
        _wait_for(lambda: _tickets(slots) == 2)
        time.sleep(0.3)
        assert _events(log) == []  # it waits behind the ticket ahead of it, though the slot is free
        ticket.release()
        waiter.join(20)
        assert waiter.exitcode == 0
    assert [e["name"] for e in _events(log)] == ["next", "next"] and _tickets(slots) == 0
    with pytest.raises(ValueError, match="used or given up"), ticket.slot():
        pass


def test_a_killed_holder_frees_its_slot(tmp_path: Path) -> None:
    slots, log = tmp_path / "slots", tmp_path / "events.jsonl"
    holder = _start(slots, 1, 600, log, "holder")
    _wait_for(lambda: len(_events(log)) == 1)
    waiter = _start(slots, 1, 0.1, log, "waiter")
    _wait_for(lambda: _tickets(slots) == 1)
    time.sleep(0.3)
    assert [e["name"] for e in _events(log)] == ["holder"]  # still waiting
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(10)
    waiter.join(10)
    assert waiter.exitcode == 0
    assert [(e["name"], e["event"]) for e in _events(log)] == [("holder", "start"), ("waiter", "start"),
                                                               ("waiter", "end")]


def test_a_killed_waiter_does_not_hold_up_the_queue(tmp_path: Path) -> None:
    slots, log = tmp_path / "slots", tmp_path / "events.jsonl"
    queue = SlotQueue(str(slots), 1)
    with queue.hold():
        dead = _start(slots, 1, 0.1, log, "dead")
        _wait_for(lambda: _tickets(slots) == 1)
        alive = _start(slots, 1, 0.1, log, "alive")
        _wait_for(lambda: _tickets(slots) == 2)
        os.kill(dead.pid, signal.SIGKILL)
        dead.join(10)
    alive.join(10)
    assert alive.exitcode == 0
    assert [e["name"] for e in _events(log)] == ["alive", "alive"]
    assert _tickets(slots) == 0  # the dead waiter's ticket was removed


def test_a_failing_run_frees_its_slot(tmp_path: Path) -> None:
    queue = SlotQueue(str(tmp_path), 1)
    with pytest.raises(RuntimeError, match="boom"), queue.hold():
        raise RuntimeError("boom")
    log = tmp_path / "events.jsonl"
    proc = _start(tmp_path, 1, 0.0, log, "next")
    proc.join(10)
    assert proc.exitcode == 0 and len(_events(log)) == 2


def _queued_run(slots: str, status_path: str, marker: str) -> None:
    clock = PhaseClock()
    with conversion_slot(1, slots, StatusFile(status_path, "g"), clock):
        Path(marker).write_text(json.dumps([p.name for p in clock.phases]))


def test_status_says_queued_while_waiting_then_open(tmp_path: Path) -> None:
    """Another process reads status.json while the run waits: phase queued; then open with its slot;
    the phase clock has the time spent queued."""
    slots, status_path = tmp_path / "slots", tmp_path / "status.json"
    queue = SlotQueue(str(slots), 1)
    with queue.hold():
        proc = SPAWN.Process(target=_queued_run, args=(str(slots), str(status_path), str(tmp_path / "in-slot")))
        proc.start()
        _wait_for(status_path.exists)
        seen = json.loads(status_path.read_text())
        assert seen["phase"] == "queued" and seen["state"] == "running", seen
        time.sleep(0.5)
    proc.join(10)
    assert proc.exitcode == 0
    final = json.loads(status_path.read_text())
    assert final["phase"] == "open" and final["slot"] == 0
    assert [p["name"] for p in final["phases"]] == ["queued", "open"]
    assert json.loads((tmp_path / "in-slot").read_text()) == ["queued"]


def test_clock_records_the_queued_phase(tmp_path: Path) -> None:
    clock = PhaseClock()
    with conversion_slot(2, str(tmp_path), StatusFile(str(tmp_path / "status.json"), "g"), clock) as index:
        assert index == 0
    assert [p.name for p in clock.phases] == ["queued"] and clock.phases[0].seconds < 1


def test_throttling_is_not_part_of_what_is_converted() -> None:
    plain = ConvertOptions(output="null").fingerprint_fields()
    throttled = ConvertOptions(output="null", max_concurrent=2, slot_dir="/srv/slots").fingerprint_fields()
    assert plain == throttled and "max_concurrent" not in throttled and "slot_dir" not in throttled
