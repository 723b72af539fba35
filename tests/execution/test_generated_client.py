"""A client generated from the live schema by openapi-python-client runs a job end to end.

The schema is OpenAPI 3.1 with ``oneOf`` + discriminator bodies (one branch per plugin:
the request with its Input, the result and the job with its Output) and an ``Error``
union; a generator must turn them into typed models, without a warning, and the
models must round-trip through the real server.
"""

from __future__ import annotations

import enum
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from execution.models import Job, JobStatus
from execution.policy.tokens import create_token
from tests.conftest import ROOT

PACKAGE = "governed_api_client"
# Post hooks would run ruff over the generated code; nothing else is needed to generate.
CONFIG = f"package_name_override: {PACKAGE}\npost_hooks: []\n"
TEXT = "The quick brown fox jumps. The lazy dog sleeps!"


@pytest.fixture
def schema_file(client, tmp_path) -> Path:
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    path = tmp_path / "schema.json"
    path.write_bytes(response.content)
    return path


@pytest.fixture
def generated(schema_file, tmp_path) -> Iterator[str]:
    """Generates the client into tmp_path and makes it importable, for this test only."""
    config = tmp_path / "openapi_client_config.yaml"
    config.write_text(CONFIG)
    parent = tmp_path / "generated"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(schema_file),
            "--output-path",
            str(parent / PACKAGE),
            "--meta",
            "none",
            "--config",
            str(config),
            "--fail-on-warning",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "Warning" not in output, output
    assert (parent / PACKAGE / "__init__.py").exists(), output

    sys.path.insert(0, str(parent))
    try:
        yield PACKAGE
    finally:
        sys.path.remove(str(parent))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_a_generated_client_executes_text_stats_and_reads_the_job_back(
    generated, live_server, user
):
    models = module("models")
    execute = module("api.v1.v1_analyze_execution_create")
    retrieve = module("api.v1.v1_jobs_retrieve")
    token = create_token(user=user).key
    api = module("client").AuthenticatedClient(
        base_url=live_server.url, token=token, prefix="Token", raise_on_unexpected_status=True
    )

    with api:
        request = models.TextStatsExecutionRequest(
            plugin="text_stats", payload=models.TextStatsInput(text=TEXT, top_n=3)
        )
        response = execute.sync_detailed(client=api, body=request)
        assert response.status_code == 200, response.content
        executed = response.parsed
        # The union is resolved to text_stats' own branch, its result to its Output.
        assert isinstance(executed, models.TextStatsExecutionResult), executed
        assert executed.status == models.ExecutionResultStatusEnum.SUCCESS
        assert executed.plugin == "text_stats"
        assert response.headers["X-Job-Id"] == str(executed.job_id)
        result = executed.result
        assert isinstance(result, models.TextStatsOutput), result
        assert type(result.word_count) is int
        assert result.word_count == 9
        assert result.character_count == len(TEXT)
        assert result.sentence_count == 2
        assert result.reading_time_seconds == 3
        assert isinstance(result.average_word_length, float)
        assert all(isinstance(term, models.TextStatsOutputTermCount) for term in result.top_terms)
        assert [(term.term, term.count) for term in result.top_terms] == [
            ("brown", 1),
            ("dog", 1),
            ("fox", 1),
        ]

        job = retrieve.sync(str(executed.job_id), client=api)
        assert isinstance(job, models.TextStatsJob), job
        assert isinstance(job.status, enum.Enum)
        assert job.status.value == "SUCCESS"
        assert job.plugin == "text_stats"
        assert job.requested_by == user.username
        # "input" is a builtin: the generator names the field input_.
        assert job.input_.to_dict() == {"text": TEXT, "top_n": 3, "words_per_minute": 200}
        assert isinstance(job.result, models.TextStatsOutput), job.result
        assert type(job.result.word_count) is int
        assert job.result.to_dict() == result.to_dict()
        assert job.error is None

    assert Job.objects.get(pk=executed.job_id).status == JobStatus.SUCCESS


def test_a_generated_client_reads_a_refusal_as_a_typed_validation_error(
    generated, live_server, user
):
    models = module("models")
    execute = module("api.v1.v1_analyze_execution_create")
    token = create_token(user=user).key
    api = module("client").AuthenticatedClient(
        base_url=live_server.url, token=token, prefix="Token", raise_on_unexpected_status=True
    )

    with api:
        request = models.TextStatsExecutionRequest(
            plugin="text_stats", payload=models.TextStatsInput(text="")
        )
        response = execute.sync_detailed(client=api, body=request)

    assert response.status_code == 400, response.content
    refused = response.parsed
    assert isinstance(refused, models.ErrorResponse), refused
    # The Error union is resolved to the branch its "type" names, with typed details.
    assert isinstance(refused.detail, models.ValidationErrorError), refused.detail
    assert refused.detail.plugin == "text_stats"
    assert [item.location for item in refused.detail.details.errors] == [["payload", "text"]]
    assert not Job.objects.exists()


def test_a_generated_client_reads_a_job_of_an_unlisted_plugin_with_an_untyped_result(
    generated, live_server, user
):
    """A job outlives its plugin: one no longer available parses as the fallback branch."""
    models = module("models")
    retrieve = module("api.v1.v1_jobs_retrieve")
    job = Job.objects.create(  # governance: allow[GOV005] a job from before its plugin left
        plugin_name="retired_plugin",
        plugin_version="0.1.0",
        input_payload={"x": 1},
        requested_by=user,
        status=JobStatus.SUCCESS,
        result={"answer": 42},
    )
    token = create_token(user=user).key
    api = module("client").AuthenticatedClient(
        base_url=live_server.url, token=token, prefix="Token", raise_on_unexpected_status=True
    )

    with api:
        read = retrieve.sync(str(job.pk), client=api)

    assert isinstance(read, models.JobOfUnlistedPlugin), read
    assert read.plugin == "retired_plugin"
    assert read.result.to_dict() == {"answer": 42}
