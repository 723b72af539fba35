"""JobCallback and CallbackAttempt: where a job's completion is to be POSTed, and each try.

A callback waits (WAITING) while its job runs. The transaction that makes the job
final makes the callback DUE and queues its delivery task (services.callback_due).
A delivery claims the callback (DUE -> DELIVERING, a conditional update), posts, and
ends it DELIVERED, or DUE again for a later attempt, or GAVE_UP once its time is over:
a delivered callback is never claimed again, by any worker.
"""

from __future__ import annotations

from django.db import models

from execution.clock import database_now

# A URL longer than this is refused at submit.
CALLBACK_URL_MAX_LENGTH = 2048


class CallbackState(models.TextChoices):
    WAITING = "WAITING", "waiting for the job to end"
    DUE = "DUE", "due"
    DELIVERING = "DELIVERING", "delivering"
    DELIVERED = "DELIVERED", "delivered"
    GAVE_UP = "GAVE_UP", "gave up"


class JobCallback(models.Model):
    """The completion callback of one job (at most one per job)."""

    job = models.OneToOneField(
        "execution.Job", primary_key=True, on_delete=models.CASCADE, related_name="callback"
    )
    url = models.CharField(max_length=CALLBACK_URL_MAX_LENGTH)
    state = models.CharField(
        max_length=10, choices=CallbackState.choices, default=CallbackState.WAITING
    )
    created_at = models.DateTimeField(default=database_now)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="While DUE: when the next attempt may start."
    )
    give_up_at = models.DateTimeField(
        null=True, blank=True, help_text="No attempt starts after this (CALLBACK_RETRY_FOR_S)."
    )
    claimed_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="While DELIVERING: past this, the delivery's worker is taken to be lost.",
    )
    attempt_count = models.PositiveIntegerField(
        default=0, help_text="Attempts started; the last one's number is the claim's token."
    )
    delivered_at = models.DateTimeField(null=True, blank=True)
    task_id = models.UUIDField(
        null=True, blank=True, help_text="The background task meant to make the next attempt."
    )

    class Meta:
        verbose_name = "job callback"
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="job_callback_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.url} ({self.state})"


class CallbackAttempt(models.Model):
    """One POST of a job's callback: when, how long, and what came back (or went wrong)."""

    callback = models.ForeignKey(JobCallback, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=database_now)
    duration_ms = models.FloatField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="The receiver's HTTP status; empty if none came."
    )
    error = models.CharField(
        max_length=500, blank=True, default="", help_text="Why the attempt failed, if it did."
    )
    task_id = models.UUIDField(
        null=True, blank=True, help_text="The background task that made it (pruned with the job)."
    )

    class Meta:
        ordering = ["callback", "number"]
        constraints = [
            models.UniqueConstraint(fields=["callback", "number"], name="callback_attempt_once"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number}: {self.status_code or self.error}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
