"""CeleryEngine: jobs' tasks as Celery messages, each with its ``CeleryTask`` row here.

The rows answer what the broker cannot cheaply: which tasks a dead worker took
(RUNNING since before the lease grace, or delayed and not started a grace after
their time), which ended without running their job, which the broker never took
(UNSENT). A message that comes back after its task
was given up (Redis redelivers an unacknowledged message once its visibility
timeout passes) finds its row FAILED and is skipped (``worker.run_django_task``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import models

from execution.task_engine.base import TaskEngine
from execution.task_engine.celery_tasks.models import CeleryTask, CeleryTaskStatus
from execution.tasks import deliver_callback_task, run_job_task

if TYPE_CHECKING:
    from execution.task_engine.base import WithTasks


class CeleryEngine(TaskEngine):
    def enqueue(self, job_id: uuid.UUID, *, run_after: datetime | None = None) -> uuid.UUID:
        task = run_job_task if run_after is None else run_job_task.using(run_after=run_after)
        return uuid.UUID(task.enqueue(str(job_id)).id)

    def enqueue_callback(
        self, job_id: uuid.UUID, *, run_after: datetime | None = None
    ) -> uuid.UUID:
        task = deliver_callback_task
        task = task if run_after is None else task.using(run_after=run_after)
        return uuid.UUID(task.enqueue(str(job_id)).id)

    def fail_lost_task(
        self, task_id: uuid.UUID, error: Exception, *, finished_at: datetime
    ) -> None:
        # UNSENT counts as left running: no worker will ever end it, and a late
        # message of it must not run the job its replacement runs.
        CeleryTask.objects.filter(
            pk=task_id, status__in=[CeleryTaskStatus.RUNNING, CeleryTaskStatus.UNSENT]
        ).update(
            status=CeleryTaskStatus.FAILED,
            finished_at=finished_at,
            error=f"{type(error).__module__}.{type(error).__qualname__}: {error}",
        )

    def with_lost_tasks(self, jobs: WithTasks, *, stale_before: datetime) -> WithTasks:
        # A delayed message (a retry, a job waiting for a capped plugin's slot) is held
        # by the worker that took it until its time: one not started a grace after it
        # was held by a worker that died (or is busy: another one may run the job).
        queued = models.Q(status=CeleryTaskStatus.QUEUED) & (
            models.Q(run_after__isnull=True) | models.Q(run_after__gte=stale_before)
        )
        live = CeleryTask.objects.filter(pk=models.OuterRef("task_id")).filter(
            queued | models.Q(status=CeleryTaskStatus.RUNNING, started_at__gte=stale_before)
        )
        return jobs.exclude(models.Exists(live))

    def prune_tasks(self, task_ids: list[uuid.UUID]) -> int:
        if not task_ids:
            return 0
        deleted, _ = CeleryTask.objects.filter(pk__in=task_ids).delete()
        return deleted
