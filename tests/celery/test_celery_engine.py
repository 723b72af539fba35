"""The Celery adapter sends what commits, and only that: in this process, a real redis-server.

Which rows count as lost is in test_task_rows.py (no broker needed).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from execution.models import CeleryTask, Job, JobStatus
from execution.services import AnalysisExecutionService
from execution.services.lease_recovery import LeaseRecoveryService
from execution.task_engine import get_task_engine
from tests.celery.conftest import require_celery, use_broker
from tests.faults.conftest import free_port

require_celery()

from execution.task_engine.celery_tasks.engine import CeleryEngine  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_setting_names_the_celery_engine(celery_engine):
    assert isinstance(get_task_engine(), CeleryEngine)


def test_a_job_and_its_task_commit_together_and_only_then_is_it_sent(celery_engine, user):
    class Abort(Exception):
        pass

    def submit_then_fail():
        with transaction.atomic():
            AnalysisExecutionService().submit(
                plugin_name="echo", payload={"message": "no"}, user=user
            )
            assert CeleryTask.objects.count() == 1
            raise Abort

    with pytest.raises(Abort):
        submit_then_fail()
    assert (Job.objects.count(), CeleryTask.objects.count(), celery_engine.queued()) == (0, 0, 0)

    with transaction.atomic():
        job = AnalysisExecutionService().submit(
            plugin_name="echo", payload={"message": "yes"}, user=user
        )
        assert celery_engine.queued() == 0  # not before the commit
    assert celery_engine.queued() == 1
    task = CeleryTask.objects.get()
    assert (task.pk, task.status, task.task_path) == (
        job.task_id,
        "QUEUED",
        "execution.tasks.run_job_task",
    )


def test_a_task_the_broker_refuses_is_unsent_and_recovery_queues_its_job_again(
    celery_engine, settings, user
):
    good = use_broker(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    try:
        job = AnalysisExecutionService().submit(
            plugin_name="echo", payload={"message": "x"}, user=user
        )
    finally:
        use_broker(good)
    lost_task = CeleryTask.objects.get(pk=str(job.task_id))
    assert lost_task.status == "UNSENT"
    assert lost_task.error

    settings.JOB_LEASE_GRACE_S = 0
    Job.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(seconds=5))
    (replaced,) = LeaseRecoveryService().recover()
    assert replaced.pk == job.pk
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING
    assert job.task_id != lost_task.pk
    assert CeleryTask.objects.get(pk=str(lost_task.pk)).status == "FAILED"  # its late message skips
    assert CeleryTask.objects.get(pk=str(job.task_id)).status == "QUEUED"
    assert celery_engine.queued() == 1


def test_a_retry_is_sent_with_its_delay(celery_engine):
    run_after = timezone.now() + timedelta(seconds=30)
    task_id = CeleryEngine().enqueue(uuid.uuid4(), run_after=run_after)
    task = CeleryTask.objects.get(pk=str(task_id))
    assert task.run_after == run_after
    assert celery_engine.queued() == 1
