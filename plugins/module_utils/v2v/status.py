# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``status.json``: the progress of one guest's run, readable while it runs.

Written atomically (temporary name, then rename) so a reader never sees half
a file. A follow-up task (or ``async_status`` user) reads it to show the
current phase and the copy percentage.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Phase, Serializable

STATUS_FILE = "status.json"
LOG_FILE = "conversion.log"
# States a run ends in; "running" is the only one that still changes.
FINAL_STATES = ("done", "failed", "check")


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

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES


def read_conversion_status(work_dir: str, name: str, *, now: float | None = None) -> ConversionStatus:
    """Read the status of ``name`` under ``work_dir``; a guest without one has ``exists: false``.

    A phase lasts until the next one starts; the current phase of a running
    guest until ``now``, of a finished one until the last update.
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
    return ConversionStatus(
        guest=data.get("guest", name), status_file=path, exists=True, state=state, phase=data.get("phase"),
        percent=data.get("percent"), error=data.get("error"), started=started, updated=updated,
        elapsed_seconds=round(end - started, 3) if started is not None and end is not None else None,
        age_seconds=round(now - updated, 3) if updated is not None else None, phases=phases)


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
