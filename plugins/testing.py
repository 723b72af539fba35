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
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from plugins.contract import Plugin
from plugins.registry import PluginRegistry
from plugins.runtime.limits import ExecutionLimits, IsolationKind
from plugins.runtime.tool_runner import ExecutionResult, ToolRunner


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
