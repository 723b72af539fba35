import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from plugins.registry import PluginRegistry, reset_registry
from plugins.runtime.tool_runner import ToolRunner
from tests.plugins import sample_plugins


@pytest.fixture(autouse=True)
def _fresh_global_registry():
    """Each test discovers the process-wide registry anew (settings may differ)."""
    reset_registry()
    yield
    reset_registry()


@pytest.fixture
def registry() -> PluginRegistry:
    registry = PluginRegistry(record_metrics=True, default_timeout_s=5.0)
    for cls in (
        sample_plugins.EchoPlugin,
        sample_plugins.DictEchoPlugin,
        sample_plugins.RaisingPlugin,
        sample_plugins.NoneReturningPlugin,
        sample_plugins.WrongOutputPlugin,
        sample_plugins.ListOutputPlugin,
        sample_plugins.SystemExitPlugin,
        sample_plugins.SlowPlugin,
        sample_plugins.NoOpPlugin,
    ):
        registry.register(cls, source="tests")
    return registry


@pytest.fixture
def runner(registry: PluginRegistry) -> ToolRunner:
    return ToolRunner(registry=registry)


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("alice", password="pw-alice-123")


@pytest.fixture
def staff_user(db):
    return get_user_model().objects.create_superuser("root", password="pw-root-123")


@pytest.fixture
def api_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client
