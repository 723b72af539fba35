"""A ``db_worker``'s heartbeat: who it is, what it runs, and when it last showed it was alive."""

from __future__ import annotations

from django.db import models

from execution.clock import database_now


class WorkerHeartbeat(models.Model):
    """One row per worker process, updated by the worker itself (execution/workers/heartbeat.py).

    ``beat_at`` is written with the database's clock, like leases, so whether a
    worker is alive is judged on one clock whichever machine asks.
    """

    id = models.CharField(primary_key=True, max_length=255, help_text="The worker's id")
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=database_now)
    beat_at = models.DateTimeField(default=database_now, db_index=True)
    current_job = models.UUIDField(null=True, blank=True, help_text="The job it is running")
    jobs_done = models.PositiveIntegerField(default=0)
    stopped_at = models.DateTimeField(
        null=True, blank=True, help_text="Set when the worker exited cleanly"
    )

    class Meta:
        ordering = ["-beat_at"]
        verbose_name = "worker"

    def __str__(self) -> str:
        return f"{self.id} ({self.host}:{self.pid})"
