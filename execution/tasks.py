"""Background execution: the django-tasks task the django-tasks-db engine enqueues.

Only the task engine enqueues it (``execution.task_engine``); services never import it.
"""

from __future__ import annotations

from django_tasks import TaskContext, task

from execution.callbacks.services import deliver_callback
from execution.job_logs import JobFailed
from execution.models import JobStatus
from execution.selectors import JobNotFound
from execution.services.job_execution_service import JobExecutionService


@task(takes_context=True)
def run_job_task(context: TaskContext, job_id: str) -> str:
    """Run one job. Enqueued twice or picked up twice, it still runs once (the claim).

    The job records this task's id, so that if its worker is lost, lease
    recovery can have the engine mark this task failed too. The task ends as its
    job's run did: FAILED when this run failed the job, else SUCCESSFUL.
    """
    task_id = str(context.task_result.id)
    try:
        job = JobExecutionService().run_job(job_id=job_id, task_id=task_id)
    except JobNotFound:
        return "MISSING"
    if job.status == JobStatus.FAILED and str(job.task_id) == task_id:
        error = (job.error or {}).get("error") or {}
        raise JobFailed(f"Job {job.pk} failed: {error.get('type', '-')}")
    return str(job.status)


@task(takes_context=True)
def deliver_callback_task(context: TaskContext, job_id: str) -> str:
    """Make the due attempt of a job's completion callback (execution/callbacks/services.py).

    Run twice, or by two workers, it still makes one attempt (the callback's claim).
    Ends as the attempt did: SUCCESSFUL whatever the receiver answered (the attempt
    records that), so a refused delivery is not a failed task.
    """
    attempt = deliver_callback(job_id=job_id, task_id=str(context.task_result.id))
    if attempt is None:
        return "NOTHING_DUE"
    return "DELIVERED" if attempt.succeeded else f"ATTEMPT_{attempt.number}_FAILED"
