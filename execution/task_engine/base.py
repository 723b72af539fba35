"""TaskEngine: what the project needs from a task queue, in the project's own terms.

Tasks are named by a UUID (``Job.task_id``); a job has at most one task meant
to run it at a time. Nothing here says how an engine stores tasks or which
states it knows: an engine is lost-task recovery's source of truth only
through :meth:`TaskEngine.with_lost_tasks`.
"""

from __future__ import annotations

import abc
import uuid
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from execution.models import JobQuerySet


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
        """Record task ``task_id`` as failed with ``error`` if a worker took it and is gone.

        A task that is still queued, or that ended, keeps its state.
        """

    @abc.abstractmethod
    def with_lost_tasks(self, jobs: JobQuerySet, *, stale_before: datetime) -> JobQuerySet:
        """Those of ``jobs`` whose task (``Job.task_id``) will never run them.

        Their task ended without running them (its worker died between taking
        it and claiming the job, or the database failed right then), or the
        engine no longer knows it. A task still queued, or taken since
        ``stale_before``, is live.
        """
