"""Leases, lost workers, retries and cancel, on the real database with real plugin processes."""

import json
import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from execution.clock import database_now
from execution.models import Job, JobStatus
from execution.policy.tokens import create_token
from execution.services import JobExecutionService
from execution.services.lease_recovery import LeaseRecoveryService
from execution.tasks import run_job_task
from plugins.runtime.isolation.process import ProcessIsolation
from tests.plugin_hosts import gone
from tests.plugins.sample_plugins import SleepingPlugin

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _plugins(settings):
    settings.PLUGINS = [
        "tests.plugins.sample_plugins.EchoPlugin",
        "tests.plugins.sample_plugins.SleepingPlugin",
        "tests.plugins.sample_plugins.RetriedSleepingPlugin",
    ]
    settings.JOB_CANCEL_POLL_S = 0.1


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def expire(job: Job) -> None:
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def running_job(plugin: str = "sleeping", task_id: str | None = None) -> Job:
    """A job claimed by a worker that then vanished, as after kill -9."""
    job = JobExecutionService().create_job(
        plugin_name=plugin, payload={"message": "x", "repeat": 1}
    )
    loaded = Job.objects.load_pending(job.pk)
    assert loaded.claim(
        lease_holder="lost-host:4242:abc",
        lease_s=60,
        task_id=task_id,
    )
    return Job.objects.get(pk=job.pk)


# Leases -------------------------------------------------------------------------------


def test_a_running_job_holds_a_lease_of_its_time_limit_plus_the_grace(settings):
    settings.JOB_LEASE_GRACE_S = 7
    job = JobExecutionService().create_job(
        plugin_name="sleeping", payload={"message": "x", "repeat": 1}
    )
    ran = JobExecutionService().run_job(job_id=job.pk)
    assert ran.status == JobStatus.SUCCESS
    stored = Job.objects.get(pk=job.pk)
    host, pid, token = stored.lease_holder.split(":")
    assert (host, int(pid)) == (__import__("socket").gethostname(), __import__("os").getpid())
    assert token
    lease_s = (stored.lease_expires_at - stored.started_at).total_seconds()
    assert lease_s == pytest.approx(5 + 7, abs=1)  # tests' PLUGIN_DEFAULT_TIMEOUT_S is 5


def test_an_expired_lease_fails_the_job_with_worker_lost_and_its_task_row_too():
    task = run_job_task.enqueue("00000000-0000-0000-0000-000000000000")
    DBTaskResult.objects.filter(pk=task.id).update(status="RUNNING")
    job = running_job(task_id=str(task.id))
    expire(job)
    failed = counter("governed_job_leases_recovered_total", outcome="failed")

    (recovered,) = LeaseRecoveryService().recover_expired()

    job.refresh_from_db()
    assert recovered.pk == job.pk
    assert job.status == JobStatus.FAILED
    assert job.error_type == "WorkerLost"
    assert job.public_error["details"]["attempt"] == 1
    assert "lost-host" not in json.dumps(job.public_error)  # hosts and pids are for staff
    assert job.lease_holder == "lost-host:4242:abc"
    assert counter("governed_job_leases_recovered_total", outcome="failed") == failed + 1
    row = DBTaskResult.objects.get(pk=task.id)
    assert row.status == "FAILED"
    assert row.exception_class_path == "execution.services.lease_recovery.LostWorker"


def test_a_live_lease_is_left_alone():
    job = running_job()
    assert LeaseRecoveryService().recover_expired() == []
    assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING


def test_a_job_of_a_plugin_with_retries_goes_back_to_pending_after_a_backoff(settings):
    settings.JOB_RETRY_BACKOFF_S = 30
    job = running_job("retried_sleeping")
    assert job.max_attempts == 3
    expire(job)
    before = database_now()  # the clock next_attempt_at is computed on

    LeaseRecoveryService().recover_expired()

    job.refresh_from_db()
    assert (job.status, job.attempt) == (JobStatus.PENDING, 2)
    assert job.next_attempt_at >= before + timedelta(seconds=30)
    assert job.attempts[0]["error"]["type"] == "WorkerLost"
    task = DBTaskResult.objects.get(pk=str(job.task_id))
    assert task.args_kwargs["args"] == [str(job.pk)]
    assert task.status == "READY"
    assert task.run_after == job.next_attempt_at  # django-tasks runs it no earlier

    # The second attempt backs off twice as long, the third is the last.
    Job.objects.filter(pk=job.pk).update(next_attempt_at=None)
    job = running_job_again(job)
    expire(job)
    before = database_now()  # the clock next_attempt_at is computed on
    LeaseRecoveryService().recover_expired()
    job.refresh_from_db()
    assert (job.status, job.attempt) == (JobStatus.PENDING, 3)
    assert job.next_attempt_at >= before + timedelta(seconds=60)
    Job.objects.filter(pk=job.pk).update(next_attempt_at=None)
    job = running_job_again(job)
    expire(job)
    LeaseRecoveryService().recover_expired()
    job.refresh_from_db()
    assert (job.status, job.error_type, len(job.attempts)) == (JobStatus.FAILED, "WorkerLost", 2)


def running_job_again(job: Job) -> Job:
    loaded = Job.objects.load_pending(job.pk)
    assert loaded.claim(
        lease_holder="lost-host:4243:def",
        lease_s=60,
    )
    return Job.objects.get(pk=job.pk)


def test_a_retried_job_runs_to_success_and_shows_its_attempts_in_the_api(user, api_client):
    job = running_job("retried_sleeping")
    Job.objects.filter(pk=job.pk).update(requested_by=user)
    expire(job)
    LeaseRecoveryService().recover_expired()
    Job.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())

    body = api_client.get(f"/v1/jobs/{job.pk}").json()
    assert (body["status"], body["attempt"], body["max_attempts"]) == ("PENDING", 2, 3)
    assert body["next_attempt_at"] is not None
    assert body["attempts"][0]["error"]["type"] == "WorkerLost"
    assert "lease_holder" not in body["attempts"][0]

    JobExecutionService().run_job(job_id=job.pk)
    body = api_client.get(f"/v1/jobs/{job.pk}").json()
    assert (body["status"], body["attempt"], body["next_attempt_at"]) == ("SUCCESS", 2, None)


def test_two_recoverers_recover_a_job_once():
    job = running_job()
    expire(job)
    outcomes: list[int] = []

    def recover():
        try:
            outcomes.append(len(LeaseRecoveryService().recover_expired()))
        finally:
            connection.close()

    threads = [threading.Thread(target=recover) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [0, 1]


def test_a_late_worker_cannot_overwrite_a_recovered_job():
    job = running_job()
    late_copy = Job.objects.get(pk=job.pk)
    expire(job)
    LeaseRecoveryService().recover_expired()
    with pytest.raises(Exception, match="under this lease"):
        late_copy.mark_succeeded({"echoed": "too late"})
    assert Job.objects.get(pk=job.pk).error_type == "WorkerLost"


# Cancel -------------------------------------------------------------------------------


def cancel(client, job_id):
    return client.post(f"/v1/jobs/{job_id}/cancel", format="json")


def test_a_pending_job_cancelled_never_runs(api_client, user):
    job = JobExecutionService().create_job(
        plugin_name="echo", payload={"message": "x"}, requested_by=user
    )
    response = cancel(api_client, job.pk)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "CANCELLED"
    assert body["error"]["type"] == "Cancelled"
    assert body["error"]["details"] == {"cancelled_by": "alice", "status_before": "PENDING"}
    ran = JobExecutionService().run_job(job_id=job.pk)  # its task still comes round
    assert ran.status == JobStatus.CANCELLED
    assert Job.objects.get(pk=job.pk).started_at is None


@pytest.mark.parametrize("status", ["SUCCESS", "FAILED", "CANCELLED"])
def test_cancelling_a_job_that_ended_is_a_409_conflict(api_client, user, status):
    job = JobExecutionService().create_job(
        plugin_name="echo", payload={"message": "x"}, requested_by=user
    )
    if status == "CANCELLED":
        JobExecutionService().cancel_job(job=job)
    else:
        if status == "FAILED":
            Job.objects.filter(pk=job.pk).update(input_payload={})
        JobExecutionService().run_job(job_id=job.pk)
    before = Job.objects.values().get(pk=job.pk)
    response = cancel(api_client, job.pk)
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert detail["type"] == "Conflict"
    assert detail["message"] == f"Job {job.pk} is already {status}."
    assert Job.objects.values().get(pk=job.pk) == before


def test_only_the_owner_or_a_user_allowed_to_change_jobs_may_cancel(api_client, staff_user):
    from django.contrib.auth.models import Permission

    other = get_user_model().objects.create_user("bob", password="pw-bob-12345")
    job = JobExecutionService().create_job(
        plugin_name="echo", payload={"message": "x"}, requested_by=other
    )
    assert cancel(api_client, job.pk).status_code == 404  # alice cannot see bob's job
    assert cancel(api_client, "not-a-uuid").status_code == 404
    viewer = get_user_model().objects.create_user("vera", password="pw-vera-12345")
    viewer.user_permissions.add(Permission.objects.get(codename="view_job"))
    reader = APIClient()
    reader.force_authenticate(get_user_model().objects.get(pk=viewer.pk))
    response = cancel(reader, job.pk)  # she may see it, not cancel it
    assert (response.status_code, response.json()["detail"]["type"]) == (403, "PermissionDenied")
    assert Job.objects.get(pk=job.pk).status == JobStatus.PENDING
    staff = APIClient()
    staff.credentials(HTTP_AUTHORIZATION=f"Token {create_token(user=staff_user).key}")
    assert cancel(staff, job.pk).status_code == 200
    assert APIClient().post(f"/v1/jobs/{job.pk}/cancel").status_code == 401


def wait_for_host(plugin: type) -> int:
    """The pid of the host running ``plugin`` for this process, once one does."""
    label = f"{plugin.__module__}.{plugin.__qualname__}"
    for _ in range(1000):
        for host in ProcessIsolation.shared().hosts():
            if host.busy and host.plugin == label:
                return host.pid
        time.sleep(0.01)
    raise AssertionError(f"no host runs {label}")


def test_a_running_job_is_cancelled_and_its_host_killed(api_client, user):
    job = JobExecutionService().create_job(
        plugin_name="sleeping",
        payload={"message": "x", "repeat": 4000},
        requested_by=user,
    )
    cancellations = counter("governed_job_cancellations_total", status="RUNNING")
    outcome: dict[str, Job] = {}

    def work():
        try:
            outcome["job"] = JobExecutionService().run_job(job_id=job.pk)
        finally:
            connection.close()

    worker = threading.Thread(target=work)
    worker.start()
    child = wait_for_host(SleepingPlugin)
    response = cancel(api_client, job.pk)
    assert response.status_code == 200
    assert response.json()["error"]["details"]["status_before"] == "RUNNING"
    assert gone(child)  # stopped by the executor watching the row
    worker.join(10)
    assert outcome["job"].status == JobStatus.CANCELLED
    stored = Job.objects.get(pk=job.pk)
    assert stored.status == JobStatus.CANCELLED
    assert stored.result is None
    assert counter("governed_job_cancellations_total", status="RUNNING") == cancellations + 1


def test_the_schema_documents_cancel_and_the_new_error_types(client):
    schema = json.loads(client.get("/api/schema/?format=json").content)
    responses = schema["paths"]["/v1/jobs/{id}/cancel"]["post"]["responses"]
    assert {"200", "404", "409"} <= set(responses)
    mapping = schema["components"]["schemas"]["Error"]["discriminator"]["mapping"]
    for kind in ("PluginCrashed", "PluginResourceLimit", "WorkerLost", "Cancelled", "Conflict"):
        assert kind in mapping
    components = schema["components"]["schemas"]
    branches = [ref["$ref"].rsplit("/", 1)[-1] for ref in components["Job"]["oneOf"]]
    assert branches  # a job is a oneOf on its plugin; each branch has the whole job
    for branch in branches:
        fields = set(components[branch]["properties"])
        assert {"attempt", "max_attempts", "next_attempt_at", "attempts"} <= fields, branch


# The synchronous path -------------------------------------------------------------------


def test_a_sync_job_is_inserted_once_its_plugin_has_its_work():
    from unittest import mock

    from plugins.runtime.isolation import channel

    events: list[str] = []
    insert, send = Job.insert, channel.send

    def record_insert(job):
        events.append("insert")
        insert(job)

    def record_send(fd, data, *deadline):
        if b"validate_and_run" in data:
            events.append("hand to the plugin's process")
        return send(fd, data, *deadline)

    with (
        mock.patch.object(Job, "insert", record_insert),
        mock.patch.object(channel, "send", record_send),
    ):
        job = JobExecutionService().execute_now(
            plugin_name="sleeping", payload={"message": "x", "repeat": 1}
        )
    assert events == ["hand to the plugin's process", "insert"]  # the commit overlaps the run
    assert job.status == JobStatus.SUCCESS
    assert Job.objects.get(pk=job.pk).lease_holder == job.lease_holder


def test_a_sync_job_that_cannot_be_recorded_stops_its_plugin_and_records_nothing():
    from unittest import mock

    from django.db import OperationalError

    from plugins.models import PluginMetrics

    started: list[int] = []

    def refuse(job):
        started.append(wait_for_host(SleepingPlugin))  # the plugin runs: see it stopped
        raise OperationalError("database is down")

    with (
        mock.patch.object(Job, "insert", refuse),
        pytest.raises(OperationalError, match="database is down"),
    ):
        JobExecutionService().execute_now(
            plugin_name="sleeping", payload={"message": "x", "repeat": 5000}
        )
    assert gone(started[0])
    assert not Job.objects.exists()
    assert not PluginMetrics.objects.exists()


def test_input_the_plugin_refuses_on_the_sync_path_leaves_no_job_and_no_metrics(api_client):
    from plugins.models import PluginMetrics

    response = api_client.post(
        "/v1/analyze-execution",
        {"plugin": "sleeping", "payload": {"message": "x", "repeat": "long"}},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["detail"]["type"] == "ValidationError"
    assert response.json()["detail"]["details"]["errors"][0]["location"] == ["payload", "repeat"]
    assert "X-Job-Id" not in response
    assert not Job.objects.exists()
    assert not PluginMetrics.objects.exists()


@pytest.mark.parametrize("path", ["/v1/analyze-execution", "/v1/jobs"])
def test_a_validator_past_the_time_limit_is_a_failed_job_not_a_refused_request(
    api_client, settings, path
):
    settings.PLUGINS = [*settings.PLUGINS, "tests.plugins.sample_plugins.SlowValidatorPlugin"]
    response = api_client.post(
        path, {"plugin": "slow_validator", "payload": {"message": "2"}}, format="json"
    )
    job = Job.objects.get(plugin_name="slow_validator")
    assert (job.status, job.error_type) == (JobStatus.FAILED, "PluginTimeout")
    if path == "/v1/jobs":
        assert response.status_code == 202
        assert response.json()["status"] == "FAILED"
    else:
        assert response.status_code == 400
        assert response.json()["detail"]["type"] == "PluginTimeout"


# A job whose task was lost before it claimed the job -----------------------------------


def pending_job_with_task(task_status: str, started_s_ago: float = 0) -> Job:
    job = JobExecutionService().create_job(
        plugin_name="sleeping", payload={"message": "x", "repeat": 1}
    )
    Job.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    assert job.task_id is not None
    DBTaskResult.objects.filter(pk=job.task_id).update(
        status=task_status, started_at=timezone.now() - timedelta(seconds=started_s_ago)
    )
    return Job.objects.get(pk=job.pk)


@pytest.mark.parametrize(
    ("task_status", "started_s_ago"), [("RUNNING", 120), ("FAILED", 120), ("SUCCESSFUL", 120)]
)
def test_a_pending_job_whose_task_was_lost_gets_a_new_one(task_status, started_s_ago):
    job = pending_job_with_task(task_status, started_s_ago)
    lost_task = job.task_id
    requeued = counter("governed_job_leases_recovered_total", outcome="requeued")

    (recovered,) = LeaseRecoveryService().recover()

    job.refresh_from_db()
    assert recovered.pk == job.pk
    assert job.status == JobStatus.PENDING
    assert job.task_id is not None
    assert job.task_id != lost_task
    assert DBTaskResult.objects.get(pk=job.task_id).status == "READY"
    old = DBTaskResult.objects.get(pk=str(lost_task))
    assert old.status == ("FAILED" if task_status == "RUNNING" else task_status)
    assert counter("governed_job_leases_recovered_total", outcome="requeued") == requeued + 1
    assert JobExecutionService().run_job(job_id=job.pk).status == JobStatus.SUCCESS


@pytest.mark.parametrize(("task_status", "started_s_ago"), [("READY", 0), ("RUNNING", 1)])
def test_a_pending_job_whose_task_is_queued_or_just_taken_is_left_alone(task_status, started_s_ago):
    job = pending_job_with_task(task_status, started_s_ago)
    assert LeaseRecoveryService().recover() == []
    assert Job.objects.get(pk=job.pk).task_id == job.task_id


def test_a_sync_job_whose_host_fails_before_the_plugin_starts_is_still_recorded(monkeypatch):
    from plugins.errors.exceptions import PluginExecutionError
    from plugins.runtime.isolation import process

    def broken(host):
        raise PluginExecutionError("The plugin's process could not start")

    monkeypatch.setattr(process._Host, "wait_ready", broken)
    job = JobExecutionService().execute_now(
        plugin_name="sleeping", payload={"message": "x", "repeat": 1}
    )
    stored = Job.objects.get(pk=job.pk)
    assert (stored.status, stored.error_type) == (JobStatus.FAILED, "PluginExecutionError")


def test_cancelling_a_job_that_vanished_meanwhile_is_not_found(api_client, user, monkeypatch):
    job = JobExecutionService().create_job(
        plugin_name="echo", payload={"message": "x"}, requested_by=user
    )
    original = Job.cancel

    def vanish_first(self, error, **kwargs):
        Job.objects.filter(pk=self.pk).delete()  # as a refused sync request's job does
        return original(self, error, **kwargs)

    monkeypatch.setattr(Job, "cancel", vanish_first)
    assert cancel(api_client, job.pk).status_code == 404


def test_a_running_job_without_a_lease_from_an_older_version_is_recovered():
    job = running_job()
    Job.objects.filter(pk=job.pk).update(lease_expires_at=None)
    (recovered,) = LeaseRecoveryService().recover_expired()
    assert recovered.pk == job.pk
    assert Job.objects.get(pk=job.pk).error_type == "WorkerLost"
