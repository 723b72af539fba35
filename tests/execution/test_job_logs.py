"""Logs that name the job: the request id on the job, the job's fields on every line,
one outcome line per execution, and the plugin's output kept for staff only."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from execution.job_logs import JobContextFilter
from execution.models import Job, JobStatus
from execution.services import JobExecutionService
from execution.services.lease_recovery import LeaseRecoveryService

pytestmark = pytest.mark.django_db(transaction=True)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.addFilter(JobContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def about(self, job: Job) -> list[logging.LogRecord]:
        return [r for r in self.records if getattr(r, "job_id", None) == str(job.pk)]

    def loud(self, job: Job) -> list[logging.LogRecord]:
        return [r for r in self.about(job) if r.levelno >= logging.WARNING]


@pytest.fixture
def lines() -> Iterator[_Lines]:
    handler = _Lines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(autouse=True)
def _plugins(settings):
    settings.PLUGINS = [
        "tests.plugins.sample_plugins.EchoPlugin",
        "tests.plugins.sample_plugins.RaisingPlugin",
        "tests.plugins.sample_plugins.SleepingPlugin",
        "tests.plugins.sample_plugins.RetriedSleepingPlugin",
    ]


def _sync(api_client, plugin: str, request_id: str, **payload: object):
    return api_client.post(
        "/v1/analyze-execution",
        {"plugin": plugin, "payload": {"message": "hi", **payload}},
        format="json",
        HTTP_X_REQUEST_ID=request_id,
    )


def test_a_synchronous_job_keeps_its_request_id_and_logs_one_info_line(api_client, lines):
    response = _sync(api_client, "echo", "client-chosen-id-1")
    assert response.status_code == 200
    assert response["X-Request-ID"] == "client-chosen-id-1"
    job = Job.objects.get(pk=response.json()["job_id"])
    assert job.request_id == "client-chosen-id-1"
    (line,) = lines.about(job)
    assert line.levelno == logging.INFO
    assert (line.plugin, line.attempt, line.outcome) == ("echo", 1, "succeeded")
    assert line.request_id == "client-chosen-id-1"


def test_a_submitted_job_keeps_the_generated_request_id(api_client):
    response = api_client.post(
        "/v1/jobs", {"plugin": "echo", "payload": {"message": "hi"}}, format="json"
    )
    assert response.status_code == 202
    job = Job.objects.get(pk=response.json()["id"])
    assert len(job.request_id) == 32
    assert job.request_id == response["X-Request-ID"]


def test_a_failed_execution_logs_one_error_line_with_its_error_type(api_client, lines):
    response = _sync(api_client, "raising", "req-raise")
    assert response.status_code == 400
    job = Job.objects.get(request_id="req-raise")
    (line,) = lines.loud(job)
    assert line.levelno == logging.ERROR
    assert line.error_type == "PluginExecutionError"
    assert line.outcome == "failed"
    assert "PluginExecutionError" in line.getMessage()


def test_a_pending_job_cancelled_logs_one_warning(user, lines):
    service = JobExecutionService()
    job = service.create_job(plugin_name="echo", payload={"message": "x"})
    service.cancel_job(job=job, user=user)
    (line,) = lines.loud(job)
    assert line.levelno == logging.WARNING
    assert line.error_type == "Cancelled"
    assert line.outcome == "cancelled"


@pytest.mark.parametrize(
    ("plugin", "outcome", "status"),
    [
        ("sleeping", "recovered", JobStatus.FAILED),
        ("retried_sleeping", "retried", JobStatus.PENDING),
    ],
)
def test_a_recovered_job_logs_one_warning_with_worker_lost(lines, plugin, outcome, status):
    job = JobExecutionService().create_job(plugin_name=plugin, payload={"message": "x"})
    loaded = Job.objects.load_pending(job.pk)
    assert loaded is not None
    assert loaded.claim(lease_holder="gone:1:abc", lease_s=60, task_id=None)
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    LeaseRecoveryService().recover_expired()
    job.refresh_from_db()
    assert job.status == status
    (line,) = lines.loud(job)
    assert line.levelno == logging.WARNING
    assert (line.outcome, line.attempt, line.plugin) == (outcome, 1, plugin)
    assert line.error_type == "WorkerLost"


def test_lines_about_no_job_carry_empty_fields(lines):
    logging.getLogger("somewhere").warning("nothing to do with a job")
    (record,) = [r for r in lines.records if r.name == "somewhere"]
    assert record.job_id == ""
    assert record.job_context == ""


def test_staff_see_the_plugin_output_and_the_task_link_in_the_admin(admin_client, api_client):
    job = JobExecutionService().create_job(plugin_name="echo", payload={"message": "x"})
    Job.objects.filter(pk=job.pk).update(plugin_output="printed <b>by</b> the plugin\n")
    page = admin_client.get(f"/admin/execution/job/{job.pk}/change/").content.decode()
    assert "printed &lt;b&gt;by&lt;/b&gt; the plugin" in page
    assert f"/admin/django_tasks_database/dbtaskresult/{job.task_id}/change/" in page
    assert "this Job is authoritative" in page
    # Not in the public API.
    body = api_client.get(f"/v1/jobs/{job.pk}").json()
    assert "plugin_output" not in body
    assert "printed" not in str(body)
