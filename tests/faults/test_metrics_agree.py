"""Every scrape agrees with the database: 2 gunicorn workers, 2 db_workers, no multiproc dir."""

import re
import urllib.request

from execution.models import Job, JobStatus
from tests.faults.conftest import wait_until

JOBS = 12


def _scrape(base: str) -> str:
    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as response:
        return response.read().decode()


def _sample(page: str, pattern: str) -> float:
    found = re.search(rf"^{pattern} (\S+)$", page, re.MULTILINE)
    assert found, pattern
    return float(found.group(1))


def test_every_scrape_agrees_with_the_database(processes, token):
    server = processes.server(workers=2)
    server.token = token
    processes.worker()
    processes.worker()
    ids = []
    for index in range(JOBS):
        payload = {"message": f"m{index}"}
        status, job = server.request("POST", "/v1/jobs", {"plugin": "echo", "payload": payload})
        assert status == 202, job
        ids.append(job["id"])
    ended = (JobStatus.SUCCESS, JobStatus.FAILED)
    wait_until(lambda: Job.objects.filter(pk__in=ids, status__in=ended).count() == JOBS)
    successes = Job.objects.filter(status=JobStatus.SUCCESS, plugin_name="echo").count()
    failures = Job.objects.filter(status=JobStatus.FAILED, plugin_name="echo").count()
    assert successes == JOBS
    for _ in range(20):
        page = _scrape(server.base)
        ok = 'governed_job_executions_total{outcome="success",plugin="echo"}'
        assert _sample(page, re.escape(ok)) == successes
        assert _sample(page, r'governed_jobs\{status="FAILED"\}') == failures
        count = _sample(page, re.escape('governed_job_execution_seconds_count{plugin="echo"}'))
        assert count == successes + failures
        assert _sample(page, "governed_live_workers") == 2
        assert _sample(page, r'governed_jobs\{status="PENDING"\}') == 0
