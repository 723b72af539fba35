"""Typed errors of the governed execution path.

Each error that can reach a client carries its envelope ``error_type``; ToolRunner
turns any of them (and any other exception) into an envelope.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from plugins.errors.error_envelope import ErrorEnvelope, ErrorType, build_error_envelope

if TYPE_CHECKING:
    from plugins.runtime.provenance import RanCode


class GovernedExecutionError(Exception):
    """Base class of the errors ToolRunner knows how to report."""

    error_type: StrEnum = ErrorType.PLUGIN_EXECUTION_ERROR
    """Its envelope type: an ErrorType, or for a request refused before anything ran,
    the protocol type the HTTP layer answers it with (api.errors)."""
    ran: RanCode | None = None
    """What code ran, as its process reported it, when the failure came from there."""

    def __init__(self, message: str, *, details: Any = None, plugin: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details if details is not None else {}
        self.plugin = plugin


class PluginContractError(Exception):
    """A plugin class does not satisfy the contract; raised at registration."""


class UngovernedExecutionError(RuntimeError):
    """A plugin's ``run`` was called outside ``ToolRunner.run``."""


class PluginNotFoundError(GovernedExecutionError):
    error_type = ErrorType.PLUGIN_NOT_FOUND


class PluginUnavailableError(GovernedExecutionError):
    error_type = ErrorType.PLUGIN_UNAVAILABLE


class InputValidationError(GovernedExecutionError):
    error_type = ErrorType.VALIDATION_ERROR


class PluginExecutionError(GovernedExecutionError):
    error_type = ErrorType.PLUGIN_EXECUTION_ERROR


class OutputValidationError(GovernedExecutionError):
    error_type = ErrorType.OUTPUT_VALIDATION_ERROR


class PluginTimeoutError(GovernedExecutionError):
    error_type = ErrorType.PLUGIN_TIMEOUT


class PluginCrashedError(GovernedExecutionError):
    """The process running the plugin died: any exit code, a signal, the OOM killer."""

    error_type = ErrorType.PLUGIN_CRASHED


class PluginResourceLimitError(GovernedExecutionError):
    """The plugin went past a resource limit other than time (memory)."""

    error_type = ErrorType.PLUGIN_RESOURCE_LIMIT


class ExecutionCancelledError(GovernedExecutionError):
    """Somebody cancelled the job; the plugin was stopped."""

    error_type = ErrorType.CANCELLED


class WorkerLostError(GovernedExecutionError):
    """The process running the execution went away (or is handing it back) before it ended."""

    error_type = ErrorType.WORKER_LOST


class PluginVersionMismatchError(GovernedExecutionError):
    """The client asked for a version of the plugin other than the one installed; nothing ran."""

    error_type = ErrorType.PLUGIN_VERSION_MISMATCH


class ReportedExecutionError(GovernedExecutionError):
    """A failure already turned into an envelope elsewhere (in a plugin's child process)."""

    def __init__(self, envelope: ErrorEnvelope) -> None:
        error = envelope["error"]
        super().__init__(error["message"], details=error["details"], plugin=error["plugin"])
        self.envelope = envelope


def envelope_for(exc: BaseException, plugin: str | None) -> ErrorEnvelope:
    """The envelope of any exception met while executing a plugin.

    A governed error keeps its type and message (one reported from a child process,
    its whole envelope, named after ``plugin``). Anything else is the plugin's
    fault and is reported by class name only, since messages can carry secrets
    (the traceback, kept under ``_internal``, has it all).
    """
    if isinstance(exc, ReportedExecutionError):  # built where it happened: only relabelled
        error: Any = {**exc.envelope["error"], "plugin": plugin}
        reported: ErrorEnvelope = {"error": error}
        if "_internal" in exc.envelope:
            reported["_internal"] = exc.envelope["_internal"]
        return reported
    if isinstance(exc, GovernedExecutionError):
        return build_error_envelope(
            exc.error_type, exc.message, details=exc.details, plugin=plugin, exc=exc
        )
    kind = type(exc).__name__
    if isinstance(exc, Exception):
        message = f"Plugin {plugin!r} failed with {kind}"
    else:  # SystemExit, KeyboardInterrupt raised by the plugin itself
        message = f"Plugin stopped with {kind}"
    return build_error_envelope(
        ErrorType.PLUGIN_EXECUTION_ERROR,
        message,
        details={"exception": kind},
        plugin=plugin,
        exc=exc,
    )
