"""Every answer that is not a success carries the error envelope: a sweep of every error path."""

from __future__ import annotations

import json

import pytest
from django.db import OperationalError, connection
from django.db.backends.base.base import BaseDatabaseWrapper
from rest_framework.test import APIClient

from api.errors import ProtocolErrorType
from execution.models import Job, JobStatus
from execution.services import JobExecutionService
from plugins.errors.error_envelope import ErrorType

pytestmark = pytest.mark.django_db(transaction=True)

ENVELOPE_KEYS = {"type", "message", "details", "plugin", "timestamp"}


@pytest.fixture(autouse=True)
def _plugins(settings):
    settings.PLUGINS = [
        f"tests.plugins.sample_plugins.{name}"
        for name in (
            "EchoPlugin",
            "RaisingPlugin",
            "WrongOutputPlugin",
            "SlowPlugin",
            "CrashingPlugin",
            "SleepingPlugin",
        )
    ]


def execute(plugin: str, payload: object, **extra: object) -> dict[str, object]:
    return {"plugin": plugin, "payload": payload, **extra}


def finished_job(user) -> Job:
    job = JobExecutionService().execute_now(
        plugin_name="echo", payload={"message": "x"}, requested_by=user
    )
    assert job.status == JobStatus.SUCCESS
    return job


def others_job() -> Job:
    return JobExecutionService().create_job(plugin_name="echo", payload={"message": "x"})


def refuse_writes(monkeypatch) -> bool:
    def refused(connection):
        raise OperationalError("database or disk is full")

    monkeypatch.setattr(BaseDatabaseWrapper, "_commit", refused)
    return True


# (name, how to ask, the status and type the answer must have)
CASES = [
    ("invalid body", lambda c, u, m: c.post("/v1/jobs", {"plugin": 3}, format="json"), 400,
     ErrorType.VALIDATION_ERROR),
    ("malformed JSON", lambda c, u, m: c.post("/v1/jobs", "{", content_type="application/json"),
     400, ProtocolErrorType.PARSE_ERROR),
    ("unknown plugin", lambda c, u, m: c.post("/v1/analyze-execution", execute("nope", {}),
     format="json"), 400, ErrorType.PLUGIN_NOT_FOUND),
    ("bad payload", lambda c, u, m: c.post("/v1/analyze-execution", execute("echo", {"x": 1}),
     format="json"), 400, ErrorType.VALIDATION_ERROR),
    ("plugin raises", lambda c, u, m: c.post("/v1/analyze-execution",
     execute("raising", {"message": "x"}), format="json"), 400, ErrorType.PLUGIN_EXECUTION_ERROR),
    ("plugin returns garbage", lambda c, u, m: c.post("/v1/analyze-execution",
     execute("wrong_output", {"message": "x"}), format="json"), 400,
     ErrorType.OUTPUT_VALIDATION_ERROR),
    ("plugin hangs", lambda c, u, m: c.post("/v1/analyze-execution",
     execute("slow", {"message": "x"}), format="json"), 400, ErrorType.PLUGIN_TIMEOUT),
    ("plugin crashes", lambda c, u, m: c.post("/v1/analyze-execution",
     execute("crashing", {"message": "x"}), format="json"), 400, ErrorType.PLUGIN_CRASHED),
    ("other version", lambda c, u, m: c.post("/v1/analyze-execution",
     execute("echo", {"message": "x"}, plugin_version="0"), format="json"), 400,
     ErrorType.PLUGIN_VERSION_MISMATCH),
    ("no credentials", lambda c, u, m: APIClient().get("/v1/jobs"), 401,
     ProtocolErrorType.AUTHENTICATION_FAILED),
    ("someone else's job", lambda c, u, m: c.post(f"/v1/jobs/{others_job().pk}/cancel"), 404,
     ProtocolErrorType.NOT_FOUND),
    ("unknown URL", lambda c, u, m: c.get("/v1/nothing-here"), 404, ProtocolErrorType.NOT_FOUND),
    ("wrong method", lambda c, u, m: c.delete("/v1/jobs"), 405,
     ProtocolErrorType.METHOD_NOT_ALLOWED),
    ("wrong Accept", lambda c, u, m: c.get("/v1/jobs", HTTP_ACCEPT="text/csv"), 406,
     ProtocolErrorType.NOT_ACCEPTABLE),
    ("cancel a finished job", lambda c, u, m: c.post(f"/v1/jobs/{finished_job(u).pk}/cancel"),
     409, ProtocolErrorType.CONFLICT),
    ("huge body", lambda c, u, m: c.post("/v1/jobs", "x" * (9 * 1024 * 1024),
     content_type="application/json"), 413, ProtocolErrorType.PAYLOAD_TOO_LARGE),
    ("wrong media type", lambda c, u, m: c.post("/v1/jobs", "a=b", content_type="text/plain"),
     415, ProtocolErrorType.UNSUPPORTED_MEDIA_TYPE),
    ("writes refused at submit", lambda c, u, m: refuse_writes(m) and c.post("/v1/jobs",
     execute("echo", {"message": "x"}), format="json"), 503, ErrorType.SERVICE_UNAVAILABLE),
    ("writes refused at the outcome", lambda c, u, m: refuse_writes(m) and
     c.post("/v1/analyze-execution", execute("echo", {"message": "x"}), format="json"),
     503, ErrorType.SERVICE_UNAVAILABLE),
    ("health, writes refused", lambda c, u, m: refuse_writes(m) and c.get("/v1/health"),
     503, ErrorType.SERVICE_UNAVAILABLE),
]  # fmt: skip


@pytest.mark.parametrize(
    ("ask", "status_code", "error_type"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_every_error_answer_is_an_envelope(
    api_client, user, monkeypatch, settings, ask, status_code, error_type
):
    settings.JOB_OUTCOME_SYNC_WAIT_S = 0.1
    response = ask(api_client, user, monkeypatch)
    monkeypatch.undo()
    assert response.status_code == status_code, response.content
    body = json.loads(response.content)
    assert set(body) == {"detail"}
    detail = body["detail"]
    assert detail is not None
    assert set(detail) == ENVELOPE_KEYS
    assert detail["type"] == error_type
    assert isinstance(detail["message"], str)
    assert detail["message"]
    assert isinstance(detail["details"], dict)
    assert "Traceback" not in response.content.decode()


def test_health_says_why_when_the_disk_is_nearly_full(client, settings):
    if connection.vendor != "sqlite":
        pytest.skip("the free-space check is for a SQLite file; a server's disk is its own")
    settings.HEALTH_MIN_FREE_DISK_MB = 10**12
    response = client.get("/v1/health")
    assert response.status_code == 503
    assert response.json()["detail"]["details"]["database"].startswith("disk full")


def test_health_commits_a_heartbeat(client):
    from execution.models import ProcessHeartbeat

    assert client.get("/v1/health").status_code == 200
    beat = ProcessHeartbeat.objects.get()
    assert beat.role == "web"
    assert client.get("/v1/health").status_code == 200
    assert ProcessHeartbeat.objects.get().seen_at >= beat.seen_at
