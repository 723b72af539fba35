"""Background execution: the django-tasks task the django-tasks-db engine enqueues.

Only the task engine enqueues it (``execution.task_engine``); services never import it.
"""

from __future__ import annotations

from django_tasks import TaskContext, task

from execution.selectors import JobNotFound
from execution.services.job_execution_service import JobExecutionService


@task(takes_context=True)
def run_job_task(context: TaskContext, job_id: str) -> str:
    """Run one job. Enqueued twice or picked up twice, it still runs once (the claim).

    The job records this task's id, so that if its worker is lost, lease
    recovery can have the engine mark this task failed too.
    """
    try:
        job = JobExecutionService().run_job(job_id=job_id, task_id=str(context.task_result.id))
    except JobNotFound:
        return "MISSING"
    return str(job.status)
