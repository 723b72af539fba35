"""The fuzzer excuses exactly the documented semantic refusals of schema-valid data."""

import base64
import re

import pytest
from hypothesis import HealthCheck, given, settings

from execution.api.schema import CALLBACK_URL_PROPERTY
from tests.execution.test_api import post
from tests.fuzz.schemathesis_hooks import callback_urls, is_semantic_refusal


def analyze(api_client, image_base64):
    response = post(
        api_client,
        "/v1/analyze-execution",
        {"plugin": "image_metadata", "payload": {"image_base64": image_base64}},
    )
    return response.status_code, response.json()


@pytest.mark.django_db
def test_a_semantic_refusal_from_the_api_is_excused(api_client):
    status_code, body = analyze(api_client, base64.b64encode(b"not an image").decode())
    assert is_semantic_refusal(status_code, body)


@pytest.mark.django_db
def test_a_refusal_by_the_schema_is_not(api_client):
    status_code, body = analyze(api_client, "0")
    assert status_code == 400
    assert not is_semantic_refusal(status_code, body)


def test_only_a_validation_error_whose_every_entry_is_semantic_is_excused():
    semantic = {"location": ["payload", "x"], "message": "m", "type": "t", "semantic": True}
    plain = {"location": ["payload", "y"], "message": "m", "type": "t"}

    def body(error_type="ValidationError", errors=(semantic,)):
        return {"detail": {"type": error_type, "details": {"errors": list(errors)}}}

    assert is_semantic_refusal(400, body())
    assert not is_semantic_refusal(400, body(errors=(semantic, plain)))
    assert not is_semantic_refusal(400, body(errors=()))
    assert not is_semantic_refusal(400, body(errors=({**semantic, "semantic": "yes"},)))
    assert not is_semantic_refusal(400, body(error_type="PluginExecutionError"))
    assert not is_semantic_refusal(422, body())
    assert not is_semantic_refusal(503, body())
    assert not is_semantic_refusal(400, None)
    assert not is_semantic_refusal(400, {"detail": "text"})


@pytest.mark.django_db
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(url=callback_urls())
def test_every_drawn_callback_url_is_schema_valid_and_taken_or_refused_semantically(
    api_client, settings, url
):
    """As .ci/fuzz_api runs the server: callbacks to 127.0.0.1 only, private addresses allowed."""
    settings.CALLBACK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.CALLBACK_ALLOW_PRIVATE_ADDRESSES = True
    assert re.match(CALLBACK_URL_PROPERTY["pattern"], url)
    assert len(url) <= CALLBACK_URL_PROPERTY["maxLength"]
    response = post(
        api_client,
        "/v1/jobs",
        {"plugin": "text_stats", "payload": {"text": "x"}, "callback_url": url},
    )
    if response.status_code != 202:
        assert is_semantic_refusal(response.status_code, response.json()), response.json()
