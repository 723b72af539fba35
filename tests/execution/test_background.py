"""The background path on a real engine: django-tasks-db and `manage.py db_worker`."""

import subprocess
import sys
from typing import Any, cast

import pytest
from django_tasks import TaskContext
from django_tasks_db.models import DBTaskResult
from rest_framework.test import APIClient

from execution.models import Job, JobStatus
from execution.services import AnalysisExecutionService, JobExecutionService
from execution.tasks import run_job_task
from plugins.models import PluginMetrics
from tests.conftest import ROOT, run_in_subprocess, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)

WORKER = [
    sys.executable,
    "manage.py",
    "db_worker",
    "--batch",
    "--no-startup-delay",
    "--interval",
    "0.05",
]
TEXT = {"text": "A job for the worker. It runs in the background."}


def test_a_submitted_job_is_run_by_a_real_db_worker(api_client):
    response = api_client.post("/v1/jobs", {"plugin": "text_stats", "payload": TEXT}, format="json")
    assert response.status_code == 202
    job_id = response.json()["id"]
    assert Job.objects.get(pk=job_id).status == JobStatus.PENDING
    assert DBTaskResult.objects.filter(status="READY").count() == 1

    run_in_subprocess(WORKER, subprocess_env())

    body = api_client.get(f"/v1/jobs/{job_id}").json()
    assert body["status"] == "SUCCESS"
    assert body["result"]["sentence_count"] == 2
    assert body["started_at"] is not None
    assert body["finished_at"] is not None
    assert body["elapsed_ms"] > 0
    assert DBTaskResult.objects.get().status == "SUCCESSFUL"
    metrics = PluginMetrics.objects.get(plugin_name="text_stats")
    assert (metrics.success_count, metrics.error_count) == (1, 0)


def test_a_failing_background_job_ends_failed_with_its_envelope(user):
    job = AnalysisExecutionService().submit(
        plugin_name="text_stats", payload={"text": "x"}, user=user
    )
    # The plugin is fine at submit time; make the stored payload invalid as if it
    # had been written by an older version: the worker must fail it, not crash.
    Job.objects.filter(pk=job.pk).update(input_payload={"text": ""})
    run_in_subprocess(WORKER, subprocess_env())
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error_type == "ValidationError"
    assert PluginMetrics.objects.get(plugin_name="text_stats").error_count == 1


def test_jobs_enqueued_twice_and_drained_by_two_workers_run_once_each(user):
    service = AnalysisExecutionService()
    jobs = [service.submit(plugin_name="text_stats", payload=TEXT, user=user) for _ in range(20)]
    for job in jobs:
        run_job_task.enqueue(str(job.pk))  # a second, duplicate enqueue of every job
    assert DBTaskResult.objects.count() == 40

    env = subprocess_env()
    workers = [
        subprocess.Popen(
            WORKER, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(2)
    ]
    for worker in workers:
        output, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0, output

    assert set(Job.objects.values_list("status", flat=True)) == {JobStatus.SUCCESS}
    assert DBTaskResult.objects.filter(status="SUCCESSFUL").count() == 40
    metrics = PluginMetrics.objects.get(plugin_name="text_stats")
    assert metrics.success_count == 20  # not 40: the duplicate tasks found their job taken


def test_two_processes_racing_for_the_same_jobs_run_each_exactly_once(user):
    service = JobExecutionService()
    job_ids = [
        str(service.create_job(plugin_name="text_stats", payload=TEXT, requested_by=user).pk)
        for _ in range(30)
    ]
    script = (
        "import django, sys; django.setup()\n"
        "from execution.services import JobExecutionService\n"
        "service = JobExecutionService()\n"
        "for job_id in sys.argv[1:]:\n"
        "    service.run_job(job_id=job_id)\n"
    )
    env = subprocess_env()
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", script, *job_ids],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    for racer in racers:
        output, _ = racer.communicate(timeout=120)
        assert racer.returncode == 0, output
    assert Job.objects.filter(status=JobStatus.SUCCESS).count() == 30
    assert PluginMetrics.objects.get(plugin_name="text_stats").success_count == 30


def test_the_task_reports_a_missing_job_without_failing():
    missing = "00000000-0000-0000-0000-000000000000"
    context = TaskContext(task_result=run_job_task.enqueue(missing))
    assert cast(Any, run_job_task).call(context, missing) == "MISSING"


def test_full_flow_from_http_to_metrics(api_client):
    before = APIClient().get("/metrics").content.decode()
    assert (
        'governed_plugin_persisted_executions_total{plugin="text_stats",result="success"} 1.0'
        not in before
    )
    response = api_client.post(
        "/v1/analyze-execution", {"plugin": "text_stats", "payload": TEXT}, format="json"
    )
    assert response.status_code == 200
    job = Job.objects.get(pk=response.json()["job_id"])
    assert job.status == JobStatus.SUCCESS
    assert job.result == response.json()["result"]
    page = APIClient().get("/metrics").content.decode()
    assert (
        'governed_plugin_persisted_executions_total{plugin="text_stats",result="success"} 1.0'
        in page
    )
    listed = api_client.get("/v1/plugins/text_stats").json()
    assert listed["metrics"]["success_count"] == 1
