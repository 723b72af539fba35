import os
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework.test import APIClient

from execution.policy.tokens import create_token
from plugins.registry import PluginRegistry, reset_registry
from plugins.runtime.limits import ExecutionLimits
from plugins.runtime.tool_runner import ToolRunner
from tests.plugins import sample_plugins


@pytest.fixture(autouse=True)
def _fresh_global_registry():
    """Each test discovers the process-wide registry anew (settings may differ)."""
    reset_registry()
    yield
    reset_registry()


SAMPLE_PLUGIN_CLASSES = (
    sample_plugins.EchoPlugin,
    sample_plugins.DictEchoPlugin,
    sample_plugins.RaisingPlugin,
    sample_plugins.NoneReturningPlugin,
    sample_plugins.WrongOutputPlugin,
    sample_plugins.ListOutputPlugin,
    sample_plugins.SystemExitPlugin,
    sample_plugins.SlowPlugin,
    sample_plugins.NoOpPlugin,
)


@pytest.fixture
def registry() -> PluginRegistry:
    registry = PluginRegistry(record_metrics=True, defaults=ExecutionLimits(timeout_s=5.0))
    for cls in SAMPLE_PLUGIN_CLASSES:
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
    client.credentials(HTTP_AUTHORIZATION=f"Token {create_token(user=user).key}")
    return client


ROOT = Path(__file__).resolve().parent.parent


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for a child process that uses the test database (SQLite file or Postgres)."""
    settings_dict = connection.settings_dict
    if settings_dict["ENGINE"].endswith("sqlite3"):
        url = f"sqlite:///{settings_dict['NAME']}"
    else:
        user = quote(settings_dict["USER"] or "")
        password = quote(settings_dict["PASSWORD"] or "")
        host = settings_dict["HOST"] or "localhost"
        port = settings_dict["PORT"] or 5432
        url = f"postgres://{user}:{password}@{host}:{port}/{settings_dict['NAME']}"
    return {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "SECRET_KEY": "test-only-secret-key",
        "DEBUG": "0",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def run_in_subprocess(args: list[str], env: dict[str, str], timeout: float = 120) -> str:
    completed = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout
