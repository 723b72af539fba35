"""Helpers for plugin authors' own tests.

A plugin's ``run`` refuses to work outside ToolRunner, so tests exercise a
plugin the supported way: through a ToolRunner with a private registry that
holds only that plugin and records no metrics (no database needed). The
plugin runs isolated as in production, so it must be defined at module level::

    from plugins.testing import run_plugin

    def test_my_plugin():
        result, error = run_plugin(MyPlugin, {"text": "hello"})
        assert error is None
        assert result["word_count"] == 1

A plugin package has no Django project of its own: it needs no conftest and no
settings module. Where none is configured, :func:`configure_django` sets up the
least ToolRunner needs; a project's own settings (pytest-django's) are left alone.
"""

from __future__ import annotations

import os
import secrets
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plugins.contract import Plugin
from plugins.runtime.limits import ExecutionLimits, IsolationKind

if TYPE_CHECKING:
    from plugins.runtime.tool_runner import ExecutionResult

_configure_lock = threading.Lock()


def run_plugin(
    plugin_class: type[Plugin],
    payload: Any,
    *,
    timeout_s: float = 30.0,
    isolation: IsolationKind | str | None = None,
) -> ExecutionResult:
    """Run ``plugin_class`` on ``payload`` through a private ToolRunner.

    The plugin runs as it would in the project, in a sandboxed host unless it or
    ``PLUGIN_ISOLATION`` says ``"thread"``; ``isolation`` is the default for a plugin
    that sets none. Its author's test is its operator: what it asks for beyond the
    sandbox (a thread, the network, paths to read) it is given.
    """
    configure_django()
    # Imported here, not above: the registry's models need Django's apps loaded.
    from plugins.registry import PluginRegistry
    from plugins.runtime.tool_runner import ToolRunner

    name = {plugin_class.name}
    defaults = replace(
        ExecutionLimits.from_settings(),
        timeout_s=timeout_s,
        thread_allowed=frozenset(name),
        network_allowed=frozenset(name),
        read_paths_allowed=frozenset(name),
    )
    if isolation is not None:
        defaults = replace(defaults, isolation=IsolationKind(isolation))
    registry = PluginRegistry(record_metrics=False, defaults=defaults)
    registry.register(plugin_class, source="plugins.testing")
    return ToolRunner(registry=registry).run(plugin_class.name, payload)


def configure_django() -> None:
    """Make Django ready for ToolRunner, configuring it only if nobody has.

    With neither ``DJANGO_SETTINGS_MODULE`` nor ``settings.configure()`` (a plugin
    package's tests, a script), Django gets :func:`minimal_settings`. Settings that
    are there, a project's or pytest-django's, are used as they are; only the apps
    are loaded if they are not yet.
    """
    import django
    from django.apps import apps
    from django.conf import settings

    if apps.ready:
        return
    with _configure_lock:
        if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
            settings.configure(**minimal_settings())
        if not apps.ready:
            django.setup()


def minimal_settings() -> dict[str, Any]:
    """The least ToolRunner needs: no database, no metrics, the runtime's own defaults.

    As in the project, the sandbox is on unless ``PLUGIN_SANDBOX=off`` (a machine
    without Landlock), and a root process starts hosts as ``PLUGIN_SANDBOX_USER``.
    """
    from plugins.runtime.isolation.process import ProcessIsolation, SandboxSettings

    limits = ExecutionLimits()
    hosts = ProcessIsolation()
    sandbox = SandboxSettings()
    return {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "INSTALLED_APPS": ["plugins"],
        "DATABASES": {},
        "USE_TZ": True,
        # What the sandbox keeps hosts out of: the folder the tests run in, where a project
        # would be. Not the runtime's folder, which may be the installed packages.
        "BASE_DIR": Path.cwd(),
        "PLUGINS": [],
        "PLUGIN_METRICS_ENABLED": False,
        "PLUGIN_WARM_HOSTS": False,
        "PLUGIN_ISOLATION": limits.isolation.value,
        "PLUGIN_DEFAULT_TIMEOUT_S": limits.timeout_s,
        "PLUGIN_DEFAULT_MAX_MEMORY_MB": limits.max_memory_mb,
        "PLUGIN_MAX_RESULT_BYTES": limits.max_result_bytes,
        "ARTIFACT_MAX_BYTES": limits.artifact_bytes_ceiling,
        "ARTIFACT_MAX_TOTAL_BYTES": limits.max_artifacts_total_bytes,
        "PLUGIN_HOSTS_PER_PLUGIN": hosts.hosts_per_plugin,
        "PLUGIN_MAX_EXECUTIONS_PER_HOST": hosts.max_executions_per_host,
        "PLUGIN_SANDBOX": os.environ.get("PLUGIN_SANDBOX", "on"),
        "PLUGIN_SANDBOX_USER": os.environ.get("PLUGIN_SANDBOX_USER", sandbox.user),
        "PLUGIN_NETWORK_ALLOWED": [],
        "PLUGIN_READ_PATHS_ALLOWED": [],
        "PLUGIN_THREAD_ALLOWED": [],
    }
