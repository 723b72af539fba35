"""Policy on Celery: a plugin's cap holds across Celery workers, and fair turns hold too."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from execution.models import CeleryTask, Job, JobStatus
from execution.services import AnalysisExecutionService
from tests.celery.conftest import require_celery, start_celery_worker
from tests.faults.conftest import FAULT_PLUGINS, wait_until

require_celery()

pytestmark = pytest.mark.django_db(transaction=True)

CAPPED = "tests.plugins.sample_plugins.OneAtATimePlugin"
JOBS = 8


def test_a_capped_plugin_never_runs_twice_at_once_on_celery(
    processes, celery_engine, settings, user
):
    """max_concurrency = 1, two Celery workers of two pool processes each."""
    settings.PLUGINS = [*FAULT_PLUGINS.split(","), CAPPED]
    service = AnalysisExecutionService()
    payload = {"message": "gpu", "repeat": 150}
    submitted = [
        service.submit(plugin_name="one_at_a_time", payload=payload, user=user) for _ in range(JOBS)
    ]
    assert celery_engine.queued() == JOBS
    plugins = f"{FAULT_PLUGINS},{CAPPED}"
    workers = [
        start_celery_worker(processes, celery_engine, "--concurrency", "2", PLUGINS=plugins)
        for _ in range(2)
    ]
    wait_until(
        lambda: not Job.objects.filter(status__in=[JobStatus.PENDING, JobStatus.RUNNING]).exists(),
        timeout_s=120,
    )
    assert all(worker.alive() for worker in workers)
    jobs = list(Job.objects.filter(pk__in=[job.pk for job in submitted]).order_by("started_at"))
    assert all(job.status == JobStatus.SUCCESS for job in jobs), [job.error for job in jobs]
    spans = sorted((job.result["started"], job.result["ended"]) for job in jobs)
    for (_, ended), (started, _) in itertools.pairwise(spans):
        assert ended <= started, f"two runs overlapped: {spans}"
    # Jobs that found the plugin busy waited with a delayed message of their own.
    waited = CeleryTask.objects.exclude(pk__in=[job.task_id for job in submitted])
    assert waited.filter(run_after__isnull=False).exists()


BACKLOG = 100


def overtaken_by(late: Job, early_user) -> int:
    """How many of ``early_user``'s jobs started after ``late`` was submitted, but before it."""
    late.refresh_from_db()
    assert late.status == JobStatus.SUCCESS
    return Job.objects.filter(
        requested_by=early_user, started_at__gt=late.created_at, started_at__lt=late.started_at
    ).count()


def submit_late_behind_a_backlog(processes, broker, **worker_env) -> tuple[Job, Any]:
    users = get_user_model().objects
    early = users.create_user("early", password="pw-early-123")
    late_user = users.create_user("late", password="pw-late-123")
    service = AnalysisExecutionService()
    for _ in range(BACKLOG):
        service.submit(plugin_name="sleeping", payload={"message": "b", "repeat": 5}, user=early)
    start_celery_worker(processes, broker, **worker_env)
    wait_until(
        lambda: Job.objects.filter(requested_by=early, status=JobStatus.SUCCESS).count() >= 10,
        timeout_s=120,
    )
    late = service.submit(
        plugin_name="sleeping", payload={"message": "late", "repeat": 1}, user=late_user
    )
    wait_until(lambda: Job.objects.get(pk=late.pk).status == JobStatus.SUCCESS, timeout_s=120)
    return late, early


def test_a_late_requester_starts_before_the_backlog_on_celery(processes, celery_engine):
    late, early = submit_late_behind_a_backlog(processes, celery_engine)
    assert overtaken_by(late, early) < 3
    # The backlog was far from drained: the worker was busy all along.
    assert Job.objects.filter(requested_by=early, status=JobStatus.PENDING).count() > BACKLOG // 2
    # Every job still has one live task: the swapped ones run the rest of the backlog.
    wait_until(
        lambda: not Job.objects.filter(status__in=[JobStatus.PENDING, JobStatus.RUNNING]).exists(),
        timeout_s=120,
    )
    assert Job.objects.filter(status=JobStatus.SUCCESS).count() == BACKLOG + 1
    assert celery_engine.queued() == 0


def test_without_fair_scheduling_celery_runs_first_come_first_served(
    processes, celery_engine, settings
):
    """The control: the broker's order lets the whole backlog go first."""
    settings.JOB_FAIR_SCHEDULING = False
    late, early = submit_late_behind_a_backlog(processes, celery_engine, JOB_FAIR_SCHEDULING="0")
    assert overtaken_by(late, early) > 20
