"""ToolRunner: the only code that calls a plugin's ``run``.

Every execution goes through :meth:`ToolRunner.run`, which looks the plugin up,
hands the execution to the plugin's isolation (a pooled child process by default,
a pool thread for trusted plugins), turns any failure into an error envelope
and, in ``finally``, records metrics. Where the plugin runs, its own code runs
under its limits: input validation (its validators are plugin code too), ``run``
under the runtime guard, and output validation with the result size bound.

The second half of this module is what runs there; the child process executes
:func:`run_in_child` and :func:`validate_in_child`. One execution is one round trip
to the child: the payload is validated there and exactly what was validated runs.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import resource
import threading
import time
from typing import Any

from plugins.contract import Plugin
from plugins.errors.error_envelope import ErrorEnvelope, ErrorType, build_error_envelope
from plugins.errors.exceptions import (
    GovernedExecutionError,
    InputValidationError,
    OutputValidationError,
    PluginExecutionError,
    PluginResourceLimitError,
    PluginUnavailableError,
    PluginVersionMismatchError,
    ReportedExecutionError,
    envelope_for,
)
from plugins.metrics.instruments import METRICS_FAILURES, count_containment
from plugins.metrics.recorder import IMMEDIATE_RECORDER, MetricsRecorder
from plugins.models import PluginState
from plugins.registry import PluginRegistry, get_registry
from plugins.runtime.control import ControlFailed, ExecutionControl
from plugins.runtime.guard import authorised
from plugins.runtime.limits import ExecutionLimits, Isolation
from plugins.runtime.process_pool import (
    PluginRef,
    ProcessIsolation,
    plugin_ref,
    retire_this_child,
)
from plugins.runtime.provenance import RanCode, code_of
from plugins.runtime.time_limit import ExecutionThreads, execution_threads
from plugins.validation.input_validator import validate_input
from plugins.validation.json_values import storable_copy
from plugins.validation.output_validator import check_storable_output, validate_output

logger = logging.getLogger(__name__)

ChildOutcome = tuple[bool, bytes, bytes]
"""What a child sends back: (True, the result as JSON) or (False, an error envelope as JSON),
and what code it ran (:class:`RanCode` as JSON; empty when the plugin did not load).

Only a bool and bytes cross from a child: nothing a plugin made (an exception, an
object in its details) is ever unpickled by the caller.
"""


class ExecutionResult(tuple[dict[str, Any] | None, ErrorEnvelope | None]):
    """What one execution gave: ``(result, error)``, exactly one set, and what ran.

    A pair, as callers unpack it; ``ran`` is the plugin's version and code
    fingerprint as the process that ran it reported them, None when no plugin
    code was loaded (an unknown plugin, one that could not be imported).
    """

    ran: RanCode | None

    def __new__(
        cls,
        result: dict[str, Any] | None,
        error: ErrorEnvelope | None,
        ran: RanCode | None = None,
    ) -> ExecutionResult:
        pair = super().__new__(cls, (result, error))
        pair.ran = ran
        return pair

    @property
    def result(self) -> dict[str, Any] | None:
        return self[0]

    @property
    def error(self) -> ErrorEnvelope | None:
        return self[1]


MAX_ENVELOPE_BYTES = 256 * 1024
MAX_MESSAGE_CHARS = 2000
MAX_TRACEBACK_CHARS = 64 * 1024


class ToolRunner:
    """Runs one plugin execution and reports ``(result, error)``: exactly one is set.

    ToolRunner never raises for anything a plugin or a payload does; callers
    above it must not catch plugin exceptions themselves.
    """

    def __init__(
        self,
        registry: PluginRegistry | None = None,
        threads: ExecutionThreads | None = None,
        processes: ProcessIsolation | None = None,
    ) -> None:
        self._registry = registry if registry is not None else get_registry()
        self._threads = threads if threads is not None else execution_threads
        self._processes = processes if processes is not None else process_isolation()

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
        isolation: Isolation | None = None
        try:
            entry = self._registry.get_entry(plugin_name)
            state = entry.state
            plugin = self._registry.available(entry)
            limits = self._registry.limits_for(plugin)
            isolation = limits.isolation
            data, ran = self._execute(plugin, payload, limits, control, version)
            output = json.loads(data)
            check_storable_output(output)
            result = output
        except ControlFailed as exc:
            error = build_error_envelope(
                ErrorType.SERVICE_UNAVAILABLE, str(exc), plugin=_label(plugin_name), exc=exc
            )
            raise
        except Exception as exc:
            ran = getattr(exc, "ran", ran)
            error = envelope_for(exc, _label(plugin_name))
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
                        _label(plugin_name), dict(error), isolation is Isolation.PROCESS
                    )
            except Exception:
                METRICS_FAILURES.inc()
                logger.exception("Recording metrics for plugin %r failed", _label(plugin_name))
        return ExecutionResult(result, error, ran)

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
            if limits.isolation is Isolation.THREAD:
                self._threads.call(
                    _validate_version_and_input,
                    plugin,
                    payload,
                    version,
                    timeout_s=limits.timeout_s,
                )
            else:
                outcome = self._processes.call(
                    validate_in_child,
                    plugin_ref(type(plugin)),
                    payload,
                    limits.max_memory_mb,
                    version,
                    timeout_s=limits.timeout_s,
                )
                _unwrap(outcome, limits.max_result_bytes)
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
        if limits.isolation is Isolation.THREAD:
            ran = code_of(type(plugin))
            try:
                data = self._threads.call(
                    run_in_thread,
                    plugin,
                    payload,
                    limits.max_result_bytes,
                    version,
                    timeout_s=limits.timeout_s,
                    control=control,
                )
            except Exception as exc:
                exc.ran = ran  # type: ignore[attr-defined]
                raise
            return data, ran
        outcome = self._processes.call(
            run_in_child,
            plugin_ref(type(plugin)),
            payload,
            limits.max_memory_mb,
            limits.max_result_bytes,
            version,
            timeout_s=limits.timeout_s,
            control=control,
        )
        return _unwrap(outcome, limits.max_result_bytes)


# What a child reports that refuses a request rather than failing a job.
_REFUSALS: dict[str, type[GovernedExecutionError]] = {
    ErrorType.VALIDATION_ERROR: InputValidationError,
    ErrorType.PLUGIN_VERSION_MISMATCH: PluginVersionMismatchError,
}


def _unwrap(outcome: ChildOutcome, max_result_bytes: int) -> tuple[bytes, RanCode | None]:
    """A child's outcome, checked again here: the child runs plugin code, it may lie.

    A failure is raised with what ran attached (``exc.ran``).
    """
    succeeded, data, ran_data = outcome
    if not isinstance(data, bytes) or not isinstance(ran_data, bytes):
        raise PluginExecutionError("The plugin's process sent something other than its outcome")
    ran = RanCode.from_json(ran_data)
    try:
        return _checked(succeeded, data, max_result_bytes), ran
    except GovernedExecutionError as exc:
        exc.ran = ran  # type: ignore[attr-defined]
        raise


def _checked(succeeded: bool, data: bytes, max_result_bytes: int) -> bytes:
    if succeeded:
        if len(data) > max_result_bytes:
            raise OutputValidationError(
                f"The plugin returned a result of {len(data)} bytes; the limit is "
                f"{max_result_bytes}",
                details={"result_bytes": len(data), "max_result_bytes": max_result_bytes},
            )
        return data
    if len(data) > MAX_ENVELOPE_BYTES:
        raise PluginExecutionError("The plugin's process sent an oversized error report")
    try:
        envelope = storable_copy(json.loads(data))
        envelope["error"]["type"] = ErrorType(envelope["error"]["type"])
    except (ValueError, KeyError, TypeError) as exc:
        raise PluginExecutionError("The plugin's process sent an unreadable error report") from exc
    raise ReportedExecutionError(envelope)


def _label(plugin_name: object) -> str:
    text = plugin_name if isinstance(plugin_name, str) else repr(plugin_name)
    return text[:100]


_process_isolation: ProcessIsolation | None = None
_process_isolation_lock = threading.Lock()


def process_isolation() -> ProcessIsolation:
    """The process-wide pool of plugin child processes, configured from settings."""
    global _process_isolation
    if _process_isolation is None:
        with _process_isolation_lock:
            if _process_isolation is None:
                from django.conf import settings

                _process_isolation = ProcessIsolation(
                    size=settings.PLUGIN_PROCESS_POOL_SIZE or 2,
                    max_tasks_per_child=settings.PLUGIN_MAX_TASKS_PER_CHILD,
                    kill_grace_s=settings.PLUGIN_KILL_GRACE_S,
                )
    return _process_isolation


def runs_one_execution_at_a_time() -> None:
    """Tell the runtime that this process executes plugins one after another (a worker).

    Unless PLUGIN_PROCESS_POOL_SIZE says otherwise, its pool then has one child.
    Call it before the first execution: a pool that has started keeps its size.
    """
    from django.conf import settings

    if not settings.PLUGIN_PROCESS_POOL_SIZE:
        process_isolation().size = 1


# What runs where the plugin is isolated --------------------------------------------


def check_version(plugin: Plugin, version: str) -> None:
    """Refuse to run anything but the version asked for (none asked: any)."""
    if version and version != plugin.version:
        raise PluginVersionMismatchError(
            f"Plugin {plugin.name!r} is at version {plugin.version!r}, not {version!r}",
            details={"requested": version, "installed": plugin.version},
        )


def _validate_version_and_input(plugin: Plugin, payload: Any, version: str) -> Any:
    validated = validate_input(plugin, payload)  # bad input is refused whatever the version
    check_version(plugin, version)
    return validated


def _validate_and_call(plugin: Plugin, payload: Any, max_result_bytes: int, version: str) -> bytes:
    validated = _validate_version_and_input(plugin, payload, version)
    try:
        with authorised(plugin):
            output = plugin.run(validated)
    except GovernedExecutionError as exc:
        if type(exc) is not PluginExecutionError:
            # Only ToolRunner says an input was refused, a limit hit or a process lost.
            raise PluginExecutionError(
                f"Plugin {plugin.name!r} failed with {type(exc).__name__}",
                details={"exception": type(exc).__name__},
            ) from exc
        raise
    return validate_output(plugin, output, max_result_bytes)


def run_in_thread(plugin: Plugin, payload: Any, max_result_bytes: int, version: str) -> bytes:
    """One execution in a pool thread of the caller (thread isolation)."""
    return _validate_and_call(plugin, payload, max_result_bytes, version)


def run_in_child(
    ref: PluginRef, payload: Any, max_memory_mb: int | None, max_result_bytes: int, version: str
) -> ChildOutcome:
    """One execution in a child process: check the version, validate, run, check the output."""
    ran = b""
    try:
        plugin = _child_plugin(ref)
        ran = code_of(type(plugin)).to_json()
        apply_memory_limit(max_memory_mb)
        return True, _validate_and_call(plugin, payload, max_result_bytes, version), ran
    except BaseException as exc:
        return False, _child_failure(exc, ref, max_memory_mb), ran


def validate_in_child(
    ref: PluginRef, payload: Any, max_memory_mb: int | None, version: str
) -> ChildOutcome:
    """Only check the version and validate a payload in a child (a background job's admission)."""
    ran = b""
    try:
        plugin = _child_plugin(ref)
        ran = code_of(type(plugin)).to_json()
        apply_memory_limit(max_memory_mb)
        _validate_version_and_input(plugin, payload, version)
        return True, b"", ran
    except BaseException as exc:
        return False, _child_failure(exc, ref, max_memory_mb), ran


def _child_failure(exc: BaseException, ref: PluginRef, max_memory_mb: int | None) -> bytes:
    """The failure as a bounded envelope in JSON; whatever the plugin put in it, this returns."""
    try:
        name = getattr(_child_plugins.get(ref), "name", ref[1])
        if isinstance(exc, MemoryError):
            retire_this_child()  # it may still hold what it allocated
            if max_memory_mb is not None:
                exc = PluginResourceLimitError(
                    f"Plugin {name!r} went past its memory limit of {max_memory_mb} MB",
                    details={"max_memory_mb": max_memory_mb},
                )
        return _bounded_json(envelope_for(exc, name))
    except BaseException:  # the plugin's exception broke even its own reporting
        return _bounded_json(
            build_error_envelope(
                ErrorType.PLUGIN_EXECUTION_ERROR,
                "The plugin failed, and so did reporting how",
                details={"exception": type(exc).__name__},
            )
        )


def _bounded_json(envelope: ErrorEnvelope) -> bytes:
    """The envelope as JSON, cut to sizes that cannot flood the caller or the job row."""
    error: Any = envelope["error"]
    error["message"] = str(error["message"])[:MAX_MESSAGE_CHARS]
    internal = envelope.get("_internal")
    if internal is not None:
        internal["traceback"] = str(internal["traceback"])[-MAX_TRACEBACK_CHARS:]
    encoded = json.dumps(envelope, default=repr).encode()
    if len(encoded) > MAX_ENVELOPE_BYTES:
        error["details"] = {"truncated": True}
        encoded = json.dumps(envelope, default=repr).encode()
    return encoded


_child_plugins: dict[PluginRef, Plugin] = {}


def _child_plugin(ref: PluginRef) -> Plugin:
    """This child's own instance of the plugin class, made on first use and kept."""
    plugin = _child_plugins.get(ref)
    if plugin is None:
        module, qualname = ref
        try:
            plugin_class: Any = functools.reduce(
                getattr, qualname.split("."), importlib.import_module(module)
            )
            plugin = plugin_class()
            code_of(plugin_class)  # fingerprinted as imported, whatever the disk says later
        except Exception as exc:
            raise PluginUnavailableError(
                f"Plugin {module}.{qualname} cannot be loaded in its process: "
                f"{type(exc).__name__}: {exc}",
                details={"reason": f"{type(exc).__name__}: {exc}"},
            ) from exc
        _child_plugins[ref] = plugin
    return plugin


_memory_limit_mb: int | None = None


def apply_memory_limit(max_memory_mb: int | None) -> None:
    """Let this child's address space grow by at most ``max_memory_mb`` over its current size.

    Past it, allocations fail: Python raises MemoryError (a C library may abort,
    which the parent reports as a crash) and the child is retired, so whatever
    the plugin kept goes with it. The limit stays set between executions
    (setting it costs system calls); it is measured afresh whenever a plugin
    with another limit runs.
    """
    global _memory_limit_mb
    if max_memory_mb == _memory_limit_mb:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:  # lift the previous limit before measuring
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    limit = hard
    if max_memory_mb is not None:
        in_use = _address_space_bytes()
        if in_use is not None:  # no /proc: not Linux, where the limit is not enforced anyway
            limit = in_use + max_memory_mb * 1024 * 1024
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    _memory_limit_mb = max_memory_mb


def _address_space_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * resource.getpagesize()
    except OSError:
        return None
