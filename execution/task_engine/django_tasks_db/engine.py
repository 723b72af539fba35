"""DjangoTasksDbEngine: jobs' tasks as django-tasks-db rows, in the jobs' own database.

A task row is inserted in the caller's transaction, so a job and its task
commit together; on PostgreSQL that transaction also notifies the idle workers
(wakeup.py), so that they start the task at once rather than at their next poll.
Lost-task recovery reads and writes those rows directly: a worker killed with
SIGKILL leaves its row RUNNING, and nothing else would end it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import models, router
from django_tasks_db.compat import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from execution.task_engine.base import TaskEngine
from execution.task_engine.django_tasks_db.wakeup import QueuedTask, notify_task_queued
from execution.tasks import deliver_callback_task, run_job_task

if TYPE_CHECKING:
    from execution.task_engine.base import WithTasks


class DjangoTasksDbEngine(TaskEngine):
    def enqueue(self, job_id: uuid.UUID, *, run_after: datetime | None = None) -> uuid.UUID:
        return self._enqueue(run_job_task, job_id, run_after)

    def enqueue_callback(
        self, job_id: uuid.UUID, *, run_after: datetime | None = None
    ) -> uuid.UUID:
        return self._enqueue(deliver_callback_task, job_id, run_after)

    @staticmethod
    def _enqueue(task: Any, job_id: uuid.UUID, run_after: datetime | None) -> uuid.UUID:
        task = task if run_after is None else task.using(run_after=run_after)
        result = task.enqueue(str(job_id))
        notify_task_queued(
            router.db_for_write(DBTaskResult),
            QueuedTask(result.backend, task.queue_name, run_after),
        )
        return uuid.UUID(result.id)

    def fail_lost_task(
        self, task_id: uuid.UUID, error: Exception, *, finished_at: datetime
    ) -> None:
        DBTaskResult.objects.filter(pk=task_id, status=TaskResultStatus.RUNNING).update(
            status=TaskResultStatus.FAILED,
            finished_at=finished_at,
            exception_class_path=f"{type(error).__module__}.{type(error).__qualname__}",
            traceback=str(error),
        )

    def with_lost_tasks(self, jobs: WithTasks, *, stale_before: datetime) -> WithTasks:
        live = DBTaskResult.objects.filter(pk=models.OuterRef("task_id")).filter(
            models.Q(status=TaskResultStatus.READY)
            | models.Q(status=TaskResultStatus.RUNNING, started_at__gte=stale_before)
        )
        return jobs.exclude(models.Exists(live))

    def prune_tasks(self, task_ids: list[uuid.UUID]) -> int:
        if not task_ids:
            return 0
        deleted, _ = DBTaskResult.objects.filter(pk__in=task_ids).delete()
        return deleted
