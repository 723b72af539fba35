"""Background execution: a django-tasks task, run by ``manage.py db_worker``."""

from __future__ import annotations

from django_tasks import task

from execution.services.job_execution_service import JobExecutionService, JobNotFound


@task()
def run_job_task(job_id: str) -> str:
    """Run one job. Enqueued twice or picked up twice, it still runs once (the claim)."""
    try:
        job = JobExecutionService().run_job(job_id)
    except JobNotFound:
        return "MISSING"
    return str(job.status)
