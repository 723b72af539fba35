"""Twenty concurrent duplicates with one Idempotency-Key, against gunicorn with 2 workers.

The unique constraint on (user, key) decides between processes: exactly one job,
and the plugin runs once. The rest of the contract: tests/execution/test_idempotency.py.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from execution.models import IdempotencyKey, Job, JobStatus
from plugins.models import PluginMetrics
from tests.faults.conftest import Server

SYNC, JOBS = "/v1/analyze-execution", "/v1/jobs"
ECHO = {"plugin": "echo", "payload": {"message": "hi"}}


def _send(base: str, credentials: str, path: str, body: Any, key: str) -> tuple[int, Any]:
    request = urllib.request.Request(f"{base}{path}", data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Token {credentials}")
    request.add_header("Idempotency-Key", key)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _twenty_at_once(server: Server, path: str, body: Any) -> list[tuple[int, Any]]:
    with ThreadPoolExecutor(max_workers=20) as pool:
        futures = [
            pool.submit(_send, server.base, server.token, path, body, "twenty") for _ in range(20)
        ]
        return [future.result() for future in futures]


def test_twenty_concurrent_duplicate_submissions_make_one_job(server):
    answers = _twenty_at_once(server, JOBS, ECHO)

    [job] = Job.objects.all()
    for status_code, body in answers:
        if status_code == 202:
            assert body["id"] == str(job.pk)
        else:  # arrived while the first was checking the input
            assert status_code == 409, body
            assert body["detail"]["details"] == {"reason": "in_progress", "job_id": str(job.pk)}
    assert any(status_code == 202 for status_code, _ in answers)
    assert IdempotencyKey.objects.count() == 1


def test_twenty_concurrent_duplicate_runs_run_the_plugin_once(server):
    body = {"plugin": "sleeping", "payload": {"message": "", "repeat": 1500}}

    answers = _twenty_at_once(server, SYNC, body)

    [job] = Job.objects.all()
    assert job.status == JobStatus.SUCCESS
    codes = sorted(status_code for status_code, _ in answers)
    assert 200 in codes, answers
    assert set(codes) <= {200, 409}, answers
    for status_code, answer in answers:
        if status_code == 200:
            assert answer["job_id"] == str(job.pk)
        else:  # came while it ran
            assert answer["detail"]["details"] == {"reason": "in_progress", "job_id": str(job.pk)}
    metrics = PluginMetrics.objects.get(plugin_name="sleeping")
    assert metrics.success_count + metrics.error_count == 1
