"""The error envelope: the one shape every failure takes.

ToolRunner returns it as ``error``; the API returns its ``error`` part under
``detail``. ``_internal`` (the traceback) is for the server side only.
"""

from __future__ import annotations

import json
import traceback as traceback_module
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NotRequired, TypedDict

from plugins.validation.json_values import storable_copy, storable_text


class ErrorType(StrEnum):
    """What a governed execution can fail with: the types a job's error can have.

    The HTTP layer adds its protocol's own (``api.errors.ProtocolErrorType``);
    together they are the closed set of types a client can see.
    """

    VALIDATION_ERROR = "ValidationError"
    PLUGIN_NOT_FOUND = "PluginNotFound"
    PLUGIN_UNAVAILABLE = "PluginUnavailable"
    PLUGIN_EXECUTION_ERROR = "PluginExecutionError"
    OUTPUT_VALIDATION_ERROR = "OutputValidationError"
    PLUGIN_TIMEOUT = "PluginTimeout"
    PLUGIN_CRASHED = "PluginCrashed"
    PLUGIN_RESOURCE_LIMIT = "PluginResourceLimit"
    WORKER_LOST = "WorkerLost"
    CANCELLED = "Cancelled"
    PLUGIN_VERSION_MISMATCH = "PluginVersionMismatch"
    # A run refused by its user's quota (execution/policy): never a job's error.
    QUOTA_EXCEEDED = "QuotaExceeded"
    SERVICE_UNAVAILABLE = "ServiceUnavailable"


# Every ErrorType a job's error can have, in the order the job filters offer them.
JOB_ERROR_TYPES = (
    ErrorType.PLUGIN_NOT_FOUND,
    ErrorType.PLUGIN_UNAVAILABLE,
    ErrorType.VALIDATION_ERROR,
    ErrorType.PLUGIN_EXECUTION_ERROR,
    ErrorType.OUTPUT_VALIDATION_ERROR,
    ErrorType.PLUGIN_TIMEOUT,
    ErrorType.PLUGIN_CRASHED,
    ErrorType.PLUGIN_RESOURCE_LIMIT,
    ErrorType.WORKER_LOST,
    ErrorType.CANCELLED,
    ErrorType.PLUGIN_VERSION_MISMATCH,
    ErrorType.SERVICE_UNAVAILABLE,
)


class ErrorBody(TypedDict):
    type: str
    message: str
    details: Any
    plugin: str | None
    timestamp: str


class InternalInfo(TypedDict):
    traceback: str


class ErrorEnvelope(TypedDict):
    error: ErrorBody
    _internal: NotRequired[InternalInfo]


def build_error_envelope(
    error_type: StrEnum,
    message: str,
    *,
    details: Any = None,
    plugin: str | None = None,
    exc: BaseException | None = None,
) -> ErrorEnvelope:
    """Build an envelope; the traceback of ``exc`` (if any) goes under ``_internal``.

    ``error_type`` is an ``ErrorType``, or (from the HTTP layer) a protocol error type.
    """
    envelope: ErrorEnvelope = {
        "error": {
            "type": str(error_type),
            "message": storable_text(str(message)),
            "details": _as_object(details),
            "plugin": plugin,
            "timestamp": datetime.now(UTC).isoformat(),
        }
    }
    if exc is not None:
        envelope["_internal"] = {
            "traceback": "".join(traceback_module.format_exception(exc)),
        }
    return envelope


def _as_object(details: Any) -> dict[str, Any]:
    """Details are always an object: anything else a plugin reports goes under ``value``."""
    if details is None:
        return {}
    safe = json_safe(details)
    return safe if isinstance(safe, dict) else {"value": safe}


def json_safe(value: Any) -> Any:
    """``value`` if it is plain, storable JSON data, else a copy that is.

    Details can come from plugin code; the envelope must always be storable and
    sendable: anything that is not JSON becomes its ``repr``, and text or numbers
    no database can store are replaced.
    """
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        text = json.dumps(value, default=repr, skipkeys=True)
        value = json.loads(text, parse_constant=str)  # NaN and Infinity become strings
    return storable_copy(value)
