"""The fuzzer excuses exactly the documented semantic refusals of schema-valid data."""

import base64

import pytest

from tests.execution.test_api import post
from tests.fuzz.schemathesis_hooks import is_semantic_refusal


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
