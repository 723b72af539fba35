import shutil
import subprocess

import pytest
from django.test import override_settings

from execution.models import Job, JobStatus
from execution.workers.models import WorkerHeartbeat


def _job(status, plugin="echo", elapsed_ms=None, error_type=None):
    error = {"error": {"type": error_type}} if error_type else None
    return Job.objects.create(  # governance: allow[GOV005] fixtures of each outcome, read only
        plugin_name=plugin, status=status, elapsed_ms=elapsed_ms, error=error
    )


@pytest.mark.django_db
def test_the_page_counts_jobs_from_the_database(client):
    for _ in range(3):
        _job(JobStatus.SUCCESS, elapsed_ms=20.0)
    _job(JobStatus.FAILED, elapsed_ms=2000.0, error_type="PluginTimeout")
    _job(JobStatus.PENDING)
    page = client.get("/metrics").content.decode()
    assert 'governed_jobs{status="PENDING"} 1.0' in page
    assert 'governed_jobs{status="SUCCESS"} 3.0' in page
    assert 'governed_job_executions_total{outcome="success",plugin="echo"} 3.0' in page
    assert 'governed_job_executions_total{outcome="PluginTimeout",plugin="echo"} 1.0' in page
    assert 'governed_job_execution_seconds_bucket{le="0.05",plugin="echo"} 3.0' in page
    assert 'governed_job_execution_seconds_bucket{le="+Inf",plugin="echo"} 4.0' in page
    assert 'governed_job_execution_seconds_count{plugin="echo"} 4.0' in page
    assert "governed_plugin_avg_execution_milliseconds" not in page
    assert "governed_live_workers 0.0" in page


@pytest.mark.django_db
def test_live_workers_leave_out_stopped_ones(client):
    from execution.clock import database_now

    WorkerHeartbeat.objects.create(id="a", host="h", pid=1)
    WorkerHeartbeat.objects.create(id="b", host="h", pid=2, stopped_at=database_now())
    assert "governed_live_workers 1.0" in client.get("/metrics").content.decode()


@pytest.mark.django_db
@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus)")
def test_promtool_finds_nothing_wrong_with_a_real_scrape(client):
    _job(JobStatus.SUCCESS, elapsed_ms=5.0)
    _job(JobStatus.PENDING)
    WorkerHeartbeat.objects.create(id="a", host="h", pid=1)
    page = client.get("/metrics").content
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=page, capture_output=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == b""


@pytest.mark.django_db
@override_settings(METRICS_TOKEN="s3cret")
def test_a_token_is_required_when_set(client):
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused.json()["detail"]["type"] == "AuthenticationFailed"
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 401
    ok = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret")
    assert ok.status_code == 200
    assert b"governed_jobs" in ok.content


@pytest.mark.django_db
@override_settings(METRICS_ALLOWED_NETWORKS=["10.0.0.0/8"])
def test_clients_outside_the_allowed_networks_are_refused(client):
    refused = client.get("/metrics", REMOTE_ADDR="192.168.1.5")
    assert refused.status_code == 403
    assert refused.json()["detail"]["type"] == "PermissionDenied"
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
