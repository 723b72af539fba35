"""CeleryTask: the Celery engine's record of each task, in the jobs' own database.

A broker says nothing cheap about one message (is it queued? was it taken and
lost?), so the engine keeps each task's state here, written in the transaction
that queues its job and by the worker that runs it. Lease recovery reads these
rows exactly as it reads django-tasks-db's: a task still queued, or started
recently, is live; any other will never run its job.
"""

from __future__ import annotations

from django.db import models

from execution.clock import database_now


class CeleryTaskStatus(models.TextChoices):
    QUEUED = "QUEUED", "queued"
    # The commit happened but the broker refused the message: the task is lost at once.
    UNSENT = "UNSENT", "not sent"
    RUNNING = "RUNNING", "running"
    SUCCESSFUL = "SUCCESSFUL", "successful"
    FAILED = "FAILED", "failed"


# A message for a task in one of these states may (still) run it: a redelivery of a
# task whose worker died before recording its end runs again; any other is skipped.
STARTABLE = (CeleryTaskStatus.QUEUED, CeleryTaskStatus.UNSENT, CeleryTaskStatus.RUNNING)


class CeleryTask(models.Model):
    """One task sent (or to be sent) to Celery; its id is the Celery message's task id."""

    id = models.UUIDField(primary_key=True, editable=False)
    task_path = models.CharField(max_length=255, help_text="The django-tasks task it runs")
    queue_name = models.CharField(max_length=100, default="default")
    status = models.CharField(
        max_length=10, choices=CeleryTaskStatus.choices, default=CeleryTaskStatus.QUEUED
    )
    enqueued_at = models.DateTimeField(default=database_now)
    run_after = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    deliveries = models.PositiveIntegerField(
        default=0, help_text="How many times a worker started it (more than 1: redelivered)"
    )
    worker_id = models.CharField(max_length=255, blank=True, default="")
    error = models.TextField(blank=True, default="")

    class Meta:
        verbose_name = "Celery task"

    def __str__(self) -> str:
        return f"{self.task_path} {self.pk} ({self.status})"
