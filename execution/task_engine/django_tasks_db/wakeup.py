"""How an idle ``db_worker`` learns that a task was queued: a notification, else its poll.

On PostgreSQL every enqueue sends ``NOTIFY governed_task_queued`` in the
transaction that inserts the task row, so the database delivers it when, and
only if, that row is committed. Each idle worker LISTENs on a connection of its
own and wakes as soon as a task it could run is queued; a delayed task wakes it
when the task falls due, not before. Polling every ``--interval`` stays the
fallback for whatever a notification cannot cover: one sent while the listen
connection was down, a database restart. A lost listen connection is opened
again (with a growing pause), and the worker polls once after every (re)connect,
since notifications sent in between are gone.

SQLite has no notifications: there a worker finds a queued task at its next
poll, at most ``--interval`` later. ``JOB_NOTIFY_WORKERS = False`` gives the same
on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import os
import selectors
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connections
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from execution.clock import database_now

if TYPE_CHECKING:  # psycopg is the "postgres" extra; imported where PostgreSQL is used
    import psycopg

# The worker's logger (worker.py), so that these lines show with its own at its -v.
logger = logging.getLogger("django_tasks_db")

CHANNEL = "governed_task_queued"
RECONNECT_FIRST_PAUSE_S = 0.5
RECONNECT_MAX_PAUSE_S = 30.0
POLLING = "No task queued within %.1f s: polling"
# Probes after 30 s of silence, every 10 s: a dead peer is noticed within a minute.
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
# The listen connection's name in pg_stat_activity (followed by the worker's id).
APPLICATION_NAME = "db_worker listen"


@dataclass(frozen=True)
class QueuedTask:
    """What a notification says about a queued task: where it is, and when it may run."""

    backend_name: str
    queue_name: str
    run_after: datetime | None  # None: at once


def notifies(using: str) -> bool:
    """Whether enqueues on database ``using`` notify workers (and workers listen)."""
    return bool(settings.JOB_NOTIFY_WORKERS) and connections[using].vendor == "postgresql"


def notify_task_queued(using: str, task: QueuedTask) -> None:
    """Tell the workers listening on database ``using`` that ``task`` was queued.

    Call it in the transaction that inserts the task row: PostgreSQL delivers
    the notification at that transaction's commit, and drops it on a rollback.
    Nothing on SQLite (workers poll there).
    """
    if not notifies(using):
        return
    payload = {
        "backend": task.backend_name,
        "queue": task.queue_name,
        "run_after": task.run_after.isoformat() if task.run_after is not None else None,
    }
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, json.dumps(payload)])


def _parse(payload: str) -> QueuedTask | None:
    try:
        data = json.loads(payload)
        run_after = parse_datetime(data["run_after"]) if data.get("run_after") else None
        return QueuedTask(str(data["backend"]), str(data["queue"]), run_after)
    except (ValueError, KeyError, TypeError):
        return None


@dataclass
class WakeupCounts:
    """Why each wait ended; the worker's idle life in numbers (and its DEBUG lines)."""

    notified: int = 0  # a task it can run was queued
    fell_due: int = 0  # a delayed task it was told of falls due
    timed_out: int = 0  # the poll interval passed
    connected: int = 0  # the listen connection was opened (the first time, and again)
    lost: int = 0  # the listen connection broke
    interrupted: int = 0  # the worker is stopping


class Wakeup:
    """Waits between a worker's polls: the whole interval, unless the worker stops.

    The plain sleep (SQLite, or notifications off), but one that :meth:`interrupt`
    ends from a signal handler, so that a stopping worker does not first sleep
    out a long ``--interval``.
    """

    def __init__(self) -> None:
        self.counts = WakeupCounts()
        self._interrupt_read, self._interrupt_write = os.pipe()
        os.set_blocking(self._interrupt_read, False)
        os.set_blocking(self._interrupt_write, False)
        # Not select.select(): a worker's descriptors may number past its FD_SETSIZE.
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._interrupt_read, selectors.EVENT_READ)

    @classmethod
    def for_connection(
        cls,
        using: str,
        *,
        wanted: Callable[[QueuedTask], bool] = lambda task: True,
        name: str = "",
    ) -> Wakeup:
        """The wakeup for a worker of database ``using``: notified on PostgreSQL, else plain.

        ``wanted``: whether the worker could run a task (its backend and queues);
        notifications of others do not wake it. ``name`` names the listen
        connection (the worker's id).
        """
        if notifies(using):
            return NotifiedWakeup(using, wanted=wanted, name=name)
        return cls()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True if a task may be ready before then."""
        logger.debug("Waiting for work, up to %.1f s", timeout)
        if self._select(timeout):
            return self._interrupted()
        self.counts.timed_out += 1
        logger.debug(POLLING, timeout)
        return False

    def interrupt(self) -> None:
        """End the current (or next) wait at once; safe in a signal handler."""
        with contextlib.suppress(OSError):  # the pipe is full (already interrupted) or closed
            os.write(self._interrupt_write, b"x")

    def close(self) -> None:
        self._selector.close()
        for fd in (self._interrupt_read, self._interrupt_write):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _select(self, timeout: float) -> set[int]:
        """The registered descriptors readable within ``timeout`` (none: empty)."""
        return {key.fd for key, _ in self._selector.select(max(0.0, timeout))}

    def _interrupted(self) -> bool:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._interrupt_read, 64):
                pass
        self.counts.interrupted += 1
        return False


@dataclass(order=True)
class _Due:
    at: float  # time.monotonic()
    task: QueuedTask = field(compare=False)


class NotifiedWakeup(Wakeup):
    """Waits on PostgreSQL: LISTEN on a connection of its own, the poll interval as a bound."""

    def __init__(self, using: str, *, wanted: Callable[[QueuedTask], bool], name: str = "") -> None:
        super().__init__()
        self._using = using
        self._wanted = wanted
        self._application_name = f"{APPLICATION_NAME} {name}".strip()[:63]
        self._connection: psycopg.Connection[Any] | None = None
        self._fd = -1  # the listen connection's socket, while it listens
        self._connect_at = 0.0  # time.monotonic() of the next attempt to (re)connect
        self._pause = RECONNECT_FIRST_PAUSE_S
        self._due: list[_Due] = []  # delayed tasks it was told of, soonest first

    @property
    def listening(self) -> bool:
        return self._connection is not None

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            now = time.monotonic()
            if self._connection is None and now >= self._connect_at and self._connect():
                return True  # what was queued while it did not listen is found by a poll
            if self._due and self._due[0].at <= now:
                self._pop_due(now)
                return True
            if now >= deadline:
                self.counts.timed_out += 1
                logger.debug(POLLING, timeout)
                return False
            wake_at = min(deadline, self._due[0].at if self._due else deadline)
            if self._connection is None:
                wake_at = min(wake_at, self._connect_at)
            if not announced:
                logger.debug("Waiting for work, up to %.1f s", wake_at - now)
                announced = True
            readable = self._select(wake_at - now)
            if self._interrupt_read in readable:
                return self._interrupted()
            if readable and self._received():
                return True

    def close(self) -> None:
        self._disconnect()
        super().close()

    def _connect(self) -> bool:
        """Open the listen connection; whether it now listens (if not, try again later)."""
        import psycopg

        params = connections[self._using].get_connection_params()
        params.update(autocommit=True, application_name=self._application_name)
        params.setdefault("connect_timeout", 5)
        # An idle listener sends nothing: TCP keepalives find a silently cut connection.
        for option, value in KEEPALIVES.items():
            params.setdefault(option, value)
        connection = None
        try:
            connection = psycopg.connect(**params)
            connection.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            if connection is not None:
                connection.close()
            self._connect_at = time.monotonic() + self._pause
            logger.log(
                logging.WARNING if self._pause == RECONNECT_FIRST_PAUSE_S else logging.DEBUG,
                "Cannot listen for queued tasks (%s); polling meanwhile, trying again in %.1f s",
                _first_line(exc),
                self._pause,
            )
            self._pause = min(self._pause * 2, RECONNECT_MAX_PAUSE_S)
            return False
        self._connection, self._pause = connection, RECONNECT_FIRST_PAUSE_S
        self._fd = connection.fileno()
        self._selector.register(self._fd, selectors.EVENT_READ)
        self.counts.connected += 1
        logger.info(
            "Listening for queued tasks (PostgreSQL NOTIFY %s)%s",
            CHANNEL,
            " again" if self.counts.connected > 1 else "",
        )
        return True

    def _disconnect(self) -> None:
        import psycopg

        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self._fd)
            with contextlib.suppress(psycopg.Error):
                connection.close()

    def _received(self) -> bool:
        """Read what arrived; whether a task it can run is ready now."""
        import psycopg

        assert self._connection is not None
        try:
            received = list(self._connection.notifies(timeout=0))
        except psycopg.Error as exc:
            self.counts.lost += 1
            logger.warning(
                "Lost the connection that listens for queued tasks (%s); polling, and listening "
                "again",
                _first_line(exc),
            )
            self._disconnect()
            self._connect_at = time.monotonic()
            return True  # poll now: the same outage may have hidden a notification
        ready = False
        now = time.monotonic()
        for notification in received:
            task = _parse(notification.payload)
            if task is None or not self._wanted(task):
                continue
            due_in = _due_in(task.run_after)
            if due_in <= 0:
                ready = True
            else:
                heapq.heappush(self._due, _Due(now + due_in, task))
                logger.debug("A queued task falls due in %.1f s", due_in)
        if ready:
            self.counts.notified += 1
            logger.debug("Woken by a queued task")
        return ready

    def _pop_due(self, now: float) -> None:
        while self._due and self._due[0].at <= now:
            heapq.heappop(self._due)
        self.counts.fell_due += 1
        logger.debug("Woken: a delayed task falls due")


def _due_in(run_after: datetime | None) -> float:
    """Seconds until ``run_after``, on both clocks that decide a task is ready.

    The worker compares a task's ``run_after`` with its own clock, a job's next
    attempt with the database's: it wakes when both agree, or it would look too early.
    """
    if run_after is None:
        return 0.0
    return max(
        (run_after - database_now()).total_seconds(),
        (run_after - timezone.now()).total_seconds(),
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
