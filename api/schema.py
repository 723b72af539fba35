"""The OpenAPI schema, made to tell the truth.

drf-spectacular documents the views; this module adds what it cannot know:

* every error status an operation can answer, each with the error envelope;
* the envelope's ``details``, one shape per error type (a ``oneOf`` on ``type``).

What the schema says about one app's endpoints is that app's (the execution
request's per-plugin body: ``execution/api/schema.py``).
"""

from __future__ import annotations

import functools
from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework.permissions import AllowAny

from api.errors import ERROR_TYPES, AnyErrorType, ProtocolErrorType
from plugins.errors.error_envelope import ErrorType

JSON = dict[str, Any]


def _object(**properties: JSON) -> JSON:
    """An object whose listed properties are all optional (a report says what applies)."""
    return {"type": "object", "properties": properties}


_LOCATED_ERRORS: JSON = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "location": {
                "type": "array",
                "items": {"type": ["string", "integer"]},
                "description": "Path to the value from the root of the request body "
                "(or of the plugin's result).",
            },
            "message": {"type": "string"},
            "type": {"type": "string", "description": "A machine-readable error code."},
            "semantic": {
                "type": "boolean",
                "const": True,
                "description": "Present (true) when the value satisfies the published schema "
                "but failed a check JSON Schema cannot state (an image that must decode, a "
                "checksum). Absent: the schema itself refuses the value.",
            },
        },
        "required": ["location", "message", "type"],
    },
}
_STRING: JSON = {"type": "string"}
_INTEGER: JSON = {"type": "integer"}

# The one shape of ``details`` per error type. Each may also say {"truncated": true}
# when a plugin's report was too large to keep.
ERROR_DETAILS: dict[AnyErrorType, JSON] = {
    ErrorType.VALIDATION_ERROR: {**_object(errors=_LOCATED_ERRORS), "required": ["errors"]},
    ErrorType.PLUGIN_UNAVAILABLE: _object(reason=_STRING),
    ErrorType.PLUGIN_EXECUTION_ERROR: _object(
        exception={**_STRING, "description": "The class name of what the plugin raised."}
    ),
    ErrorType.OUTPUT_VALIDATION_ERROR: _object(
        errors=_LOCATED_ERRORS,
        returned_type=_STRING,
        result_bytes=_INTEGER,
        max_result_bytes=_INTEGER,
        reason=_STRING,
    ),
    ErrorType.PLUGIN_TIMEOUT: _object(timeout_s={"type": "number"}),
    ErrorType.PLUGIN_CRASHED: _object(
        exit_code={"type": ["integer", "null"]},
        signal={**_STRING, "description": "The signal that killed the process, e.g. SIGKILL."},
        exception=_STRING,
    ),
    ErrorType.PLUGIN_RESOURCE_LIMIT: _object(max_memory_mb=_INTEGER),
    ErrorType.WORKER_LOST: _object(
        lease_expired_at={"type": ["string", "null"], "format": "date-time"},
        attempt=_INTEGER,
        max_attempts=_INTEGER,
    ),
    ErrorType.CANCELLED: _object(cancelled_by=_STRING, status_before=_STRING),
    ErrorType.PLUGIN_VERSION_MISMATCH: _object(
        requested={**_STRING, "description": "The version the request asked for."},
        installed={**_STRING, "description": "The version that is installed and would run."},
    ),
    ProtocolErrorType.THROTTLED: _object(
        scope={
            **_STRING,
            "description": "What counts together: execution (running or submitting plugins), "
            "cancel (cancelling jobs) or failed_authentication (per client address).",
        },
        limit={
            **_STRING,
            "description": "The rate that refused: burst, sustained or failed_authentication.",
        },
        rate={**_STRING, "description": 'As configured, e.g. "60/min".'},
        retry_after_s={**_INTEGER, "description": "Seconds to wait: the Retry-After header."},
    ),
    ErrorType.QUOTA_EXCEEDED: _object(
        quota={
            "type": "string",
            "enum": ["max_active_jobs", "max_sync_runs", "daily_stored_bytes", "daily_execution_s"],
        },
        limit=_INTEGER,
        used={"type": "number"},
        resets_at={
            "type": ["string", "null"],
            "format": "date-time",
            "description": "When a daily budget starts again (null for a cap: when a run ends).",
        },
        resets=_STRING,
    ),
    ProtocolErrorType.PERMISSION_DENIED: _object(
        plugin={**_STRING, "description": "The plugin the caller holds no grant of."},
        access={**_STRING, "description": "PLUGIN_ACCESS: restricted or open."},
    ),
    ErrorType.SERVICE_UNAVAILABLE: _object(
        database=_STRING,
        job_id={**_STRING, "format": "uuid", "description": "The job whose outcome is pending."},
        plugins=_object(available=_INTEGER, unavailable=_INTEGER),
    ),
}
RETRY_AFTER: JSON = {
    "schema": {"type": "integer", "minimum": 1},
    "required": True,
    "description": "Seconds until the request would be allowed.",
}
NO_DETAILS: JSON = {"type": "object", "description": "Nothing more to say: {}."}


@functools.cache  # the same for every operation of every schema this process serves
def error_components() -> dict[str, JSON]:
    """The envelope's schemas: one per error type, their union, and the response body."""
    components: dict[str, JSON] = {}
    mapping: dict[str, str] = {}
    for error_type in ERROR_TYPES:
        name = f"{error_type.value}Error"
        mapping[error_type.value] = f"#/components/schemas/{name}"
        components[name] = {
            "type": "object",
            "properties": {
                "type": {"type": "string", "const": error_type.value},
                "message": {"type": "string"},
                "details": ERROR_DETAILS.get(error_type, NO_DETAILS),
                "plugin": {"type": ["string", "null"]},
                "timestamp": {"type": "string", "format": "date-time"},
            },
            "required": ["type", "message", "details", "plugin", "timestamp"],
        }
    components["Error"] = {
        "oneOf": [{"$ref": ref} for ref in mapping.values()],
        "discriminator": {"propertyName": "type", "mapping": mapping},
    }
    components["ErrorResponse"] = {
        "type": "object",
        "properties": {"detail": {"$ref": "#/components/schemas/Error"}},
        "required": ["detail"],
    }
    return components


def register_component(auto_schema: AutoSchema, name: str, schema: JSON) -> JSON:
    """Register ``schema`` as the component ``name`` (once) and return a reference to it."""
    component = ResolvedComponent(
        name=name, type=ResolvedComponent.SCHEMA, schema=schema, object=name
    )
    auto_schema.registry.register_on_missing(component)
    return {"$ref": f"#/components/schemas/{name}"}


def error_reference(auto_schema: AutoSchema) -> JSON:
    """A reference to the error response body, its components registered once."""
    for name, schema in error_components().items():
        register_component(auto_schema, name, schema)
    return {"$ref": "#/components/schemas/ErrorResponse"}


class GovernedAutoSchema(AutoSchema):
    """Documents every error status an operation can answer, with the envelope."""

    def _get_response_bodies(self, direction: Any = "response") -> JSON:
        responses: JSON = super()._get_response_bodies(direction)
        reference = error_reference(self)
        for status_code, description in self._error_statuses().items():
            responses.setdefault(str(status_code), {"description": description})
        for code, response in responses.items():
            if code.startswith(("4", "5")):  # the view's own ones too: always the envelope
                response["content"] = {"application/json": {"schema": reference}}
        if "429" in responses:
            responses["429"].setdefault("headers", {})["Retry-After"] = RETRY_AFTER
        return responses

    def _get_filter_parameters(self) -> list[JSON]:
        parameters: list[JSON] = super()._get_filter_parameters()
        for parameter in parameters:
            parameter["allowEmptyValue"] = True  # django-filter: an empty value filters nothing
        return parameters

    def _error_statuses(self) -> dict[int, str]:
        statuses = {
            404: "NotFound: no such resource (or page).",
            406: "NotAcceptable: the Accept header or `?format=` asks for something but JSON.",
            503: "ServiceUnavailable: the database (or another dependency) is down.",
        }
        if not any(isinstance(p, AllowAny) for p in self.view.get_permissions()):
            statuses[401] = "AuthenticationFailed: no or invalid credentials."
            statuses[403] = "PermissionDenied."
            statuses[429] = (
                "Throttled: too many failed authentications from this address; "
                "wait for Retry-After seconds."
            )
        if self.view.get_throttles():
            statuses[429] = (
                "Throttled: the user's burst or sustained rate of these requests is used up, "
                "or too many failed authentications from this address; wait for Retry-After "
                "seconds (`details` says which limit)."
            )
        if self.method == "POST":
            statuses[411] = "LengthRequired: a chunked body this server cannot read."
        if self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None:
            statuses[400] = "ValidationError or ParseError: the body is invalid."
            statuses[413] = "PayloadTooLarge: the body exceeds API_MAX_REQUEST_BYTES."
            statuses[415] = "UnsupportedMediaType: the body is not application/json."
        if self._is_list_view() and (self.get_filter_backends() or self._get_paginator()):
            statuses[400] = "ValidationError: a query parameter is invalid."
        return statuses


def document_paths_without_trailing_slash(endpoints: list[Any], **kwargs: Any) -> list[Any]:
    """Routes accept an optional trailing slash ("/?"); document the canonical form without it."""
    return [
        (path.rstrip("/") if path_regex.endswith("/?$") else path, path_regex, method, callback)
        for path, path_regex, method, callback in endpoints
    ]
