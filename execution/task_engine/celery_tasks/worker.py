"""What a Celery worker does so that it keeps the ``db_worker``'s promises.

* It refuses to start without SECRET_KEY (project/secret_key.py), on another
  engine than Celery (its retries would go to a queue no Celery worker reads), or
  with a broker visibility timeout shorter than a job's longest lease plus its
  longest retry backoff (Redis would hand a running or waiting task to a second
  worker).
* Each process that runs tasks (each prefork child; the worker itself with the
  solo pool) writes its heartbeat (execution/workers/), recovers lost jobs and
  seals the audit trail in the background, and starts its plugin hosts, like a
  ``db_worker``.
* A message runs its task at most once per delivery that could still matter: it
  starts only a task whose row is QUEUED, UNSENT or RUNNING (a redelivery after
  its worker died); a task that ended, or that lease recovery gave up, is skipped.
  Jobs themselves run once by their claim (execution/models.py).
* While the database is unavailable a message is put back with a growing delay,
  rather than acknowledged and lost.
* Fair scheduling (``JOB_FAIR_SCHEDULING``): the broker delivers messages first in,
  first out, so a message runs the job that should start next
  (``scheduling.claimable_jobs()``), and that job's own message is handed to the job
  this one was for: the two jobs swap tasks, and every job still has one live task.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from celery import Task
from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.db.models import F
from django.db.models.expressions import RawSQL
from django.utils.module_loading import import_string
from django_tasks import TaskContext, TaskResult, TaskResultStatus
from django_tasks.base import TaskError
from django_tasks.signals import task_finished, task_started
from django_tasks.utils import get_exception_traceback, get_module_path

from execution.audit.sealer import AuditSealer
from execution.clock import now_sql
from execution.models import Job, JobStatus
from execution.policy import scheduling
from execution.services.lease_recovery import LeaseMonitor
from execution.task_engine.celery_tasks.models import STARTABLE, CeleryTask, CeleryTaskStatus
from execution.workers.heartbeat import Heartbeat
from plugins.registry import get_registry
from plugins.runtime.tool_runner import warm_up_once
from project.secret_key import MISSING_SECRET_KEY, secret_key_is_set

logger = logging.getLogger(__name__)

CELERY_ENGINE = "execution.task_engine.celery_tasks.engine.CeleryEngine"
RUN_JOB_TASK = "execution.tasks.run_job_task"
OUTAGE_FIRST_PAUSE_S = 0.5
OUTAGE_MAX_PAUSE_S = 5.0


class _Process:
    """This process's part: its heartbeat, once it serves."""

    heartbeat: Heartbeat | None = None
    pid: int | None = None
    prefork = True


def worker_id() -> str:
    return f"celery:{socket.gethostname()}:{os.getpid()}"


def startup_problem() -> str | None:
    """Why this worker must not start; None when it may."""
    if not secret_key_is_set():
        return MISSING_SECRET_KEY
    if settings.TASK_ENGINE != CELERY_ENGINE:
        return (
            "This Celery worker runs with TASKS_BACKEND="
            f"{getattr(settings, 'TASKS_BACKEND', 'database')}: set TASKS_BACKEND=celery "
            "(and CELERY_BROKER_URL), as for the web processes."
        )
    needed_s = longest_lease_and_backoff_s()
    visibility_s = float(settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600))
    if settings.CELERY_BROKER_URL.startswith("redis") and visibility_s <= needed_s:
        return (
            f"CELERY_VISIBILITY_TIMEOUT_S ({visibility_s:g} s) must be longer than the longest "
            f"lease plus retry backoff of the installed plugins ({needed_s:g} s): Redis would "
            "hand a running job's task to a second worker."
        )
    return None


def longest_lease_and_backoff_s() -> float:
    """The longest a taken message may stay unacknowledged: a lease, or a retry's wait."""
    registry = get_registry()
    plugins = registry.list_plugins()
    longest_limit_s = max(
        [registry.limits_for(plugin).timeout_s for plugin in plugins]
        + [settings.PLUGIN_DEFAULT_TIMEOUT_S]
    )
    most_attempts = max([plugin.max_attempts for plugin in plugins] + [1])
    backoff_s = float(settings.JOB_RETRY_BACKOFF_S) * 2.0 ** max(most_attempts - 2, 0)
    return max(float(longest_limit_s) + float(settings.JOB_LEASE_GRACE_S), backoff_s)


def refuse_to_start_unless_ready(worker: Any) -> None:
    """The worker's first step (Celery's worker_init): stop with one line if it must not run."""
    pool = str(getattr(worker, "pool_cls", "prefork"))
    _Process.prefork = "prefork" in pool or "processes" in pool.lower()
    problem = startup_problem()
    if problem is not None:
        logger.error(problem)
        os._exit(2)  # at once: before Celery starts its pool, its consumer or a traceback


def start_serving() -> None:
    """In a process that runs tasks: heartbeat, background recovery and sealing, warm hosts."""
    if _Process.pid == os.getpid():
        return
    _Process.pid = os.getpid()
    # The parent's database connections were dropped by Celery's Django fixup, without
    # closing them (a close would end the parent's session too).
    heartbeat = Heartbeat(worker_id())
    try:
        heartbeat.start()
    except DatabaseError as exc:
        logger.warning("The heartbeat could not be written at start: %s", exc)
    _Process.heartbeat = heartbeat
    LeaseMonitor.ensure_started()
    AuditSealer.ensure_started()
    warm_up_once()


def start_serving_in_main_process(consumer: Any) -> None:
    """With a pool that runs tasks in the worker itself (solo, threads), it serves."""
    if not _Process.prefork:
        start_serving()


def stop_serving() -> None:
    """A clean exit of a serving process: its heartbeat says stopped, its live gauges go."""
    if _Process.heartbeat is None or _Process.pid != os.getpid():
        return
    _Process.heartbeat.stop()
    _Process.heartbeat = None
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # as gunicorn's child_exit does
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def run_django_task(
    celery_task: Task[Any, Any], task_path: str, args: list[Any], kwargs: dict[str, Any]
) -> Any:
    """Run the django-tasks task ``task_path`` for this message, unless its task is over."""
    task_id = str(celery_task.request.id)
    try:
        started = _mark_started(task_id)
    except DatabaseError as exc:
        retries = celery_task.request.retries
        pause_s = min(OUTAGE_FIRST_PAUSE_S * 2**retries, OUTAGE_MAX_PAUSE_S)
        logger.warning(
            "The database is unavailable (%s); task %s goes back to the queue for %.1f s",
            type(exc).__name__,
            task_id,
            pause_s,
        )
        connections.close_all()
        raise celery_task.retry(countdown=pause_s, max_retries=None, exc=exc) from exc
    if not started:
        logger.warning("Task %s is over already: a redelivered message, skipped", task_id)
        return None
    if task_path == RUN_JOB_TASK and args and scheduling.fair_scheduling():
        args = [_fair_job(task_id, str(args[0])), *args[1:]]
    task = import_string(task_path)
    result = _task_result(task, task_id, args, kwargs, celery_task)
    heartbeat = _Process.heartbeat
    if heartbeat is not None:
        heartbeat.job_started(task_id)
    # The backend's class is the signals' sender (as django-tasks' own workers send).
    sender = type(task.get_backend())
    task_started.send(sender, task_result=result)
    try:
        if task.takes_context:
            value = task.call(TaskContext(task_result=result), *args, **kwargs)
        else:
            value = task.call(*args, **kwargs)
    except Exception as exc:
        result.errors.append(
            TaskError(
                exception_class_path=get_module_path(type(exc)),
                traceback=get_exception_traceback(exc),
            )
        )
        object.__setattr__(result, "status", TaskResultStatus.FAILED)
        _mark_finished(task_id, CeleryTaskStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    else:
        object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
        _mark_finished(task_id, CeleryTaskStatus.SUCCESSFUL)
        return value
    finally:
        task_finished.send(sender, task_result=result)
        if heartbeat is not None:
            heartbeat.job_finished()


def _fair_job(task_id: str, job_id: str) -> str:
    """The job this task runs: the head of the fair queue, if it can swap tasks with ours.

    Ours is the PENDING job whose task this is (``job_id``, unless an earlier swap
    gave it another job's task). Both swaps are conditional on each job still
    PENDING with the task it had, in the order of their ids (no deadlock between
    two workers): if either moved on, this task runs its own job as usual.
    """
    try:
        ours = Job.objects.filter(status=JobStatus.PENDING, task_id=task_id)
        mine = ours.values_list("pk", flat=True).first()
        if mine is None:
            return job_id  # ended, cancelled or taken: run_job finds out
        head = scheduling.claimable_jobs().filter(task_id__isnull=False)
        row = head.values_list("pk", "task_id").first()
        if row is None or row[0] == mine:
            return str(mine)
        head_id, head_task = row
        swaps = sorted([(mine, task_id, head_task), (head_id, head_task, task_id)])
        with transaction.atomic():
            for pk, had, gets in swaps:
                moved = Job.objects.filter(pk=pk, status=JobStatus.PENDING, task_id=had)
                if not moved.update(task_id=gets):
                    transaction.set_rollback(True)
                    return str(mine)
        return str(head_id)
    except DatabaseError as exc:  # a lost race (or outage) costs only the order
        logger.info("Task %s runs its own job (no swap: %s)", task_id, exc)
        return job_id


def _db_now() -> RawSQL:
    return RawSQL(now_sql(connections[CeleryTask.objects.db]), [])


def _mark_started(task_id: str) -> bool:
    """QUEUED, UNSENT or RUNNING (a redelivery) -> RUNNING; False if the task is over or gone."""
    return bool(
        CeleryTask.objects.filter(pk=task_id, status__in=STARTABLE).update(
            status=CeleryTaskStatus.RUNNING,
            started_at=_db_now(),
            worker_id=worker_id(),
            deliveries=F("deliveries") + 1,
        )
    )


def _mark_finished(task_id: str, status: CeleryTaskStatus, *, error: str = "") -> None:
    # Only a task still RUNNING: one lease recovery failed meanwhile keeps its reason.
    # A database that fails here leaves it RUNNING: recovery finds it after the grace.
    try:
        CeleryTask.objects.filter(pk=task_id, status=CeleryTaskStatus.RUNNING).update(
            status=status, finished_at=_db_now(), error=error
        )
    except DatabaseError as exc:
        logger.warning("The end of task %s was not recorded: %s", task_id, exc)


def _task_result(
    task: Any, task_id: str, args: list[Any], kwargs: dict[str, Any], celery_task: Any
) -> TaskResult[Any]:
    return TaskResult(
        task=task,
        id=task_id,
        status=TaskResultStatus.RUNNING,
        enqueued_at=None,
        started_at=None,
        last_attempted_at=None,
        finished_at=None,
        args=args,
        kwargs=kwargs,
        backend=task.backend,
        errors=[],
        worker_ids=[str(celery_task.request.hostname or worker_id())],
    )
