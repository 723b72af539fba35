"""ToolRunner: the only code that calls a plugin's ``run``.

Every execution goes through :meth:`ToolRunner.run`, which validates the input,
runs the plugin under the runtime guard and a time limit, validates the output,
turns any failure into an error envelope and, in ``finally``, records metrics.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from plugins.errors.error_envelope import ErrorEnvelope, ErrorType, build_error_envelope
from plugins.errors.exceptions import GovernedExecutionError
from plugins.metrics import METRICS_FAILURES
from plugins.models import PluginState
from plugins.registry import PluginRegistry, get_registry
from plugins.runtime.guard import governed_context
from plugins.runtime.time_limit import ExecutionThreads, execution_threads
from plugins.validation.input_validator import validate_input
from plugins.validation.output_validator import validate_output

logger = logging.getLogger(__name__)

ExecutionResult = tuple[dict[str, Any] | None, ErrorEnvelope | None]


class ToolRunner:
    """Runs one plugin execution and reports ``(result, error)``: exactly one is set.

    ToolRunner never raises for anything a plugin or a payload does; callers
    above it must not catch plugin exceptions themselves.
    """

    def __init__(
        self,
        registry: PluginRegistry | None = None,
        threads: ExecutionThreads | None = None,
    ) -> None:
        self._registry = registry if registry is not None else get_registry()
        self._threads = threads if threads is not None else execution_threads

    def run(self, plugin_name: str, payload: Any) -> ExecutionResult:
        started = time.perf_counter()
        state: str = PluginState.UNAVAILABLE
        result: dict[str, Any] | None = None
        error: ErrorEnvelope | None = None
        try:
            entry = self._registry.get_entry(plugin_name)
            state = entry.state
            plugin = self._registry.available(entry)
            validated = validate_input(plugin, payload)
            output = self._threads.call(
                governed_context(plugin),
                plugin.run,
                validated,
                timeout_s=self._registry.timeout_for(plugin),
            )
            result = validate_output(plugin, output)
        except GovernedExecutionError as exc:
            error = build_error_envelope(
                exc.error_type,
                exc.message,
                details=exc.details,
                plugin=_label(plugin_name),
                exc=exc,
            )
        except Exception as exc:
            # The plugin's own message may carry internals; it stays in the traceback.
            error = build_error_envelope(
                ErrorType.PLUGIN_EXECUTION_ERROR,
                f"Plugin {_label(plugin_name)!r} failed with {type(exc).__name__}",
                details={"exception": type(exc).__name__},
                plugin=_label(plugin_name),
                exc=exc,
            )
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            try:
                self._registry.update_execution_metrics(
                    plugin_name,
                    state,
                    elapsed_ms,
                    error is not None,
                    outcome=error["error"]["type"] if error is not None else "success",
                )
            except Exception:
                METRICS_FAILURES.inc()
                logger.exception("Recording metrics for plugin %r failed", _label(plugin_name))
        return result, error


def _label(plugin_name: object) -> str:
    text = plugin_name if isinstance(plugin_name, str) else repr(plugin_name)
    return text[:100]
