"""Chaos: workers killed with SIGKILL in the middle of a batch; every job still ends once."""

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
from execution.services import AnalysisExecutionService
from plugins.models import PluginMetrics
from tests.faults.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

JOBS = 200
KILLS = 3


def running_on(worker_pid: int) -> bool:
    """Whether the worker holds a RUNNING job right now (so a kill loses one)."""
    return Job.objects.filter(
        status=JobStatus.RUNNING, lease_holder__contains=f":{worker_pid}:"
    ).exists()


def test_two_workers_killed_three_times_lose_no_job_and_run_none_twice(processes):
    durations = random.Random(20261127)
    service = AnalysisExecutionService()
    jobs = [
        service.submit(
            plugin_name="retried_sleeping",
            payload={"message": "x", "repeat": durations.randint(0, 300)},
        )
        for _ in range(JOBS)
    ]
    steady = processes.worker()
    victim = processes.worker()
    for _ in range(KILLS):
        wait_until(functools.partial(running_on, victim.pid), timeout_s=60, step_s=0.01)
        os.kill(victim.pid, signal.SIGKILL)
        victim.popen.wait(10)
        victim = processes.worker()

    # A minute after the last kill at the latest, nothing is left RUNNING or PENDING.
    wait_until(
        lambda: not Job.objects.filter(status__in=[JobStatus.RUNNING, JobStatus.PENDING]).exists(),
        timeout_s=60,
    )
    assert steady.alive()
    assert victim.alive()
    outcomes = Job.objects.filter(pk__in=[job.pk for job in jobs])
    assert outcomes.count() == JOBS
    for job in outcomes:
        if job.status == JobStatus.FAILED:
            assert job.error_type == "WorkerLost"
            assert job.attempt == job.max_attempts == 3
        else:
            assert job.status == JobStatus.SUCCESS
            assert job.result is not None
        assert job.attempt == len(job.attempts) + 1
        assert all(attempt["error"]["type"] == "WorkerLost" for attempt in job.attempts)
    succeeded = outcomes.filter(status=JobStatus.SUCCESS).count()
    retried = [job for job in outcomes if job.attempts]
    assert len(retried) >= KILLS  # each kill lost the job its worker was running
    # Each success was recorded exactly once: none ran to success twice.
    assert PluginMetrics.objects.get(plugin_name="retried_sleeping").success_count == succeeded

    # The audit trail holds every job's whole story, and verifies.
    call_command("seal_audit")
    report = verify()
    assert report.ok, report.first_problem
    assert report.unsealed == 0
    for job in outcomes:
        events = list(
            AuditEntry.objects.filter(job_id=job.pk).order_by("seq").values_list("event", flat=True)
        )
        assert events[0] == AuditEvent.JOB_SUBMITTED, events
        assert events[-1] in (AuditEvent.JOB_FINISHED, AuditEvent.JOB_RECOVERED), events
        # Every attempt that started ended: handed back or retried, or it ended the job.
        retries = events.count(AuditEvent.JOB_RETRIED)
        assert events.count(AuditEvent.JOB_STARTED) == retries + 1, events
    assert call_command("verify_audit") is None  # exits 0
