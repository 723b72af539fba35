"""Jobs and their state machine.

A Job records one governed execution. Its status moves only through the methods
below, each a conditional UPDATE (``WHERE status = <expected>``), so two workers
can never both run one job and a stale copy can never overwrite a newer state:

    PENDING -> RUNNING -> SUCCESS | FAILED
    PENDING -> FAILED              (the job can never start)

A job run synchronously by the request that creates it starts life RUNNING
(``JobQuerySet.start_new``): nobody else could see it while PENDING, so the
claim is the insert itself, and one statement less per request.

The claim, the load of a claimed job and the finishing update are plain SQL:
on the 2-core reference machine the ORM spent 0.3-0.7 ms compiling each of
them against ~0.03 ms for the statement itself, which capped the background
worker (bench/worker_throughput.py). Values go through each field's own
``get_db_prep_value``/``from_db_value``, so SQLite and PostgreSQL agree.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connections, models
from django.utils import timezone


def _sql(template: str) -> str:
    return template.format(table=Job._meta.db_table)


def _prep(field_name: str, value: Any, connection: Any) -> Any:
    """A value as the field would send it to this database (UUIDs, JSON)."""
    field = Job._meta.get_field(field_name)
    return field.get_db_prep_value(value, connection)  # type: ignore[union-attr]


class JobStatus(models.TextChoices):
    PENDING = "PENDING", "Pending"
    RUNNING = "RUNNING", "Running"
    SUCCESS = "SUCCESS", "Success"
    FAILED = "FAILED", "Failed"


ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset({JobStatus.SUCCESS, JobStatus.FAILED}),
    JobStatus.SUCCESS: frozenset(),
    JobStatus.FAILED: frozenset(),
}


class IllegalJobTransition(Exception):
    """A status change the state machine does not allow, or lost to a concurrent change."""


class JobQuerySet(models.QuerySet["Job"]):
    def visible_to(self, user: Any) -> JobQuerySet:
        """Staff see every job; everybody else sees their own."""
        if getattr(user, "is_staff", False):
            return self
        return self.filter(requested_by=user)

    def start_new(self, **fields: Any) -> Job:
        """Insert a job already claimed by its creator (RUNNING, started now)."""
        now = timezone.now()
        return self.create(**fields, status=JobStatus.RUNNING, created_at=now, started_at=now)

    def claim(self, job_id: uuid.UUID | str) -> datetime | None:
        """Move PENDING -> RUNNING and return the start time; None if it was not PENDING."""
        started_at = timezone.now()
        connection = connections[self.db]
        with connection.cursor() as cursor:
            cursor.execute(
                _sql(
                    "UPDATE {table} SET status = %s, started_at = %s WHERE id = %s AND status = %s"
                ),
                [
                    JobStatus.RUNNING,
                    connection.ops.adapt_datetimefield_value(started_at),
                    _prep("id", job_id, connection),
                    JobStatus.PENDING,
                ],
            )
            return started_at if cursor.rowcount else None

    def claim_for_run(self, job_id: uuid.UUID | str) -> Job | None:
        """Claim a PENDING job and load what running it needs; None if not claimed.

        The other fields of the returned job load lazily on first access.
        """
        try:
            pk = uuid.UUID(str(job_id))
        except ValueError:
            return None
        started_at = self.claim(pk)
        if started_at is None:
            return None
        connection = connections[self.db]
        with connection.cursor() as cursor:
            cursor.execute(
                _sql("SELECT plugin_name, input_payload FROM {table} WHERE id = %s"),
                [_prep("id", pk, connection)],
            )
            plugin_name, raw_payload = cursor.fetchone()
        payload_field: Any = Job._meta.get_field("input_payload")
        loaded = {
            "id": pk,
            "plugin_name": plugin_name,
            "input_payload": payload_field.from_db_value(raw_payload, None, connection),
            "status": JobStatus.RUNNING,
            "started_at": started_at,
        }
        # from_db wants the values in field order; the fields left out stay deferred.
        names = [f.attname for f in Job._meta.concrete_fields if f.attname in loaded]
        return Job.from_db(self.db, names, [loaded[name] for name in names])


class Job(models.Model):
    """One execution of one plugin, with its input, outcome and timings."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    plugin_name = models.CharField(max_length=200)
    plugin_version = models.CharField(max_length=100, blank=True, default="")
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.PENDING)
    input_payload = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(
        null=True, blank=True, help_text="The error envelope, traceback (_internal) included."
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    elapsed_ms = models.FloatField(null=True, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["-created_at"], name="job_created_idx"),
            models.Index(fields=["status", "-created_at"], name="job_status_created_idx"),
            models.Index(fields=["plugin_name", "-created_at"], name="job_plugin_created_idx"),
            models.Index(fields=["requested_by", "-created_at"], name="job_owner_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.short_id} {self.plugin_name} {self.status}"

    @property
    def short_id(self) -> str:
        return self.id.hex[:8]

    @property
    def error_type(self) -> str | None:
        return (self.error or {}).get("error", {}).get("type")

    @property
    def public_error(self) -> dict[str, Any] | None:
        """The part of the stored envelope a client may see (no traceback)."""
        return (self.error or {}).get("error")

    # State machine --------------------------------------------------------------

    def claim(self) -> bool:
        """PENDING -> RUNNING. False, and nothing runs, if the job is no longer PENDING."""
        if self.status != JobStatus.PENDING:
            return False
        started_at = Job.objects.claim(self.pk)
        if started_at is None:
            self.refresh_from_db(fields=["status", "started_at"])
            return False
        self.status, self.started_at = JobStatus.RUNNING, started_at
        return True

    def mark_succeeded(self, result: dict[str, Any]) -> None:
        """RUNNING -> SUCCESS with the plugin's result."""
        self._finish(JobStatus.SUCCESS, result=result, error=None)

    def mark_failed(self, error: dict[str, Any]) -> None:
        """RUNNING -> FAILED, or PENDING -> FAILED when the job can never start."""
        self._finish(JobStatus.FAILED, result=None, error=error)

    def _finish(self, target: str, *, result: Any, error: Any) -> None:
        expected = self.status
        self._check(target)
        finished_at = timezone.now()
        elapsed_ms = (
            (finished_at - self.started_at).total_seconds() * 1000.0 if self.started_at else None
        )
        connection = connections[Job.objects.db]
        with connection.cursor() as cursor:
            cursor.execute(
                _sql(
                    "UPDATE {table} SET status = %s, result = %s, error = %s, finished_at = %s, "
                    "elapsed_ms = %s WHERE id = %s AND status = %s"
                ),
                [
                    target,
                    _prep("result", result, connection),
                    _prep("error", error, connection),
                    connection.ops.adapt_datetimefield_value(finished_at),
                    elapsed_ms,
                    _prep("id", self.pk, connection),
                    expected,
                ],
            )
            updated = cursor.rowcount
        if not updated:
            current = Job.objects.filter(pk=self.pk).values_list("status", flat=True).first()
            raise IllegalJobTransition(
                f"Job {self.pk} is {current}, not {expected}: it changed concurrently"
            )
        self.status, self.result, self.error = target, result, error
        self.finished_at, self.elapsed_ms = finished_at, elapsed_ms

    def _check(self, target: str) -> None:
        if target not in ALLOWED_TRANSITIONS[self.status]:
            raise IllegalJobTransition(f"Job {self.pk}: {self.status} -> {target} is not allowed")
