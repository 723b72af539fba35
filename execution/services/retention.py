"""Retention: delete (or slim down) final jobs older than a cutoff, in short batches.

Each batch is one transaction over at most ``batch_size`` job ids, so memory stays
flat and the write lock is held briefly. The audit chain stays verifiable:

* a deleted job gets a ``job.pruned`` entry (``execution.audit.retention.prune_jobs``),
  so verification knows it was removed, not lost; its earlier entries stay;
* a slimmed job (``keep_audit``) loses its input and result; its ``job.pruned`` entry
  (``details.kept``) records the digest of what remains, its status and error type, so
  verification checks the slimmed row against it and still sees any later edit;
* a job's artifacts go with it, slimmed or deleted: their rows in the batch's
  transaction, their files from the storage once it committed;
* each run ends with one summary ``job.pruned`` entry without a job id: who pruned,
  the cutoff and the counts.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, models, transaction

from execution.artifacts import services as artifact_services
from execution.artifacts.models import JobArtifact
from execution.audit import retention as audit_retention
from execution.audit.digest import payload_sha256
from execution.audit.events import AuditEvent
from execution.audit.models import AuditEntry
from execution.audit.recorder import AuditRecord, record_many
from execution.callbacks.services import delivery_task_ids
from execution.clock import from_db_datetime, now_sql
from execution.models import Job, JobStatus
from execution.task_engine import get_task_engine

FINAL_STATUSES = (JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELLED)
DEFAULT_BATCH_SIZE = 500
SLIMMED_INPUT: dict[str, Any] = {}

_AGE = re.compile(r"^\s*(\d+)\s*([dhm])\s*$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


class InvalidAge(ValueError):
    """An ``--older-than`` value that is not a whole number of days, hours or minutes."""


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h`` or ``90m`` as a timedelta; raises InvalidAge otherwise."""
    match = _AGE.match(text or "")
    if match is None:
        raise InvalidAge(
            f"{text!r} is not an age: give a whole number followed by d (days), "
            "h (hours) or m (minutes), e.g. 30d, 12h or 90m"
        )
    amount = int(match.group(1))
    if amount <= 0:
        raise InvalidAge(f"{text!r} is not an age: it must be more than zero")
    return timedelta(**{_UNITS[match.group(2)]: amount})


@dataclass(frozen=True)
class PruneReport:
    """What a run did (or, dry, would do)."""

    cutoff: datetime
    keep_audit: bool
    dry_run: bool
    jobs: int
    tasks: int
    batches: int


def database_time() -> datetime:
    """The database's clock now (one query), so every process prunes by the same time."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {now_sql(connection)}")
        value = from_db_datetime(cursor.fetchone()[0])
    assert value is not None
    return value


def prunable_jobs(cutoff: datetime, *, keep_audit: bool) -> models.QuerySet[Job]:
    """Final jobs that finished before ``cutoff`` (with ``keep_audit``: not yet slimmed)."""
    jobs = Job.objects.filter(status__in=FINAL_STATUSES, finished_at__lt=cutoff)
    if keep_audit:
        slimmed = AuditEntry.objects.filter(
            job_id=models.OuterRef("pk"), event=AuditEvent.JOB_PRUNED
        )
        jobs = jobs.exclude(models.Exists(slimmed))
    return jobs


def prune_jobs(
    *,
    older_than: timedelta,
    keep_audit: bool = False,
    dry_run: bool = False,
    actor: Any = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> PruneReport:
    """Delete (or with ``keep_audit`` slim down) final jobs that finished before now - older_than.

    ``dry_run`` counts and changes nothing. ``actor``: the user, or a name, for the audit.
    """
    cutoff = database_time() - older_than
    candidates = prunable_jobs(cutoff, keep_audit=keep_audit)
    if dry_run:
        count = candidates.count()
        tasks = 0 if keep_audit else candidates.exclude(task_id=None).count()
        return PruneReport(cutoff, keep_audit, True, count, tasks, 0)
    engine = get_task_engine()
    jobs = tasks = batches = 0
    while True:
        batch = list(candidates.order_by("pk").values_list("pk", "task_id")[:batch_size])
        if not batch:
            break
        ids = [job_id for job_id, _ in batch]
        with transaction.atomic():
            files = _drop_artifacts(ids)
            if keep_audit:
                jobs += _slim(ids, actor)
            else:
                delivered_by = delivery_task_ids(ids)  # before the callbacks go with the jobs
                jobs += audit_retention.prune_jobs(ids, actor=actor)
                tasks += engine.prune_tasks([task for _, task in batch if task is not None])
                tasks += engine.prune_tasks(delivered_by)
        artifact_services.delete_files(files)  # once their rows are gone for good
        batches += 1
    record_many(
        [
            AuditRecord(
                event=AuditEvent.JOB_PRUNED,
                actor=actor,
                details={
                    "retention": "slimmed" if keep_audit else "deleted",
                    "cutoff": cutoff.isoformat(),
                    "older_than_s": int(older_than.total_seconds()),
                    "jobs": jobs,
                    "tasks": tasks,
                },
            )
        ]
    )
    return PruneReport(cutoff, keep_audit, False, jobs, tasks, batches)


def _drop_artifacts(ids: list[uuid.UUID]) -> list[str]:
    """Delete these jobs' artifact rows (slimmed or deleted, a job keeps none); their files."""
    artifacts = JobArtifact.objects.filter(job_id__in=ids)
    files = list(artifacts.values_list("storage_path", flat=True))
    if files:
        artifacts.delete()
    return files


def _slim(ids: list[uuid.UUID], actor: Any) -> int:
    """Drop these jobs' input and result, each with a ``job.pruned`` (kept) entry."""
    rows = list(
        Job.objects.select_for_update()
        .filter(pk__in=ids)
        .values_list("pk", "status", "plugin_name", "plugin_version", "error")
    )
    record_many(
        [
            AuditRecord(
                event=AuditEvent.JOB_PRUNED,
                job_id=job_id,
                actor=actor,
                plugin_name=plugin_name,
                plugin_version=plugin_version,
                input_sha256=payload_sha256(SLIMMED_INPUT),
                error_type=_error_type(error),
                details={"kept": True, "status": status},
            )
            for job_id, status, plugin_name, plugin_version, error in rows
        ]
    )
    return Job.objects.filter(pk__in=[row[0] for row in rows]).update(
        input_payload=SLIMMED_INPUT, result=None, plugin_output=""
    )


def _error_type(error: Any) -> str:
    inner = error.get("error") if isinstance(error, dict) else None
    if isinstance(inner, dict) and inner.get("type") is not None:
        return str(inner["type"])
    return ""
