"""Lease recovery: no job stays RUNNING after the process running it is gone.

A RUNNING job's lease ends at its start + its plugin's time limit + a grace, by
which time its executor has either recorded the outcome or died. Any web
process or worker recovers expired leases: the job goes back to PENDING for
another attempt (after an exponential backoff) if its plugin allows more, else it
FAILS with WorkerLost. django-tasks-db's row of the lost task, left RUNNING by
its dead worker, is marked FAILED with the same reason.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.utils import timezone
from django_tasks_db.compat import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from execution.metrics import LEASES_RECOVERED
from execution.models import IllegalJobTransition, Job
from execution.services.job_execution_service import JobExecutionService
from plugins.errors.error_envelope import ErrorEnvelope, ErrorType, build_error_envelope

logger = logging.getLogger(__name__)

BATCH_SIZE = 100


class LostWorker(Exception):
    """Recorded on django-tasks-db's row of a task whose worker was lost."""


class LeaseRecoveryService:
    def __init__(self, jobs: JobExecutionService | None = None) -> None:
        self._jobs = jobs if jobs is not None else JobExecutionService()

    def recover_expired(self, now: datetime | None = None) -> list[Job]:
        """Recover every RUNNING job whose lease ended before ``now``; returns them."""
        now = now or timezone.now()
        recovered = []
        for job in Job.objects.expired_leases(now).defer("input_payload", "result")[:BATCH_SIZE]:
            try:
                self._recover(job, now)
            except IllegalJobTransition:
                continue  # it finished, or another process recovered it first
            recovered.append(job)
        return recovered

    def _recover(self, job: Job, now: datetime) -> None:
        error = _worker_lost(job, now)
        lost_task_id = job.task_id
        with transaction.atomic():
            if job.attempt < job.max_attempts:
                self._jobs.requeue_job(job, error, retry=True)
                outcome = "retried"
            else:
                job.mark_failed(dict(error))
                outcome = "failed"
            if lost_task_id:
                DBTaskResult.objects.filter(
                    pk=lost_task_id, status=TaskResultStatus.RUNNING
                ).update(
                    status=TaskResultStatus.FAILED,
                    finished_at=now,
                    exception_class_path=f"{LostWorker.__module__}.{LostWorker.__qualname__}",
                    traceback=error["error"]["message"],
                )
        LEASES_RECOVERED.labels(outcome=outcome).inc()
        logger.warning("Recovered job %s from a lost worker: %s", job.pk, outcome)


def _worker_lost(job: Job, now: datetime) -> ErrorEnvelope:
    return build_error_envelope(
        ErrorType.WORKER_LOST,
        "The process running this job went away before it finished",
        details={
            "lease_holder": job.lease_holder,
            "lease_expired_at": job.lease_expires_at.isoformat() if job.lease_expires_at else None,
            "attempt": job.attempt,
            "max_attempts": job.max_attempts,
        },
        plugin=job.plugin_name,
    )


class LeaseMonitor:
    """A daemon thread that recovers expired leases every ``JOB_RECOVERY_INTERVAL_S``.

    One per process that serves requests or runs jobs, so recovery needs no
    operator and no extra process; the conditional updates make several of them
    safe. A database outage is logged and waited out.
    """

    _lock = threading.Lock()
    _started_in: int | None = None

    @classmethod
    def ensure_started(cls) -> None:
        """Start this process's monitor unless it runs already or recovery is off."""
        import os

        interval = settings.JOB_RECOVERY_INTERVAL_S
        if interval <= 0 or cls._started_in == os.getpid():
            return
        with cls._lock:
            if cls._started_in == os.getpid():
                return
            cls._started_in = os.getpid()
        thread = threading.Thread(
            target=cls._run, args=(interval,), name="job-lease-monitor", daemon=True
        )
        thread.start()

    @staticmethod
    def _run(interval: float) -> None:
        service = LeaseRecoveryService()
        stop = threading.Event()
        while not stop.wait(interval):
            try:
                service.recover_expired()
            except DatabaseError:
                logger.warning("Lease recovery skipped: the database is unavailable")
            except Exception:
                logger.exception("Lease recovery failed")
            finally:
                close_old_connections()
                connection.close()
