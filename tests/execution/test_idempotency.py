"""Idempotency-Key on POST /v1/jobs and /v1/analyze-execution: a retry makes no second job.

Concurrent duplicates against real gunicorn workers: tests/faults/test_idempotency_races.py.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from execution.audit.models import AuditEntry
from execution.clock import database_now
from execution.models import IdempotencyKey, Job, JobStatus
from execution.policy import idempotency
from execution.policy.tokens import create_token
from plugins.models import PluginMetrics
from tests.statements import statements

pytestmark = pytest.mark.django_db

SYNC, JOBS = "/v1/analyze-execution", "/v1/jobs"
ECHO = {"plugin": "echo", "payload": {"message": "hi"}}


def post(client: APIClient, url: str, body: Any, key: str | None = None) -> Any:
    extra: dict[str, Any] = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post(url, body, format="json", **extra)


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {create_token(user=user).key}")
    return client


def runs_of(plugin: str) -> int:
    metrics = PluginMetrics.objects.filter(plugin_name=plugin).first()
    return metrics.success_count + metrics.error_count if metrics else 0


@pytest.fixture
def bob(db):
    return get_user_model().objects.create_user("bob", password="pw-bob-123456")


# Replays --------------------------------------------------------------------------


def test_a_synchronous_run_sent_again_gets_its_answer_and_runs_nothing(api_client):
    first = post(api_client, SYNC, ECHO, key="order-1")
    again = post(api_client, SYNC, ECHO, key="order-1")

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again["X-Job-Id"] == first["X-Job-Id"] == first.json()["job_id"]
    assert again["Idempotent-Replayed"] == "true"
    assert not first.has_header("Idempotent-Replayed")
    assert Job.objects.count() == 1
    assert runs_of("echo") == 1


def test_a_failed_synchronous_run_sent_again_gets_the_same_error(api_client):
    body = {"plugin": "raising", "payload": {"message": "hi"}}
    first = post(api_client, SYNC, body, key="k")
    again = post(api_client, SYNC, body, key="k")

    assert first.status_code == again.status_code == 400
    assert again.json() == first.json()
    assert again.json()["detail"]["type"] == "PluginExecutionError"
    assert Job.objects.get().status == JobStatus.FAILED
    assert runs_of("raising") == 1


def test_a_submitted_job_sent_again_is_the_same_job(api_client):
    first = post(api_client, JOBS, ECHO, key="nightly-2026-12-02")
    again = post(api_client, JOBS, ECHO, key="nightly-2026-12-02")

    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again["Location"] == first["Location"]
    assert again["Idempotent-Replayed"] == "true"
    assert Job.objects.count() == 1
    submitted = AuditEntry.objects.filter(event="job.submitted")
    assert submitted.count() == 1


def test_the_replay_shows_the_job_as_it_is_now(api_client):
    first = post(api_client, JOBS, ECHO, key="k")
    assert api_client.post(f"/v1/jobs/{first.json()['id']}/cancel").status_code == 200

    again = post(api_client, JOBS, ECHO, key="k")
    assert again.status_code == 202
    assert again.json()["status"] == JobStatus.CANCELLED


def test_the_same_body_in_another_key_order_is_the_same_request(api_client):
    post(api_client, SYNC, {"payload": {"repeat": 2, "message": "hi"}, "plugin": "echo"}, key="k")
    again = post(
        api_client, SYNC, {"plugin": "echo", "payload": {"message": "hi", "repeat": 2}}, key="k"
    )
    assert again.status_code == 200
    assert again["Idempotent-Replayed"] == "true"
    assert Job.objects.count() == 1


# Conflicts ------------------------------------------------------------------------


def test_the_same_key_with_another_body_is_a_conflict(api_client):
    post(api_client, SYNC, ECHO, key="k")
    other = post(api_client, SYNC, {"plugin": "echo", "payload": {"message": "bye"}}, key="k")

    assert other.status_code == 409
    detail = other.json()["detail"]
    assert detail["type"] == "Conflict"
    assert detail["details"] == {"reason": "other_body"}
    assert "another request body" in detail["message"]
    assert Job.objects.count() == 1
    refused = AuditEntry.objects.filter(event="request.refused", error_type="Conflict")
    assert refused.count() == 1


def test_the_same_key_at_the_other_endpoint_is_a_conflict(api_client):
    post(api_client, JOBS, ECHO, key="k")
    other = post(api_client, SYNC, ECHO, key="k")

    assert other.status_code == 409
    assert other.json()["detail"]["details"] == {
        "reason": "other_endpoint",
        "used_with": "POST /v1/jobs",
    }
    assert Job.objects.count() == 1


def test_a_duplicate_of_a_request_still_running_is_told_to_come_back(api_client, user):
    # What a duplicate finds while the first request runs: its claim, and no answer yet.
    claim = idempotency.claim_key(
        user=user, key="k", endpoint="POST /v1/analyze-execution", body=ECHO
    )
    assert isinstance(claim, idempotency.Claim)

    response = post(api_client, SYNC, ECHO, key="k")
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert detail["details"] == {"reason": "in_progress", "job_id": str(claim.job_id)}
    assert response["X-Job-Id"] == str(claim.job_id)
    assert response["Location"].endswith(f"/v1/jobs/{claim.job_id}")
    assert response["Retry-After"] == "1"
    assert Job.objects.count() == 0


def test_keys_are_per_user(api_client, bob):
    mine = post(api_client, SYNC, ECHO, key="shared-key")
    theirs = post(client_for(bob), SYNC, ECHO, key="shared-key")

    assert mine.status_code == theirs.status_code == 200
    assert mine.json()["job_id"] != theirs.json()["job_id"]
    assert "Idempotent-Replayed" not in theirs
    assert Job.objects.count() == 2


# Refusals free the key; expiry --------------------------------------------------------


def test_a_refused_request_leaves_the_key_free_for_its_correction(api_client):
    refused = post(api_client, SYNC, {"plugin": "echo", "payload": {"repeat": 1}}, key="k")
    assert refused.status_code == 400
    assert not IdempotencyKey.objects.exists()

    corrected = post(api_client, SYNC, ECHO, key="k")
    assert corrected.status_code == 200
    assert IdempotencyKey.objects.get().job_id.hex == corrected.json()["job_id"].replace("-", "")


def test_an_unknown_plugin_leaves_no_key(api_client):
    response = post(api_client, JOBS, {"plugin": "nope", "payload": {}}, key="k")
    assert response.status_code == 400
    assert not IdempotencyKey.objects.exists()


def test_an_expired_key_names_a_new_request(api_client, settings):
    first = post(api_client, SYNC, ECHO, key="k")
    IdempotencyKey.objects.update(expires_at=database_now() - timedelta(seconds=1))

    other_body = post(api_client, SYNC, {"plugin": "echo", "payload": {"message": "x"}}, key="k")
    assert other_body.status_code == 200
    assert other_body.json()["job_id"] != first.json()["job_id"]
    assert Job.objects.count() == 2
    key = IdempotencyKey.objects.get()  # the same row, claimed anew
    assert str(key.job_id) == other_body.json()["job_id"]
    assert key.expires_at > database_now() + timedelta(seconds=settings.IDEMPOTENCY_TTL_S - 60)


def test_the_ttl_comes_from_the_setting(api_client, settings):
    settings.IDEMPOTENCY_TTL_S = 30
    post(api_client, SYNC, ECHO, key="k")
    key = IdempotencyKey.objects.get()
    assert abs(key.expires_at - key.created_at - timedelta(seconds=30)) < timedelta(seconds=1)


def test_expired_keys_are_purged_and_live_ones_kept(api_client, user, monkeypatch):
    monkeypatch.setattr(idempotency, "PURGE_BATCH", 2)  # several batches
    for index in range(5):
        post(api_client, JOBS, ECHO, key=f"old-{index}")
    IdempotencyKey.objects.update(expires_at=database_now() - timedelta(seconds=1))
    post(api_client, JOBS, ECHO, key="live")

    assert idempotency.purge_expired_keys(force=True) == 5
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["live"]
    assert idempotency.purge_expired_keys() == 0  # not again within PURGE_INTERVAL_S


# Bad keys -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "empty"),
        ("k" * 256, "longer than 255"),
        ("caf\u00e9", "printable ASCII"),  # what WSGI makes of a non-ASCII byte
        ("a\tb", "printable ASCII"),
    ],
)
@pytest.mark.parametrize("url", [SYNC, JOBS])
def test_a_bad_key_is_refused_and_changes_nothing(api_client, url, key, reason):
    response = post(api_client, url, ECHO, key=key)

    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail["type"] == "ValidationError"
    [error] = detail["details"]["errors"]
    assert error["location"] == ["headers", "Idempotency-Key"]
    assert reason in error["message"]
    assert not Job.objects.exists()
    assert not IdempotencyKey.objects.exists()


def test_the_longest_key_is_accepted(api_client):
    assert post(api_client, SYNC, ECHO, key="k" * 255).status_code == 200


# Cost -----------------------------------------------------------------------------


@pytest.mark.parametrize("url", [SYNC, JOBS])
def test_a_key_costs_one_insert_and_no_key_costs_nothing(api_client, url):
    post(api_client, url, ECHO)  # warm: the token, the plugin's process
    with statements() as without_key:
        post(api_client, url, ECHO)
    with statements() as with_key:
        post(api_client, url, ECHO, key="k")

    keyed = [sql for sql in with_key if "idempotencykey" in sql.lower()]
    assert len(keyed) == 1
    assert keyed[0].lstrip().upper().startswith("INSERT")
    assert not [sql for sql in without_key if "idempotencykey" in sql.lower()]
    assert len(with_key) == len(without_key) + 1


# Schema ---------------------------------------------------------------------------


def test_the_header_is_in_the_schema_of_both_endpoints(client):
    schema = json.loads(client.get("/api/schema/", HTTP_ACCEPT="application/json").content)
    for path, method in (("/v1/analyze-execution", "post"), ("/v1/jobs", "post")):
        operation = schema["paths"][path][method]
        [header] = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
        assert header["in"] == "header"
        assert not header.get("required", False)
        assert "409" in operation["responses"]
    assert (
        "Idempotent-Replayed" in schema["paths"]["/v1/jobs"]["post"]["responses"]["202"]["headers"]
    )
    replayed = schema["paths"]["/v1/analyze-execution"]["post"]["responses"]["200"]["headers"]
    assert "Idempotent-Replayed" in replayed
