"""Artifacts: files a plugin returns with its output, stored, downloaded, audited and pruned.

Real sandboxed hosts (and a thread for the thread case), the real Django test client,
a FileSystemStorage under a MEDIA_ROOT of the test's own.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.storage import FileSystemStorage
from django.core.management import call_command
from rest_framework.test import APIClient

from execution.artifacts import services as artifact_services
from execution.artifacts.models import JobArtifact
from execution.audit.chain import seal
from execution.audit.events import AuditEvent
from execution.audit.models import AuditEntry
from execution.audit.verify import verify
from execution.clock import database_now
from execution.models import Job, JobStatus
from execution.policy.tokens import create_token
from execution.services import JobExecutionService
from execution.services.lease_recovery import LeaseRecoveryService
from plugins.artifacts import Artifact, WithArtifacts
from plugins.contract import contract_problems
from plugins.errors.exceptions import UngovernedExecutionError
from plugins.testing import run_plugin
from tests.faults.conftest import wait_until
from tests.plugins.artifact_plugins import (
    BAD_NAMES,
    FIVE_MB,
    BadArtifactsPlugin,
    ImagePlugin,
    QuickImagePlugin,
    png_bytes,
)
from tests.statements import statements

pytestmark = pytest.mark.django_db(transaction=True)

MODULE = "tests.plugins.artifact_plugins"
PLUGIN_CLASSES = (
    "ImagePlugin",
    "ThreadImagePlugin",
    "QuickImagePlugin",
    "BadArtifactsPlugin",
    "LyingHostPlugin",
)


class OutlastingStorage(FileSystemStorage):
    """Saves its first file only once the job's first lease has ended, then lets recovery run.

    Recovery runs as the second file is saved: it takes the job if its lease ended.
    """

    def save(self, name: str | None, content: Any, max_length: int | None = None) -> str:
        job = Job.objects.get()
        if str(name).endswith("/0"):
            first_lease_end = job.started_at + timedelta(
                seconds=QuickImagePlugin.timeout_s + settings.JOB_LEASE_GRACE_S
            )
            wait_until(lambda: database_now() > first_lease_end, timeout_s=30)
        else:
            LeaseRecoveryService().recover_expired()
        return super().save(name, content, max_length)


class CancellingStorage(FileSystemStorage):
    """The job is cancelled while its first file is saved."""

    def save(self, name: str | None, content: Any, max_length: int | None = None) -> str:
        if str(name).endswith("/0"):
            JobExecutionService().cancel_job(job=Job.objects.get())
        return super().save(name, content, max_length)


class FailingStorage(FileSystemStorage):
    """A storage whose disk is full."""

    def _save(self, name: str, content: Any) -> str:
        raise OSError(28, "No space left on device")


@pytest.fixture(autouse=True)
def _setup(settings, tmp_path):
    settings.PLUGINS = [f"{MODULE}.{name}" for name in PLUGIN_CLASSES]
    settings.PLUGIN_ISOLATION = "process"
    settings.PLUGIN_THREAD_ALLOWED = ["image_artifact_thread", "image_artifact_quick"]
    settings.MEDIA_ROOT = tmp_path / "media"


def stored_files(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


def download(client: APIClient, url: str, **headers: Any) -> tuple[Any, bytes]:
    response: Any = client.get(url, **headers)
    try:
        body = b"".join(response.streaming_content) if response.streaming else response.content
    finally:
        response.close()
    return response, body


def run_job(plugin: str, payload: dict[str, Any], user: Any = None) -> Job:
    job = JobExecutionService().execute_now(plugin_name=plugin, payload=payload, requested_by=user)
    return Job.objects.get(pk=job.pk)


# The 5 MB image ---------------------------------------------------------------------


def test_a_five_megabyte_image_comes_back_as_an_artifact_with_a_small_result(api_client, settings):
    expected = png_bytes(FIVE_MB)
    response = api_client.post(
        "/v1/analyze-execution", {"plugin": "image_artifact", "payload": {}}, format="json"
    )
    assert response.status_code == 200, response.content
    assert len(response.content) < 2000  # the image is not in the JSON
    body = response.json()
    assert body["status"] == "SUCCESS"
    assert body["result"] == {"width": 640, "height": 480}
    [artifact] = body["artifacts"]
    job_id = body["job_id"]
    assert artifact == {
        "name": "picture.png",
        "content_type": "image/png",
        "size": FIVE_MB,
        "sha256": hashlib.sha256(expected).hexdigest(),
        "url": f"http://testserver/v1/jobs/{job_id}/artifacts/picture.png",
    }
    job = Job.objects.get(pk=job_id)
    assert job.result == {"width": 640, "height": 480}

    download_response, data = download(api_client, artifact["url"])
    assert download_response.status_code == 200
    assert download_response["Content-Type"] == "image/png"
    assert download_response["Content-Length"] == str(FIVE_MB)
    assert download_response["Content-Disposition"] == 'attachment; filename="picture.png"'
    assert download_response["X-Content-Type-Options"] == "nosniff"
    assert data == expected
    assert hashlib.sha256(data).hexdigest() == artifact["sha256"]

    # The job's body lists it too; the file is under MEDIA_ROOT, not named by the plugin.
    detail = api_client.get(f"/v1/jobs/{job_id}").json()
    assert detail["artifacts"] == [artifact]
    [path] = stored_files(settings)
    assert path.read_bytes() == expected
    assert "picture" not in str(path)


def test_size_and_sha256_are_on_the_audit_trail_and_it_verifies(user, settings):
    job = run_job("image_artifact", {"size": 1000, "name": "small.png"}, user=user)
    entry = AuditEntry.objects.get(job_id=job.pk, event=AuditEvent.JOB_ARTIFACTS_STORED)
    assert entry.details["artifacts"] == [
        {
            "name": "small.png",
            "content_type": "image/png",
            "size": 1000,
            "sha256": hashlib.sha256(png_bytes(1000)).hexdigest(),
        }
    ]
    assert entry.plugin_name == "image_artifact"
    seal()
    assert verify().ok
    out = StringIO()
    call_command("verify_audit", stdout=out)
    assert out.getvalue().startswith("Audit trail verified:")


def test_a_background_job_shows_its_artifacts(api_client, user):
    response = api_client.post(
        "/v1/jobs",
        {"plugin": "image_artifact", "payload": {"size": 2048, "copies": 3}},
        format="json",
    )
    assert response.status_code == 202
    job_id = response.json()["id"]
    assert response.json()["artifacts"] == []  # PENDING: none yet
    JobExecutionService().run_job(job_id=job_id)
    body = api_client.get(f"/v1/jobs/{job_id}").json()
    assert body["status"] == "SUCCESS"
    assert [a["name"] for a in body["artifacts"]] == ["picture.png", "copy-1.png", "copy-2.png"]
    for artifact in body["artifacts"]:
        _, data = download(api_client, artifact["url"])
        assert data == png_bytes(2048)


def test_a_thread_isolated_plugin_returns_artifacts_too(api_client):
    response = api_client.post(
        "/v1/analyze-execution",
        {"plugin": "image_artifact_thread", "payload": {"size": 4096}},
        format="json",
    )
    assert response.status_code == 200, response.content
    [artifact] = response.json()["artifacts"]
    assert artifact["sha256"] == hashlib.sha256(png_bytes(4096)).hexdigest()
    _, data = download(api_client, artifact["url"])
    assert data == png_bytes(4096)


def test_a_download_is_served_whatever_the_client_accepts(api_client):
    job = run_job("image_artifact", {"size": 100}, user=api_client_user(api_client))
    response, data = download(
        api_client, f"/v1/jobs/{job.pk}/artifacts/picture.png", HTTP_ACCEPT="image/png"
    )
    assert response.status_code == 200
    assert data == png_bytes(100)


def api_client_user(client: APIClient) -> Any:
    return get_user_model().objects.get(username="alice")


def test_names_that_need_quoting_get_a_safe_content_disposition(api_client, user):
    name = 'report "final"; filename=evil.html'
    job = run_job("image_artifact", {"size": 10, "name": name}, user=user)
    [artifact] = api_client.get(f"/v1/jobs/{job.pk}").json()["artifacts"]
    response, _ = download(api_client, artifact["url"])
    assert response.status_code == 200
    assert response["Content-Disposition"] == (
        'attachment; filename="report \\"final\\"; filename=evil.html"'
    )
    unicode_job = run_job("image_artifact", {"size": 10, "name": "résumé.png"}, user=user)
    [artifact] = api_client.get(f"/v1/jobs/{unicode_job.pk}").json()["artifacts"]
    response, _ = download(api_client, artifact["url"])
    assert response["Content-Disposition"] == "attachment; filename*=utf-8''r%C3%A9sum%C3%A9.png"


# Visibility ---------------------------------------------------------------------------


def test_only_who_may_see_the_job_downloads_its_artifacts(api_client, user, staff_user):
    job = run_job("image_artifact", {"size": 100}, user=user)
    url = f"/v1/jobs/{job.pk}/artifacts/picture.png"
    stranger = get_user_model().objects.create_user("mallory", password="pw-mallory-123")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {create_token(user=stranger).key}")

    hidden, _ = download(client, url)
    unknown_job, _ = download(
        client, "/v1/jobs/00000000-0000-0000-0000-000000000000/artifacts/picture.png"
    )
    assert hidden.status_code == unknown_job.status_code == 404
    hidden_detail = hidden.json()["detail"]
    unknown_detail = unknown_job.json()["detail"]
    assert hidden_detail["type"] == unknown_detail["type"] == "NotFound"
    assert hidden_detail["message"] == unknown_detail["message"] == "No such job."

    anonymous, _ = download(APIClient(), url)
    assert anonymous.status_code in (401, 403)

    staff = APIClient()
    staff.credentials(HTTP_AUTHORIZATION=f"Token {create_token(user=staff_user).key}")
    allowed, data = download(staff, url)
    assert allowed.status_code == 200
    assert data == png_bytes(100)


def test_an_unknown_artifact_is_a_404_envelope(api_client, user):
    job = run_job("image_artifact", {"size": 100}, user=user)
    response, _ = download(api_client, f"/v1/jobs/{job.pk}/artifacts/nope.png")
    assert response.status_code == 404
    assert response.json()["detail"]["type"] == "NotFound"
    assert response.json()["detail"]["message"] == "No such artifact."


@pytest.mark.parametrize("name", ["a%00b.png", "%00", "a" * 201, "..", "a%0Ab"])
def test_a_name_no_artifact_can_have_is_a_404_without_a_query(api_client, user, name, monkeypatch):
    """PostgreSQL cannot even compare a NUL: the name is refused before any query."""
    job = run_job("image_artifact", {"size": 100}, user=user)
    looked_up: list[Any] = []
    get = JobArtifact.objects.get

    def spy(**lookup: Any) -> Any:
        looked_up.append(lookup)
        return get(**lookup)

    monkeypatch.setattr(JobArtifact.objects, "get", spy)
    response, _ = download(api_client, f"/v1/jobs/{job.pk}/artifacts/{name}")
    assert response.status_code == 404, response.content
    assert response.json()["detail"]["type"] == "NotFound"
    assert response.json()["detail"]["message"] == "No such artifact."
    assert looked_up == []
    response, _ = download(api_client, f"/v1/jobs/{job.pk}/artifacts/picture.png")
    assert response.status_code == 200
    assert len(looked_up) == 1  # the spy sees the lookups there are


def test_a_lone_surrogate_names_no_artifact(user):
    job = run_job("image_artifact", {"size": 100}, user=user)
    with pytest.raises(JobArtifact.DoesNotExist):
        artifact_services.get_artifact(job, "a\ud800.png")


def test_a_file_gone_from_the_storage_is_a_503_not_a_500(api_client, user, settings):
    job = run_job("image_artifact", {"size": 100}, user=user)
    for path in stored_files(settings):
        path.unlink()
    response, _ = download(api_client, f"/v1/jobs/{job.pk}/artifacts/picture.png")
    assert response.status_code == 503
    assert response.json()["detail"]["type"] == "ServiceUnavailable"


# Bad artifacts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "message"),
    [
        *[(case, "name") for case in BAD_NAMES],
        ("oversize", "of 1025 bytes; the limit is 1024"),
        ("too_many", "returned 17 artifacts; the limit is 16"),
        ("duplicate", "two artifacts named 'a.txt'"),
        ("not_an_artifact", "not an Artifact"),
        ("text_data", "not an Artifact with bytes"),
        ("bad_content_type", "content type"),
        ("bad_output", "does not match its Output model"),
    ],
)
def test_bad_artifacts_fail_the_job_with_a_clear_error_and_store_nothing(
    user, settings, case, message
):
    job = run_job("bad_artifacts", {"case": case}, user=user)
    assert job.status == JobStatus.FAILED
    error = job.error["error"]
    assert error["type"] == "OutputValidationError"
    assert message in error["message"]
    assert not JobArtifact.objects.exists()
    assert stored_files(settings) == []
    seal()
    assert verify().ok


def test_the_oversize_error_says_the_sizes(user):
    job = run_job("bad_artifacts", {"case": "oversize"}, user=user)
    assert job.error["error"]["details"] == {
        "artifact": "big.bin",
        "artifact_bytes": 1025,
        "max_artifact_bytes": 1024,
    }


def test_a_good_artifact_of_the_same_plugin_is_stored(user):
    job = run_job("bad_artifacts", {"case": "fine"}, user=user)
    assert job.status == JobStatus.SUCCESS
    assert list(JobArtifact.objects.values_list("name", "size")) == [("fine.txt", 4)]


@pytest.mark.parametrize(
    "case",
    [
        "smaller_than_sent",
        "larger_than_sent",
        "path_name",
        "surrogate_name",
        "huge",
        "many",
        "garbage",
    ],
)
def test_a_host_that_lies_about_its_artifacts_gets_nothing_stored(user, settings, case):
    job = run_job("lying_host", {"case": case}, user=user)
    assert job.status == JobStatus.FAILED
    assert job.error["error"]["type"] == "OutputValidationError", job.error
    assert not JobArtifact.objects.exists()
    assert stored_files(settings) == []
    seal()
    assert verify().ok
    # Its host was not reused: the next execution gets a clean one and succeeds.
    assert run_job("image_artifact", {"size": 10}, user=user).status == JobStatus.SUCCESS


def test_a_storage_that_fails_fails_the_job_and_leaves_nothing(user, settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {"BACKEND": f"{__name__}.FailingStorage"},
    }
    job = run_job("image_artifact", {"size": 100}, user=user)
    assert job.status == JobStatus.FAILED
    assert job.error["error"]["type"] == "ServiceUnavailable"
    assert job.result is None
    assert not JobArtifact.objects.exists()
    assert stored_files(settings) == []
    seal()
    assert verify().ok


# Retention ----------------------------------------------------------------------------


@pytest.mark.parametrize("keep_audit", [False, True])
def test_pruning_a_job_deletes_its_artifacts_files(user, settings, keep_audit):
    old = run_job("image_artifact", {"size": 100, "copies": 2}, user=user)
    recent = run_job("image_artifact", {"size": 100}, user=user)
    Job.objects.filter(pk=old.pk).update(finished_at=old.finished_at - timedelta(days=40))
    assert len(stored_files(settings)) == 3
    args = ["prune_jobs", "--older-than", "30d", *(["--keep-audit"] if keep_audit else [])]
    call_command(*args, stdout=StringIO())
    assert list(JobArtifact.objects.values_list("job_id", flat=True)) == [recent.pk]
    [left] = stored_files(settings)
    assert left.as_posix().endswith(JobArtifact.objects.get().storage_path)
    seal()
    assert verify().ok


# The contract -------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, 1.5, "50MB", True, None])
def test_max_artifact_bytes_must_be_a_positive_integer(value):
    plugin = type("Odd", (BadArtifactsPlugin,), {"max_artifact_bytes": value})
    assert "'max_artifact_bytes' must be a positive integer" in contract_problems(plugin)


def test_the_default_limit_is_fifty_megabytes():
    assert ImagePlugin.max_artifact_bytes == 50 * 1024 * 1024
    assert contract_problems(ImagePlugin) == []


def test_artifacts_are_plain_values_and_run_stays_governed():
    artifact = Artifact("a.txt", "text/plain", b"x")
    assert "b'x'" not in repr(artifact)  # bytes are not dumped into logs
    assert WithArtifacts({"ok": True}, [artifact]).artifacts == [artifact]
    with pytest.raises(UngovernedExecutionError):
        ImagePlugin().run(ImagePlugin.Input())  # governance: allow[GOV001] tests the guard


def test_an_authors_test_sees_the_artifacts_run_plugin_returns():
    execution = run_plugin(ImagePlugin, {"size": 64})
    assert execution.error is None
    assert execution.result == {"width": 640, "height": 480}
    [artifact] = execution.artifacts
    assert (artifact.name, artifact.content_type, artifact.size) == ("picture.png", "image/png", 64)
    assert artifact.file.read() == png_bytes(64)
    assert artifact.sha256 == hashlib.sha256(png_bytes(64)).hexdigest()
    artifact.close()


def test_the_admin_shows_a_jobs_artifacts_with_their_download(client, staff_user, user):
    job = run_job("image_artifact", {"size": 100}, user=user)
    client.force_login(staff_user)
    page = client.get(f"/admin/execution/job/{job.pk}/change/").content.decode()
    assert "picture.png" in page
    assert hashlib.sha256(png_bytes(100)).hexdigest() in page
    assert f'href="/v1/jobs/{job.pk}/artifacts/picture.png"' in page
    response, data = download(client, f"/v1/jobs/{job.pk}/artifacts/picture.png")
    assert response.status_code == 200
    assert data == png_bytes(100)


def test_a_synchronous_run_without_artifacts_adds_no_statement(api_client, settings):
    settings.PLUGINS = [*settings.PLUGINS, "tests.plugins.sample_plugins.EchoPlugin"]
    request = {"plugin": "echo", "payload": {"message": "hi"}}
    assert api_client.post("/v1/analyze-execution", request, format="json").status_code == 200
    with statements() as run:
        response = api_client.post("/v1/analyze-execution", request, format="json")
    assert response.status_code == 200
    assert response.json()["artifacts"] == []
    assert run  # the statements were seen
    assert not [sql for sql in run if "jobartifact" in sql.lower()]


def test_files_of_an_outcome_the_job_did_not_take_are_deleted(user, settings, monkeypatch):
    """The job was cancelled between the files' saving and the outcome's commit."""
    store = artifact_services.store_artifacts

    def store_then_cancel(job: Job, artifacts: Any, **options: Any) -> Any:
        stored = store(job, artifacts, **options)
        assert len(stored_files(settings)) == 1
        JobExecutionService().cancel_job(job=Job.objects.get(pk=job.pk), user=user)
        return stored

    monkeypatch.setattr(artifact_services, "store_artifacts", store_then_cancel)
    job = run_job("image_artifact", {"size": 100}, user=user)
    assert job.status == JobStatus.CANCELLED
    assert not JobArtifact.objects.exists()
    assert stored_files(settings) == []
    seal()
    assert verify().ok


@pytest.mark.parametrize("name", ["a?b#c.png", "50% off.png", "x%2Fy.png", "日本.png"])
def test_the_url_of_a_name_with_url_characters_downloads_that_artifact(api_client, user, name):
    job = run_job("image_artifact", {"size": 10, "name": name}, user=user)
    [artifact] = api_client.get(f"/v1/jobs/{job.pk}").json()["artifacts"]
    assert artifact["name"] == name
    response, data = download(api_client, artifact["url"])
    assert response.status_code == 200
    assert data == png_bytes(10)


# An outcome that cannot be recorded --------------------------------------------------


def test_an_outcome_that_cannot_be_recorded_fails_the_job_and_deletes_its_files(
    api_client, settings, monkeypatch
):
    """A real failure: with the name checks off, the database cannot store the name."""
    import plugins.artifacts

    monkeypatch.setattr(plugins.artifacts, "name_problem", lambda name: None)
    saved: list[Path] = []
    store = artifact_services.store_artifacts

    def store_and_see(job: Job, artifacts: Any, **options: Any) -> Any:
        stored = store(job, artifacts, **options)
        saved.extend(stored_files(settings))
        return stored

    monkeypatch.setattr(artifact_services, "store_artifacts", store_and_see)
    response = api_client.post(
        "/v1/analyze-execution",
        {"plugin": "image_artifact_thread", "payload": {"size": 10, "lone_surrogate": True}},
        format="json",
    )
    assert response.status_code == 400, response.content  # a failed job's envelope
    error = response.json()["detail"]
    assert error["type"] == "ServiceUnavailable"
    assert error["details"] == {"exception": "UnicodeEncodeError"}
    assert len(saved) == 1  # it was stored, then deleted
    assert stored_files(settings) == []
    job = Job.objects.get()
    assert job.status == JobStatus.FAILED
    assert job.error["error"]["type"] == "ServiceUnavailable"
    assert job.result is None
    assert not JobArtifact.objects.exists()
    seal()
    assert verify().ok


def test_storing_artifacts_renews_the_lease_so_the_success_is_kept(user, settings):
    """Saving outlasts the lease the claim took; lease recovery must not take the job."""
    settings.JOB_LEASE_GRACE_S = 0.5
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {"BACKEND": f"{__name__}.OutlastingStorage"},
    }
    job = run_job("image_artifact_quick", {"size": 10, "copies": 2}, user=user)
    assert job.status == JobStatus.SUCCESS, job.error
    assert job.attempt == 1
    assert list(JobArtifact.objects.values_list("name", flat=True)) == [
        "picture.png",
        "copy-1.png",
    ]
    assert len(stored_files(settings)) == 2
    seal()
    assert verify().ok


def test_a_job_cancelled_while_its_files_are_saved_stores_no_more_and_keeps_none(user, settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {"BACKEND": f"{__name__}.CancellingStorage"},
    }
    job = run_job("image_artifact", {"size": 10, "copies": 3}, user=user)
    assert job.status == JobStatus.CANCELLED
    assert not JobArtifact.objects.exists()
    assert stored_files(settings) == []
    seal()
    assert verify().ok


# The operator's ceilings ---------------------------------------------------------------


@pytest.mark.parametrize("plugin", ["image_artifact", "image_artifact_thread"])
def test_the_operators_ceiling_caps_a_plugins_max_artifact_bytes(api_client, settings, plugin):
    settings.ARTIFACT_MAX_BYTES = 1000  # the plugin's own limit is 50 MB
    [described] = [p for p in api_client.get("/v1/plugins").json() if p["name"] == plugin]
    assert described["limits"]["max_artifact_bytes"] == 1000
    assert run_job(plugin, {"size": 1000}).status == JobStatus.SUCCESS
    job = run_job(plugin, {"size": 1001})
    assert job.status == JobStatus.FAILED
    assert job.error["error"]["type"] == "OutputValidationError"
    assert job.error["error"]["details"] == {
        "artifact": "picture.png",
        "artifact_bytes": 1001,
        "max_artifact_bytes": 1000,
    }


def test_a_plugins_smaller_limit_stays_under_a_larger_ceiling(api_client, settings):
    settings.ARTIFACT_MAX_BYTES = 10**9
    [described] = [p for p in api_client.get("/v1/plugins").json() if p["name"] == "bad_artifacts"]
    assert described["limits"]["max_artifact_bytes"] == 1024


@pytest.mark.parametrize("plugin", ["image_artifact", "image_artifact_thread"])
def test_the_artifacts_of_one_execution_together_are_bounded(api_client, settings, plugin):
    settings.ARTIFACT_MAX_TOTAL_BYTES = 3000
    [described] = [p for p in api_client.get("/v1/plugins").json() if p["name"] == plugin]
    assert described["limits"]["max_artifacts_total_bytes"] == 3000
    assert run_job(plugin, {"size": 1000, "copies": 3}).status == JobStatus.SUCCESS
    job = run_job(plugin, {"size": 1000, "copies": 4})
    assert job.status == JobStatus.FAILED
    assert job.error["error"]["type"] == "OutputValidationError"
    assert job.error["error"]["details"] == {
        "artifacts_bytes": 4000,
        "max_artifacts_total_bytes": 3000,
    }
    assert "4000 bytes together; the limit is 3000" in job.error["error"]["message"]
    assert len(stored_files(settings)) == 3  # the first run's only


def test_the_servers_check_holds_the_ceiling_against_a_host(settings):
    from plugins.artifacts import ArtifactHeader, check_headers
    from plugins.errors.exceptions import OutputValidationError

    headers = [ArtifactHeader(f"{n}.bin", "application/octet-stream", 600) for n in range(2)]
    check_headers("host", headers, 1000, 1200)
    with pytest.raises(OutputValidationError, match="1200 bytes together; the limit is 1000"):
        check_headers("host", headers, 1000, 1000)
