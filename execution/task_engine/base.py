"""TaskEngine: what the project needs from a task queue, in the project's own terms.

A task is known by a UUID, kept on its job (``Job.task_id``). Nothing here says
how an engine stores its tasks or which states it gives them, so lease recovery
works alike on every engine, and a second engine is one more subclass named by
``settings.TASK_ENGINE``.
"""

from __future__ import annotations

import abc
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from django.db.models import QuerySet

    # Jobs, or any rows that keep their task's id in ``task_id`` (callbacks).
    WithTasks = TypeVar("WithTasks", bound=QuerySet[Any])


class TaskEngine(abc.ABC):
    @abc.abstractmethod
    def enqueue(self, job_id: uuid.UUID, *, run_after: datetime | None = None) -> uuid.UUID:
        """Queue a task that runs job ``job_id``, no earlier than ``run_after``; its id.

        Called inside the transaction that records the task on the job: the task
        must reach a worker only if that transaction commits.
        """

    @abc.abstractmethod
    def fail_lost_task(
        self, task_id: uuid.UUID, error: Exception, *, finished_at: datetime
    ) -> None:
        """Record task ``task_id``, whose worker is gone, as failed with ``error``.

        Only a task left running changes: one still queued, or one that ended,
        keeps its state.
        """

    @abc.abstractmethod
    def enqueue_callback(
        self, job_id: uuid.UUID, *, run_after: datetime | None = None
    ) -> uuid.UUID:
        """Queue a task that delivers job ``job_id``'s completion callback; its id.

        As :meth:`enqueue`: called in the transaction that makes the callback due,
        and the task reaches a worker only if it commits (execution/callbacks/).
        """

    @abc.abstractmethod
    def with_lost_tasks(self, jobs: WithTasks, *, stale_before: datetime) -> WithTasks:
        """Those of ``jobs`` whose task (``Job.task_id``) will never run them.

        Their task ended without running them (its worker died between taking
        it and claiming the job, or the database failed right then), or the
        engine no longer knows it. A task still queued, or taken since
        ``stale_before``, is live.
        """

    @abc.abstractmethod
    def prune_tasks(self, task_ids: list[uuid.UUID]) -> int:
        """Delete the engine's records of these tasks (their jobs are being pruned); how many.

        Called inside the transaction that deletes the jobs, one batch at a time.
        """
