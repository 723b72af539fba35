"""CeleryEngine reads and ends its task rows: the lost-task contract, with no broker or Celery."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from execution.models import CeleryTask, Job
from execution.services import JobExecutionService
from execution.services.lease_recovery import LostWorker
from execution.task_engine.celery_tasks.engine import CeleryEngine

pytestmark = pytest.mark.django_db


def queued_job_with_task(**task_fields) -> Job:
    """A PENDING job whose task is a CeleryTask row with ``task_fields``."""
    job = JobExecutionService().create_job(plugin_name="echo", payload={"message": "x"})
    CeleryTask.objects.create(
        id=str(job.task_id), task_path="execution.tasks.run_job_task", **task_fields
    )
    return job


@pytest.mark.parametrize(
    ("status", "started_ago_s", "lost"),
    [
        ("QUEUED", None, False),
        ("RUNNING", 1, False),
        ("RUNNING", 600, True),
        ("UNSENT", None, True),
        ("SUCCESSFUL", 600, True),
        ("FAILED", 600, True),
    ],
)
def test_which_tasks_are_lost(status, started_ago_s, lost):
    started_at = timezone.now() - timedelta(seconds=started_ago_s) if started_ago_s else None
    job = queued_job_with_task(status=status, started_at=started_at)
    stale_before = timezone.now() - timedelta(seconds=60)
    later = timezone.now() + timedelta(minutes=1)
    found = CeleryEngine().with_lost_tasks(
        Job.objects.queued_before(later), stale_before=stale_before
    )
    assert list(found) == ([job] if lost else [])


@pytest.mark.parametrize(("due_ago_s", "lost"), [(-30, False), (1, False), (600, True)])
def test_a_delayed_task_not_started_a_grace_after_its_time_is_lost(due_ago_s, lost):
    """Its message was held by a worker until then (Redis would give it back only later)."""
    job = queued_job_with_task(run_after=timezone.now() - timedelta(seconds=due_ago_s))
    stale_before = timezone.now() - timedelta(seconds=60)
    queued = Job.objects.queued_before(timezone.now() + timedelta(minutes=1))
    found = CeleryEngine().with_lost_tasks(queued, stale_before=stale_before)
    assert list(found) == ([job] if lost else [])


def test_a_job_whose_task_row_is_gone_has_lost_its_task():
    job = JobExecutionService().create_job(plugin_name="echo", payload={"message": "x"})
    later = timezone.now() + timedelta(minutes=1)
    found = CeleryEngine().with_lost_tasks(Job.objects.queued_before(later), stale_before=later)
    assert list(found) == [job]


@pytest.mark.parametrize("status", ["QUEUED", "SUCCESSFUL", "FAILED"])
def test_only_a_task_left_running_or_unsent_is_failed_as_lost(status):
    engine = CeleryEngine()
    task = CeleryTask.objects.create(id=uuid.uuid4(), task_path="t", status=status)
    engine.fail_lost_task(task.pk, LostWorker("gone"), finished_at=timezone.now())
    assert CeleryTask.objects.get(pk=task.pk).status == status
    for left in ("RUNNING", "UNSENT"):
        CeleryTask.objects.filter(pk=task.pk).update(status=left)
        engine.fail_lost_task(task.pk, LostWorker("gone"), finished_at=timezone.now())
        failed = CeleryTask.objects.get(pk=task.pk)
        assert failed.status == "FAILED"
        assert "LostWorker: gone" in failed.error


def test_pruned_tasks_are_deleted():
    engine = CeleryEngine()
    kept, pruned = (CeleryTask.objects.create(id=uuid.uuid4(), task_path="t") for _ in range(2))
    assert engine.prune_tasks([pruned.pk]) == 1
    assert engine.prune_tasks([]) == 0
    assert list(CeleryTask.objects.values_list("pk", flat=True)) == [kept.pk]
