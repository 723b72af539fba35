"""Typed results and semantic refusals, as the schema states them and the API answers.

Each available plugin's Output is a component; a result and a job are a ``oneOf``
on ``plugin`` (its Output as ``result``), with one fallback branch for a plugin no
longer available. Real responses are validated against the served schema.
"""

import base64
import io
import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from PIL import Image
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from execution.models import Job, JobStatus
from plugins.registry import get_registry
from tests.execution.schema_plugins import SCHEMA_PLUGINS
from tests.execution.test_api import assert_error, post

BASE = "urn:governed-api"


@pytest.fixture
def schema(client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return json.loads(response.content)


def component(schema, name):
    return schema["components"]["schemas"][name]


def by_reference(schema, reference):
    return component(schema, reference["$ref"].rsplit("/", 1)[-1])


def validator_for(schema, name):
    """A JSON Schema validator of the component ``name``, resolving refs in the document."""
    registry: Registry[Any] = Registry().with_resource(BASE, DRAFT202012.create_resource(schema))
    return Draft202012Validator({"$ref": f"{BASE}#/components/schemas/{name}"}, registry=registry)


def branch_names(schema, union, body):
    """The names of the union's branches ``body`` is valid against."""
    return [
        reference["$ref"].rsplit("/", 1)[-1]
        for reference in component(schema, union)["oneOf"]
        if validator_for(schema, reference["$ref"].rsplit("/", 1)[-1]).is_valid(body)
    ]


def available():
    return {entry.name: entry.plugin for entry in get_registry().get_status() if entry.plugin}


def png_base64():
    buffer = io.BytesIO()
    Image.new("RGB", (3, 2), (10, 20, 30)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


# The schema ---------------------------------------------------------------------------------


def test_each_available_plugins_output_is_a_component(schema):
    outputs = {
        name: component(schema, f"{name.title().replace('_', '')}Output") for name in available()
    }
    text_stats = outputs["text_stats"]
    assert text_stats["title"] == "TextStatsOutput"
    assert text_stats["properties"]["word_count"]["type"] == "integer"
    terms = text_stats["properties"]["top_terms"]["items"]
    assert by_reference(schema, terms)["properties"]["count"]["type"] == "integer"
    assert outputs["image_metadata"]["properties"]["mean_brightness"]["type"] == "number"
    assert (
        outputs["echo"]["required"]
        == available()["echo"].Output.model_json_schema(mode="serialization")["required"]
    )


@pytest.mark.parametrize(("union", "suffix"), [("ExecutionResult", ""), ("Job", "")])
def test_results_and_jobs_are_a_oneof_discriminated_by_plugin(schema, union, suffix):
    body = component(schema, union)
    assert body["discriminator"]["propertyName"] == "plugin"
    mapping = body["discriminator"]["mapping"]
    assert set(mapping) == set(available())
    assert "broken" not in json.dumps(mapping)  # the UNAVAILABLE plugin of the tests
    fallback = f"#/components/schemas/{union}OfUnlistedPlugin"
    assert [ref["$ref"] for ref in body["oneOf"]] == [*mapping.values(), fallback]
    for name, reference in mapping.items():
        branch = by_reference(schema, {"$ref": reference})
        assert branch["properties"]["plugin"]["const"] == name
        result = branch["properties"]["result"]
        if union == "Job":  # null until the job is SUCCESS
            assert result["oneOf"][1] == {"type": "null"}
            result = result["oneOf"][0]
        assert by_reference(schema, result)["title"].endswith("Output")
    unlisted = by_reference(schema, {"$ref": fallback})["properties"]["plugin"]
    assert set(unlisted["not"]["enum"]) == set(mapping)


def test_a_list_of_jobs_stays_a_list_of_summaries_without_results(schema):
    assert "result" not in component(schema, "JobSummary")["properties"]


# Real responses against the schema ----------------------------------------------------------


def test_a_result_and_its_job_match_exactly_their_plugins_branch(api_client, schema):
    response = post(
        api_client,
        "/v1/analyze-execution",
        {"plugin": "text_stats", "payload": {"text": "One two. Three!"}},
    )
    assert response.status_code == 200, response.content
    executed = response.json()
    assert executed["result"]["word_count"] == 3
    assert branch_names(schema, "ExecutionResult", executed) == ["TextStatsExecutionResult"]

    job = api_client.get(f"/v1/jobs/{executed['job_id']}").json()
    assert branch_names(schema, "Job", job) == ["TextStatsJob"]
    # The typed branch is strict: another plugin's result does not pass as this one's.
    wrong = {**job, "result": {"format": "PNG"}}
    assert branch_names(schema, "Job", wrong) == []


def test_a_pending_job_with_no_result_matches_its_plugins_branch(api_client, schema):
    response = post(
        api_client,
        "/v1/jobs",
        {"plugin": "image_metadata", "payload": {"image_base64": png_base64()}},
    )
    assert response.status_code == 202, response.content
    assert response.json()["result"] is None
    assert branch_names(schema, "Job", response.json()) == ["ImageMetadataJob"]


def test_a_job_of_a_plugin_no_longer_available_matches_the_fallback(api_client, user, schema):
    job = Job.objects.create(  # governance: allow[GOV005] a job from before its plugin left
        plugin_name="retired",
        input_payload={},
        requested_by=user,
        status=JobStatus.SUCCESS,
        result={"anything": [1, 2]},
    )
    body = api_client.get(f"/v1/jobs/{job.pk}").json()
    assert branch_names(schema, "Job", body) == ["JobOfUnlistedPlugin"]


# Semantic refusals --------------------------------------------------------------------------


def test_a_value_the_schema_refuses_is_a_plain_validation_error(api_client, schema):
    payload = {"image_base64": "0"}  # schemathesis' find: the schema now refuses it too
    assert not validator_for(schema, "ImageMetadataInput").is_valid(payload)
    response = post(
        api_client, "/v1/analyze-execution", {"plugin": "image_metadata", "payload": payload}
    )
    detail = assert_error(response, 400, "ValidationError")
    (entry,) = detail["details"]["errors"]
    assert entry["location"] == ["payload", "image_base64"]
    assert "semantic" not in entry
    assert not Job.objects.exists()


@pytest.mark.parametrize("path", ["/v1/analyze-execution", "/v1/jobs"])
def test_a_value_the_schema_allows_but_the_plugin_cannot_read_is_a_semantic_refusal(
    api_client, schema, path
):
    payload = {"image_base64": base64.b64encode(b"no image here").decode()}
    assert validator_for(schema, "ImageMetadataInput").is_valid(payload)
    response = post(api_client, path, {"plugin": "image_metadata", "payload": payload})
    detail = assert_error(response, 400, "ValidationError")
    assert detail["details"]["errors"] == [
        {
            "location": ["payload", "image_base64"],
            "message": "image_base64 is not an image in a supported format",
            "type": "image_unsupported",
            "semantic": True,
        }
    ]
    assert validator_for(schema, "ErrorResponse").is_valid(response.json())
    assert not Job.objects.exists()


# Outputs as results hold them, and names that look alike --------------------------------------


@pytest.fixture
def schema_plugins(settings):
    settings.PLUGINS = [*settings.PLUGINS, *SCHEMA_PLUGINS]
    settings.PLUGIN_THREAD_ALLOWED = ["computed_output", "lookalike", "lookalike_"]


def test_an_output_is_published_as_a_result_holds_it_computed_fields_included(
    schema_plugins, api_client, client
):
    schema = json.loads(client.get("/api/schema/?format=json").content)
    output = component(schema, "ComputedOutputOutput")
    assert output["additionalProperties"] is False
    assert set(output["required"]) == {"words", "doubled"}
    response = post(
        api_client,
        "/v1/analyze-execution",
        {"plugin": "computed_output", "payload": {"text": "a b"}},
    )
    assert response.status_code == 200, response.content
    executed = response.json()
    assert executed["result"] == {"words": 2, "note": "", "doubled": 4}
    assert branch_names(schema, "ExecutionResult", executed) == ["ComputedOutputExecutionResult"]
    listed = api_client.get("/v1/plugins/computed_output").json()
    assert listed["output_schema"]["required"] == output["required"]


def test_plugins_whose_names_look_alike_keep_their_own_components(
    schema_plugins, api_client, client
):
    schema = json.loads(client.get("/api/schema/?format=json").content)
    assert set(component(schema, "LookalikeOutput")["properties"]) == {"first"}
    assert set(component(schema, "Lookalike_Output")["properties"]) == {"second"}
    for plugin, branch in (
        ("lookalike", "LookalikeExecutionResult"),
        ("lookalike_", "Lookalike_ExecutionResult"),
    ):
        response = post(
            api_client, "/v1/analyze-execution", {"plugin": plugin, "payload": {"text": "x"}}
        )
        assert response.status_code == 200, response.content
        assert branch_names(schema, "ExecutionResult", response.json()) == [branch]
