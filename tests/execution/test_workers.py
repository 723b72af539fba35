import pytest
from django.test import override_settings

from execution.clock import database_now
from execution.models import Job
from execution.workers.heartbeat import Heartbeat
from execution.workers.models import WorkerHeartbeat
from tests.faults.conftest import wait_until
from tests.statements import statements


@pytest.mark.django_db(transaction=True)
def test_a_heartbeat_names_the_current_job_and_counts_jobs_done():
    job = Job.objects.create(plugin_name="echo", task_id="6f1c1a6e-7a7e-4a57-9d0a-0d3c8f0b0e11")
    beat = Heartbeat("w1")
    beat.start()
    try:
        beat.job_started(str(job.task_id))
        wait_until(lambda: WorkerHeartbeat.objects.get().current_job == job.pk, timeout_s=10)
        beat.job_finished()
        wait_until(lambda: WorkerHeartbeat.objects.get().jobs_done == 1, timeout_s=10)
        row = WorkerHeartbeat.objects.get()
        assert (row.current_job, row.stopped_at) == (None, None)
    finally:
        beat.stop()
    assert WorkerHeartbeat.objects.get().stopped_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_busy_worker_s_jobs_are_written_together_and_none_is_lost():
    """Hundreds of jobs' ends make a few writes of the row, and its count is exact at the end."""
    job = Job.objects.create(plugin_name="echo", task_id="6f1c1a6e-7a7e-4a57-9d0a-0d3c8f0b0e12")
    beat = Heartbeat("w-busy")
    beat.start()
    with statements() as written:
        for _ in range(300):
            beat.job_started(str(job.task_id))
            beat.job_finished(str(job.task_id))
        beat.stop()
    row = WorkerHeartbeat.objects.get()
    assert (row.jobs_done, row.current_job, row.stopped_at is None) == (300, None, False)
    updates = [sql for sql in written if sql.startswith("UPDATE")]
    assert len(updates) < 30, updates


@pytest.mark.django_db(transaction=True)
def test_a_clean_stop_writes_the_last_count_and_the_stop_in_one_update():
    job = Job.objects.create(plugin_name="echo", task_id="6f1c1a6e-7a7e-4a57-9d0a-0d3c8f0b0e13")
    beat = Heartbeat("w-stop")
    beat.start()
    for _ in range(50):
        beat.job_started(str(job.task_id))
        beat.job_finished(str(job.task_id))
    with statements() as written:  # this thread's: what stop() itself writes
        beat.stop()
    row = WorkerHeartbeat.objects.get()
    assert (row.jobs_done, row.current_job, row.stopped_at is None) == (50, None, False)
    assert len([sql for sql in written if sql.startswith("UPDATE")]) == 1, written


@pytest.mark.django_db
@override_settings(WORKER_STALE_S=30)
def test_health_is_503_when_jobs_wait_and_no_worker_is_alive(client):
    assert client.get("/v1/health").json()["checks"]["workers"] == "ok"
    Job.objects.create(plugin_name="echo")  # PENDING: waiting for a worker
    response = client.get("/v1/health")
    assert response.status_code == 503
    assert response.json()["detail"]["details"]["workers"].startswith("no live worker")
    WorkerHeartbeat.objects.create(id="w", host="h", pid=1)
    assert client.get("/v1/health").json()["checks"]["workers"] == "ok"
    WorkerHeartbeat.objects.update(beat_at=database_now().replace(year=2000))
    assert client.get("/v1/health").status_code == 503


@pytest.mark.django_db
def test_the_workers_admin_lists_them_read_only(admin_client):
    WorkerHeartbeat.objects.create(id="w-alive", host="h", pid=1)
    page = admin_client.get("/admin/execution/workerheartbeat/")
    assert page.status_code == 200
    assert b"w-alive" in page.content
    assert b">alive<" in page.content
    assert admin_client.get("/admin/execution/workerheartbeat/add/").status_code == 403
