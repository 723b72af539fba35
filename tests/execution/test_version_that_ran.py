"""A job records the version and code that ran, and a client can insist on one version."""

from __future__ import annotations

import hashlib
import importlib
import shutil
import sys
from typing import Any

import pytest

from execution.models import Job, JobStatus
from execution.services import JobExecutionService, PluginExecutionService
from plugins.errors.error_envelope import ErrorType, build_error_envelope
from plugins.errors.exceptions import PluginVersionMismatchError
from plugins.registry import PluginRegistry
from plugins.runtime.limits import ExecutionLimits
from tests.plugins import versioned_plugin

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def upgraded_between_submit_and_run(settings):
    """The test process imports VersionedPlugin at 1.0; its host processes will find 2.0.

    The module is fresh to this test's hosts: they import it themselves, after the upgrade.
    """
    shutil.rmtree(versioned_plugin.STATE, ignore_errors=True)
    versioned_plugin.STATE.mkdir(parents=True)
    versioned_plugin.VERSION_FILE.write_text("1.0")
    module = importlib.reload(versioned_plugin)
    assert module.VersionedPlugin.version == "1.0"
    registry = PluginRegistry(record_metrics=False, defaults=ExecutionLimits(timeout_s=10))
    registry.register(module.VersionedPlugin, source="tests")
    versioned_plugin.VERSION_FILE.write_text("2.0")
    yield JobExecutionService(plugins=PluginExecutionService(registry=registry))
    shutil.rmtree(versioned_plugin.STATE, ignore_errors=True)


def runs() -> list[str]:
    try:
        return versioned_plugin.RUNS_FILE.read_text().splitlines()
    except FileNotFoundError:
        return []


def module_fingerprint() -> str:
    source = sys.modules[versioned_plugin.__name__].__file__
    assert source is not None
    with open(source, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


@pytest.fixture
def fresh_pool(monkeypatch):
    """Hosts of its own, so that none imported the plugin module before the upgrade.

    Unconfined: the plugin reads its version from, and logs its runs to, a file
    outside any host's temporary directory (tests/sandbox proves the confinement).
    """
    from plugins.runtime.isolation import process

    pool = process.ProcessIsolation(sandbox=process.SandboxSettings(enabled=False))
    monkeypatch.setattr(process, "_shared", pool)
    yield pool
    pool.shutdown()


def test_the_job_records_the_version_that_ran_not_the_one_registered(
    fresh_pool, upgraded_between_submit_and_run
):
    jobs = upgraded_between_submit_and_run
    job = jobs.create_job(plugin_name="versioned", payload={"message": "a"})
    assert job.plugin_version == "1.0"  # what the registry knew at submit
    ran = jobs.run_job(job_id=job.pk)
    assert ran.status == JobStatus.SUCCESS
    stored = Job.objects.get(pk=job.pk)
    assert stored.plugin_version == "2.0"
    assert stored.plugin_fingerprint.endswith(f"sha256:{module_fingerprint()}")
    assert runs() == ["2.0 a"]


def test_a_job_asking_for_a_version_its_plugin_left_fails_and_runs_nothing(
    fresh_pool, upgraded_between_submit_and_run
):
    # This process registered 1.0, so the request is taken; where it runs, 2.0 is installed.
    job = upgraded_between_submit_and_run.execute_now(
        plugin_name="versioned", payload={"message": "b"}, requested_version="1.0"
    )
    assert job.status == JobStatus.FAILED
    assert job.error_type == "PluginVersionMismatch"
    assert job.public_error["details"] == {"requested": "1.0", "installed": "2.0"}
    assert job.requested_version == "1.0"
    assert runs() == []


def test_a_background_job_for_a_version_that_is_not_installed_is_refused_at_submit(
    fresh_pool, upgraded_between_submit_and_run
):
    # Its admission is checked where the plugin runs: 2.0 there.
    with pytest.raises(PluginVersionMismatchError) as refused:
        upgraded_between_submit_and_run.create_job(
            plugin_name="versioned", payload={"message": "d"}, requested_version="1.0"
        )
    assert refused.value.details == {"requested": "1.0", "installed": "2.0"}
    # Asked of the registry (1.0 here), 2.0 is refused before anything runs.
    with pytest.raises(PluginVersionMismatchError):
        upgraded_between_submit_and_run.create_job(
            plugin_name="versioned", payload={"message": "d"}, requested_version="2.0"
        )
    assert not Job.objects.exists()
    assert runs() == []


@pytest.fixture
def echo_plugin(settings):
    settings.PLUGINS = ["tests.plugins.sample_plugins.EchoPlugin"]


def test_the_api_takes_a_plugin_version_and_refuses_another_one(api_client, echo_plugin):
    body: dict[str, Any] = {"plugin": "echo", "payload": {"message": "x"}, "plugin_version": "9.9"}
    for url in ("/v1/analyze-execution", "/v1/jobs"):
        response = api_client.post(url, body, format="json")
        assert response.status_code == 400
        detail = response.json()["detail"]
        assert (detail["type"], detail["details"]) == (
            "PluginVersionMismatch",
            {"requested": "9.9", "installed": "1.0"},
        )
        assert "X-Job-Id" not in response
    assert not Job.objects.exists()

    body["plugin_version"] = "1.0"
    response = api_client.post("/v1/jobs", body, format="json")
    assert response.status_code == 202
    assert response.json()["requested_version"] == "1.0"
    response = api_client.post("/v1/analyze-execution", body, format="json")
    assert response.status_code == 200
    assert response.json()["plugin_version"] == "1.0"

    for wrong in (1.0, "", None, "x" * 101):
        body["plugin_version"] = wrong
        response = api_client.post("/v1/analyze-execution", body, format="json")
        assert response.status_code == 400, wrong
        assert response.json()["detail"]["type"] == "ValidationError"


def test_the_schema_offers_the_installed_version(api_client, echo_plugin):
    schema = api_client.get("/api/schema/?format=json").json()
    components = schema["components"]["schemas"]
    version = components["EchoExecutionRequest"]["properties"]["plugin_version"]
    enum = components[version["allOf"][0]["$ref"].rsplit("/", 1)[-1]]  # drf-spectacular names it
    assert enum["enum"] == ["1.0"]


def test_every_attempt_records_what_ran(api_client, echo_plugin):
    body = {"plugin": "echo", "payload": {"message": "x"}}
    job_id = api_client.post("/v1/jobs", body, format="json").json()["id"]
    job = Job.objects.get(pk=job_id)
    assert job.claim(lease_holder="lost:1:a", lease_s=60)
    JobExecutionService().requeue(
        job=job, error=build_error_envelope(ErrorType.WORKER_LOST, "gone"), retry=True
    )
    attempts = api_client.get(f"/v1/jobs/{job_id}").json()["attempts"]
    assert attempts[0]["plugin_version"] == "1.0"
    assert "sha256:" in attempts[0]["plugin_fingerprint"]
