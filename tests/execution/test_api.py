"""The HTTP contract: status codes and envelopes for success and every error type."""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from execution.models import Job, JobStatus
from plugins.errors.error_envelope import ErrorType, build_error_envelope
from plugins.models import PluginMetrics
from tests.plugins import sample_plugins
from tests.plugins.sample_plugins import SlowPlugin

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
ENVELOPE_KEYS = {"type", "message", "details", "plugin", "timestamp"}


def post(client, url, body, **kwargs):
    return client.post(url, body, format="json", **kwargs)


def assert_error(response, status_code: int, error_type: str) -> dict:
    assert response.status_code == status_code, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"detail"}
    assert set(body["detail"]) == ENVELOPE_KEYS
    assert body["detail"]["type"] == error_type
    assert "_internal" not in response.content.decode()
    assert "Traceback" not in response.content.decode()
    return body["detail"]


# Synchronous execution ------------------------------------------------------------


def test_a_successful_execution_returns_the_result_and_records_a_job(api_client, user):
    response = post(
        api_client, "/v1/analyze-execution", {"plugin": "echo", "payload": {"message": "hi"}}
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "job_id",
        "plugin",
        "plugin_version",
        "plugin_fingerprint",
        "status",
        "result",
        "elapsed_ms",
        "artifacts",
    }
    assert body["artifacts"] == []  # echo returns no files
    assert (body["plugin"], body["plugin_version"], body["status"]) == ("echo", "1.0", "SUCCESS")
    module_hash = hashlib.sha256(Path(sample_plugins.__file__).read_bytes()).hexdigest()
    assert body["plugin_fingerprint"].endswith(f"sha256:{module_hash}")
    assert body["result"] == {"echoed": "hi"}
    job = Job.objects.get(pk=body["job_id"])
    assert (job.status, job.requested_by, job.elapsed_ms) == (
        JobStatus.SUCCESS,
        user,
        body["elapsed_ms"],
    )
    assert response["X-Job-Id"] == body["job_id"]
    assert PluginMetrics.objects.get(plugin_name="echo").success_count == 1


def test_text_stats_end_to_end(api_client):
    response = post(
        api_client,
        "/v1/analyze-execution",
        {"plugin": "text_stats", "payload": {"text": "One sentence. Two sentences."}},
    )
    assert response.status_code == 200
    assert response.json()["result"]["sentence_count"] == 2


@pytest.mark.parametrize(
    ("plugin", "error_type"),
    [
        ("raising", "PluginExecutionError"),
        ("returns_none", "OutputValidationError"),
        ("wrong_output", "OutputValidationError"),
        ("slow", "PluginTimeout"),
    ],
)
def test_execution_failures_are_400_envelopes_recorded_as_failed_jobs(
    api_client, plugin, error_type
):
    SlowPlugin.release.clear()
    try:
        response = post(
            api_client, "/v1/analyze-execution", {"plugin": plugin, "payload": {"message": "x"}}
        )
    finally:
        SlowPlugin.release.set()
    detail = assert_error(response, 400, error_type)
    assert detail["plugin"] == plugin
    job = Job.objects.get(pk=response["X-Job-Id"])
    assert job.status == JobStatus.FAILED
    assert job.error["_internal"]["traceback"].startswith("Traceback")
    assert PluginMetrics.objects.get(plugin_name=plugin).error_count == 1


@pytest.mark.parametrize(
    ("body", "error_type"),
    [
        ({"plugin": "echo", "payload": {}}, "ValidationError"),
        ({"plugin": "echo", "payload": {"message": ["not", "text"]}}, "ValidationError"),
        ({"plugin": "nope", "payload": {}}, "PluginNotFound"),
        ({"plugin": "Broken", "payload": {}}, "PluginUnavailable"),
        ({"plugin": "echo"}, "ValidationError"),
        ({"payload": {}}, "ValidationError"),
        ({"plugin": 7, "payload": {}}, "ValidationError"),
        ({"plugin": True, "payload": {}}, "ValidationError"),
        ({"plugin": "echo", "payload": "text"}, "ValidationError"),
        ({"plugin": "echo", "payload": [1, 2]}, "ValidationError"),
        ({"plugin": "echo", "payload": {"message": "x"}, "priority": 1}, "ValidationError"),
        ({"plugin": "x" * 101, "payload": {}}, "ValidationError"),
        ([], "ValidationError"),
        ("just a string", "ValidationError"),
        (None, "ValidationError"),
    ],
)
@pytest.mark.parametrize("url", ["/v1/analyze-execution", "/v1/jobs"])
def test_bad_requests_are_400_envelopes_and_record_nothing(api_client, url, body, error_type):
    assert_error(post(api_client, url, body), 400, error_type)
    assert not Job.objects.exists()
    assert not PluginMetrics.objects.exists()


def test_validation_details_point_at_the_bad_fields(api_client):
    detail = assert_error(
        post(api_client, "/v1/analyze-execution", {"plugin": "echo", "payload": {"repeat": "x"}}),
        400,
        "ValidationError",
    )
    assert detail["plugin"] == "echo"
    locations = {tuple(error["location"]) for error in detail["details"]["errors"]}
    assert locations == {("payload", "message"), ("payload", "repeat")}
    unknown = assert_error(
        post(api_client, "/v1/jobs", {"plugin": "echo", "payload": {}, "extra": 1}),
        400,
        "ValidationError",
    )
    assert unknown["details"] == {
        "errors": [{"location": ["extra"], "message": "Unknown field.", "type": "invalid"}]
    }


@pytest.mark.parametrize("url", ["/v1/analyze-execution", "/v1/jobs"])
def test_malformed_json_is_a_parse_error(api_client, url):
    for body in ('{"plugin": "echo", ', "\x00\xff", "{'single': 'quotes'}", "NaN"):
        response = api_client.post(url, body, content_type="application/json")
        assert_error(response, 400, "ParseError")


def test_a_wrong_content_type_is_unsupported_media_type(api_client):
    response = api_client.post(
        "/v1/analyze-execution", "plugin=echo", content_type="application/x-www-form-urlencoded"
    )
    assert_error(response, 415, "UnsupportedMediaType")
    response = api_client.post("/v1/analyze-execution", "x", content_type="text/plain")
    assert_error(response, 415, "UnsupportedMediaType")


@pytest.mark.parametrize("path", ["/v1/analyze-execution", "/v1/jobs"])
def test_a_body_past_the_default_limit_is_payload_too_large(api_client, path):
    from django.conf import settings

    assert settings.API_MAX_REQUEST_BYTES == 8 * 1024 * 1024  # the real default, not a test's
    filler = "x" * settings.API_MAX_REQUEST_BYTES
    body = json.dumps({"plugin": "echo", "payload": {"message": filler}})
    response = api_client.post(path, body, content_type="application/json")
    assert_error(response, 413, "PayloadTooLarge")
    assert not Job.objects.exists()


def test_a_deeply_nested_payload_is_an_error_not_a_crash(api_client):
    body = '{"plugin": "echo", "payload": {"message": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    response = api_client.post("/v1/analyze-execution", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"]["type"] in ("ParseError", "ValidationError")


def test_wrong_methods_are_method_not_allowed(api_client):
    assert_error(api_client.get("/v1/analyze-execution"), 405, "MethodNotAllowed")
    job = Job.objects.create(plugin_name="echo")
    assert_error(api_client.delete(f"/v1/jobs/{job.pk}"), 405, "MethodNotAllowed")
    assert_error(api_client.put(f"/v1/jobs/{job.pk}", {}, format="json"), 405, "MethodNotAllowed")


# Authentication and visibility ---------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url"),
    [("post", "/v1/analyze-execution"), ("post", "/v1/jobs"), ("get", "/v1/jobs")],
)
def test_execution_endpoints_need_an_authenticated_user(method, url):
    response = getattr(APIClient(), method)(
        url, {"plugin": "echo", "payload": {"message": "x"}}, format="json"
    )
    assert_error(response, 401, "AuthenticationFailed")
    assert not Job.objects.exists()


def test_session_authentication_needs_csrf_for_writes(user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    response = post(
        client, "/v1/analyze-execution", {"plugin": "echo", "payload": {"message": "x"}}
    )
    assert_error(response, 403, "PermissionDenied")
    assert client.get("/v1/jobs").status_code == 200


def test_users_see_their_own_jobs_and_staff_see_all(api_client, user, staff_user):
    mine = Job.objects.create(plugin_name="echo", requested_by=user)
    theirs = Job.objects.create(plugin_name="echo", requested_by=staff_user)
    listed = api_client.get("/v1/jobs").json()
    assert [job["id"] for job in listed["results"]] == [str(mine.pk)]
    assert api_client.get(f"/v1/jobs/{mine.pk}").status_code == 200
    assert_error(api_client.get(f"/v1/jobs/{theirs.pk}"), 404, "NotFound")
    staff = APIClient()
    staff.force_authenticate(staff_user)
    assert staff.get("/v1/jobs").json()["count"] == 2
    assert staff.get(f"/v1/jobs/{mine.pk}").json()["requested_by"] == "alice"


# Background jobs ------------------------------------------------------------------


def test_submitting_a_job_answers_202_with_its_location(
    api_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api_client, "/v1/jobs", {"plugin": "echo", "payload": {"message": "x"}})
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "PENDING"
    assert body["result"] is None
    assert body["error"] is None
    assert response["Location"].endswith(f"/v1/jobs/{body['id']}")
    assert Job.objects.get(pk=body["id"]).task_id is not None
    detail = api_client.get(response["Location"])
    assert detail.json()["id"] == body["id"]


def test_job_list_is_paginated_and_filtered(api_client, user):
    for index in range(7):
        Job.objects.create(plugin_name="echo" if index % 2 else "noop", requested_by=user)
    failed = Job.objects.create(plugin_name="echo", requested_by=user)
    failed.mark_failed(dict(build_error_envelope(ErrorType.PLUGIN_TIMEOUT, "too slow")))
    page = api_client.get("/v1/jobs?page_size=3").json()
    assert (page["count"], len(page["results"])) == (8, 3)
    assert page["next"] is not None
    assert api_client.get("/v1/jobs?plugin=noop").json()["count"] == 4
    by_status = api_client.get("/v1/jobs?status=FAILED").json()
    assert [job["id"] for job in by_status["results"]] == [str(failed.pk)]
    assert by_status["results"][0]["error"]["type"] == "PluginTimeout"
    assert api_client.get("/v1/jobs?status=PENDING&plugin=echo").json()["count"] == 3


@pytest.mark.parametrize(
    ("query", "status_code", "error_type"),
    [
        ("status=DONE", 400, "ValidationError"),
        ("page_size=0", 400, "ValidationError"),
        ("page_size=-5", 400, "ValidationError"),
        ("page_size=many", 400, "ValidationError"),
        ("created_after=yesterday", 400, "ValidationError"),
        ("created_after=9999-12-31T23:59:59-23:00", 400, "ValidationError"),
        ("created_before=0001-01-01T00:00:00%2B23:00", 400, "ValidationError"),
        ("error_type=Oops", 400, "ValidationError"),
        ("ordering=colour", 400, "ValidationError"),
        ("ordering=status,", 400, "ValidationError"),
        ("ordering=,", 400, "ValidationError"),
        ("page=0", 400, "ValidationError"),
        ("page=abc", 400, "ValidationError"),
        ("page=%C2%B2", 400, "ValidationError"),
        ("page=99", 404, "NotFound"),
        ("format=xml", 406, "NotAcceptable"),
    ],
)
def test_bad_list_queries_are_envelopes(api_client, query, status_code, error_type):
    assert_error(api_client.get(f"/v1/jobs?{query}"), status_code, error_type)


@pytest.mark.parametrize(
    "job_id", ["not-a-uuid", "12345", "00000000-0000-0000-0000-000000000000", "%00"]
)
def test_unknown_job_ids_are_not_found(api_client, job_id):
    assert_error(api_client.get(f"/v1/jobs/{job_id}"), 404, "NotFound")


# Django's own error pages under /v1/ -----------------------------------------------------


@pytest.mark.parametrize("debug", [False, True])
def test_unknown_urls_under_v1_answer_json_envelopes(api_client, settings, debug):
    settings.DEBUG = debug
    assert_error(api_client.get("/v1/does/not/exist"), 404, "NotFound")
    assert_error(APIClient().post("/v1/nope", "x", content_type="text/plain"), 404, "NotFound")


def test_a_bad_host_header_under_v1_is_an_envelope(client):
    response = client.get("/v1/health", HTTP_HOST="evil.example")
    assert_error(response, 400, "ValidationError")


def test_health_reports_database_and_plugins():
    response = APIClient().get("/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["plugins"]["available"] >= 2
    assert body["checks"]["plugins"]["unavailable"] == 1


def run_against_unreachable_database(code: str) -> dict:
    env = {
        **os.environ,
        "DATABASE_URL": "postgres://nobody:secret@127.0.0.1:1/none",
        "SECRET_KEY": "x",
        "DEBUG": "0",
        "ALLOWED_HOSTS": "testserver",
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "LOG_LEVEL": "CRITICAL",
    }
    script = (
        "import django, json; django.setup()\n"
        "from django.test import Client\n"
        f"r = {code}\n"
        "print(json.dumps({'status': r.status_code, 'body': r.json()}))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_an_unreachable_database_is_a_503_envelope():
    outcome = run_against_unreachable_database(
        "Client().post('/v1/analyze-execution', "
        "{'plugin': 'text_stats', 'payload': {'text': 'x'}}, "
        "content_type='application/json', HTTP_AUTHORIZATION='Token abc')"
    )
    assert outcome["status"] == 503
    assert outcome["body"]["detail"]["type"] == "ServiceUnavailable"
    assert "secret" not in json.dumps(outcome)


def test_health_is_503_when_the_database_is_unreachable():
    outcome = run_against_unreachable_database("Client().get('/v1/health')")
    assert outcome["status"] == 503
    assert outcome["body"]["detail"]["type"] == "ServiceUnavailable"
    assert outcome["body"]["detail"]["details"]["database"].startswith("error")


# OpenAPI ------------------------------------------------------------------------------


def test_the_schema_documents_every_endpoint_and_the_error_envelope(client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    paths = schema["paths"]
    for path in (
        "/v1/analyze-execution",
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/health",
        "/v1/plugins",
        "/v1/plugins/{name}",
    ):
        assert path in paths, path
    execute = paths["/v1/analyze-execution"]["post"]["responses"]
    for code in ("200", "400", "401", "403", "404", "406", "411", "413", "415", "503"):
        assert code in execute
    error_ref = execute["400"]["content"]["application/json"]["schema"]["$ref"]
    assert error_ref == "#/components/schemas/ErrorResponse"
    components = schema["components"]["schemas"]
    assert components["ErrorResponse"]["required"] == ["detail"]
    for variant in components["Error"]["oneOf"]:
        envelope = components[variant["$ref"].rsplit("/", 1)[-1]]
        assert set(envelope["properties"]) == ENVELOPE_KEYS
    assert "202" in paths["/v1/jobs"]["post"]["responses"]


def test_swagger_ui_is_served_from_local_assets(admin_client):
    response = admin_client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui" in page
    # Every asset the page loads is ours (the page also holds a random CSRF token,
    # which may spell "cdn" by chance: look at the addresses, not the text).
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page)
    assert assets, page
    assert all(url.startswith("/") and not url.startswith("//") for url in assets), assets
    assert not re.search(r"https?://|jsdelivr|unpkg|cdnjs", page), page
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
