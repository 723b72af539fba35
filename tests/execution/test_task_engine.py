"""The task-engine seam: the project reaches its queue only through the configured adapter."""

import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from execution.models import Job, JobStatus
from execution.services import AnalysisExecutionService, JobExecutionService
from execution.services.lease_recovery import LeaseRecoveryService, LostWorker
from execution.task_engine import get_task_engine
from execution.task_engine.base import TaskEngine
from execution.task_engine.django_tasks_db.engine import DjangoTasksDbEngine

pytestmark = pytest.mark.django_db


class RecordingEngine(TaskEngine):
    """A second engine: it queues nothing, and remembers what the project asked of it."""

    enqueued: list[tuple[uuid.UUID, object]] = []
    failed: list[tuple[uuid.UUID, Exception]] = []
    lost: set[uuid.UUID] = set()

    def enqueue(self, job_id, *, run_after=None):
        task_id = uuid.uuid4()
        self.enqueued.append((job_id, run_after))
        return task_id

    def enqueue_callback(self, job_id, *, run_after=None):
        return uuid.uuid4()

    def fail_lost_task(self, task_id, error, *, finished_at):
        self.failed.append((task_id, error))

    def with_lost_tasks(self, jobs, *, stale_before):
        return jobs.filter(task_id__in=self.lost)

    def prune_tasks(self, task_ids):
        return 0


@pytest.fixture
def recording_engine(settings):
    settings.TASK_ENGINE = f"{__name__}.RecordingEngine"
    settings.PLUGINS = [*settings.PLUGINS, "tests.plugins.sample_plugins.RetriedSleepingPlugin"]
    RecordingEngine.enqueued, RecordingEngine.failed, RecordingEngine.lost = [], [], set()
    return RecordingEngine


def test_the_setting_names_the_engine(recording_engine):
    assert isinstance(get_task_engine(), recording_engine)


def test_another_engine_queues_retries_and_recovers_every_job(recording_engine):
    job = AnalysisExecutionService().submit(
        plugin_name="retried_sleeping", payload={"message": "x", "repeat": 1}
    )
    assert recording_engine.enqueued == [(job.pk, None)]
    first_task = job.task_id
    assert first_task is not None

    taken = Job.objects.load_pending(job.pk)
    assert taken.claim(lease_holder="lost:1:a", lease_s=60, task_id=first_task)
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    LeaseRecoveryService().recover()
    job.refresh_from_db()
    assert (job.status, job.attempt) == (JobStatus.PENDING, 2)
    assert recording_engine.enqueued[-1] == (job.pk, job.next_attempt_at)  # after a backoff
    ((failed_task, error),) = recording_engine.failed
    assert failed_task == first_task
    assert isinstance(error, LostWorker)

    Job.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    recording_engine.lost.add(job.task_id)
    (replaced,) = LeaseRecoveryService().recover()
    assert replaced.pk == job.pk
    assert recording_engine.enqueued[-1] == (job.pk, None)
    assert recording_engine.failed[-1][0] == job.task_id
    job.refresh_from_db()
    assert job.task_id not in recording_engine.lost
    assert not DBTaskResult.objects.exists()  # nothing went around the engine


# The django-tasks-db engine ------------------------------------------------------------


def test_a_submitted_job_and_its_task_are_committed_together(user):
    job = AnalysisExecutionService().submit(plugin_name="echo", payload={"message": "x"}, user=user)
    task = DBTaskResult.objects.get()
    assert task.args_kwargs["args"] == [str(job.pk)]
    assert job.task_id == task.pk
    assert job.status == JobStatus.PENDING

    class Abort(Exception):
        pass

    def submit_then_fail():
        with transaction.atomic():
            AnalysisExecutionService().submit(
                plugin_name="echo", payload={"message": "y"}, user=user
            )
            raise Abort

    with pytest.raises(Abort):
        submit_then_fail()
    assert Job.objects.count() == DBTaskResult.objects.count() == 1


@pytest.mark.parametrize("status", ["READY", "SUCCESSFUL", "FAILED"])
def test_only_a_task_left_running_is_failed_as_lost(status):
    engine = DjangoTasksDbEngine()
    task_id = engine.enqueue(uuid.uuid4())
    DBTaskResult.objects.filter(pk=task_id).update(status=status)
    engine.fail_lost_task(task_id, LostWorker("gone"), finished_at=timezone.now())
    assert DBTaskResult.objects.get(pk=task_id).status == status


def test_a_job_whose_task_row_is_gone_has_lost_its_task():
    job = JobExecutionService().create_job(plugin_name="echo", payload={"message": "x"})
    DBTaskResult.objects.all().delete()
    later = timezone.now() + timedelta(minutes=1)
    lost = DjangoTasksDbEngine().with_lost_tasks(
        Job.objects.queued_before(later), stale_before=later
    )
    assert list(lost) == [job]
