"""A running job's progress: the plugin's reports (plugins/progress.py), written throttled.

A plugin may report as often as it likes; its job's row is written at most
``1 / PROGRESS_WRITE_INTERVAL_S`` times a second, each time with the latest
report, so that a chatty plugin does not compete for the database's write lock
(SQLite has one) with claims, outcomes and heartbeats. A report made too soon is
held, not dropped: it is written when the window opens (the first opens half a
second into the run) (the thread that waits for
the execution asks every ``JOB_CANCEL_POLL_S`` at most), and one still held when the
execution ends is written with the job's outcome, in the same transaction.

Each write is one conditional UPDATE: it touches the job only while it is RUNNING
under the lease of the run that reported (a cancelled, recovered or re-attempted
job keeps what it has).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError

from execution.models import DatabaseNow, Job, JobStatus
from execution.sql import commit_without_flush
from plugins.progress import ProgressReport

logger = logging.getLogger(__name__)

PROGRESS_WRITE_INTERVAL_S = 0.5
"""At least this long between two progress writes of one job: 2 a second at most."""


def write_progress(*, job: Job, report: ProgressReport) -> bool:
    """Write ``report`` on ``job`` if it is still RUNNING under its lease; whether it was.

    On PostgreSQL the commit does not wait for the disk: a report lost in a crash
    is replaced by the next one, or by the outcome.
    """
    with commit_without_flush(Job.objects.db):
        updated = Job.objects.filter(
            pk=job.pk, status=JobStatus.RUNNING, lease_holder=job.lease_holder
        ).update(progress=report.as_json(), progress_updated_at=DatabaseNow())
    return bool(updated)


def progress_fields(report: ProgressReport, *, at: Any) -> dict[str, Any]:
    """The fields that record ``report`` as written at ``at``, for a caller's own UPDATE."""
    return {"progress": report.as_json(), "progress_updated_at": at}


class ProgressThrottle:
    """The latest report of one run, written at most once every ``interval_s``.

    Made when the run starts. ``offer`` may be called from any thread (a
    thread-isolated plugin reports from its own); ``write_due`` and ``close`` only
    from the thread that waits for the execution, whose database connection
    writes. ``clock`` is monotonic seconds.
    """

    def __init__(
        self,
        write: Callable[[ProgressReport], object],
        *,
        interval_s: float = PROGRESS_WRITE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._held: ProgressReport | None = None
        # The first window opens ``interval_s`` after the run starts: a run shorter than
        # that (most synchronous ones) writes its progress once, with its outcome.
        self._next_write_at = clock() + interval_s
        self._closed = False
        self._warned = False

    def offer(self, report: ProgressReport) -> None:
        """Hold ``report`` to be written (it replaces any held one); after ``close``, ignore it."""
        with self._lock:
            if not self._closed:
                self._held = report

    def write_due(self) -> None:
        """Write the held report if the window is open; a failed write waits for the next."""
        now = self._clock()
        with self._lock:
            report = self._held
            if report is None or self._closed or now < self._next_write_at:
                return
            self._held = None
            self._next_write_at = now + self._interval_s
        try:
            self._write(report)
        except DatabaseError as exc:  # progress is no reason to disturb the run
            with self._lock:
                if self._held is None:
                    self._held = report  # unless a newer one came meanwhile
            if not self._warned:
                logger.warning("Could not write a job's progress; it is tried again: %s", exc)
                self._warned = True

    def close(self) -> ProgressReport | None:
        """The execution ended: the report still held (the outcome writes it), if any."""
        with self._lock:
            self._closed = True
            report, self._held = self._held, None
        return report
