"""Jobs and their audit entries made the way the services record them, for the audit tests.

Each state change and its entry commit in one transaction, the entry written
after the conditional UPDATE matched; the outcome's entry carries
details["metrics"] when the same transaction counted the execution.
"""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction

from execution.audit.events import AuditEvent
from execution.audit.recorder import record
from execution.models import Job
from plugins.models import PluginMetrics

PLUGIN, VERSION = "echo", "1.0"


def submit(user: Any, payload: dict[str, Any] | None = None, plugin: str = PLUGIN) -> Job:
    payload = {"message": "hello"} if payload is None else payload
    with transaction.atomic():
        job = Job.objects.create(
            plugin_name=plugin, plugin_version=VERSION, input_payload=payload, requested_by=user
        )
        job.record_submission()
    return job


def start(job: Job) -> Job:
    assert job.claim(lease_holder="test:1:abc", lease_s=300)
    return job


def succeed(job: Job, result: dict[str, Any] | None = None) -> Job:
    result = {"echoed": "hello"} if result is None else result
    with transaction.atomic():
        job.mark_succeeded(result, counted="success")
        PluginMetrics.objects.record_execution(job.plugin_name, "AVAILABLE", 1.0, had_error=False)
    return job


def fail(job: Job, error_type: str = "PluginExecutionError") -> Job:
    with transaction.atomic():
        job.mark_failed(
            {"error": {"type": error_type, "message": "boom", "details": {}}}, counted="error"
        )
        PluginMetrics.objects.record_execution(job.plugin_name, "AVAILABLE", 1.0, had_error=True)
    return job


def cancel(job: Job, user: Any) -> Job:
    job.cancel({"error": {"type": "Cancelled", "message": "Cancelled", "details": {}}}, actor=user)
    return job


def run_now(user: Any, payload: dict[str, Any] | None = None) -> Job:
    """The synchronous path, to a success."""
    return succeed(insert_running(user, payload))


def insert_running(user: Any, payload: dict[str, Any] | None = None) -> Job:
    """The synchronous path: the job inserted RUNNING, submitted and started in one INSERT."""
    payload = {"message": "now"} if payload is None else payload
    job = Job.objects.claimed_by_creator(
        plugin_name=PLUGIN,
        plugin_version=VERSION,
        input_payload=payload,
        requested_by=user,
        lease_holder="test:2:def",
        lease_s=300,
    )
    job.insert()
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
