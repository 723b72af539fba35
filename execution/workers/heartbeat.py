"""The ``db_worker``'s heartbeat: one cheap UPDATE per beat, always on the database's clock.

A worker beats when it starts, and every ``WORKER_HEARTBEAT_S`` from a background
thread (so a long job does not make a busy worker look dead). Taking a job and
ending one change the row too, but are not written one by one: a worker that ends
a job every few milliseconds would spend a quarter of each on its own row. They
wake the thread, which writes the latest state at once and then gathers the next
changes for ``CHANGES_GATHERED_S``. A clean exit writes what is left and marks the
row stopped; a killed worker simply stops beating, and after ``WORKER_STALE_S`` it
counts as gone (:func:`execution.workers.selectors.live_workers`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid

from django.conf import settings
from django.db import DatabaseError, connections
from django.db.models import F, Subquery
from django.db.models.expressions import RawSQL

from execution.clock import now_sql
from execution.models import Job
from execution.sql import commit_without_flush
from execution.workers.models import WorkerHeartbeat

logger = logging.getLogger(__name__)

# After writing a change, the thread waits this long before the next write: a busy
# worker's row is at most this much behind, and written a few times a second at most.
CHANGES_GATHERED_S = 0.25


def _db_now() -> RawSQL:
    return RawSQL(now_sql(connections[WorkerHeartbeat.objects.db]), [])


def _job_of(task_id: uuid.UUID | str) -> Subquery:
    return Subquery(Job.objects.filter(task_id=task_id).values("pk")[:1])


class Heartbeat:
    """The heartbeat of this worker process, under its ``worker_id``."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The tasks it runs now, latest last: a worker runs up to WORKER_CONCURRENCY at once.
        self._running: list[str] = []
        self._done_unwritten = 0
        self._running_lock = threading.Lock()
        self._changed = threading.Event()

    def start(self) -> None:
        """Write this worker's row (a restarted worker of the same id starts afresh) and beat."""
        host, pid = socket.gethostname(), os.getpid()
        restarted = WorkerHeartbeat.objects.filter(pk=self.worker_id).update(
            host=host,
            pid=pid,
            started_at=_db_now(),
            beat_at=_db_now(),
            current_job=None,
            jobs_done=0,
            stopped_at=None,
        )
        if not restarted:
            WorkerHeartbeat.objects.create(id=self.worker_id, host=host, pid=pid)
        self._thread = threading.Thread(
            target=self._beat_forever, name="worker-heartbeat", daemon=True
        )
        self._thread.start()

    def job_started(self, task_id: uuid.UUID | str) -> None:
        """The worker took the task ``task_id``: its job is the current one."""
        with self._running_lock:
            self._running.append(str(task_id))
        self._changed.set()

    def job_finished(self, task_id: uuid.UUID | str | None = None) -> None:
        """The task ``task_id`` (None: the only one) ended; the current job is another it runs."""
        with self._running_lock:
            if task_id is None:
                self._running.clear()
            elif str(task_id) in self._running:
                self._running.remove(str(task_id))
            self._done_unwritten += 1
        self._changed.set()

    def beat(self) -> None:
        self._update(beat_at=_db_now())

    def write_changes(self) -> None:
        """Write the current job and the jobs done since the last write (the thread's work)."""
        with self._running_lock:  # held while writing: the last write is the last state
            self._changed.clear()
            current = _job_of(self._running[-1]) if self._running else None
            done, self._done_unwritten = self._done_unwritten, 0
            values: dict[str, object] = {"beat_at": _db_now(), "current_job": current}
            if done:
                values["jobs_done"] = F("jobs_done") + done
            if not self._update(flush=False, **values):
                self._done_unwritten += done  # counted at the next write
                self._changed.set()

    def stop(self) -> None:
        """A clean exit: the row says so, and the worker no longer counts as live."""
        self._stop.set()
        self._changed.set()  # wakes the thread
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._running_lock:
            done, self._done_unwritten = self._done_unwritten, 0
        # One UPDATE: the jobs done since the last write, and the row marked stopped.
        now = _db_now()
        values: dict[str, object] = {"beat_at": now, "stopped_at": now, "current_job": None}
        if done:
            values["jobs_done"] = F("jobs_done") + done
        self._update(flush=True, **values)

    def _update(self, *, flush: bool = True, **values: object) -> bool:
        """Write the row; ``flush=False``: the commit does not wait for the disk (PostgreSQL).

        Changes are written so: one lost in a database crash misleads nobody for
        long, and no job waits for an fsync of its worker's row.
        """
        # Never let the heartbeat break the worker: an outage is the worker loop's to report.
        try:
            with contextlib.nullcontext() if flush else commit_without_flush():
                WorkerHeartbeat.objects.filter(pk=self.worker_id).update(**values)
        except DatabaseError as exc:
            logger.debug("Heartbeat not written: %s", exc)
            return False
        return True

    def _beat_forever(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._changed.wait(settings.WORKER_HEARTBEAT_S):
                    self.beat()
                elif not self._stop.is_set():  # stop() writes the last changes itself
                    self.write_changes()
                    self._stop.wait(CHANGES_GATHERED_S)
        finally:
            connections.close_all()
