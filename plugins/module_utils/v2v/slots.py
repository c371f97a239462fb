# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Conversion slots: at most N conversions at once on a host, a sliding window.

Runs that share a slot directory and a limit take one of N lock files
(``slot-0.lock`` ... ``slot-<N-1>.lock``) with ``flock`` before they open
anything, and hold it until they end. The kernel drops a lock when its holder
exits, so a failed or killed run frees its slot without any cleanup, and the
next waiting run starts at once: one slow guest never holds back the others.

Waiting runs are served in the order they arrived (first come, first served):
each holds a ticket (``ticket-<n>.lock``, locked while it waits), and only the
waiter with the lowest live ticket may take a free slot. A conversion takes
its ticket when it starts (``SlotQueue.ticket``) and asks for a slot once it
has read its source (``Ticket.slot``), keeping its place meanwhile. A ticket whose lock
can be taken belongs to a run that is gone, and is removed. A short lock on
``queue.lock`` makes taking a ticket and looking at the queue atomic.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Phase

if TYPE_CHECKING:
    from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.pipeline import PhaseClock
    from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.status import StatusFile

SLOT_DIR_NAME = "kvmigrate-slots"
_POLL_SECONDS = 0.5
# A waiting run rewrites its status this often, so a reader can tell it from a killed run.
_HEARTBEAT_SECONDS = 5.0


def slot_dir_for(base: str) -> str:
    """The directory of the lock files under ``base`` (the work directory by default)."""
    return os.path.join(base, SLOT_DIR_NAME)


def _open_lock(path: str) -> IO[bytes]:
    # O_CLOEXEC (Python's default): tools started by the run do not inherit, and so cannot keep, the lock.
    return open(path, "a+b")  # held until the slot is released


def _try_lock(handle: IO[bytes]) -> bool:
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True


def _ticket_number(name: str) -> int | None:
    if name.startswith("ticket-") and name.endswith(".lock"):
        with contextlib.suppress(ValueError):
            return int(name[len("ticket-"):-len(".lock")])
    return None


class SlotQueue:
    """N slots in ``directory``, handed out first come, first served."""

    def __init__(self, directory: str, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"max_concurrent must be 1 or more (got {limit})")
        self.directory = directory
        self.limit = limit

    @contextlib.contextmanager
    def _queue_lock(self) -> Iterator[None]:
        with _open_lock(os.path.join(self.directory, "queue.lock")) as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            yield

    def _take_ticket(self) -> tuple[int, IO[bytes]]:
        with self._queue_lock():
            numbers = [n for n in map(_ticket_number, os.listdir(self.directory)) if n is not None]
            number = max(numbers, default=-1) + 1
            handle = _open_lock(os.path.join(self.directory, f"ticket-{number}.lock"))
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            return number, handle

    def _ahead(self, mine: int) -> int:
        """How many live waiters hold a lower ticket; removes the tickets of runs that are gone."""
        ahead = 0
        for name in os.listdir(self.directory):
            number = _ticket_number(name)
            if number is None or number >= mine:
                continue
            path = os.path.join(self.directory, name)
            try:
                handle = open(path, "rb")  # noqa: SIM115
            except FileNotFoundError:
                continue
            with handle:
                if _try_lock(handle):
                    os.unlink(path)  # its run ended without taking a slot (killed while waiting)
                else:
                    ahead += 1
        return ahead

    def _take_free_slot(self) -> tuple[int, IO[bytes]] | None:
        for index in range(self.limit):
            handle = _open_lock(os.path.join(self.directory, f"slot-{index}.lock"))
            if _try_lock(handle):
                return index, handle
            handle.close()
        return None

    @contextlib.contextmanager
    def ticket(self) -> Iterator[Ticket]:
        """A place in the queue, taken now; ``Ticket.slot`` waits for a slot from that place.

        A run takes its ticket when it starts and asks for its slot once it has
        opened its source, so runs are served in the order they started, not
        in the order their sources happened to open.
        """
        os.makedirs(self.directory, exist_ok=True)
        number, handle = self._take_ticket()
        ticket = Ticket(self, number, handle)
        try:
            yield ticket
        finally:
            ticket.release()

    @contextlib.contextmanager
    def hold(self, on_wait: Callable[[int], None] | None = None, *,
             poll_seconds: float = _POLL_SECONDS, heartbeat_seconds: float = _HEARTBEAT_SECONDS) -> Iterator[int]:
        """Take a ticket and wait for a slot at once (see ``Ticket.slot``)."""
        with self.ticket() as ticket, ticket.slot(on_wait, poll_seconds=poll_seconds,
                                                  heartbeat_seconds=heartbeat_seconds) as index:
            yield index


class Ticket:
    """One run's place in a ``SlotQueue`` (its locked ``ticket-<n>.lock``) until it takes a slot or gives up."""

    def __init__(self, queue: SlotQueue, number: int, handle: IO[bytes]) -> None:
        self.queue = queue
        self.number = number
        self._handle: IO[bytes] | None = handle
        self._path = os.path.join(queue.directory, f"ticket-{number}.lock")

    def release(self) -> None:
        """Leave the queue (after taking a slot, or without one); the next waiter moves up."""
        if self._handle is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)
        self._handle.close()
        self._handle = None

    @contextlib.contextmanager
    def slot(self, on_wait: Callable[[int], None] | None = None, *,
             poll_seconds: float = _POLL_SECONDS, heartbeat_seconds: float = _HEARTBEAT_SECONDS) -> Iterator[int]:
        """Wait for a slot (calling ``on_wait(waiters_ahead)`` now and then while waiting) and hold it.

        Yields the slot's index. The slot is freed when the block ends, however it ends;
        when the process dies, the kernel frees it. The ticket is given up either way.
        """
        if self._handle is None:
            raise ValueError("this ticket has been used or given up")
        slot: tuple[int, IO[bytes]] | None = None
        last_report = None
        try:
            while slot is None:
                with self.queue._queue_lock():  # pylint: disable=protected-access
                    ahead = self.queue._ahead(self.number)  # pylint: disable=protected-access
                    if ahead == 0:
                        slot = self.queue._take_free_slot()  # pylint: disable=protected-access
                    if slot is not None:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(self._path)
                if slot is not None:
                    break
                now = time.monotonic()
                if on_wait is not None and (last_report is None or now - last_report >= heartbeat_seconds):
                    on_wait(ahead)
                    last_report = now
                time.sleep(poll_seconds)
        finally:
            self.release()
        index, handle = slot
        try:
            yield index
        finally:
            handle.close()


@contextlib.contextmanager
def conversion_slot(limit: int | None, directory: str, status: StatusFile | None = None,
                    clock: PhaseClock | None = None, ticket: Ticket | None = None) -> Iterator[int | None]:
    """The slot of one conversion run: no limit (None) yields at once.

    ``ticket``: the run's place in the queue, taken when it started
    (``SlotQueue.ticket``); without one, the run queues from now.

    With a limit, the run's ``status.json`` says phase ``queued`` while it waits
    (rewritten every few seconds) and ``open`` once it has its slot, and the
    run's phase clock records the time spent queued as phase ``queued``.
    """
    if limit is None:
        yield None
        return
    started = time.monotonic()
    if status is not None:
        status.update(state="running")  # the first update starts the file (its "started" time) ...
        # ... and the run is queued from then on (no "open" phase before it).
        status.data["phases"].append({"name": "queued", "started": status.data["started"]})
        status.update(phase="queued", percent=None)

    def waiting(ahead: int) -> None:
        if status is not None:
            status.update(phase="queued", queued_ahead=ahead)

    with contextlib.ExitStack() as stack:
        if ticket is None:
            ticket = stack.enter_context(SlotQueue(directory, limit).ticket())
        index = stack.enter_context(ticket.slot(waiting))
        if clock is not None:
            clock.phases.append(Phase(name="queued", seconds=round(time.monotonic() - started, 3)))
        if status is not None:
            status.phase("open")
            status.update(slot=index, queued_ahead=0)
        yield index
