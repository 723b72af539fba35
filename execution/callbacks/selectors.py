"""Reads of callbacks: a job's callback and its attempts, for the job's owner only."""

from __future__ import annotations

from typing import Any

from execution.callbacks.models import JobCallback


def callback_for_owner(job: Any, viewer: Any) -> JobCallback | None:
    """``job``'s callback with its attempts, if ``viewer`` submitted the job; else None.

    Others who may see the job (staff) do not see where its owner is told: a URL can
    carry the owner's own secret. The admin shows it to staff.
    """
    if viewer is None or not getattr(viewer, "is_authenticated", False):
        return None
    if job.requested_by_id is None or job.requested_by_id != viewer.pk:
        return None
    return JobCallback.objects.filter(job_id=job.pk).prefetch_related("attempts").first()
