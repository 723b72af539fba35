"""PluginExecutionService: resolves a plugin by registered name and runs it via ToolRunner."""

from __future__ import annotations

from typing import Any

from plugins.registry import PluginRegistry, get_registry
from plugins.runtime.tool_runner import ExecutionResult, ToolRunner
from plugins.validation.input_validator import validate_input


class PluginExecutionService:
    """The only service that talks to ToolRunner."""

    def __init__(self, registry: PluginRegistry | None = None) -> None:
        self._registry = registry if registry is not None else get_registry()
        self._runner = ToolRunner(registry=self._registry)

    def check_request(self, plugin_name: str, payload: Any) -> str:
        """Raise a governed error unless ``plugin_name`` can run ``payload``; return its version.

        Lets the API refuse bad input before anything is recorded. Nothing runs.
        """
        plugin = self._registry.get_plugin(plugin_name)
        validate_input(plugin, payload)
        return plugin.version

    def execute(self, plugin_name: str, payload: Any) -> ExecutionResult:
        """Run the plugin: ``(result, error)`` with exactly one set; never raises for the plugin."""
        return self._runner.run(plugin_name, payload)
