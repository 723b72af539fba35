"""No finished outcome is lost: commits the database refuses are tried again, exactly once each.

The database refuses the commit itself (as with a full disk or a failover): the
UPDATE that finishes the job ran, the commit failed and rolled it back. That is
where the job instance used to say SUCCESS while the row still said RUNNING.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import OperationalError
from django.db.backends.base.base import BaseDatabaseWrapper
from rest_framework.test import APIClient

from execution.audit.events import AuditEvent
from execution.audit.models import AuditEntry
from execution.models import Job, JobStatus
from execution.services import JobExecutionService
from execution.services.lease_recovery import LeaseRecoveryService
from plugins.models import PluginMetrics
from tests.faults.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


class RefusedCommits:
    """Lets the next commit through (the claim, or a synchronous job's insert), then fails
    ``count`` (-1: all); ``answer_lost``: those commit, then fail anyway."""

    def __init__(self, count: int, *, answer_lost: bool = False, skip: int = 1) -> None:
        self.skip = skip
        self.left = count
        self.answer_lost = answer_lost
        self.refused = 0
        self._lock = threading.Lock()

    def stop(self) -> None:
        with self._lock:
            self.left = 0

    def commit(self, real, connection) -> None:
        with self._lock:
            if self.skip:
                self.skip -= 1
                real(connection)
                return
            refuse = self.left != 0
            if refuse:
                self.left -= 1
                self.refused += 1
        if refuse and self.answer_lost:
            real(connection)
        if refuse:
            raise OperationalError("database or disk is full")
        real(connection)


@pytest.fixture
def refuse_commits(monkeypatch) -> Iterator[type[RefusedCommits]]:
    real = BaseDatabaseWrapper._commit  # type: ignore[attr-defined]
    installed: list[RefusedCommits] = []

    def install(count: int, **kwargs) -> RefusedCommits:
        refusal = RefusedCommits(count, **kwargs)
        monkeypatch.setattr(
            BaseDatabaseWrapper, "_commit", lambda connection: refusal.commit(real, connection)
        )
        installed.append(refusal)
        return refusal

    yield install  # type: ignore[misc]
    for refusal in installed:
        refusal.stop()


@pytest.fixture(autouse=True)
def _plugins(settings):
    settings.PLUGINS = [
        "tests.plugins.sample_plugins.EchoPlugin",
        "tests.plugins.sample_plugins.SleepingPlugin",
    ]


def echo_metrics() -> tuple[int, int]:
    row = PluginMetrics.objects.filter(plugin_name="echo").first()
    return (row.success_count, row.error_count) if row else (0, 0)


def run_sync(user) -> Any:
    client = APIClient()
    client.force_authenticate(user)
    return client.post(
        "/v1/analyze-execution", {"plugin": "echo", "payload": {"message": "hi"}}, format="json"
    )


@pytest.mark.parametrize("refusals", [1, 2])
def test_a_synchronous_outcome_whose_commit_is_refused_is_recorded_once(
    user, refuse_commits, refusals, caplog
):
    refusal = refuse_commits(refusals)
    response = run_sync(user)
    assert response.status_code == 200, response.content
    assert refusal.refused == refusals
    job = Job.objects.get(pk=response["X-Job-Id"])
    assert (job.status, job.result) == (JobStatus.SUCCESS, {"echoed": "hi"})
    assert echo_metrics() == (1, 0)
    assert caplog.text.count(f"Could not record the outcome of job {job.pk}") == refusals
    assert "was not recorded" not in caplog.text


@pytest.mark.parametrize("refusals", [1, 2])
def test_a_background_outcome_whose_commit_is_refused_is_recorded_once(
    user, refuse_commits, refusals
):
    job = JobExecutionService().create_job(plugin_name="echo", payload={"message": "bg"})
    refusal = refuse_commits(refusals)
    ran = JobExecutionService().run_job(job_id=job.pk)
    assert refusal.refused == refusals
    assert ran.status == JobStatus.SUCCESS
    stored = Job.objects.get(pk=job.pk)
    assert (stored.status, stored.result) == (JobStatus.SUCCESS, {"echoed": "bg"})
    assert echo_metrics() == (1, 0)


def test_a_commit_whose_answer_was_lost_is_not_recorded_or_counted_twice(user, refuse_commits):
    job = JobExecutionService().create_job(plugin_name="echo", payload={"message": "x"})
    refuse_commits(1, answer_lost=True)
    ran = JobExecutionService().run_job(job_id=job.pk)
    assert ran.status == JobStatus.SUCCESS
    assert Job.objects.get(pk=job.pk).result == {"echoed": "x"}
    assert echo_metrics() == (1, 0)


def test_a_synchronous_caller_gets_503_then_the_outcome_is_recorded_when_writes_return(
    user, refuse_commits, settings
):
    settings.JOB_OUTCOME_SYNC_WAIT_S = 0.2
    refusal = refuse_commits(3)
    response = run_sync(user)
    assert response.status_code == 503, response.content
    body = response.json()
    assert body["detail"]["type"] == "ServiceUnavailable"
    assert body["detail"]["details"] == {"job_id": response["X-Job-Id"]}
    assert int(response["Retry-After"]) > 0
    assert response["Location"].endswith(f"/v1/jobs/{response['X-Job-Id']}")
    # The process goes on trying in the background; the fourth commit goes through.
    job = wait_until(
        lambda: Job.objects.filter(pk=response["X-Job-Id"], status=JobStatus.SUCCESS).first(),
        timeout_s=30,
    )
    assert refusal.refused == 3
    assert job.result == {"echoed": "hi"}
    assert echo_metrics() == (1, 0)


def test_an_outage_longer_than_the_lease_still_ends_the_job(user, refuse_commits, settings):
    settings.JOB_LEASE_GRACE_S = 0.5
    job = JobExecutionService().create_job(plugin_name="echo", payload={"message": "x"})
    # Echo's lease is the tests' 5 s time limit + the grace: refuse every commit until then.
    refusal = refuse_commits(-1)
    ran = JobExecutionService().run_job(job_id=job.pk)
    assert ran.status == JobStatus.RUNNING  # nothing could be written
    refusal.stop()
    assert refusal.refused >= 3
    recovered = wait_until(LeaseRecoveryService().recover, timeout_s=10)  # once the lease ends
    assert [j.pk for j in recovered] == [job.pk]
    stored = Job.objects.get(pk=job.pk)
    assert (stored.status, stored.error_type) == (JobStatus.FAILED, "WorkerLost")


@pytest.mark.parametrize("answer_lost", [False, True])
def test_a_cancelled_run_is_counted_once_when_its_commit_is_refused(
    user, refuse_commits, answer_lost
):
    job = JobExecutionService().create_job(
        plugin_name="sleeping", payload={"message": "x", "repeat": 3000}
    )
    ran: dict[str, Job] = {}
    runner = threading.Thread(
        target=lambda: ran.update(job=JobExecutionService().run_job(job_id=job.pk))
    )
    runner.start()
    wait_until(lambda: Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).exists())
    JobExecutionService().cancel_job(job=Job.objects.get(pk=job.pk))
    # The executor's next commit (the stopped run's count) is refused once.
    refusal = refuse_commits(1, answer_lost=answer_lost, skip=0)
    runner.join(30)
    assert refusal.refused == 1
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED
    counted = AuditEntry.objects.filter(job_id=job.pk, event=AuditEvent.JOB_FINISHED)
    assert [entry.details["metrics"] for entry in counted] == ["error"]
    row = PluginMetrics.objects.get(plugin_name="sleeping")
    assert (row.success_count, row.error_count) == (0, 1)
