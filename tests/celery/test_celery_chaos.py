"""Chaos on Celery: workers' main processes killed with SIGKILL mid-batch; every job ends once."""

from __future__ import annotations

import functools
import os
import random
import signal

import pytest
from django.core.management import call_command

from execution.audit.events import AuditEvent
from execution.audit.models import AuditEntry
from execution.audit.verify import verify
from execution.models import Job, JobStatus
from plugins.models import PluginMetrics
from tests.celery.conftest import require_celery, start_celery_worker
from tests.faults.conftest import descendants, wait_until

require_celery()

pytestmark = pytest.mark.django_db(transaction=True)

JOBS = 60
KILLS = 2


def running_below(worker_pid: int) -> bool:
    """A job RUNNING in one of the worker's pool processes right now (so a kill loses it)."""
    pool = descendants(worker_pid)
    holders = Job.objects.filter(status=JobStatus.RUNNING).values_list("lease_holder", flat=True)
    return any(int(holder.split(":")[1]) in pool for holder in holders)


def test_killed_celery_workers_lose_no_job_and_run_none_twice(processes, broker, celery_server):
    durations = random.Random(20261202)
    job_ids = []
    for _ in range(JOBS):
        payload = {"message": "x", "repeat": durations.randint(0, 300)}
        status, body = celery_server.request(
            "POST", "/v1/jobs", {"plugin": "retried_sleeping", "payload": payload}
        )
        assert status == 202, body
        job_ids.append(body["id"])
    steady = start_celery_worker(processes, broker)
    victim = start_celery_worker(processes, broker)
    for _ in range(KILLS):
        wait_until(functools.partial(running_below, victim.pid), timeout_s=60, step_s=0.01)
        os.kill(victim.pid, signal.SIGKILL)  # the main process only: its pool is orphaned
        victim.popen.wait(10)
        victim = start_celery_worker(processes, broker)

    wait_until(
        lambda: not Job.objects.filter(status__in=[JobStatus.RUNNING, JobStatus.PENDING]).exists(),
        timeout_s=120,
    )
    assert steady.alive()
    assert victim.alive()
    outcomes = Job.objects.filter(pk__in=job_ids)
    assert outcomes.count() == JOBS
    for job in outcomes:
        assert job.status in (JobStatus.SUCCESS, JobStatus.FAILED), job.status
        if job.status == JobStatus.FAILED:
            assert (job.error_type, job.attempt) == ("WorkerLost", 3)
        assert job.attempt == len(job.attempts) + 1
        assert all(attempt["error"]["type"] == "WorkerLost" for attempt in job.attempts)
    succeeded = outcomes.filter(status=JobStatus.SUCCESS).count()
    assert PluginMetrics.objects.get(plugin_name="retried_sleeping").success_count == succeeded

    call_command("seal_audit")
    report = verify()
    assert report.ok, report.first_problem
    for job in outcomes:
        events = list(
            AuditEntry.objects.filter(job_id=job.pk).order_by("seq").values_list("event", flat=True)
        )
        retries = events.count(AuditEvent.JOB_RETRIED)
        assert events.count(AuditEvent.JOB_STARTED) == retries + 1, events
        # It ended once: finished, or recovered as lost (a lost task replaced is recovered too).
        assert events[-1] in (AuditEvent.JOB_FINISHED, AuditEvent.JOB_RECOVERED), events
        assert events.count(AuditEvent.JOB_FINISHED) <= 1, events
