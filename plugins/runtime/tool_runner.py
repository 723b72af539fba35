"""ToolRunner: the only code that calls a plugin's ``run``.

Every execution goes through :meth:`ToolRunner.run`, which looks the plugin up,
hands the execution to the plugin's isolation (plugins/runtime/isolation/: a
pooled child process by default, a pool thread for trusted plugins), turns any
failure into an error envelope and, in ``finally``, records metrics.

What runs where the plugin is isolated is plugins/runtime/plugin_side.py: the
isolation calls it with the plugin, so the plugin's own code runs under its
limits. One execution is one round trip: the payload is validated there and
exactly what was validated runs.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from plugins.contract import Plugin, plugin_label
from plugins.errors.error_envelope import ErrorEnvelope, ErrorType, build_error_envelope
from plugins.errors.exceptions import (
    GovernedExecutionError,
    InputValidationError,
    PluginVersionMismatchError,
    ReportedExecutionError,
    envelope_for,
)
from plugins.metrics.instruments import METRICS_FAILURES, count_containment
from plugins.metrics.recorder import IMMEDIATE_RECORDER, MetricsRecorder
from plugins.models import PluginState
from plugins.registry import PluginRegistry, get_registry
from plugins.runtime.control import ControlFailed, ExecutionControl
from plugins.runtime.isolation import ISOLATIONS
from plugins.runtime.isolation.artifacts import (
    ReceivedArtifact,
    artifacts_of,
    close_all,
    received,
)
from plugins.runtime.isolation.base import Isolation
from plugins.runtime.limits import ExecutionLimits, IsolationKind
from plugins.runtime.plugin_side import validate_and_run, validate_only
from plugins.runtime.provenance import RanCode
from plugins.validation.output_validator import check_storable_output

logger = logging.getLogger(__name__)


class ExecutionResult(tuple[dict[str, Any] | None, ErrorEnvelope | None]):
    """What one execution gave: ``(result, error)``, exactly one set, and what ran.

    A pair, as callers unpack it; ``ran`` is the plugin's version and code
    fingerprint as the process that ran it reported them, None when no plugin
    code was loaded (an unknown plugin, one that could not be imported).
    """

    ran: RanCode | None
    artifacts: tuple[ReceivedArtifact, ...]
    """The files the plugin returned with a successful result, each open at its start
    (empty on an error); whoever takes the result stores or closes them."""

    def __new__(
        cls,
        result: dict[str, Any] | None,
        error: ErrorEnvelope | None,
        ran: RanCode | None = None,
        artifacts: tuple[ReceivedArtifact, ...] = (),
    ) -> ExecutionResult:
        pair = super().__new__(cls, (result, error))
        pair.ran = ran
        pair.artifacts = artifacts
        return pair

    @property
    def result(self) -> dict[str, Any] | None:
        return self[0]

    @property
    def error(self) -> ErrorEnvelope | None:
        return self[1]


class ToolRunner:
    """Runs one plugin execution and reports ``(result, error)``: exactly one is set.

    ToolRunner never raises for anything a plugin or a payload does; callers
    above it must not catch plugin exceptions themselves.
    """

    def __init__(
        self,
        registry: PluginRegistry | None = None,
        isolations: Mapping[IsolationKind, Isolation] | None = None,
    ) -> None:
        """``isolations``: instances to use for some kinds instead of the shared ones."""
        self._registry = registry if registry is not None else get_registry()
        given = isolations or {}
        self._isolations = {
            kind: given[kind] if kind in given else implementation.shared()
            for kind, implementation in ISOLATIONS.items()
        }

    def run(
        self,
        plugin_name: str,
        payload: Any,
        *,
        control: ExecutionControl | None = None,
        version: str = "",
        metrics: MetricsRecorder = IMMEDIATE_RECORDER,
    ) -> ExecutionResult:
        """Validate ``payload``, run the plugin on it and check what it returns.

        ``control`` is told when the plugin starts and asked while it runs
        whether to stop it early. ``version``: the version the caller asked
        for; where the plugin runs, another one fails with PluginVersionMismatch
        and runs nothing. Raises only ControlFailed, when the control itself
        failed (the caller's bookkeeping), after stopping the plugin.
        ``metrics``: where the ``finally`` hands the execution's numbers (a
        caller with a transaction of its own defers the persisted row to it).
        """
        started = time.perf_counter()
        state: str = PluginState.UNAVAILABLE
        result: dict[str, Any] | None = None
        error: ErrorEnvelope | None = None
        ran: RanCode | None = None
        isolation: IsolationKind | None = None
        artifacts: tuple[ReceivedArtifact, ...] = ()
        try:
            entry = self._registry.get_entry(plugin_name)
            state = entry.state
            plugin = self._registry.available(entry)
            limits = self._registry.limits_for(plugin)
            isolation = limits.isolation
            data, ran = self._execute(plugin, payload, limits, control, version)
            artifacts = received(artifacts_of(data))
            output = json.loads(data)
            check_storable_output(output)
            result = output
        except ControlFailed as exc:
            close_all(artifacts)
            error = build_error_envelope(
                ErrorType.SERVICE_UNAVAILABLE, str(exc), plugin=plugin_label(plugin_name), exc=exc
            )
            raise
        except Exception as exc:
            close_all(artifacts)
            artifacts = ()
            ran = getattr(exc, "ran", ran)
            error = envelope_for(exc, plugin_label(plugin_name))
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            try:
                self._registry.update_execution_metrics(
                    plugin_name,
                    state,
                    elapsed_ms,
                    error is not None,
                    recorder=metrics,
                    outcome=error["error"]["type"] if error is not None else "success",
                )
                if error is not None and isolation is not None:
                    count_containment(
                        plugin_label(plugin_name), dict(error), isolation is IsolationKind.PROCESS
                    )
            except Exception:
                METRICS_FAILURES.inc()
                logger.exception(
                    "Recording metrics for plugin %r failed", plugin_label(plugin_name)
                )
        return ExecutionResult(result, error, ran, artifacts)

    def warm_up(self) -> None:
        """Start, in the background, what every available plugin's isolation needs to run it."""
        by_kind: dict[IsolationKind, list[tuple[Plugin, ExecutionLimits]]] = {}
        for plugin in self._registry.list_plugins():
            limits = self._registry.limits_for(plugin)
            by_kind.setdefault(limits.isolation, []).append((plugin, limits))
        for kind, plugins in by_kind.items():
            self._isolations[kind].warm_up(plugins)

    def validate(
        self, plugin_name: str, payload: Any, *, version: str = ""
    ) -> ErrorEnvelope | None:
        """Validate ``payload`` where the plugin runs, under its limits, without running it.

        Raises PluginNotFound, PluginUnavailable, InputValidationError or
        PluginVersionMismatch (another version than ``version`` is installed where
        the plugin runs): the request is refused. A failure of the plugin's own
        code while validating (its validator timed out, crashed, ...) is not the
        client's: it is returned as an envelope. None: the payload is valid.
        """
        plugin = self._registry.get_plugin(plugin_name)
        limits = self._registry.limits_for(plugin)
        try:
            self._isolations[limits.isolation].call(
                validate_only, plugin, payload, version, limits=limits
            )
        except (InputValidationError, PluginVersionMismatchError):
            raise
        except ReportedExecutionError as exc:
            refusal = _REFUSALS.get(exc.envelope["error"]["type"])
            if refusal is not None:
                raise refusal(exc.message, details=exc.details, plugin=plugin.name) from exc
            return envelope_for(exc, plugin.name)
        except Exception as exc:
            return envelope_for(exc, plugin.name)
        return None

    def _execute(
        self,
        plugin: Plugin,
        payload: Any,
        limits: ExecutionLimits,
        control: ExecutionControl | None,
        version: str,
    ) -> tuple[bytes, RanCode | None]:
        return self._isolations[limits.isolation].call(
            validate_and_run,
            plugin,
            payload,
            limits.max_result_bytes,
            version,
            limits.max_artifact_bytes,
            limits.max_artifacts_total_bytes,
            limits=limits,
            control=control,
        )


# What the plugin's isolation reports that refuses a request rather than failing a job.
_REFUSALS: dict[str, type[GovernedExecutionError]] = {
    ErrorType.VALIDATION_ERROR: InputValidationError,
    ErrorType.PLUGIN_VERSION_MISMATCH: PluginVersionMismatchError,
}


_warmed_in_pid: int | None = None


def warm_up_once() -> None:
    """In each process, once (its first request, a worker's start): say which sandbox
    confines plugins, and start their hosts (unless PLUGIN_WARM_HOSTS is off), so that
    no later request waits for a plugin's process to start."""
    global _warmed_in_pid
    from django.conf import settings

    if _warmed_in_pid == os.getpid():
        return
    _warmed_in_pid = os.getpid()
    _log_sandbox()
    if not settings.PLUGIN_WARM_HOSTS:
        return
    try:
        ToolRunner().warm_up()
    except Exception:
        logger.exception("Starting the plugins' processes ahead of demand failed")


def _log_sandbox() -> None:
    """Say once, at a process's start, which confinement its plugins' hosts get."""
    from plugins.runtime.isolation.process import SandboxSettings

    described = SandboxSettings.from_settings().describe()
    if described.get("problem"):
        logger.error("Plugin sandbox: %s (PLUGIN_SANDBOX=off runs them unconfined)", described)
    elif not described["confined"]:
        logger.warning("Plugin sandbox is off: process-isolated plugins run unconfined")
    else:
        logger.info("Plugin sandbox: %s", described)
