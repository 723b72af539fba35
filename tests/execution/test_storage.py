"""Storage that matches the data: JSON as UTF-8, and a plugin's own bound on its input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from execution.audit.chain import seal
from execution.audit.digest import payload_sha256
from execution.audit.models import AuditEntry
from execution.audit.verify import verify
from execution.backends.json_text import utf8_json
from execution.models import Job, JobStatus
from execution.policy.input_size import InputTooLarge, input_size
from execution.services import AnalysisExecutionService
from plugins.contract import contract_problems
from plugins.models import PluginMetrics
from tests.execution.conftest import SAMPLE_PLUGINS
from tests.execution.size_plugins import BOUND, BoundedEchoPlugin

pytestmark = pytest.mark.django_db

MB = 1_000_000
# Two bytes a character in UTF-8, six as a \u escape.
FOUR_MB_OF_TEXT = "\u00e9" * (2 * MB)


def stored_bytes(column: str, job_id: Any) -> int:
    """How many bytes the database keeps for ``column`` of the job, as its text."""
    table = Job._meta.db_table
    if connection.vendor == "sqlite":
        sql = f"SELECT length(CAST({column} AS BLOB)) FROM {table} WHERE id = %s"
        pk = job_id.hex
    else:
        sql = f"SELECT octet_length({column}::text) FROM {table} WHERE id = %s"
        pk = job_id
    with connection.cursor() as cursor:
        cursor.execute(sql, [pk])
        return int(cursor.fetchone()[0])


def post(client: APIClient, url: str, body: Any) -> Any:
    # Sent as UTF-8 text, as a client would: the body is as large as the data.
    data = json.dumps(body, ensure_ascii=False)
    return client.generic("POST", url, data, content_type="application/json")


@pytest.fixture(autouse=True)
def _bounded_plugin(settings):
    settings.PLUGINS = [*SAMPLE_PLUGINS, "tests.execution.size_plugins.BoundedEchoPlugin"]


# JSON as UTF-8 ------------------------------------------------------------------------


def test_a_4_mb_non_ascii_request_is_stored_in_about_4_mb(api_client):
    response = post(
        api_client, "/v1/jobs", {"plugin": "echo", "payload": {"message": FOUR_MB_OF_TEXT}}
    )
    assert response.status_code == 202, response.content
    job_id = Job.objects.get().pk

    size = stored_bytes("input_payload", job_id)
    assert 4 * MB <= size < 4 * MB + 100  # not 12 MB of \u00e9 escapes
    assert Job.objects.get().input_payload == {"message": FOUR_MB_OF_TEXT}


@pytest.mark.parametrize(
    ("text", "utf8_bytes"),
    [("\u00e9", 2), ("\u4e2d", 3), ("\U0001f600", 4)],  # Latin, CJK, beyond the BMP
)
def test_every_script_is_stored_in_its_utf8_size(api_client, text, utf8_bytes):
    message = text * 1000
    response = post(
        api_client, "/v1/analyze-execution", {"plugin": "echo", "payload": {"message": message}}
    )
    assert response.status_code == 200, response.content
    job = Job.objects.get()

    overhead = len(json.dumps({"message": ""}))
    assert stored_bytes("input_payload", job.pk) <= 1000 * utf8_bytes + overhead + 10
    assert stored_bytes("result", job.pk) <= 1000 * utf8_bytes + overhead + 10
    assert job.result == {"echoed": message}
    assert api_client.get(f"/v1/jobs/{job.pk}").json()["input"] == {"message": message}


def test_the_audit_trail_verifies_over_utf8_jobs(api_client):
    message = "\u00e9\u4e2d\U0001f600 caf\u00e9"
    post(api_client, "/v1/analyze-execution", {"plugin": "echo", "payload": {"message": message}})
    post(api_client, "/v1/jobs", {"plugin": "echo", "payload": {"message": message}})
    job = Job.objects.filter(status=JobStatus.SUCCESS).get()

    submitted = AuditEntry.objects.get(job_id=job.pk, event="job.submitted")
    assert submitted.input_sha256 == payload_sha256({"message": message})
    seal()
    report = verify()
    assert report.jobs == 2
    assert report.ok, (report.chain_problem, report.record_problems)


def test_a_lone_surrogate_keeps_its_escape():
    # No UTF-8 form: the text keeps json's escape, and the driver can bind it.
    assert utf8_json({"m": "\ud800"}) == '{"m": "\\ud800"}'
    assert utf8_json({"m": "\u00e9"}) == '{"m": "\u00e9"}'


@pytest.mark.skipif(connection.vendor != "sqlite", reason="jsonb refuses lone surrogates")
def test_sqlite_stores_a_lone_surrogate_and_reads_it_back():
    # The API refuses them in requests; anything else that holds one still stores.
    error = {"error": {"message": "bad \ud800 byte", "type": "PluginExecutionError"}}
    job = Job.objects.create(plugin_name="echo", error=error)
    job.refresh_from_db()
    assert job.error == error


# A plugin's max_input_bytes --------------------------------------------------------------


def test_the_size_is_the_compact_utf8_json():
    assert input_size({"message": "\u00e9"}) == len('{"message":"\u00e9"}'.encode())


def _too_big() -> dict[str, Any]:
    return {"message": "x" * BOUND, "repeat": 1}


def _refusal(response: Any) -> dict[str, Any]:
    assert response.status_code == 413, response.content
    detail = response.json()["detail"]
    assert detail["type"] == "PayloadTooLarge"
    assert detail["plugin"] == "bounded_echo"
    assert detail["details"] == {
        "plugin": "bounded_echo",
        "max_input_bytes": BOUND,
        "size": input_size(_too_big()),
    }
    assert f"at most {BOUND} bytes" in detail["message"]
    assert "bounded_echo" in detail["message"]
    return detail


@pytest.mark.parametrize("url", ["/v1/analyze-execution", "/v1/jobs"])
def test_a_payload_over_the_plugins_bound_is_refused_before_anything_runs(api_client, url):
    _refusal(post(api_client, url, {"plugin": "bounded_echo", "payload": _too_big()}))

    assert not Job.objects.exists()
    assert not PluginMetrics.objects.filter(plugin_name="bounded_echo").exists()
    [refused] = AuditEntry.objects.filter(event="request.refused")
    assert (refused.error_type, refused.plugin_name) == ("PayloadTooLarge", "bounded_echo")


@pytest.mark.parametrize("url", ["/v1/analyze-execution", "/v1/jobs"])
def test_a_payload_within_the_bound_runs(api_client, url):
    payload = {"message": "x" * (BOUND - 30), "repeat": 1}
    assert input_size(payload) <= BOUND
    response = post(api_client, url, {"plugin": "bounded_echo", "payload": payload})
    assert response.status_code in (200, 202), response.content
    assert Job.objects.count() == 1


def test_a_rerun_over_the_bound_is_refused(user):
    # A job from before the plugin had its bound, or from an operator's data fix.
    old = Job.objects.create(plugin_name="bounded_echo", input_payload=_too_big())
    with pytest.raises(InputTooLarge) as refused:
        AnalysisExecutionService().rerun(job=old, user=user)
    assert refused.value.details["max_input_bytes"] == BOUND
    assert Job.objects.count() == 1
    assert AuditEntry.objects.filter(event="request.refused", error_type="PayloadTooLarge").exists()


def test_the_admins_rerun_says_why(admin_client):
    old = Job.objects.create(plugin_name="bounded_echo", input_payload=_too_big())
    response = admin_client.post(
        "/admin/execution/job/",
        {"action": "run_again", "_selected_action": [str(old.pk)]},
        follow=True,
    )
    assert f"accepts at most {BOUND} bytes" in response.content.decode()
    assert Job.objects.count() == 1


def test_other_plugins_keep_only_the_global_bound(api_client):
    response = post(api_client, "/v1/jobs", {"plugin": "echo", "payload": _too_big()})
    assert response.status_code == 202


@pytest.mark.parametrize("bound", [0, -1, 1.5, "100", True])
def test_max_input_bytes_must_be_a_positive_integer(bound):
    broken = type(
        "Broken", (BoundedEchoPlugin,), {"name": "broken_bound", "max_input_bytes": bound}
    )
    assert "'max_input_bytes' must be a positive integer or None" in contract_problems(broken)
    assert not contract_problems(BoundedEchoPlugin)
