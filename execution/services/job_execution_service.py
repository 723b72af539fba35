"""JobExecutionService: creates jobs and drives them through the state machine."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from execution.models import Job
from execution.services.plugin_execution_service import PluginExecutionService
from plugins.errors.error_envelope import ErrorEnvelope
from plugins.registry import defer_metrics_persistence


class JobNotFound(Exception):
    """No job with that id (or not one the user may see)."""


class JobExecutionService:
    def __init__(self, plugins: PluginExecutionService | None = None) -> None:
        self._plugins = plugins if plugins is not None else PluginExecutionService()

    def create_job(self, plugin_name: str, payload: Any, requested_by: Any = None) -> Job:
        """Check the request, then record a PENDING job. Bad input records nothing."""
        version = self._plugins.check_request(plugin_name, payload)
        return Job.objects.create(
            plugin_name=plugin_name,
            plugin_version=version,
            input_payload=payload,
            requested_by=requested_by,
        )

    def execute_now(self, plugin_name: str, payload: Any, requested_by: Any = None) -> Job:
        """Create a job claimed by this thread and run it here (the synchronous API).

        Two commits per execution: the RUNNING job, then its outcome together
        with the plugin's metrics.
        """
        version = self._plugins.check_request(plugin_name, payload)
        job = Job.objects.start_new(
            plugin_name=plugin_name,
            plugin_version=version,
            input_payload=payload,
            requested_by=requested_by,
        )
        return self._execute_claimed(job)

    def run_job(self, job_id: uuid.UUID | str) -> Job:
        """Claim a PENDING job and run it. A job someone else claimed is returned untouched."""
        job = Job.objects.claim_for_run(job_id)
        if job is None:
            return self.get_job(job_id)
        return self._execute_claimed(job)

    def fail_job(self, job: Job, error: ErrorEnvelope) -> Job:
        """Mark a job that can never start (or never finish) as FAILED."""
        job.mark_failed(dict(error))
        return job

    def get_job(self, job_id: uuid.UUID | str, user: Any = None) -> Job:
        """The job ``job_id``; with ``user``, only if that user may see it."""
        jobs = Job.objects.all() if user is None else Job.objects.visible_to(user)
        try:
            return jobs.get(pk=job_id)
        except (Job.DoesNotExist, ValueError, ValidationError) as exc:
            raise JobNotFound(f"No job {job_id}") from exc

    def _execute_claimed(self, job: Job) -> Job:
        # The outcome and the plugin's metrics are committed together: one commit
        # per finished execution instead of two.
        with defer_metrics_persistence() as pending_metrics:
            result, error = self._plugins.execute(job.plugin_name, job.input_payload)
            with transaction.atomic():
                if error is None:
                    job.mark_succeeded(result or {})
                else:
                    job.mark_failed(dict(error))
                pending_metrics.flush()
        return job
