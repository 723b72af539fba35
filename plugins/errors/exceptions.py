"""Typed errors of the governed execution path.

Each error that can reach a client carries its envelope ``error_type``; ToolRunner
turns any of them (and any other exception) into an envelope.
"""

from __future__ import annotations

from typing import Any

from plugins.errors.error_envelope import ErrorType


class GovernedExecutionError(Exception):
    """Base class of the errors ToolRunner knows how to report."""

    error_type: ErrorType = ErrorType.PLUGIN_EXECUTION_ERROR

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
