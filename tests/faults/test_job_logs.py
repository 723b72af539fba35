"""Logs that name the job, read from real gunicorn and db_worker processes.

``LOG_FORMAT=json`` lines are parsed as JSON; the text format is read as an
operator would grep it.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from django_tasks_db.models import DBTaskResult

from execution.models import Job, JobStatus
from tests.faults.conftest import Server, wait_until

FINAL = (JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELLED)


def _post(server: Server, path: str, body: dict[str, Any], request_id: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{server.base}{path}", data=json.dumps(body).encode(), method="POST"
    )
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Token {server.token}")
    request.add_header("X-Request-ID", request_id)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, echoed, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        status, echoed, raw = exc.code, exc.headers, exc.read()
    assert echoed["X-Request-ID"] == request_id
    return status, json.loads(raw)


def _json_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for line in output.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def _about(lines: list[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("job_id") == job_id]


def _submit(server: Server, plugin: str, payload: dict[str, Any], request_id: str) -> str:
    status, body = _post(server, "/v1/jobs", {"plugin": plugin, "payload": payload}, request_id)
    assert status == 202, body
    return str(body["id"])


def _ended(*job_ids: str) -> bool:
    return Job.objects.filter(pk__in=job_ids, status__in=FINAL).count() == len(job_ids)


def test_json_lines_of_a_worker_name_each_job_and_say_how_it_ended(processes, token):
    server = processes.server(LOG_FORMAT="json", LOG_LEVEL="INFO")
    server.token = token
    succeeded = _submit(server, "echo", {"message": "hi"}, "req-echo-1")
    crashed = _submit(server, "crashing", {"message": "x", "repeat": 3}, "req-crash-1")
    assert Job.objects.get(pk=crashed).request_id == "req-crash-1"

    worker = processes.worker(LOG_FORMAT="json", LOG_LEVEL="INFO")
    wait_until(lambda: _ended(succeeded, crashed))
    worker.stop()
    lines = _json_lines(worker.output())

    crash_lines = _about(lines, crashed)
    assert crash_lines, worker.output()
    assert all(line["plugin"] == "crashing" and line["attempt"] == 1 for line in crash_lines)
    assert all(line["request_id"] == "req-crash-1" for line in crash_lines)
    loud = [line for line in crash_lines if line["level"] in ("WARNING", "ERROR")]
    assert len(loud) == 1, crash_lines
    assert loud[0]["level"] == "ERROR"
    assert loud[0]["outcome"] == "failed"
    assert loud[0]["error_type"] == "PluginCrashed"

    success_lines = _about(lines, succeeded)
    assert [line["level"] for line in success_lines] == ["INFO"]
    assert success_lines[0]["outcome"] == "succeeded"
    assert success_lines[0]["plugin"] == "echo"

    # The task engine's own record agrees with each job.
    tasks = {
        str(job.pk): str(job.task_id) for job in Job.objects.filter(pk__in=[succeeded, crashed])
    }
    assert DBTaskResult.objects.get(pk=tasks[succeeded]).status == "SUCCESSFUL"
    assert DBTaskResult.objects.get(pk=tasks[crashed]).status == "FAILED"


def test_json_lines_of_gunicorn_name_a_synchronous_job_and_its_request(processes, token):
    server = processes.server(LOG_FORMAT="json", LOG_LEVEL="INFO")
    server.token = token
    status, body = _post(
        server,
        "/v1/analyze-execution",
        {"plugin": "sleeping", "payload": {"message": "x", "repeat": 10000}},
        "req-sync-timeout",
    )
    assert status == 400, body
    job = Job.objects.get(request_id="req-sync-timeout")
    assert job.error["error"]["type"] == "PluginTimeout"

    def timeout_line() -> list[dict[str, Any]]:
        return [
            line
            for line in _about(_json_lines(server.process.output()), str(job.pk))
            if line["level"] == "WARNING"
        ]

    (line,) = wait_until(timeout_line, timeout_s=10)
    assert line["error_type"] == "PluginTimeout"
    assert line["outcome"] == "failed"
    assert line["request_id"] == "req-sync-timeout"
    assert line["plugin"] == "sleeping"


def test_text_lines_are_the_default_and_carry_the_job_in_brackets(processes, token):
    server = processes.server(LOG_LEVEL="INFO")
    server.token = token
    crashed = _submit(server, "crashing", {"message": "x", "repeat": 3}, "req-text-1")
    worker = processes.worker(LOG_LEVEL="INFO")
    wait_until(lambda: _ended(crashed))
    worker.stop()
    output = worker.output()
    assert not _json_lines(output)
    (line,) = [line for line in output.splitlines() if f"[job={crashed} " in line]
    assert " ERROR execution.jobs: " in line
    assert "PluginCrashed" in line
    assert line.endswith(f"[job={crashed} plugin=crashing attempt=1 outcome=failed]")
