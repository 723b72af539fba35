import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from execution.models import ALLOWED_TRANSITIONS, IllegalJobTransition, Job, JobStatus

pytestmark = pytest.mark.django_db

ENVELOPE = {"error": {"type": "PluginExecutionError"}, "_internal": {"traceback": "tb"}}
CANCELLED = {"error": {"type": "Cancelled", "message": "Cancelled by alice"}}
LOST = {"error": {"type": "WorkerLost", "message": "gone"}}


def claim(job: Job, holder: str = "host:1:abc", lease_s: float = 30) -> bool:
    return job.claim(lease_holder=holder, lease_s=lease_s)


def job_in(status: str) -> Job:
    job = Job.objects.create(plugin_name="echo", input_payload={"message": "x"})
    if status in (JobStatus.RUNNING, JobStatus.SUCCESS, JobStatus.FAILED):
        assert claim(job)
    if status == JobStatus.SUCCESS:
        job.mark_succeeded({"echoed": "x"})
    if status == JobStatus.FAILED:
        job.mark_failed(ENVELOPE)
    if status == JobStatus.CANCELLED:
        job.cancel(CANCELLED)
    return job


def test_a_new_job_is_pending_with_no_timestamps_but_created_at():
    job = Job.objects.create(plugin_name="echo")
    assert job.status == JobStatus.PENDING
    assert job.created_at is not None
    assert (job.started_at, job.finished_at, job.elapsed_ms) == (None, None, None)


def test_the_happy_path_sets_timestamps_lease_and_elapsed_time():
    job = job_in(JobStatus.PENDING)
    assert claim(job, holder="web-1:42:token")
    assert job.status == JobStatus.RUNNING
    assert job.started_at is not None
    stored = Job.objects.get(pk=job.pk)
    assert stored.lease_holder == "web-1:42:token"
    assert stored.lease_expires_at > stored.started_at >= stored.created_at
    time.sleep(0.05)
    job.mark_succeeded({"echoed": "x"})
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCESS
    assert job.result == {"echoed": "x"}
    assert job.finished_at >= job.started_at
    # The run's own duration, on the claimant's monotonic clock; the timestamps
    # around it come from the database's clock.
    wall_ms = (job.finished_at - job.started_at).total_seconds() * 1000
    assert 50 <= job.elapsed_ms <= wall_ms + 1


def test_failing_keeps_the_whole_envelope_traceback_included():
    job = job_in(JobStatus.FAILED)
    job.refresh_from_db()
    assert job.error == ENVELOPE
    assert job.public_error == {"type": "PluginExecutionError"}
    assert job.error_type == "PluginExecutionError"
    assert job.result is None


def test_a_pending_job_that_can_never_start_can_fail_directly():
    job = job_in(JobStatus.PENDING)
    job.mark_failed(ENVELOPE)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.started_at is None
    assert job.elapsed_ms is None


LEGAL = [(source, target) for source, targets in ALLOWED_TRANSITIONS.items() for target in targets]
ILLEGAL = [
    (source, target)
    for source in JobStatus.values
    for target in JobStatus.values
    if target not in ALLOWED_TRANSITIONS[source]
    and not (source == target == JobStatus.PENDING)  # nothing moves PENDING to PENDING
]


def move(job: Job, target: str) -> None:
    if target == JobStatus.RUNNING:
        assert claim(job)
    elif target == JobStatus.SUCCESS:
        job.mark_succeeded({"echoed": "x"})
    elif target == JobStatus.FAILED:
        job.mark_failed(ENVELOPE)
    elif target == JobStatus.CANCELLED:
        job.cancel(CANCELLED)
    else:
        job.requeue(LOST, next_attempt_at=timezone.now(), retry=True, task_id=uuid.uuid4())


def test_the_transition_table_is_the_documented_one():
    assert sorted(LEGAL) == sorted(
        [
            ("PENDING", "RUNNING"),
            ("PENDING", "FAILED"),
            ("PENDING", "CANCELLED"),
            ("RUNNING", "SUCCESS"),
            ("RUNNING", "FAILED"),
            ("RUNNING", "CANCELLED"),
            ("RUNNING", "PENDING"),
        ]
    )


@pytest.mark.parametrize(("source", "target"), LEGAL)
def test_every_legal_transition_is_stored(source, target):
    job = job_in(source)
    move(job, target)
    job.refresh_from_db()
    assert job.status == target


@pytest.mark.parametrize(("source", "target"), ILLEGAL)
def test_every_illegal_transition_is_refused_and_changes_nothing(source, target):
    job = job_in(source)
    before = Job.objects.values().get(pk=job.pk)
    if target == JobStatus.RUNNING:
        assert claim(job) is False  # a job that is not PENDING is simply not claimed
    else:
        with pytest.raises(IllegalJobTransition, match=f"{source} -> {target} is not allowed"):
            move(job, target)
    assert Job.objects.values().get(pk=job.pk) == before


def test_a_stale_copy_cannot_overwrite_a_newer_state():
    job = job_in(JobStatus.RUNNING)
    stale = Job.objects.get(pk=job.pk)
    job.mark_failed(ENVELOPE)
    with pytest.raises(IllegalJobTransition, match="changed concurrently"):
        stale.mark_succeeded({"echoed": "x"})
    assert Job.objects.get(pk=job.pk).status == JobStatus.FAILED


def test_claiming_a_job_someone_else_claimed_returns_not_claimed():
    job = job_in(JobStatus.PENDING)
    other_worker = Job.objects.get(pk=job.pk)
    assert claim(other_worker)
    assert claim(job) is False
    assert job.status == JobStatus.RUNNING  # refreshed: it now knows


@pytest.mark.django_db(transaction=True)
def test_two_threads_claiming_one_job_exactly_one_wins():
    for _ in range(20):
        job = Job.objects.create(plugin_name="echo")
        barrier = threading.Barrier(2)
        outcomes: list[bool] = []

        def race(job_id=job.pk, barrier=barrier, outcomes=outcomes):
            try:
                copy = Job.objects.get(pk=job_id)
                barrier.wait(5)
                outcomes.append(claim(copy))
            finally:
                connection.close()

        threads = [threading.Thread(target=race) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == [False, True]


def test_a_copy_holding_an_older_lease_cannot_finish_the_job():
    job = job_in(JobStatus.RUNNING)
    old_holder = Job.objects.get(pk=job.pk)
    job.requeue(LOST, next_attempt_at=timezone.now(), retry=True, task_id=uuid.uuid4())
    assert claim(job, holder="host:2:new")
    with pytest.raises(IllegalJobTransition, match="under this lease"):
        old_holder.mark_succeeded({"echoed": "late"})
    job.mark_succeeded({"echoed": "x"})
    assert Job.objects.get(pk=job.pk).result == {"echoed": "x"}


def test_cancelling_a_running_job_records_who_and_how_long_it_ran():
    job = job_in(JobStatus.RUNNING)
    job.cancel(CANCELLED)
    stored = Job.objects.get(pk=job.pk)
    assert stored.status == JobStatus.CANCELLED
    assert stored.error == CANCELLED
    assert stored.finished_at >= stored.started_at
    assert stored.elapsed_ms is not None
    with pytest.raises(IllegalJobTransition, match="CANCELLED -> CANCELLED is not allowed"):
        stored.cancel(CANCELLED)


def test_cancelling_a_stale_pending_copy_cancels_the_running_job():
    job = job_in(JobStatus.PENDING)
    stale = Job.objects.get(pk=job.pk)
    assert claim(job)
    stale.cancel(CANCELLED)
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED


def test_a_retry_counts_the_attempt_and_keeps_its_error():
    job = job_in(JobStatus.RUNNING)
    later = timezone.now() + timedelta(seconds=60)
    job.requeue(LOST, next_attempt_at=later, retry=True, task_id=uuid.uuid4())
    stored = Job.objects.get(pk=job.pk)
    assert (stored.status, stored.attempt, stored.next_attempt_at) == ("PENDING", 2, later)
    assert stored.lease_holder == ""
    assert stored.lease_expires_at is None
    (earlier,) = stored.attempts
    assert earlier["attempt"] == 1
    assert earlier["error"] == LOST["error"]
    assert earlier["lease_holder"] == "host:1:abc"
    assert claim(stored) is False  # not before its next attempt is due


def test_a_job_handed_back_keeps_its_attempt_and_may_start_at_once():
    job = job_in(JobStatus.RUNNING)
    job.requeue(LOST, next_attempt_at=timezone.now(), retry=False, task_id=uuid.uuid4())
    stored = Job.objects.get(pk=job.pk)
    assert (stored.status, stored.attempt, len(stored.attempts)) == ("PENDING", 1, 1)
    assert claim(stored)
    assert Job.objects.get(pk=job.pk).next_attempt_at is None


def test_expired_leases_are_found_and_live_ones_are_not():
    expired = job_in(JobStatus.PENDING)
    claim(expired, lease_s=-1)
    live = job_in(JobStatus.PENDING)
    claim(live, lease_s=60)
    job_in(JobStatus.SUCCESS)
    assert list(Job.objects.expired_leases()) == [expired]
