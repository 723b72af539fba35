"""AnalysisExecutionService: what the API calls to run a plugin now or in the background."""

from __future__ import annotations

from typing import Any

from execution.models import Job
from execution.services.job_execution_service import JobExecutionService


class AnalysisExecutionService:
    def __init__(self, jobs: JobExecutionService | None = None) -> None:
        self._jobs = jobs if jobs is not None else JobExecutionService()

    def execute(self, plugin_name: str, payload: Any, user: Any = None) -> Job:
        """Run now; the returned job is SUCCESS, FAILED or (cancelled meanwhile) CANCELLED."""
        return self._jobs.execute_now(plugin_name, payload, requested_by=user)

    def cancel(self, job_id: Any, user: Any = None) -> Job:
        """Cancel a job ``user`` may see; raises JobNotFound or JobAlreadyEnded."""
        return self._jobs.cancel_job(job_id, user)

    def submit(self, plugin_name: str, payload: Any, user: Any = None) -> Job:
        """Record a PENDING job together with the task that will run it."""
        return self._jobs.create_job(plugin_name, payload, requested_by=user)
