"""Jobs on Celery keep every promise of the database engine: real redis, gunicorn, workers."""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
from datetime import datetime, timedelta

import pytest
from django.core.management import call_command

from execution.audit.events import AuditEvent
from execution.audit.models import AuditEntry
from execution.audit.verify import verify
from execution.models import CeleryTask, Job, JobStatus
from execution.workers.models import WorkerHeartbeat
from execution.workers.selectors import live_workers
from plugins.models import PluginMetrics
from tests.celery.conftest import celery_env, require_celery, start_celery_worker
from tests.conftest import ROOT, subprocess_env
from tests.faults.conftest import wait_until

require_celery()

pytestmark = pytest.mark.django_db(transaction=True)

STALE = {"WORKER_STALE_S": "3", "WORKER_HEARTBEAT_S": "0.5"}


def submit(server, plugin: str, payload: dict) -> str:
    status, body = server.request("POST", "/v1/jobs", {"plugin": plugin, "payload": payload})
    assert status == 202, body
    return body["id"]


def status_of(job_id: str) -> str:
    return Job.objects.get(pk=job_id).status


def events_of(job_id: str) -> list[str]:
    entries = AuditEntry.objects.filter(job_id=job_id).order_by("seq")
    return list(entries.values_list("event", flat=True))


def running_on(worker: object, job_id: str) -> bool:
    """The job is RUNNING in one of the worker's pool processes (so a kill loses it)."""
    job = Job.objects.get(pk=job_id)
    if job.status != JobStatus.RUNNING:
        return False
    pid = int(job.lease_holder.split(":")[1])
    return pid in _pool_of(worker)


def _pool_of(worker) -> set[int]:
    from tests.faults.conftest import descendants

    return descendants(worker.pid) | {worker.pid}


def test_a_job_runs_to_success_and_its_worker_beats(processes, broker, celery_server):
    worker = start_celery_worker(processes, broker, **STALE)
    job_id = submit(celery_server, "echo", {"message": "hello"})
    wait_until(lambda: status_of(job_id) == JobStatus.SUCCESS)

    job = Job.objects.get(pk=job_id)
    assert job.result == {"echoed": "hello"}
    task = CeleryTask.objects.get(pk=str(job.task_id))
    assert (task.status, task.deliveries) == ("SUCCESSFUL", 1)
    # The pool process that ran it beats under its own id, and counts the job (its
    # heartbeat thread writes the count a moment after the job's own commit).
    beating = WorkerHeartbeat.objects.get(pk=task.worker_id)
    assert beating.pid in _pool_of(worker)
    wait_until(lambda: WorkerHeartbeat.objects.get(pk=beating.pk).jobs_done >= 1)
    beating.refresh_from_db()
    assert beating.jobs_done == 1
    assert live_workers().filter(pk=beating.pk).exists()
    status, body = celery_server.request("GET", "/v1/health")
    assert status == 200, body
    assert broker.queued() == 0

    # A clean stop (SIGTERM: Celery's warm shutdown) marks the row stopped.
    worker.stop(signal.SIGTERM)
    beating.refresh_from_db()
    assert beating.stopped_at is not None


def test_health_turns_503_when_the_only_celery_worker_is_killed(processes, broker, token):
    server = processes.server(2, **celery_env(broker, **STALE))
    server.token = token
    worker = start_celery_worker(processes, broker, **STALE)
    wait_until(lambda: live_workers().exists())
    worker.stop(signal.SIGKILL)
    submit(server, "echo", {"message": "waits"})
    wait_until(lambda: server.request("GET", "/v1/health")[0] == 503, timeout_s=30)
    body = server.request("GET", "/v1/health")[1]
    assert body["detail"]["details"]["workers"].startswith("no live worker")


def test_a_pending_job_cancelled_never_runs(processes, broker, celery_server):
    job_id = submit(celery_server, "echo", {"message": "never"})
    assert broker.queued() == 1  # committed, so sent
    status, body = celery_server.request("POST", f"/v1/jobs/{job_id}/cancel")
    assert status == 200, body
    start_celery_worker(processes, broker)
    task_id = Job.objects.get(pk=job_id).task_id
    wait_until(lambda: CeleryTask.objects.get(pk=str(task_id)).status == "SUCCESSFUL")
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.started_at, job.result) == (JobStatus.CANCELLED, None, None)
    assert AuditEvent.JOB_STARTED not in events_of(job_id)


def test_a_running_job_cancelled_stops_and_the_worker_goes_on(processes, broker, celery_server):
    worker = start_celery_worker(processes, broker)
    job_id = submit(celery_server, "sleeping", {"message": "x", "repeat": 60_000})
    wait_until(lambda: status_of(job_id) == JobStatus.RUNNING)
    status, body = celery_server.request("POST", f"/v1/jobs/{job_id}/cancel")
    assert status == 200, body
    wait_until(lambda: Job.objects.get(pk=job_id).finished_at is not None, timeout_s=20)
    job = Job.objects.get(pk=job_id)
    assert job.status == JobStatus.CANCELLED
    assert job.error_type == "Cancelled"
    # Long before the plugin's 5 s limit, its run was stopped: the worker is free again.
    after = submit(celery_server, "echo", {"message": "next"})
    wait_until(lambda: status_of(after) == JobStatus.SUCCESS, timeout_s=20)
    assert worker.alive()


def test_a_job_of_a_killed_worker_is_retried_after_its_backoff_and_succeeds_once(
    processes, broker, celery_server
):
    victim = start_celery_worker(processes, broker)
    job_id = submit(celery_server, "retried_sleeping", {"message": "x", "repeat": 3000})
    wait_until(functools.partial(running_on, victim, job_id), step_s=0.02)
    first_task = Job.objects.get(pk=job_id).task_id
    victim.stop(signal.SIGKILL)  # the whole worker: its main process and its pool
    survivor = start_celery_worker(processes, broker)

    # The lease ends (5 s + 2 s grace), recovery puts the job back after a backoff,
    # and the survivor runs its second attempt.
    wait_until(lambda: status_of(job_id) == JobStatus.SUCCESS, timeout_s=60)
    job = Job.objects.get(pk=job_id)
    assert job.attempt == 2
    (lost,) = job.attempts
    assert lost["error"]["type"] == "WorkerLost"
    # The second attempt's message waited for the backoff (JOB_RETRY_BACKOFF_S=0.2 here;
    # the attempt's end is read from the clock just after its next start was set).
    given_up_at = datetime.fromisoformat(lost["ended_at"])
    retry_task = CeleryTask.objects.get(pk=str(job.task_id))
    assert retry_task.run_after - given_up_at > timedelta(seconds=0.15)
    assert job.started_at >= retry_task.run_after
    assert CeleryTask.objects.get(pk=str(first_task)).status == "FAILED"

    # Redis hands the killed worker's unacknowledged message back after the visibility
    # timeout: the survivor skips it, as its task was given up.
    wait_until(lambda: f"Task {first_task} is over already" in survivor.output(), timeout_s=60)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCESS
    assert job.attempt == 2
    events = events_of(job_id)
    assert events.count(AuditEvent.JOB_STARTED) == 2, events
    assert events.count(AuditEvent.JOB_FINISHED) == 1, events
    assert PluginMetrics.objects.get(plugin_name="retried_sleeping").success_count == 1
    call_command("seal_audit")
    report = verify()
    assert report.ok, report.first_problem


def test_a_job_of_a_killed_worker_without_retries_fails_once_as_worker_lost(
    processes, broker, celery_server
):
    victim = start_celery_worker(processes, broker)
    job_id = submit(celery_server, "sleeping", {"message": "x", "repeat": 3000})
    wait_until(functools.partial(running_on, victim, job_id), step_s=0.02)
    first_task = Job.objects.get(pk=job_id).task_id
    victim.stop(signal.SIGKILL)
    survivor = start_celery_worker(processes, broker)

    wait_until(lambda: status_of(job_id) == JobStatus.FAILED, timeout_s=60)
    wait_until(lambda: f"Task {first_task} is over already" in survivor.output(), timeout_s=60)
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.error_type, job.attempt) == (JobStatus.FAILED, "WorkerLost", 1)
    events = events_of(job_id)
    assert events.count(AuditEvent.JOB_STARTED) == 1, events
    assert AuditEvent.JOB_FINISHED not in events
    assert events.count(AuditEvent.JOB_RECOVERED) == 1, events


CELERY_WORKER = [sys.executable, "-m", "celery", "-A", "project", "worker", "--pool", "solo"]


@pytest.mark.parametrize(
    ("command", "wrong", "refusal"),
    [
        (CELERY_WORKER, {"SECRET_KEY": "", "DEBUG": "0"}, "SECRET_KEY must be set"),
        (CELERY_WORKER, {"TASKS_BACKEND": "database"}, "set TASKS_BACKEND=celery"),
        # django-tasks-db's own check: it would find no task, yet count as a live worker.
        ([sys.executable, "manage.py", "db_worker"], {}, "is not a database backend"),
    ],
    ids=["no secret key", "celery worker, database engine", "db_worker, celery engine"],
)
def test_a_worker_started_for_the_wrong_setup_refuses_with_one_line(
    broker, command, wrong, refusal
):
    env = subprocess_env(**{**celery_env(broker), **wrong})
    completed = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode != 0
    assert refusal in completed.stdout + completed.stderr
    assert "Traceback" not in completed.stdout + completed.stderr
