"""AnalysisExecutionService: what the API calls to run a plugin now or in the background."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from execution.models import Job, alters_data
from execution.services.job_execution_service import JobExecutionService
from plugins.errors.exceptions import GovernedExecutionError
from plugins.registry import get_registry

if TYPE_CHECKING:
    from django.contrib.auth.models import User


@contextlib.contextmanager
def refusals_counted(plugin_name: str) -> Iterator[None]:
    """Count a request refused before anything ran (unknown plugin, bad input), and re-raise."""
    try:
        yield
    except GovernedExecutionError as exc:
        get_registry().count_refused_request(plugin_name, exc.error_type)
        raise


class AnalysisExecutionService:
    def __init__(self, jobs: JobExecutionService | None = None) -> None:
        self._jobs = jobs if jobs is not None else JobExecutionService()

    @alters_data
    def execute(
        self,
        *,
        plugin_name: str,
        payload: dict[str, Any],
        user: User | None = None,
        plugin_version: str = "",
    ) -> Job:
        """Run now; the returned job is SUCCESS, FAILED or (cancelled meanwhile) CANCELLED.

        A request refused before it ran (unknown plugin, bad input) records no job
        but is counted. ``plugin_version``: run only that version. Raises
        OutcomeNotRecorded when the database took no write of the outcome in time.
        """
        with refusals_counted(plugin_name):
            return self._jobs.execute_now(
                plugin_name=plugin_name,
                payload=payload,
                requested_by=user,
                requested_version=plugin_version,
            )

    @alters_data
    def submit(
        self,
        *,
        plugin_name: str,
        payload: dict[str, Any],
        user: User | None = None,
        plugin_version: str = "",
    ) -> Job:
        """Record a PENDING job together with the task that will run it (refusals counted)."""
        with refusals_counted(plugin_name):
            return self._jobs.create_job(
                plugin_name=plugin_name,
                payload=payload,
                requested_by=user,
                requested_version=plugin_version,
            )

    @alters_data
    def cancel(self, *, job_id: uuid.UUID | str, user: User | None = None) -> Job:
        """Cancel a job ``user`` may see.

        Raises JobNotFound, CancelNotAllowed (not theirs to cancel) or JobAlreadyEnded.
        """
        return self._jobs.cancel_job(job_id=job_id, user=user)
