"""Background execution: a django-tasks task, run by ``manage.py db_worker``."""

from __future__ import annotations

from django_tasks import TaskContext, task

from execution.selectors import JobNotFound
from execution.services.job_execution_service import JobExecutionService


@task(takes_context=True)
def run_job_task(context: TaskContext, job_id: str) -> str:
    """Run one job. Enqueued twice or picked up twice, it still runs once (the claim).

    The job records this task's id, so that if its worker is lost, lease
    recovery can mark this task's row FAILED too.
    """
    try:
        job = JobExecutionService().run_job(job_id=job_id, task_id=str(context.task_result.id))
    except JobNotFound:
        return "MISSING"
    return str(job.status)
