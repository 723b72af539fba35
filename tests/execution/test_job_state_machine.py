import threading

import pytest
from django.db import connection

from execution.models import ALLOWED_TRANSITIONS, IllegalJobTransition, Job, JobStatus

pytestmark = pytest.mark.django_db

ENVELOPE = {"error": {"type": "PluginExecutionError"}, "_internal": {"traceback": "tb"}}


def job_in(status: str) -> Job:
    job = Job.objects.create(plugin_name="echo", input_payload={"message": "x"})
    if status in (JobStatus.RUNNING, JobStatus.SUCCESS, JobStatus.FAILED):
        assert job.claim()
    if status == JobStatus.SUCCESS:
        job.mark_succeeded({"echoed": "x"})
    if status == JobStatus.FAILED:
        job.mark_failed(ENVELOPE)
    return job


def test_a_new_job_is_pending_with_no_timestamps_but_created_at():
    job = Job.objects.create(plugin_name="echo")
    assert job.status == JobStatus.PENDING
    assert job.created_at is not None
    assert (job.started_at, job.finished_at, job.elapsed_ms) == (None, None, None)


def test_the_happy_path_sets_timestamps_and_elapsed_time():
    job = job_in(JobStatus.PENDING)
    assert job.claim()
    assert job.status == JobStatus.RUNNING
    assert job.started_at is not None
    job.mark_succeeded({"echoed": "x"})
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCESS
    assert job.result == {"echoed": "x"}
    assert job.finished_at >= job.started_at
    assert job.elapsed_ms == pytest.approx(
        (job.finished_at - job.started_at).total_seconds() * 1000, abs=0.01
    )


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
    for target in (JobStatus.RUNNING, JobStatus.SUCCESS, JobStatus.FAILED)
    if target not in ALLOWED_TRANSITIONS[source]
]


def move(job: Job, target: str) -> None:
    if target == JobStatus.RUNNING:
        assert job.claim()
    elif target == JobStatus.SUCCESS:
        job.mark_succeeded({"echoed": "x"})
    else:
        job.mark_failed(ENVELOPE)


def test_the_transition_table_is_the_documented_one():
    assert sorted(LEGAL) == sorted(
        [
            ("PENDING", "RUNNING"),
            ("PENDING", "FAILED"),
            ("RUNNING", "SUCCESS"),
            ("RUNNING", "FAILED"),
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
        assert job.claim() is False  # a job that is not PENDING is simply not claimed
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
    assert other_worker.claim()
    assert job.claim() is False
    assert job.status == JobStatus.RUNNING  # refreshed: it now knows


@pytest.mark.django_db(transaction=True)
def test_two_threads_claiming_one_job_exactly_one_wins():
    for _ in range(20):
        job = Job.objects.create(plugin_name="echo")
        barrier = threading.Barrier(2)
        outcomes: list[bool] = []

        def claim(job_id=job.pk, barrier=barrier, outcomes=outcomes):
            try:
                copy = Job.objects.get(pk=job_id)
                barrier.wait(5)
                outcomes.append(copy.claim())
            finally:
                connection.close()

        threads = [threading.Thread(target=claim) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == [False, True]


def test_visible_to_limits_non_staff_users_to_their_own_jobs(user, staff_user):
    mine = Job.objects.create(plugin_name="echo", requested_by=user)
    theirs = Job.objects.create(plugin_name="echo", requested_by=staff_user)
    assert list(Job.objects.visible_to(user)) == [mine]
    assert set(Job.objects.visible_to(staff_user)) == {mine, theirs}
