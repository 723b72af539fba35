import pytest
from rest_framework.test import APIClient

from plugins.runtime.tool_runner import ToolRunner

pytestmark = [pytest.mark.any_database, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _plugins(settings):
    settings.PLUGINS = ["tests.plugins.sample_plugins.EchoPlugin", "tests.plugins.broken_import.X"]


def test_lists_the_example_plugins_with_schemas_and_unavailable_ones_with_reasons(api_client):
    response = api_client.get("/v1/plugins")
    assert response.status_code == 200
    plugins = {item["name"]: item for item in response.json()}
    assert {"text_stats", "image_metadata", "echo", "X"} <= plugins.keys()
    text_stats = plugins["text_stats"]
    assert text_stats["state"] == "AVAILABLE"
    assert text_stats["version"] == "1.0.0"
    assert text_stats["input_schema"]["properties"]["text"]["type"] == "string"
    assert "text" in text_stats["input_schema"]["required"]
    assert "top_terms" in text_stats["output_schema"]["properties"]
    assert plugins["image_metadata"]["input_schema"]["required"] == ["image_base64"]
    assert text_stats["limits"] == {
        "isolation": "process",
        "timeout_s": 10.0,
        "max_memory_mb": 1024,
        "max_result_bytes": 1024 * 1024,
        "max_artifact_bytes": 50 * 1024 * 1024,
        "max_artifacts_total_bytes": 200 * 1024 * 1024,
        "max_attempts": 1,
        "max_concurrency": None,
        "network": False,
        "fresh_process": False,
        "read_paths": [],
    }
    broken = plugins["X"]
    assert broken["limits"] is None
    assert broken["state"] == "UNAVAILABLE"
    assert "import failed" in broken["reason"]
    assert broken["input_schema"] is None


def test_detail_includes_the_persisted_metrics(api_client):
    ToolRunner().run("echo", {"message": "x"})
    ToolRunner().run("echo", {})
    response = api_client.get("/v1/plugins/echo")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "echo"
    metrics = body["metrics"]
    assert (metrics["success_count"], metrics["error_count"], metrics["execution_count"]) == (
        1,
        1,
        2,
    )
    assert metrics["error_rate"] == 0.5
    assert metrics["last_used"] is not None


def test_a_plugin_that_never_ran_has_no_metrics_yet(api_client):
    assert api_client.get("/v1/plugins/text_stats").json()["metrics"] is None


def test_an_unknown_plugin_is_a_404_envelope(api_client):
    response = api_client.get("/v1/plugins/nope")
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert detail["type"] == "PluginNotFound"
    assert set(detail) == {"type", "message", "details", "plugin", "timestamp"}


@pytest.mark.parametrize("url", ["/v1/plugins", "/v1/plugins/echo"])
def test_anonymous_requests_get_an_authentication_envelope(url):
    response = APIClient().get(url)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["detail"]["type"] == "AuthenticationFailed"


def test_a_bad_token_is_rejected_with_the_envelope():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.get("/v1/plugins")
    assert response.status_code == 401
    assert response.json()["detail"]["type"] == "AuthenticationFailed"


def test_session_authentication_works(client, user):
    client.force_login(user)
    assert client.get("/v1/plugins").status_code == 200


def test_writes_are_not_allowed(api_client):
    response = api_client.post("/v1/plugins", {}, format="json")
    assert response.status_code == 405
    assert response.json()["detail"]["type"] == "MethodNotAllowed"


def test_unacceptable_media_type_is_an_envelope(api_client):
    response = api_client.get("/v1/plugins", HTTP_ACCEPT="application/xml")
    assert response.status_code == 406
    assert response.json()["detail"]["type"] == "NotAcceptable"


def test_a_database_failure_is_a_503_envelope(api_client, monkeypatch):
    from django.db import OperationalError

    from plugins.models import PluginMetrics

    def down(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(PluginMetrics.objects, "all", down)
    response = api_client.get("/v1/plugins")
    assert response.status_code == 503
    assert response.json()["detail"]["type"] == "ServiceUnavailable"
    assert "locked" not in response.json()["detail"]["message"]
