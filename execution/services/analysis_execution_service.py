"""AnalysisExecutionService: what the API calls to run a plugin now or in the background."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from execution.models import Job
from execution.services.job_execution_service import JobExecutionService
from plugins.errors.error_envelope import ErrorType, build_error_envelope

logger = logging.getLogger(__name__)


class AnalysisExecutionService:
    def __init__(self, jobs: JobExecutionService | None = None) -> None:
        self._jobs = jobs if jobs is not None else JobExecutionService()

    def execute(self, plugin_name: str, payload: Any, user: Any = None) -> Job:
        """Run now; the returned job is SUCCESS, FAILED or (cancelled meanwhile) CANCELLED."""
        return self._jobs.execute_now(plugin_name, payload, requested_by=user)

    def cancel(self, job_id: Any, user: Any = None) -> Job:
        """Cancel a job ``user`` may see; raises JobNotFound or IllegalJobTransition."""
        return self._jobs.cancel_job(job_id, user)

    def submit(self, plugin_name: str, payload: Any, user: Any = None) -> Job:
        """Record a PENDING job and enqueue it once the job row is committed."""
        job = self._jobs.create_job(plugin_name, payload, requested_by=user)
        transaction.on_commit(lambda: self._enqueue(job))
        return job

    def _enqueue(self, job: Job) -> None:
        from execution.tasks import run_job_task

        try:
            run_job_task.enqueue(str(job.pk))
        except Exception as exc:
            logger.exception("Could not enqueue job %s", job.pk)
            self._jobs.fail_job(
                job,
                build_error_envelope(
                    ErrorType.SERVICE_UNAVAILABLE,
                    "The job could not be queued; submit it again",
                    plugin=job.plugin_name,
                    exc=exc,
                ),
            )
