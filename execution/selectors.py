"""Reads of jobs: who may see which, lookups, and the overview numbers.

Writes live in the services and the model's state machine; everything here only reads.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Avg, Count, Q
from django.db.models.functions import TruncHour

from execution.models import Job, JobQuerySet, JobStatus

# As in the admin, which shows every job to users who may view or change jobs.
VIEW_ALL_JOBS_PERMISSIONS = ("execution.view_job", "execution.change_job")
# What a list shows of a job; its input and result can be megabytes each.
SUMMARY_DEFERRED_FIELDS = ("input_payload", "result")


class JobNotFound(Exception):
    """No job with that id (or not one the user may see)."""


def jobs_visible_to(user: Any) -> JobQuerySet:
    """Every job for users the admin shows every job to; otherwise their own."""
    jobs = Job.objects.all()
    if user is not None and any(user.has_perm(perm) for perm in VIEW_ALL_JOBS_PERMISSIONS):
        return jobs
    if user is None or not user.is_authenticated:
        return jobs.none()
    return jobs.filter(requested_by=user)


def job_summaries(*, user: Any) -> JobQuerySet:
    """The jobs ``user`` may see, without their (possibly large) input and result."""
    return jobs_visible_to(user).defer(*SUMMARY_DEFERRED_FIELDS).select_related("requested_by")


def get_job(job_id: uuid.UUID | str, *, user: Any = None) -> Job:
    """The job ``job_id``; with ``user``, only if that user may see it. Raises JobNotFound."""
    jobs = Job.objects.all() if user is None else jobs_visible_to(user)
    try:
        return jobs.select_related("requested_by").get(pk=job_id)
    except (Job.DoesNotExist, ValueError, ValidationError) as exc:
        raise JobNotFound(f"No job {job_id}") from exc


def plugin_overview(since: datetime | None = None) -> list[dict[str, Any]]:
    """Per plugin: executions, failures, mean time, and each as a share of the largest.

    ``since``: only jobs created from then on (None: all time).
    """
    jobs = Job.objects.all() if since is None else Job.objects.filter(created_at__gte=since)
    rows = list(
        jobs.values("plugin_name")
        .annotate(
            executions=Count("id"),
            failed=Count("id", filter=Q(status=JobStatus.FAILED)),
            average_ms=Avg("elapsed_ms"),
        )
        .order_by("plugin_name")
    )
    busiest = max((row["executions"] for row in rows), default=0)
    slowest = max((row["average_ms"] or 0 for row in rows), default=0)
    for row in rows:
        row["error_rate"] = row["failed"] / row["executions"] if row["executions"] else 0.0
        row["executions_pct"] = 100 * row["executions"] / busiest if busiest else 0
        row["error_pct"] = 100 * row["error_rate"]
        row["average_pct"] = 100 * (row["average_ms"] or 0) / slowest if slowest else 0
    return rows


CHART_MAX_HOURS = 168


def hourly_executions(since: datetime | None = None) -> list[dict[str, Any]]:
    """Jobs created per hour, and how many of them failed, with each as a share of the busiest.

    Gapless from the first hour to the last; at most the last CHART_MAX_HOURS hours.
    """
    jobs = Job.objects.all() if since is None else Job.objects.filter(created_at__gte=since)
    counted = {
        row["hour"]: row
        for row in jobs.annotate(hour=TruncHour("created_at"))
        .values("hour")
        .annotate(executions=Count("id"), failed=Count("id", filter=Q(status=JobStatus.FAILED)))
        .order_by("hour")
    }
    if not counted:
        return []
    last = max(counted)
    first = max(min(counted), last - timedelta(hours=CHART_MAX_HOURS - 1))
    busiest = max(row["executions"] for row in counted.values())
    hours = []
    hour = first
    while hour <= last:
        row = counted.get(hour, {"executions": 0, "failed": 0})
        hours.append(
            {
                "hour": hour,
                "executions": row["executions"],
                "failed": row["failed"],
                "executions_pct": 100 * row["executions"] / busiest,
                "failed_pct": 100 * row["failed"] / busiest,
                "ok_pct": 100 * (row["executions"] - row["failed"]) / busiest,
            }
        )
        hour += timedelta(hours=1)
    return hours
