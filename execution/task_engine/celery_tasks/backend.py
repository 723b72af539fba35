"""CeleryBackend: a django-tasks backend whose tasks run on Celery workers.

Written on django-tasks' own ``BaseTaskBackend`` (docs/celery.md says why neither
django-tasks-celery nor django-tasks-fennel was used). What it adds to "send a
message" is what the project's promises need:

* the task is a ``CeleryTask`` row written in the caller's transaction, and its
  message goes to the broker only once that transaction commits, so a job and
  its task commit together (``TaskEngine.enqueue``), and a rolled-back job is
  never run;
* its id is a UUID (``Job.task_id``), which is also the Celery message's task id;
* a message the broker refuses leaves the row ``UNSENT``: lease recovery gives
  the job a new task at its next round, instead of the job waiting forever.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, TypeVar

from django.db import DatabaseError, transaction
from django_tasks import TaskResult, TaskResultStatus
from django_tasks.backends.base import BaseTaskBackend
from django_tasks.base import Task
from django_tasks.signals import task_enqueued
from django_tasks.utils import normalize_json
from typing_extensions import ParamSpec

from execution.task_engine.celery_tasks import RUN_TASK_NAME
from execution.task_engine.celery_tasks.models import CeleryTask, CeleryTaskStatus

logger = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")


class CeleryBackend(BaseTaskBackend):
    supports_defer = True
    supports_async_task = False
    supports_get_result = False
    supports_priority = False

    def enqueue(
        self,
        task: Task[P, T],
        args: P.args,  # type: ignore[valid-type]
        kwargs: P.kwargs,  # type: ignore[valid-type]
    ) -> TaskResult[T]:
        self.validate_task(task)
        task_id = uuid.uuid4()
        args, kwargs = normalize_json(list(args)), normalize_json(dict(kwargs))
        record = CeleryTask.objects.create(
            id=task_id,
            task_path=task.module_path,
            queue_name=task.queue_name,
            run_after=task.run_after,
        )
        message = {
            "args": [task.module_path, args, kwargs],
            "task_id": str(task_id),
            "eta": task.run_after,
            "queue": task.queue_name,
        }
        transaction.on_commit(lambda: send(message), using=CeleryTask.objects.db)
        result: TaskResult[T] = TaskResult(
            task=task,
            id=str(task_id),
            status=TaskResultStatus.READY,
            enqueued_at=record.enqueued_at,
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=result)
        return result


def send(message: dict[str, Any]) -> None:
    """Publish one task's message; a refusal marks its row UNSENT (recovery queues it again)."""
    from execution.task_engine.celery_tasks.app import app

    try:
        app.send_task(RUN_TASK_NAME, **message)
    except Exception as exc:  # kombu's connection errors have no common base worth naming
        logger.warning(
            "The broker did not take task %s (%s: %s); lease recovery will queue its job again",
            message["task_id"],
            type(exc).__name__,
            exc,
        )
        try:
            CeleryTask.objects.filter(pk=message["task_id"], status=CeleryTaskStatus.QUEUED).update(
                status=CeleryTaskStatus.UNSENT, error=f"{type(exc).__name__}: {exc}"
            )
        except DatabaseError:
            logger.warning("Task %s could not be marked unsent", message["task_id"])
