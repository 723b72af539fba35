"""Health notices a dead worker fleet: real gunicorn and db_worker processes."""

import signal

from execution.models import Job, JobStatus
from execution.workers.models import WorkerHeartbeat
from tests.faults.conftest import wait_until

STALE = {"WORKER_STALE_S": "2", "WORKER_HEARTBEAT_S": "0.5"}


def test_health_turns_503_once_the_only_worker_is_killed(processes, token):
    server = processes.server(**STALE)
    server.token = token
    worker = processes.worker(**STALE)
    wait_until(lambda: WorkerHeartbeat.objects.filter(stopped_at__isnull=True).exists())
    status, job = server.request(
        "POST", "/v1/jobs", {"plugin": "echo", "payload": {"message": "a"}}
    )
    assert status == 202, job
    wait_until(lambda: Job.objects.get(pk=job["id"]).status == JobStatus.SUCCESS)
    wait_until(lambda: WorkerHeartbeat.objects.get().jobs_done == 1, timeout_s=10)
    worker.stop(signal.SIGKILL)
    status, job = server.request(
        "POST", "/v1/jobs", {"plugin": "echo", "payload": {"message": "b"}}
    )
    assert status == 202, job
    wait_until(lambda: server.request("GET", "/v1/health")[0] == 503, timeout_s=30)
    status, body = server.request("GET", "/v1/health")
    assert body["detail"]["type"] == "ServiceUnavailable"
    assert body["detail"]["details"]["workers"].startswith("no live worker")
    assert WorkerHeartbeat.objects.get().stopped_at is None  # killed: no clean exit


def test_a_clean_exit_marks_the_worker_stopped(processes):
    worker = processes.worker(**STALE)
    wait_until(lambda: WorkerHeartbeat.objects.exists())
    worker.stop(signal.SIGTERM)
    assert WorkerHeartbeat.objects.get().stopped_at is not None
