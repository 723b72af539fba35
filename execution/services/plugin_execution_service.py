"""PluginExecutionService: resolves a plugin by registered name and runs it via ToolRunner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plugins.errors.error_envelope import ErrorEnvelope
from plugins.errors.exceptions import GovernedExecutionError
from plugins.metrics.recorder import IMMEDIATE_RECORDER, MetricsRecorder
from plugins.registry import PluginRegistry, get_registry
from plugins.runtime.control import ExecutionControl
from plugins.runtime.plugin_side import check_version
from plugins.runtime.provenance import code_of
from plugins.runtime.tool_runner import ExecutionResult, ToolRunner


@dataclass(frozen=True)
class PluginFacts:
    """What a job needs to know about the plugin that will run it."""

    version: str
    fingerprint: str
    time_limit_s: float
    max_attempts: int
    max_input_bytes: int | None
    max_concurrency: int | None = None


class PluginExecutionService:
    """The only service that talks to ToolRunner."""

    def __init__(self, registry: PluginRegistry | None = None) -> None:
        self._registry = registry if registry is not None else get_registry()
        self._runner = ToolRunner(registry=self._registry)

    def describe(self, *, plugin_name: str, version: str = "") -> PluginFacts:
        """Facts about an available plugin; raises PluginNotFound or PluginUnavailable.

        ``version``: the version the request asks for; raises PluginVersionMismatch
        when this process has another one registered (where the plugin runs, it is
        checked again).
        """
        plugin = self._registry.get_plugin(plugin_name)
        check_version(plugin, version)
        return PluginFacts(
            version=plugin.version,
            fingerprint=code_of(type(plugin)).fingerprint,
            time_limit_s=self._registry.limits_for(plugin).timeout_s,
            max_attempts=plugin.max_attempts,
            max_input_bytes=plugin.max_input_bytes,
            max_concurrency=plugin.max_concurrency,
        )

    def check_input(
        self, *, plugin_name: str, payload: Any, version: str = ""
    ) -> ErrorEnvelope | None:
        """Validate ``payload`` where and how the plugin runs, without running it.

        Raises a governed error for invalid input, so the API refuses it before
        anything is recorded; returns the envelope of a failure of the plugin's
        own code while validating (a validator that timed out or crashed), or
        of another installed version than ``version``.
        """
        return self._runner.validate(plugin_name, payload, version=version)

    def time_limit_s(self, *, plugin_name: str) -> float:
        """How long an execution of ``plugin_name`` may take (the default if it is unknown)."""
        return self.claim_limits(plugin_name=plugin_name)[0]

    def claim_limits(self, *, plugin_name: str) -> tuple[float, int | None]:
        """What a claim of a job of ``plugin_name`` needs: its time limit and its cap.

        An unknown plugin has the default time limit and no cap.
        """
        try:
            facts = self.describe(plugin_name=plugin_name)
        except GovernedExecutionError:  # the run itself will report it, at once
            return self._registry.defaults.timeout_s, None
        return facts.time_limit_s, facts.max_concurrency

    def execute(
        self,
        *,
        plugin_name: str,
        payload: Any,
        control: ExecutionControl | None = None,
        version: str = "",
        metrics: MetricsRecorder = IMMEDIATE_RECORDER,
    ) -> ExecutionResult:
        """Run the plugin: ``(result, error)`` with exactly one set; never raises for the plugin.

        ``version``: run only that version (else the execution fails with
        PluginVersionMismatch); empty: whichever is installed. ``metrics``
        records the execution (deferred: inside the caller's transaction).
        """
        return self._runner.run(
            plugin_name, payload, control=control, version=version, metrics=metrics
        )
