"""Lease recovery: no job stays RUNNING, or PENDING, after the process running it is gone.

A RUNNING job's lease ends at its start + its plugin's time limit + a grace, by
which time its executor has either recorded the outcome or died. Any web
process or worker recovers expired leases: the job goes back to PENDING for
another attempt (after an exponential backoff) if its plugin allows more, else it
FAILS with WorkerLost. The task engine marks the lost task, left running by its
dead worker, failed with the same reason.

A worker can also die between taking a job's task and claiming the job: the job
is still PENDING but its task will never run it. Such a job gets a new task.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction

from execution import job_logs
from execution.callbacks.services import recover_lost_deliveries
from execution.clock import database_clock, database_now
from execution.metrics import LEASES_RECOVERED
from execution.models import IllegalJobTransition, Job, alters_data
from execution.policy.idempotency import purge_expired_keys
from execution.services.job_execution_service import JobExecutionService
from execution.task_engine import get_task_engine
from execution.task_engine.base import TaskEngine
from plugins.errors.error_envelope import ErrorEnvelope, ErrorType, build_error_envelope

logger = logging.getLogger(__name__)

BATCH_SIZE = 100


class LostWorker(Exception):
    """What the task engine records on a task whose worker was lost."""


class LeaseRecoveryService:
    def __init__(
        self, jobs: JobExecutionService | None = None, engine: TaskEngine | None = None
    ) -> None:
        self._engine = engine if engine is not None else get_task_engine()
        self._jobs = jobs if jobs is not None else JobExecutionService(engine=self._engine)

    @alters_data
    def recover(self) -> list[Job]:
        """Recover lost jobs: expired leases, then PENDING jobs whose task was lost."""
        return [*self.recover_expired(), *self.replace_lost_tasks()]

    @alters_data
    def replace_lost_tasks(self) -> list[Job]:
        """Give every PENDING job that no task will run a new task; returns them."""
        now = database_now()
        stale_before = now - timedelta(seconds=settings.JOB_LEASE_GRACE_S)
        replaced = []
        orphans = self._engine.with_lost_tasks(
            Job.objects.queued_before(stale_before), stale_before=stale_before
        ).only("id", "task_id", "status")
        for job in orphans[:BATCH_SIZE]:
            lost_task_id = job.task_id
            if self._jobs.replace_lost_task(job=job):
                self._fail_lost_task(lost_task_id, now, "The worker that took this task went away")
                LEASES_RECOVERED.labels(outcome="requeued").inc()
                logger.warning("Job %s lost its task; it was queued again", job.pk)
                replaced.append(job)
        return replaced

    @alters_data
    def recover_expired(self) -> list[Job]:
        """Recover every RUNNING job whose lease ended, on the database's clock; returns them."""
        now = database_now()
        recovered = []
        for job in Job.objects.expired_leases().defer("input_payload", "result")[:BATCH_SIZE]:
            try:
                self._recover(job, now)
            except IllegalJobTransition:
                continue  # it finished, or another process recovered it first
            recovered.append(job)
        return recovered

    def _recover(self, job: Job, now: datetime) -> None:
        with job_logs.job_log_context(job):
            error = _worker_lost(job)
            lost_task_id = job.task_id
            with transaction.atomic():
                if job.attempt < job.max_attempts:
                    self._jobs.requeue(job=job, error=error, retry=True)
                    outcome = "retried"
                else:
                    job.mark_lost(dict(error))
                    outcome = "failed"
                self._fail_lost_task(lost_task_id, now, error["error"]["message"])
            LEASES_RECOVERED.labels(outcome=outcome).inc()
            # The lost run's one line: a warning, with WorkerLost as its error type.
            job_logs.log_execution_outcome(
                job,
                job_logs.RETRIED if outcome == "retried" else job_logs.RECOVERED,
                error=error,
            )

    def _fail_lost_task(self, task_id: uuid.UUID | None, now: datetime, reason: str) -> None:
        if task_id is not None:
            self._engine.fail_lost_task(task_id, LostWorker(reason), finished_at=now)


def _worker_lost(job: Job) -> ErrorEnvelope:
    # Which host and process held it stays on the job for staff (lease_holder,
    # attempts); clients see when and which attempt.
    return build_error_envelope(
        ErrorType.WORKER_LOST,
        "The process running this job went away before it finished",
        details={
            "lease_expired_at": job.lease_expires_at.isoformat() if job.lease_expires_at else None,
            "attempt": job.attempt,
            "max_attempts": job.max_attempts,
        },
        plugin=job.plugin_name,
    )


class LeaseMonitor:
    """A daemon thread that recovers lost jobs every ``JOB_RECOVERY_INTERVAL_S``.

    One per process that serves requests or runs jobs, so recovery needs no
    operator and no extra process; the conditional updates make several of them
    safe. A database outage is logged once and waited out.
    """

    _lock = threading.Lock()
    _started_in: int | None = None

    @classmethod
    def ensure_started(cls) -> None:
        """Start this process's monitor unless it runs already or recovery is off."""
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
        database_down = False
        next_clock_check = 0.0
        while True:
            time.sleep(interval)
            try:
                if time.monotonic() >= next_clock_check:
                    database_clock.measure()
                    next_clock_check = time.monotonic() + settings.JOB_CLOCK_CHECK_INTERVAL_S
                service.recover()
                recover_lost_deliveries()  # completion callbacks whose task was lost
                purge_expired_keys()  # housekeeping of the same processes: at most once a minute
                database_down = False
            except DatabaseError:
                if not database_down:
                    logger.warning("Lost jobs cannot be recovered: the database is unavailable")
                database_down = True
            except Exception:
                logger.exception("Recovering lost jobs failed")
            finally:
                close_old_connections()
                connection.close()
