"""Jobs and their audit entries made the way the services record them, for the audit tests.

Each state change and its entry commit in one transaction, the entry written
after the conditional UPDATE matched; the outcome's entry carries
details["metrics"] when the same transaction counted the execution.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from execution.audit.events import AuditEvent
from execution.audit.recorder import AuditRecord, payload_sha256, record, record_many
from execution.models import Job
from plugins.models import PluginMetrics

PLUGIN, VERSION = "echo", "1.0"


def submit(user: Any, payload: dict[str, Any] | None = None, plugin: str = PLUGIN) -> Job:
    payload = {"message": "hello"} if payload is None else payload
    with transaction.atomic():
        job = Job.objects.create(
            plugin_name=plugin, plugin_version=VERSION, input_payload=payload, requested_by=user
        )
        record(
            AuditEvent.JOB_SUBMITTED,
            job_id=job.pk,
            actor=user,
            plugin_name=plugin,
            plugin_version=VERSION,
            input_sha256=payload_sha256(payload),
        )
    return job


def start(job: Job) -> Job:
    with transaction.atomic():
        assert job.claim(
            lease_holder="test:1:abc", lease_expires_at=timezone.now() + timedelta(minutes=5)
        )
        record(
            AuditEvent.JOB_STARTED,
            job_id=job.pk,
            plugin_name=job.plugin_name,
            plugin_version=job.plugin_version,
        )
    return job


def succeed(job: Job, result: dict[str, Any] | None = None) -> Job:
    result = {"echoed": "hello"} if result is None else result
    with transaction.atomic():
        job.mark_succeeded(result)
        PluginMetrics.objects.record_execution(job.plugin_name, "AVAILABLE", 1.0, had_error=False)
        record(
            AuditEvent.JOB_FINISHED,
            job_id=job.pk,
            plugin_name=job.plugin_name,
            plugin_version=job.plugin_version,
            result_sha256=payload_sha256(result),
            details={"status": "SUCCESS", "metrics": "success"},
        )
    return job


def fail(job: Job, error_type: str = "PluginExecutionError") -> Job:
    with transaction.atomic():
        job.mark_failed({"error": {"type": error_type, "message": "boom", "details": {}}})
        PluginMetrics.objects.record_execution(job.plugin_name, "AVAILABLE", 1.0, had_error=True)
        record(
            AuditEvent.JOB_FINISHED,
            job_id=job.pk,
            plugin_name=job.plugin_name,
            plugin_version=job.plugin_version,
            error_type=error_type,
            details={"status": "FAILED", "metrics": "error"},
        )
    return job


def cancel(job: Job, user: Any) -> Job:
    with transaction.atomic():
        job.cancel({"error": {"type": "Cancelled", "message": "Cancelled", "details": {}}})
        record(
            AuditEvent.JOB_CANCELLED,
            job_id=job.pk,
            actor=user,
            plugin_name=job.plugin_name,
            error_type="Cancelled",
        )
    return job


def run_now(user: Any, payload: dict[str, Any] | None = None) -> Job:
    """The synchronous path, to a success."""
    return succeed(insert_running(user, payload))


def insert_running(user: Any, payload: dict[str, Any] | None = None) -> Job:
    """The synchronous path: the job inserted RUNNING with submitted and started in one INSERT."""
    payload = {"message": "now"} if payload is None else payload
    job = Job.objects.claimed_by_creator(
        plugin_name=PLUGIN,
        plugin_version=VERSION,
        input_payload=payload,
        requested_by=user,
        lease_holder="test:2:def",
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )
    with transaction.atomic():
        job.insert()
        record_many(
            [
                AuditRecord(
                    AuditEvent.JOB_SUBMITTED,
                    job_id=job.pk,
                    actor=user,
                    plugin_name=PLUGIN,
                    plugin_version=VERSION,
                    input_sha256=payload_sha256(payload),
                ),
                AuditRecord(
                    AuditEvent.JOB_STARTED,
                    job_id=job.pk,
                    plugin_name=PLUGIN,
                    plugin_version=VERSION,
                ),
            ]
        )
    return job


def refuse(user: Any) -> None:
    record(AuditEvent.REQUEST_REFUSED, actor=user, plugin_name=PLUGIN, error_type="ValidationError")


def a_bit_of_everything(user: Any, other: Any) -> dict[str, Job]:
    """A small history: success, failure, cancel, the sync path, a pending job, a refusal."""
    jobs = {
        "ok": succeed(start(submit(user))),
        "failed": fail(start(submit(user, {"message": "boom"}))),
        "cancelled": cancel(submit(other, {"message": "stop"}), other),
        "sync": run_now(other),
        "pending": submit(user, {"message": "later"}),
    }
    refuse(user)
    return jobs


def sql(statement: str, params: list[Any] | None = None) -> None:
    """Raw SQL, as anyone who can write to the database would tamper."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])


def entry_ids(**filters: Any) -> list[int]:
    from execution.audit.models import AuditEntry

    return list(AuditEntry.objects.filter(**filters).order_by("seq").values_list("id", flat=True))
