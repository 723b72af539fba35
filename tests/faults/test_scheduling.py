"""Scheduling with real db_worker processes: requesters take turns, a capped plugin runs alone.

Job times are the database's clock (created_at, started_at), so that the test
process and the workers agree; the capped plugin reports its own run's span.
"""

import itertools
import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connections

from execution.models import Job, JobStatus
from execution.policy.scheduling import PluginAtCapacity
from execution.services import AnalysisExecutionService
from tests.faults.conftest import FAULT_PLUGINS, wait_until

CAPPED = "tests.plugins.sample_plugins.OneAtATimePlugin"
WORKERS = 2
BACKLOG = 2000


@pytest.fixture(autouse=True)
def _capped_plugin_too(settings):
    settings.PLUGINS = [*FAULT_PLUGINS.split(","), CAPPED]


@pytest.fixture
def requesters(db, settings):
    settings.POLICY_MAX_ACTIVE_JOBS = 0  # A's backlog is larger than the default quota
    users = get_user_model().objects
    return users.create_user("a-user", password="pw-a-123456"), users.create_user(
        "b-user", password="pw-b-123456"
    )


def submit_backlog(user, count):
    service = AnalysisExecutionService()
    payload = {"message": "backlog", "repeat": 5}  # a 5 ms sleep
    for _ in range(count):
        service.submit(plugin_name="sleeping", payload=payload, user=user)


def overtaken_by(late: Job, early_user) -> int:
    """How many of ``early_user``'s jobs started after ``late`` was submitted, but before it."""
    late.refresh_from_db()
    assert late.status == JobStatus.SUCCESS
    return Job.objects.filter(
        requested_by=early_user,
        started_at__gt=late.created_at,
        started_at__lt=late.started_at,
    ).count()


def start_and_submit_late(processes, a, b, backlog, **worker_env):
    submit_backlog(a, backlog)
    for _ in range(WORKERS):
        processes.worker(**worker_env)
    # The workers are busy with the backlog when the second requester submits.
    wait_until(
        lambda: Job.objects.filter(requested_by=a, status=JobStatus.SUCCESS).count() >= 10,
        timeout_s=120,
    )
    late = AnalysisExecutionService().submit(
        plugin_name="sleeping", payload={"message": "late", "repeat": 1}, user=b
    )
    wait_until(lambda: Job.objects.get(pk=late.pk).status == JobStatus.SUCCESS, timeout_s=120)
    return late


def test_a_late_requester_starts_before_the_backlog(processes, requesters):
    a, b = requesters
    late = start_and_submit_late(processes, a, b, BACKLOG)
    assert overtaken_by(late, a) < 2 * WORKERS
    # The backlog was far from drained: the workers were busy all along.
    assert Job.objects.filter(requested_by=a, status=JobStatus.PENDING).count() > BACKLOG // 2


def test_without_fair_scheduling_the_late_requester_waits_its_turn(processes, requesters, settings):
    """The control: first come, first served lets the whole backlog go first."""
    settings.JOB_FAIR_SCHEDULING = False
    a, b = requesters
    late = start_and_submit_late(processes, a, b, 200, JOB_FAIR_SCHEDULING="0")
    assert overtaken_by(late, a) > 10 * WORKERS


def test_a_capped_plugin_never_runs_twice_at_once(processes, requesters):
    """max_concurrency = 1 with 4 workers and synchronous runs from this process at once."""
    a, b = requesters
    service = AnalysisExecutionService()
    payload = {"message": "gpu", "repeat": 150}
    for user in (a, b) * 6:
        service.submit(plugin_name="one_at_a_time", payload=payload, user=user)
    workers = [processes.worker(PLUGINS=f"{FAULT_PLUGINS},{CAPPED}") for _ in range(4)]
    refused: list[PluginAtCapacity] = []
    ran: list[Job] = []

    def synchronous_runs() -> None:
        try:
            while len(ran) + len(refused) < 40:
                try:
                    job = service.execute(plugin_name="one_at_a_time", payload=payload, user=a)
                    ran.append(job)
                except PluginAtCapacity as exc:
                    refused.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=synchronous_runs) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    wait_until(
        lambda: not Job.objects.filter(status__in=[JobStatus.PENDING, JobStatus.RUNNING]).exists(),
        timeout_s=120,
    )
    assert all(worker.alive() for worker in workers)

    jobs = list(Job.objects.filter(plugin_name="one_at_a_time").order_by("started_at"))
    assert len(jobs) == 12 + len(ran)
    assert ran  # the synchronous runs both ran and met the cap
    assert refused
    assert all(job.status == JobStatus.SUCCESS for job in jobs), [j.error for j in jobs]
    spans = sorted((job.result["started"], job.result["ended"]) for job in jobs)
    for (_, ended), (started, _) in itertools.pairwise(spans):
        assert ended <= started, f"two runs overlapped: {spans}"
    for earlier, later in itertools.pairwise(jobs):
        assert earlier.finished_at <= later.started_at
