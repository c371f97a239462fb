# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``status.json``: the progress of one guest's run, readable while it runs.

Written atomically (temporary name, then rename) so a reader never sees half
a file. A follow-up task (or ``async_status`` user) reads it to show the
current phase and the copy percentage.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import V2VError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Phase, Serializable

STATUS_FILE = "status.json"
LOG_FILE = "conversion.log"
DEFAULT_WORK_DIR = "/var/tmp"
# States a run ends in; "running" is the only one that still changes.
FINAL_STATES = ("done", "failed", "check")
# What became of a conversion (ConversionStatus.outcome): waiting for its slot, converting, or how it ended.
# "up-to-date" and "planned" are only known from the run's result (conversion_status's ``result``): an
# up-to-date run and a check-mode run write no status.
OUTCOMES = ("queued", "running", "converted", "up-to-date", "planned", "blocked", "failed")
# The error of a run that preflight stopped before anything was written.
BLOCKED_ERROR = "PreflightError"


@dataclass
class StatusFile:
    """The status of one run. With ``path`` None (check mode) it is kept in memory only."""

    path: str | None
    guest: str
    data: dict[str, Any] = field(default_factory=dict)

    def update(self, **values: Any) -> None:
        if not self.data:
            self.data = {"guest": self.guest, "state": "running", "phase": None, "percent": None,
                         "started": time.time(), "phases": []}
        self.data.update(values)
        self.data["updated"] = time.time()
        if self.path is None:
            return
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(self.data, handle, indent=1)
        os.replace(tmp, self.path)

    def phase(self, name: str) -> None:
        self.data.setdefault("phases", []).append({"name": name, "started": time.time()})
        self.update(phase=name, percent=None)

    def fail(self, exc: Exception) -> None:
        """The run ended with ``exc``: its message, and its kind (a preflight blocker reads as ``blocked``)."""
        self.update(state="failed", error=str(exc), error_type=type(exc).__name__)


class ConversionLog:
    """``conversion.log`` beside ``status.json``: what the run did, line by line, with times.

    Phases, every command run inside the guest with its output, warnings and
    the error. Secrets never reach it: they are not part of any command line.
    With ``path`` None (check mode) nothing is written. Each run starts the
    file again; a failed run's log stays until the next run of that guest.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        if path is not None:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(f"{_stamp()} kvmigrate.v2v conversion log\n")

    def __call__(self, line: str) -> None:
        if self.path is None:
            return
        with self._lock, open(self.path, "a", encoding="utf-8") as handle:
            for part in line.splitlines() or [""]:
                handle.write(f"{_stamp()} {part}\n")


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"


def read_status(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def status_path(work_dir: str, name: str) -> str:
    """Where convert_guest keeps the status of the guest ``name`` (its per-guest work directory)."""
    return os.path.join(work_dir, f"kvmigrate-{name}", STATUS_FILE)


class StatusError(V2VError):
    """A status file that cannot be read, or is missing where it must exist."""

    def __init__(self, message: str, *, status_file: str, subject: str | None = None,
                 hint: str | None = None) -> None:
        self.status_file = status_file
        super().__init__(message, subject=subject, hint=hint)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["status_file"] = self.status_file
        return data


@dataclass
class ConversionStatus(Serializable):
    """One guest's ``status.json`` as a reader sees it, with each phase's duration worked out."""

    guest: str
    status_file: str
    exists: bool
    state: str | None = None
    phase: str | None = None
    percent: float | None = None
    error: str | None = None
    started: float | None = None
    updated: float | None = None
    elapsed_seconds: float | None = None
    # Seconds since the file was last written: a "running" state that stops ageing never finished.
    age_seconds: float | None = None
    phases: list[Phase] = field(default_factory=list)
    # What became of the conversion (one of OUTCOMES), the phase it failed in, its wall time without the
    # time queued for a slot, and the output directory it wrote to (None for outputs without one).
    outcome: str | None = None
    failed_phase: str | None = None
    seconds: float | None = None
    output_dir: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES


def _queued_seconds(phases: list[Phase]) -> float:
    return sum(p.seconds for p in phases if p.name == "queued")


def _outcome_of_state(state: str | None, phase: str | None, error_type: str | None) -> str | None:
    if state == "running":
        return "queued" if phase == "queued" else "running"
    if state == "failed":
        return "blocked" if error_type == BLOCKED_ERROR else "failed"
    return {"done": "converted", "check": "planned"}.get(state or "")


def read_conversion_status(work_dir: str, name: str, *, now: float | None = None) -> ConversionStatus:
    """Read the status of ``name`` under ``work_dir``; a guest without one has ``exists: false``.

    A phase lasts until the next one starts; the current phase of a running
    guest until ``now``, of a finished one until the last update. The outcome
    and the wall time are the status file's own (see :func:`judge_conversion`
    for a run whose result is known).
    """
    path = status_path(work_dir, name)
    try:
        data = read_status(path)
    except FileNotFoundError:
        return ConversionStatus(guest=name, status_file=path, exists=False)
    now = time.time() if now is None else now
    started, updated = data.get("started"), data.get("updated")
    state = data.get("state")
    end = updated if state in FINAL_STATES or updated is None else now
    starts = [p for p in data.get("phases", []) if p.get("started") is not None]
    # The run starts in "open" (reading the source) before the first recorded phase.
    if started is not None and (not starts or starts[0]["started"] > started):
        starts.insert(0, {"name": "open", "started": started})
    phases = []
    for index, entry in enumerate(starts):
        until = starts[index + 1]["started"] if index + 1 < len(starts) else end
        seconds = max(0.0, (until or entry["started"]) - entry["started"])
        phases.append(Phase(name=entry["name"], seconds=round(seconds, 3)))
    elapsed = round(end - started, 3) if started is not None and end is not None else None
    outcome = _outcome_of_state(state, data.get("phase"), data.get("error_type"))
    return ConversionStatus(
        guest=data.get("guest", name), status_file=path, exists=True, state=state, phase=data.get("phase"),
        percent=data.get("percent"), error=data.get("error"), started=started, updated=updated,
        elapsed_seconds=elapsed, age_seconds=round(now - updated, 3) if updated is not None else None,
        phases=phases, outcome=outcome,
        failed_phase=data.get("phase") if outcome in ("blocked", "failed") else None,
        seconds=round(elapsed - _queued_seconds(phases), 3) if elapsed is not None else None,
        output_dir=data.get("output_dir"))


def _result_phases(result: dict[str, Any]) -> list[Phase] | None:
    phases = result.get("phases")
    if not isinstance(phases, list):
        return None
    return [Phase(name=str(p.get("name")), seconds=float(p.get("seconds") or 0.0)) for p in phases
            if isinstance(p, dict)]


def judge_conversion(status: ConversionStatus, result: dict[str, Any], *, check_mode: bool = False) -> ConversionStatus:
    """The status of a run that ended with ``result`` (convert_guest's, or async_status's for its job).

    The result says how the run ended, also when it wrote no status (an up-to-date output, a check-mode
    run, a failure before the status was started). The status file says when this run converted: its
    wall time then counts from the run's start (the result's phases leave out the appliance's start),
    else the result's phases add up to it; the time queued for a slot never counts.
    """
    run_phases = _result_phases(result)
    if result.get("failed"):
        outcome = "blocked" if result.get("error") == BLOCKED_ERROR else "failed"
    elif result.get("changed"):
        outcome = "planned" if check_mode else "converted"
    else:
        outcome = "up-to-date"
    failed = outcome in ("blocked", "failed")
    phases = run_phases if run_phases is not None else status.phases
    # The status file is this run's when the run converted, or failed, after opening its source.
    this_run = outcome in ("converted", "blocked", "failed") and run_phases is not None and len(run_phases) > 1
    wall = status.elapsed_seconds if this_run and status.elapsed_seconds is not None else sum(p.seconds for p in phases)
    output_dir = status.output_dir
    target = result.get("target")
    if output_dir is None and isinstance(target, dict) and target.get("xml_path"):
        output_dir = os.path.dirname(str(target["xml_path"]))
    return dataclasses.replace(
        status, outcome=outcome, seconds=round(wall - _queued_seconds(phases), 3), output_dir=output_dir,
        failed_phase=(result.get("phase") or (status.phase if status.exists else None) or "open") if failed else None,
        error=(result.get("msg") or "failed") if failed else status.error)


@dataclass
class StatusQuery:
    """conversion_status's options."""

    name: str
    work_dir: str = DEFAULT_WORK_DIR
    must_exist: bool = False
    wait_seconds: int = 0
    watch: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None


# What a status that does not exist still says.
_ALWAYS = ("guest", "status_file", "exists", "phases", "outcome", "seconds")


def report_status(query: StatusQuery, *, check_mode: bool = False) -> dict[str, Any]:
    """conversion_status: wait (optionally) for a watched conversion to end, then read and judge the status."""
    if query.wait_seconds < 0:
        raise V2VError(f"wait_seconds must be 0 or more, not {query.wait_seconds}")
    waited: dict[str, Any] = {}
    if query.wait_seconds > 0:
        watched = [(query.work_dir, query.name)] + [
            (entry.get("work_dir") or query.work_dir, entry["name"]) for entry in query.watch]
        start = time.monotonic()
        waited["ended"] = wait_for_end(watched, query.wait_seconds)
        waited["waited_seconds"] = round(time.monotonic() - start, 3)
    path = status_path(query.work_dir, query.name)
    try:
        status = read_conversion_status(query.work_dir, query.name)
    except (OSError, ValueError) as exc:
        raise StatusError(f"cannot read the status of {query.name}: {exc}", status_file=path) from exc
    if query.must_exist and not status.exists:
        raise StatusError(f"{query.name}: no conversion status at {path}", status_file=path, subject=query.name,
                          hint="Check name and work_dir against the convert_guest task")
    if query.result is not None:
        status = judge_conversion(status, query.result, check_mode=check_mode)
    data = {k: v for k, v in status.to_dict().items()
            if status.exists or k in _ALWAYS or (v is not None and k in ("error", "failed_phase", "output_dir"))}
    return {"changed": False, **data, **waited}


def _final_stamp(work_dir: str, name: str) -> float | None:
    """When the status of ``name`` was last written, if it is in a final state (None: running or absent)."""
    try:
        data = read_status(status_path(work_dir, name))
    except (FileNotFoundError, ValueError):
        return None  # not started yet, or a reader racing a writer that is not atomic (never ours)
    if data.get("state") not in FINAL_STATES:
        return None
    return float(data.get("updated") or 0.0)


def wait_for_end(watched: list[tuple[str, str]], timeout: float, *, interval: float = 1.0) -> list[str]:
    """Wait up to ``timeout`` seconds until one of the ``(work_dir, name)`` conversions ends.

    A conversion ends when its status turns final (done, failed, check) or,
    if it already was final when the wait began (a previous run's status),
    when it is written again in a final state. Returns the names that ended,
    as soon as there is one; empty when the time ran out.
    """
    before = {entry: _final_stamp(*entry) for entry in watched}
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        ended = []
        for entry in watched:
            stamp, previous = _final_stamp(*entry), before[entry]
            if stamp is not None and (previous is None or stamp > previous):
                ended.append(entry[1])
        if ended:
            return ended
        left = deadline - time.monotonic()
        if left <= 0:
            return []
        time.sleep(min(interval, left))
