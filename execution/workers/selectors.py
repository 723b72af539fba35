"""Reads of the worker fleet: which workers are alive, and whether waiting jobs have one."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet

from execution.clock import database_now
from execution.models import Job, JobStatus
from execution.workers.models import WorkerHeartbeat


def live_workers() -> QuerySet[WorkerHeartbeat]:
    """Workers that have not stopped and beat within ``WORKER_STALE_S`` (the database's clock)."""
    since = database_now() - timedelta(seconds=settings.WORKER_STALE_S)
    return WorkerHeartbeat.objects.filter(stopped_at__isnull=True, beat_at__gte=since)


def is_alive(worker: WorkerHeartbeat) -> bool:
    since = database_now() - timedelta(seconds=settings.WORKER_STALE_S)
    return worker.stopped_at is None and worker.beat_at >= since


def workers_status() -> str:
    """``"ok"``, or why waiting jobs will not run: no worker beat within ``WORKER_STALE_S``."""
    if not Job.objects.filter(status=JobStatus.PENDING).exists():
        return "ok"
    if live_workers().exists():
        return "ok"
    return (
        f"no live worker: jobs are pending and no worker beat within "
        f"WORKER_STALE_S ({settings.WORKER_STALE_S:g} s)"
    )
