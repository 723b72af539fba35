"""Helpers for plugin authors' own tests.

A plugin's ``run`` refuses to work outside ToolRunner, so tests exercise a
plugin the supported way: through a ToolRunner with a private registry that
holds only that plugin and records no metrics (no database needed)::

    from plugins.testing import run_plugin

    def test_my_plugin():
        result, error = run_plugin(MyPlugin, {"text": "hello"})
        assert error is None
        assert result["word_count"] == 1
"""

from __future__ import annotations

from typing import Any

from plugins.contract import Plugin
from plugins.registry import PluginRegistry
from plugins.runtime.tool_runner import ExecutionResult, ToolRunner


def run_plugin(
    plugin_class: type[Plugin], payload: Any, *, timeout_s: float = 30.0
) -> ExecutionResult:
    """Run ``plugin_class`` on ``payload`` through a private ToolRunner."""
    registry = PluginRegistry(record_metrics=False, default_timeout_s=timeout_s)
    registry.register(plugin_class, source="plugins.testing")
    return ToolRunner(registry=registry).run(plugin_class.name, payload)
