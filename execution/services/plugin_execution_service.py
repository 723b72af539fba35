"""PluginExecutionService: resolves a plugin by registered name and runs it via ToolRunner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plugins.errors.exceptions import GovernedExecutionError
from plugins.registry import PluginRegistry, get_registry
from plugins.runtime.control import ExecutionControl
from plugins.runtime.tool_runner import ExecutionResult, ToolRunner, ValidatedInput


@dataclass(frozen=True)
class Admission:
    """A request the plugin accepted: what to run, and what the job needs to know about it."""

    validated: ValidatedInput
    plugin_version: str
    time_limit_s: float
    max_attempts: int


class PluginExecutionService:
    """The only service that talks to ToolRunner."""

    def __init__(self, registry: PluginRegistry | None = None) -> None:
        self._registry = registry if registry is not None else get_registry()
        self._runner = ToolRunner(registry=self._registry)

    def admit(self, plugin_name: str, payload: Any) -> Admission:
        """Validate ``payload`` where and how the plugin runs, without running it.

        Raises a governed error for an unknown or unavailable plugin or invalid
        input, so the API refuses bad input before anything is recorded.
        """
        validated = self._runner.validate(plugin_name, payload)
        plugin = validated.plugin
        return Admission(
            validated=validated,
            plugin_version=plugin.version,
            time_limit_s=self._registry.limits_for(plugin).timeout_s,
            max_attempts=plugin.max_attempts,
        )

    def time_limit_s(self, plugin_name: str) -> float:
        """How long an execution of ``plugin_name`` may take (the default if it is unknown)."""
        try:
            plugin = self._registry.get_plugin(plugin_name)
        except GovernedExecutionError:  # the run itself will report it, at once
            return self._registry.defaults.timeout_s
        return self._registry.limits_for(plugin).timeout_s

    def execute(
        self, plugin_name: str, payload: Any, *, control: ExecutionControl | None = None
    ) -> ExecutionResult:
        """Run the plugin: ``(result, error)`` with exactly one set; never raises for the plugin."""
        return self._runner.run(plugin_name, payload, control=control)
