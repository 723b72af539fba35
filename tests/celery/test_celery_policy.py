"""Policy on Celery: a plugin's cap holds across Celery workers; quotas are the engine's too."""

from __future__ import annotations

import itertools

import pytest

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
