"""Scheduling in one process: the fair queue's ranks, the worker's choice, concurrency caps.

The same behaviour with real db_worker processes is in tests/faults/test_scheduling.py.
"""

import threading
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connections, transaction
from django_tasks_db.models import DBTaskResult

from execution.models import AtConcurrencyCap, Job, JobStatus
from execution.policy import scheduling
from execution.services import AnalysisExecutionService, JobExecutionService
from execution.services.job_execution_service import new_lease_holder
from execution.task_engine.django_tasks_db.worker import GovernedWorker
from tests.execution.conftest import SAMPLE_PLUGINS

pytestmark = pytest.mark.django_db(transaction=True)

CAPPED = "tests.plugins.sample_plugins.OneAtATimePlugin"


@pytest.fixture(autouse=True)
def _capped_plugin_too(settings):
    settings.PLUGINS = [*SAMPLE_PLUGINS, CAPPED]


@pytest.fixture
def alice(user):
    return user


@pytest.fixture
def bob(db):
    return get_user_model().objects.create_user("bob", password="pw-bob-123456")


def submit(user, plugin="echo", message="hi"):
    return AnalysisExecutionService().submit(
        plugin_name=plugin, payload={"message": message}, user=user
    )


def worker() -> GovernedWorker:
    return GovernedWorker(
        queue_names=["default"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="test-worker",
        excluded_queue_names=[],
    )


def take(w: GovernedWorker) -> Job | None:
    """The job whose task the worker takes next (its task is then RUNNING)."""
    task, _ = w._take_next_task()
    return None if task is None else Job.objects.get(task_id=task.pk)


def claim(job: Job, max_concurrency=None) -> bool:
    """Claim ``job`` as a worker would, its task taken too."""
    job.refresh_from_db()
    claimed = job.claim(
        lease_holder=new_lease_holder(),
        lease_s=30,
        task_id=job.task_id,
        max_concurrency=max_concurrency,
    )
    if claimed:
        DBTaskResult.objects.filter(pk=str(job.task_id)).update(status="RUNNING")
    return claimed


def test_requesters_take_turns_in_the_queue(alice, bob):
    a = [submit(alice) for _ in range(3)]
    b = submit(bob)
    assert [job.queue_rank for job in a] == [0.0, 1.0, 2.0]
    assert b.queue_rank == 0.0  # the head of the queue: it starts right after a[0]
    assert list(scheduling.claimable_jobs()) == [a[0], b, a[1], a[2]]


def test_the_queue_position_moves_on_with_what_runs(alice, bob):
    a = [submit(alice) for _ in range(5)]
    for job in a[:3]:
        assert claim(job)
    b = submit(bob)
    # The lowest queued rank is 3, what runs reaches 2: bob joins at 3, after a[3].
    assert b.queue_rank == 3.0
    assert list(scheduling.claimable_jobs()) == [a[3], b, a[4]]


def test_a_weighted_requester_advances_by_smaller_steps(alice, bob, monkeypatch):
    monkeypatch.setattr(
        scheduling, "requester_weight", lambda user, plugin: 2.0 if user == bob else 1.0
    )
    a = [submit(alice) for _ in range(3)]
    b = [submit(bob) for _ in range(4)]
    assert [job.queue_rank for job in b] == [0.0, 0.5, 1.0, 1.5]
    assert list(scheduling.claimable_jobs()) == [a[0], b[0], b[1], a[1], b[2], b[3], a[2]]


def test_fair_scheduling_off_is_first_come_first_served(alice, bob, settings):
    settings.JOB_FAIR_SCHEDULING = False
    a = [submit(alice) for _ in range(3)]
    b = submit(bob)
    assert {job.queue_rank for job in [*a, b]} == {0.0}
    w = worker()
    assert [take(w) for _ in range(4)] == [*a, b]


def test_the_worker_takes_the_head_of_the_fair_queue(alice, bob):
    a = [submit(alice) for _ in range(3)]
    b = submit(bob)
    w = worker()
    assert [take(w) for _ in range(4)] == [a[0], b, a[1], a[2]]
    assert take(w) is None
    assert DBTaskResult.objects.filter(status="RUNNING").count() == 4


def test_the_worker_still_drains_tasks_of_jobs_that_will_not_run(alice):
    cancelled = submit(alice)
    JobExecutionService().cancel_job(job=cancelled)
    queued = submit(alice)
    w = worker()
    assert take(w) == queued  # queued jobs first
    assert take(w) == cancelled  # then the rest, oldest first: its task ends
    assert take(w) is None


def test_the_worker_skips_a_plugin_at_its_cap(alice, bob):
    running = submit(alice, plugin="one_at_a_time")
    waiting = submit(alice, plugin="one_at_a_time")
    other = submit(bob)
    assert claim(running, max_concurrency=1)
    w = worker()
    assert scheduling.plugins_at_cap() == {"one_at_a_time"}
    assert take(w) == other  # waiting's rank is lower, but it cannot start
    assert take(w) is None
    running.refresh_from_db()
    running.mark_succeeded({"started": 0.0, "ended": 0.0})
    assert scheduling.plugins_at_cap() == frozenset()
    assert take(w) == waiting


def test_the_worker_skips_a_plugin_at_its_cap_without_fairness_too(alice, settings):
    settings.JOB_FAIR_SCHEDULING = False
    running = submit(alice, plugin="one_at_a_time")
    waiting = submit(alice, plugin="one_at_a_time")
    other = submit(alice)
    assert claim(running, max_concurrency=1)
    w = worker()
    assert take(w) == other
    assert take(w) is None
    assert waiting.status == JobStatus.PENDING


def test_a_claim_beyond_the_cap_is_refused_and_the_job_stays_pending(alice):
    first, second, third = (submit(alice, plugin="one_at_a_time") for _ in range(3))
    assert claim(first, max_concurrency=2)
    assert claim(second, max_concurrency=2)
    with pytest.raises(AtConcurrencyCap):
        claim(third, max_concurrency=2)
    third.refresh_from_db()
    assert third.status == JobStatus.PENDING
    assert {first.concurrency_slot, second.concurrency_slot} == {0, 1}


def test_the_database_refuses_a_second_run_in_one_slot(alice):
    """The constraint itself: a write that skipped the read of the taken slots still fails."""
    first, second = (submit(alice, plugin="one_at_a_time") for _ in range(2))
    assert claim(first, max_concurrency=1)
    second.refresh_from_db()
    with pytest.raises(IntegrityError), transaction.atomic():
        second._claim_row(new_lease_holder(), 30, None, slot=0)
    first.mark_succeeded({"started": 0.0, "ended": 0.0})
    assert claim(second, max_concurrency=1)


@pytest.mark.parametrize("max_concurrency", [1, 3])
def test_parallel_claims_never_exceed_the_cap(alice, max_concurrency):
    """Claims racing from many threads (their own connections): exactly the cap wins."""
    jobs = [submit(alice, plugin="one_at_a_time") for _ in range(12)]
    barrier = threading.Barrier(len(jobs))
    outcomes: list[str] = []

    def race(job: Job) -> None:
        try:
            job.refresh_from_db()
            barrier.wait()
            claimed = job.claim(
                lease_holder=new_lease_holder(), lease_s=30, max_concurrency=max_concurrency
            )
            outcomes.append("claimed" if claimed else "lost")
        except AtConcurrencyCap:
            outcomes.append("at cap")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=race, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == sorted(
        ["claimed"] * max_concurrency + ["at cap"] * (len(jobs) - max_concurrency)
    )
    running = Job.objects.filter(status=JobStatus.RUNNING)
    slots = {job.concurrency_slot for job in running}
    assert slots == set(range(max_concurrency))


def test_a_job_at_the_cap_gets_a_later_task(alice):
    first, second = (submit(alice, plugin="one_at_a_time") for _ in range(2))
    assert claim(first, max_concurrency=1)
    old_task = second.task_id
    JobExecutionService().run_job(job_id=second.pk, task_id=old_task)
    second.refresh_from_db()
    assert second.status == JobStatus.PENDING
    assert second.task_id != old_task
    later = DBTaskResult.objects.get(pk=second.task_id)
    assert later.status == "READY"
    assert later.run_after > DBTaskResult.objects.get(pk=old_task).enqueued_at


def test_a_synchronous_run_at_the_cap_is_refused_with_503(alice, api_client):
    running = submit(alice, plugin="one_at_a_time")
    assert claim(running, max_concurrency=1)
    jobs_before = Job.objects.count()
    response = api_client.post(
        "/v1/analyze-execution",
        {"plugin": "one_at_a_time", "payload": {"message": "x"}},
        format="json",
    )
    assert response.status_code == 503
    assert response["Retry-After"] == str(scheduling.CAP_RETRY_AFTER_S)
    error = response.json()["detail"]
    assert error["type"] == "ServiceUnavailable"
    assert error["plugin"] == "one_at_a_time"
    assert error["details"] == {"reason": "max_concurrency", "max_concurrency": 1}
    assert Job.objects.count() == jobs_before  # nothing ran, nothing recorded

    running.refresh_from_db()
    running.mark_succeeded({"started": 0.0, "ended": 0.0})
    response = api_client.post(
        "/v1/analyze-execution",
        {"plugin": "one_at_a_time", "payload": {"message": "x", "repeat": 1}},
        format="json",
    )
    assert response.status_code == 200, response.json()
    job = Job.objects.get(pk=uuid.UUID(response.json()["job_id"]))
    assert job.status == JobStatus.SUCCESS
    assert job.concurrency_slot == 0


def test_the_plugin_list_shows_the_cap(api_client):
    plugins = {item["name"]: item for item in api_client.get("/v1/plugins").json()}
    assert plugins["one_at_a_time"]["limits"]["max_concurrency"] == 1
    assert plugins["echo"]["limits"]["max_concurrency"] is None
