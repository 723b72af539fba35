"""The API's contract: what the schema promises, the list's parameters, and refused requests."""

import json
import tracemalloc
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from execution.models import Job, JobStatus
from execution.services import JobExecutionService
from tests.execution.test_api import assert_error, post


@pytest.fixture
def schema(client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return json.loads(response.content)


def resolve(schema, reference):
    return schema["components"]["schemas"][reference["$ref"].rsplit("/", 1)[-1]]


def request_body(schema, path):
    content = schema["paths"][path]["post"]["requestBody"]
    assert content["required"] is True
    return resolve(schema, content["content"]["application/json"]["schema"])


# The schema ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/analyze-execution", "/v1/jobs"])
def test_the_request_body_has_one_branch_per_available_plugin(schema, path):
    from plugins.registry import get_registry

    body = request_body(schema, path)
    mapping = body["discriminator"]["mapping"]
    available = {entry.name for entry in get_registry().get_status() if entry.plugin is not None}
    assert set(mapping) == available
    assert "broken" not in json.dumps(mapping).lower()  # the UNAVAILABLE plugin of the tests
    branch = resolve(schema, {"$ref": mapping["text_stats"]})
    assert branch["properties"]["plugin"]["const"] == "text_stats"
    payload = resolve(schema, branch["properties"]["payload"])
    assert payload["properties"]["text"]["maxLength"] == 1_000_000
    assert payload["properties"]["top_n"] == {
        "default": 5,
        "description": "How many frequent terms to list.",
        "maximum": 50,
        "minimum": 1,
        "title": "Top N",
        "type": "integer",
    }
    image = resolve(schema, {"$ref": mapping["image_metadata"]})
    image_input = resolve(schema, image["properties"]["payload"])
    assert image_input["properties"]["image_base64"]["format"] == "image-base64"


def test_an_installed_plugin_appears_in_the_schema_without_code_changes(client, settings):
    settings.PLUGINS = [*settings.PLUGINS, "tests.plugins.sample_plugins.SlowValidatorPlugin"]
    schema = json.loads(client.get("/api/schema/?format=json").content)
    mapping = request_body(schema, "/v1/jobs")["discriminator"]["mapping"]
    assert "slow_validator" in mapping


def test_every_operation_documents_its_error_statuses(schema):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert {"404", "406", "503"} <= codes, (method, path)
            if operation.get("security") != [{}]:
                assert {"401", "403"} <= codes, (method, path)
            if method == "post":
                assert "411" in codes, path
            if "requestBody" in operation:
                assert {"400", "413", "415"} <= codes, (method, path)
            for code, response in operation["responses"].items():
                if code.startswith(("4", "5")):
                    reference = response["content"]["application/json"]["schema"]["$ref"]
                    assert reference.endswith("/ErrorResponse"), (method, path, code)


def test_each_error_type_has_its_own_details_shape(schema):
    from api.errors import ERROR_TYPES, ProtocolErrorType
    from plugins.errors.error_envelope import ErrorType

    components = schema["components"]["schemas"]
    mapping = components["Error"]["discriminator"]["mapping"]
    assert list(mapping) == [kind.value for kind in ERROR_TYPES]
    assert sorted(ERROR_TYPES) == sorted([*ErrorType, *ProtocolErrorType])  # each once
    validation = resolve(schema, {"$ref": mapping["ValidationError"]})
    assert validation["properties"]["details"]["required"] == ["errors"]
    crashed = resolve(schema, {"$ref": mapping["PluginCrashed"]})
    assert {"exit_code", "signal"} <= set(crashed["properties"]["details"]["properties"])


def test_list_parameters_carry_their_bounds_and_choices(schema):
    parameters = {p["name"]: p for p in schema["paths"]["/v1/jobs"]["get"]["parameters"]}
    assert parameters["page"]["schema"]["minimum"] == 1
    assert parameters["page_size"]["schema"]["minimum"] == 1
    assert "maximum" not in parameters["page_size"]["schema"]  # larger sizes are capped
    assert set(parameters["status"]["schema"]["items"]["enum"]) == set(JobStatus.values)
    assert "-created_at" in parameters["ordering"]["schema"]["items"]["enum"]
    for name in ("plugin", "requested_by", "created_after", "created_before", "error_type"):
        assert parameters[name]["allowEmptyValue"] is True


def test_nullable_fields_say_so_and_submitting_documents_its_headers(schema):
    for branch in schema["components"]["schemas"]["Job"]["oneOf"]:  # one per plugin
        job = resolve(schema, branch)["properties"]
        assert job["requested_by"]["type"] == ["string", "null"]
    assert "input" not in schema["components"]["schemas"]["JobSummary"]["properties"]
    headers = schema["paths"]["/v1/jobs"]["post"]["responses"]["202"]["headers"]
    assert {"Location", "Retry-After"} <= set(headers)


# The list of jobs ----------------------------------------------------------------------------


def test_submitting_suggests_when_to_poll(api_client):
    response = post(api_client, "/v1/jobs", {"plugin": "echo", "payload": {"message": "x"}})
    assert response.status_code == 202
    assert int(response["Retry-After"]) >= 1


def test_the_list_filters_by_requester_time_error_type_and_orders(user, staff_user):
    service = JobExecutionService()
    old = Job.objects.create(
        plugin_name="echo", requested_by=user, created_at=timezone.now() - timedelta(days=3)
    )
    failed = service.execute_now(
        plugin_name="raising", payload={"message": "x"}, requested_by=staff_user
    )
    done = service.execute_now(plugin_name="echo", payload={"message": "x"}, requested_by=user)
    client = APIClient()
    client.force_authenticate(staff_user)

    def ids(query):
        response = client.get(f"/v1/jobs?{query}")
        assert response.status_code == 200, response.content
        return [job["id"] for job in response.json()["results"]]

    assert set(ids("requested_by=alice")) == {str(old.pk), str(done.pk)}
    assert ids("error_type=PluginExecutionError") == [str(failed.pk)]
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert str(old.pk) not in ids(f"created_after={since.replace('+', '%2B')}")
    assert ids(f"created_before={since.replace('+', '%2B')}") == [str(old.pk)]
    assert ids("ordering=created_at")[0] == str(old.pk)
    assert ids("ordering=-created_at")[-1] == str(old.pk)
    assert set(ids("status=FAILED&status=SUCCESS")) == {str(failed.pk), str(done.pk)}


def test_the_list_follows_drf_conventions_for_extra_and_empty_parameters(api_client, user):
    Job.objects.create(plugin_name="echo", requested_by=user)
    for query in ("format=json", "_=1700000000", "colour=blue", "plugin=&status=&ordering="):
        response = api_client.get(f"/v1/jobs?{query}")
        assert response.status_code == 200, query
        assert response.json()["count"] == 1


def test_page_size_over_the_maximum_is_capped(api_client, user):
    Job.objects.bulk_create(Job(plugin_name="echo", requested_by=user) for _ in range(205))
    response = api_client.get("/v1/jobs?page_size=500")
    assert response.status_code == 200
    assert len(response.json()["results"]) == 200


def test_lists_show_summaries_and_the_detail_view_the_whole_job(api_client, user):
    job = JobExecutionService().execute_now(
        plugin_name="echo", payload={"message": "hi"}, requested_by=user
    )
    summary = api_client.get("/v1/jobs").json()["results"][0]
    assert "input" not in summary
    assert "result" not in summary
    assert summary["status"] == "SUCCESS"
    detail = api_client.get(f"/v1/jobs/{job.pk}").json()
    assert detail["input"] == {"message": "hi"}
    assert detail["result"] == {"echoed": "hi"}


def test_a_page_of_jobs_with_large_inputs_stays_small_in_memory(api_client, user):
    two_megabytes = "x" * (2 * 1024 * 1024)
    Job.objects.bulk_create(
        Job(plugin_name="image_metadata", requested_by=user, input_payload={"image": two_megabytes})
        for _ in range(50)
    )
    tracemalloc.start()
    try:
        response = api_client.get("/v1/jobs?page_size=50")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(response.json()["results"]) == 50
    # The page holds 100 MB of inputs; loading them would peak far above this.
    assert peak < 10 * 1024 * 1024


def test_the_all_jobs_view_needs_the_admin_s_view_permission(user, django_user_model):
    Job.objects.create(plugin_name="echo", requested_by=user)
    staff = django_user_model.objects.create_user("stella", password="pw-stella-1", is_staff=True)
    client = APIClient()
    client.force_authenticate(staff)
    assert client.get("/v1/jobs").json()["count"] == 0
    job = Job.objects.get()
    assert_error(client.get(f"/v1/jobs/{job.pk}"), 404, "NotFound")

    staff.user_permissions.add(Permission.objects.get(codename="view_job"))
    client.force_authenticate(django_user_model.objects.get(pk=staff.pk))
    assert client.get("/v1/jobs").json()["count"] == 1


# Refused requests ----------------------------------------------------------------------------


def refused(plugin, error_type):
    value = REGISTRY.get_sample_value(
        "governed_refused_requests_total", {"plugin": plugin, "error_type": error_type}
    )
    return value or 0.0


@pytest.mark.parametrize("path", ["/v1/analyze-execution", "/v1/jobs"])
@pytest.mark.parametrize(
    ("body", "label", "error_type"),
    [
        ({"plugin": "no_such_plugin", "payload": {}}, "__unknown__", "PluginNotFound"),
        ({"plugin": "echo", "payload": {"repeat": "many"}}, "echo", "ValidationError"),
        ({"plugin": "echo"}, "echo", "ValidationError"),
        ({"plugin": 42, "payload": {}}, "__unknown__", "ValidationError"),
    ],
)
def test_refused_requests_are_counted_and_record_nothing(api_client, path, body, label, error_type):
    before = refused(label, error_type)
    response = post(api_client, path, body)
    assert_error(response, 400, error_type)
    assert refused(label, error_type) == before + 1
    assert not Job.objects.exists()


@pytest.mark.parametrize("path", ["/v1/analyze-execution", "/v1/jobs"])
@pytest.mark.parametrize(
    ("raw_value", "location"),
    [
        ('"\\ud800"', ["payload", "message"]),
        ('"a\\u0000b"', ["payload", "message"]),
        ("1e400", ["payload", "message"]),
    ],
)
def test_values_no_database_can_store_are_refused_before_any_row(
    api_client, path, raw_value, location
):
    body = '{"plugin": "echo", "payload": {"message": ' + raw_value + "}}"
    response = api_client.post(path, body, content_type="application/json")
    detail = assert_error(response, 400, "ValidationError")
    assert detail["details"]["errors"][0]["location"] == location
    assert detail["details"]["errors"][0]["type"] == "unstorable"
    assert not Job.objects.exists()
    assert api_client.get("/v1/jobs").status_code == 200


def test_a_bad_key_is_reported_at_its_own_location(api_client):
    body = '{"plugin": "echo", "payload": {"message": "x", "bad\\ud800key": 1}}'
    detail = assert_error(
        api_client.post("/v1/jobs", body, content_type="application/json"), 400, "ValidationError"
    )
    assert detail["details"]["errors"][0]["location"] == ["payload", "bad\\ud800key"]


def test_an_unknown_api_url_is_not_found_for_every_method():
    client = APIClient(enforce_csrf_checks=True)
    for method in ("post", "put", "delete", "patch"):
        response = getattr(client, method)("/v1/nope", {}, format="json")
        assert_error(response, 404, "NotFound")


def test_options_on_the_docs_page_is_method_not_allowed_not_an_error(admin_client):
    assert admin_client.options("/api/docs/").status_code == 405
    assert admin_client.get("/api/docs/").status_code == 200


def test_no_field_is_ambiguously_nullable(schema):
    """``oneOf: [{}, null]`` matches null twice, so every null would break the schema."""
    text = json.dumps(schema)
    assert '"oneOf": [{}' not in text


def validate_against(schema, component, value):
    import jsonschema

    document = {"$ref": f"#/components/schemas/{component}", "components": schema["components"]}
    jsonschema.Draft202012Validator(document).validate(value)


def test_unavailable_plugins_and_job_errors_match_the_schema(schema, api_client, user):
    plugins = api_client.get("/v1/plugins").json()
    assert any(plugin["state"] == "UNAVAILABLE" for plugin in plugins)  # tests' Broken plugin
    for plugin in plugins:
        validate_against(schema, "Plugin", plugin)
    JobExecutionService().execute_now(
        plugin_name="raising", payload={"message": "x"}, requested_by=user
    )
    for job in api_client.get("/v1/jobs").json()["results"]:
        validate_against(schema, "JobSummary", job)
        validate_against(schema, "Job", api_client.get(f"/v1/jobs/{job['id']}").json())


def test_a_payload_nested_past_the_limit_is_refused_at_once(api_client):
    from api.parsers import MAX_JSON_DEPTH

    deep = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    body = '{"plugin": "echo", "payload": {"message": "x", "extra": ' + deep + "}}"
    response = api_client.post("/v1/analyze-execution", body, content_type="application/json")
    assert_error(response, 400, "ParseError")
    assert not Job.objects.exists()
    fits = "[" * (MAX_JSON_DEPTH - 3) + "]" * (MAX_JSON_DEPTH - 3)
    body = '{"plugin": "echo", "payload": {"message": "x", "extra": ' + fits + "}}"
    response = api_client.post("/v1/analyze-execution", body, content_type="application/json")
    assert response.status_code == 200  # extra fields are the plugin's to ignore


def test_a_refusal_of_unstorable_text_is_counted_for_its_plugin(api_client):
    before = refused("echo", "ValidationError")
    body = '{"plugin": "echo", "payload": {"message": "\\u0000"}}'
    assert_error(
        api_client.post("/v1/jobs", body, content_type="application/json"), 400, "ValidationError"
    )
    assert refused("echo", "ValidationError") == before + 1


@pytest.mark.parametrize("method", ["get", "post", "put", "delete"])
def test_the_api_root_without_a_slash_is_not_found(method):
    response = getattr(APIClient(enforce_csrf_checks=True), method)("/v1")
    assert_error(response, 404, "NotFound")


@pytest.mark.parametrize("path", ["/v1/health/", "/v1/health", "/v1/plugins/", "/v1/plugins"])
def test_routes_answer_with_or_without_a_trailing_slash(api_client, path):
    assert api_client.get(path).status_code == 200


def test_a_body_that_is_not_an_object_is_located_at_the_root(api_client):
    detail = assert_error(post(api_client, "/v1/jobs", ["echo"]), 400, "ValidationError")
    assert detail["details"]["errors"][0]["location"] == []


def test_the_job_id_in_the_schema_is_a_uuid(schema):
    (parameter,) = schema["paths"]["/v1/jobs/{id}"]["get"]["parameters"]
    assert parameter["schema"]["format"] == "uuid"


def test_the_request_body_shows_each_plugin_s_examples(schema, api_client):
    examples = request_body(schema, "/v1/analyze-execution")["examples"]
    plugins = {example["plugin"] for example in examples}
    assert {"text_stats", "image_metadata"} <= plugins
    for example in examples:  # documentation that runs
        if example["plugin"] in ("text_stats", "image_metadata"):
            assert post(api_client, "/v1/analyze-execution", example).status_code == 200


def test_unstorable_keys_that_print_alike_are_still_a_validation_error(api_client):
    body = '{"plugin": "echo", "payload": {"a\\\\ud800": {"x": "\\u0000"}, "a\\ud800": 1}}'
    response = api_client.post("/v1/jobs", body, content_type="application/json")
    assert_error(response, 400, "ValidationError")
    assert not Job.objects.exists()


def test_a_user_who_may_change_jobs_sees_and_cancels_everyone_s(user, django_user_model):
    job = JobExecutionService().create_job(
        plugin_name="echo", payload={"message": "x"}, requested_by=user
    )
    operator = django_user_model.objects.create_user("otto", password="pw-otto-12345")
    operator.user_permissions.add(Permission.objects.get(codename="change_job"))
    client = APIClient()
    client.force_authenticate(django_user_model.objects.get(pk=operator.pk))
    assert client.get("/v1/jobs").json()["count"] == 1
    response = client.post(f"/v1/jobs/{job.pk}/cancel")
    assert (response.status_code, response.json()["status"]) == (200, "CANCELLED")
