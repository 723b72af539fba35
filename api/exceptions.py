"""The API's exception handler: every error leaves through ``envelope_response()``.

It starts from DRF's own ``exception_handler``, which already turns Django's 404
and 403 into API errors, sets ``WWW-Authenticate`` and ``Retry-After`` and rolls
back the request's transaction; this module only says which envelope type each
error is and answers it with the envelope. An APIException says its type with an
``error_type`` attribute, and may give the envelope's ``details`` in an
``error_details`` dict (as DRF's handler reads ``wait`` and ``auth_header``);
DRF's own are listed here. Governed execution errors are the client's to fix
(400). Anything unexpected, a database outage included, is a 503 (the client
cannot fix it), logged with its traceback and never sent.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from api.errors import AnyErrorType, ProtocolErrorType
from api.responses import envelope_response
from plugins.errors.error_envelope import ErrorType, build_error_envelope
from plugins.errors.exceptions import GovernedExecutionError, InputValidationError
from plugins.validation.semantic import SEMANTIC, SemanticCode

logger = logging.getLogger(__name__)


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"
    error_type = ProtocolErrorType.PAYLOAD_TOO_LARGE


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the resource's current state."
    default_code = "conflict"
    error_type = ProtocolErrorType.CONFLICT


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The server could not complete the request; try again later."
    default_code = "service_unavailable"
    error_type = ErrorType.SERVICE_UNAVAILABLE

    def __init__(self, detail: str | None = None, *, wait: int | None = None) -> None:
        super().__init__(detail)
        self.wait = wait  # DRF's handler sends it as Retry-After


class RequestRefused(Exception):
    """A request a service refused (policy: no grant, over a quota), answered as it says.

    Raised below the API, so it is no APIException; it carries what the envelope
    needs, and ``retry_after_s`` becomes ``Retry-After``.
    """

    status_code: int = status.HTTP_400_BAD_REQUEST
    error_type: AnyErrorType = ErrorType.VALIDATION_ERROR

    def __init__(
        self,
        message: str,
        *,
        plugin: str | None = None,
        details: dict[str, Any] | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.plugin = plugin
        self.details = details or {}
        self.retry_after_s = retry_after_s


class Refused(exceptions.APIException):
    """A RequestRefused, as DRF's handler takes it."""

    def __init__(self, refusal: RequestRefused) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal
        self.status_code = refusal.status_code
        self.wait = refusal.retry_after_s  # DRF's handler sends it as Retry-After


class ExecutionRefused(exceptions.APIException):
    """A governed execution error raised before anything ran: unknown plugin, bad input.

    A 400, but for the refusals whose type has a status of its own (a payload over
    its plugin's ``max_input_bytes``: 413; a plugin at its ``max_concurrency``: 503).
    An error's ``retry_after_s`` becomes ``Retry-After``.
    """

    status_code: int = status.HTTP_400_BAD_REQUEST

    def __init__(self, error: GovernedExecutionError) -> None:
        super().__init__(error.message)
        self.error = error
        self.status_code = REFUSAL_STATUS_CODES.get(error.error_type, self.status_code)
        self.wait = getattr(error, "retry_after_s", None)  # DRF's handler sends Retry-After


REFUSAL_STATUS_CODES: dict[object, int] = {
    ProtocolErrorType.PAYLOAD_TOO_LARGE: status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    ErrorType.SERVICE_UNAVAILABLE: status.HTTP_503_SERVICE_UNAVAILABLE,
}


# DRF's own exceptions, each with its envelope type (the project's say theirs).
DRF_ERROR_TYPES: list[tuple[type[exceptions.APIException], AnyErrorType]] = [
    (exceptions.ValidationError, ErrorType.VALIDATION_ERROR),
    (exceptions.ParseError, ProtocolErrorType.PARSE_ERROR),
    (exceptions.NotAuthenticated, ProtocolErrorType.AUTHENTICATION_FAILED),
    (exceptions.AuthenticationFailed, ProtocolErrorType.AUTHENTICATION_FAILED),
    (exceptions.PermissionDenied, ProtocolErrorType.PERMISSION_DENIED),
    (exceptions.NotFound, ProtocolErrorType.NOT_FOUND),
    (exceptions.MethodNotAllowed, ProtocolErrorType.METHOD_NOT_ALLOWED),
    (exceptions.NotAcceptable, ProtocolErrorType.NOT_ACCEPTABLE),
    (exceptions.UnsupportedMediaType, ProtocolErrorType.UNSUPPORTED_MEDIA_TYPE),
    (exceptions.Throttled, ProtocolErrorType.THROTTLED),
]
# Any other APIException (a third-party one) is typed by its status code.
STATUS_ERROR_TYPES: dict[int, AnyErrorType] = {
    status.HTTP_404_NOT_FOUND: ProtocolErrorType.NOT_FOUND,
    status.HTTP_409_CONFLICT: ProtocolErrorType.CONFLICT,
    status.HTTP_413_REQUEST_ENTITY_TOO_LARGE: ProtocolErrorType.PAYLOAD_TOO_LARGE,
    status.HTTP_429_TOO_MANY_REQUESTS: ProtocolErrorType.THROTTLED,
}


def validation_errors(detail: Any, location: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    """DRF's nested error detail as a flat list of ``{location, message, type}``.

    The one shape of ``ValidationError`` details, whether a serializer or the
    plugin's own Input model refused the request.
    """
    if isinstance(detail, dict):
        return [
            error
            for key, value in detail.items()
            for error in validation_errors(value, (*location, key))
        ]
    if isinstance(detail, list):
        if all(isinstance(item, str) for item in detail):
            return [error for item in detail for error in validation_errors(item, location)]
        return [
            error
            for index, item in enumerate(detail)
            for error in validation_errors(item, (*location, index))
        ]
    if location[:1] == (api_settings.NON_FIELD_ERRORS_KEY,):  # about the body as a whole
        location = location[1:]
    code = getattr(detail, "code", None) or "invalid"
    entry: dict[str, Any] = {"location": list(location), "message": str(detail), "type": str(code)}
    if isinstance(code, SemanticCode):
        entry[SEMANTIC] = True
    return [entry]


def exception_type(exc: Exception) -> AnyErrorType:
    """The envelope type the handler reports ``exc`` as."""
    api_exception = _as_api_exception(exc)
    if isinstance(api_exception, exceptions.APIException):
        return _describe(api_exception)[0]
    return ErrorType.SERVICE_UNAVAILABLE


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's handler, with every error in the envelope and every unexpected one a 503."""
    if isinstance(exc, DatabaseError):
        logger.exception("Database error while serving an API request", exc_info=exc)
    exc = _as_api_exception(exc)
    response = drf_exception_handler(exc, context)
    if response is None:  # not an APIException: a bug, never shown to the client
        logger.exception("Unexpected error while serving an API request", exc_info=exc)
        exc = ServiceUnavailable()
        response = drf_exception_handler(exc, context)
        assert response is not None
    error_type, message, details, plugin = _describe(cast(exceptions.APIException, exc))
    envelope = build_error_envelope(error_type, message, details=details, plugin=plugin)
    status_code = response.status_code
    if status_code >= 500:  # a handler-level fault the client cannot fix
        status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return envelope_response(envelope, status_code, headers=response.headers)


def _as_api_exception(exc: Exception) -> Exception:
    """``exc`` as the APIException it is reported as (DRF's handler does the first two too)."""
    if isinstance(exc, Http404):
        return exceptions.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied()
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge()
    if isinstance(exc, GovernedExecutionError):
        return ExecutionRefused(exc)
    if isinstance(exc, RequestRefused):
        return Refused(exc)
    if isinstance(exc, DatabaseError):
        return ServiceUnavailable("The database is unavailable; try again later.", wait=5)
    return exc


def _describe(exc: exceptions.APIException) -> tuple[AnyErrorType, str, Any, str | None]:
    """The envelope's type, message, details and plugin for an API exception."""
    if isinstance(exc, ExecutionRefused):
        error = exc.error
        kind = cast(AnyErrorType, error.error_type)
        if isinstance(error, InputValidationError):
            return kind, error.message, _input_errors(error), error.plugin
        return kind, error.message, error.details, error.plugin
    if isinstance(exc, Refused):
        refusal = exc.refusal
        return refusal.error_type, refusal.message, refusal.details, refusal.plugin
    if isinstance(exc, exceptions.ValidationError):
        return (
            ErrorType.VALIDATION_ERROR,
            "The request is invalid",
            {"errors": validation_errors(exc.detail)},
            None,
        )
    declared = getattr(exc, "error_type", None)  # only a type of the closed set counts
    error_type: AnyErrorType | None = (
        declared
        if isinstance(declared, ErrorType | ProtocolErrorType)
        else next((kind for cls, kind in DRF_ERROR_TYPES if isinstance(exc, cls)), None)
    )
    if error_type is None:
        fallback = ErrorType.SERVICE_UNAVAILABLE if exc.status_code >= 500 else None
        error_type = STATUS_ERROR_TYPES.get(exc.status_code, fallback or ErrorType.VALIDATION_ERROR)
    details = getattr(exc, "error_details", None)
    return error_type, str(exc.detail), details if isinstance(details, dict) else {}, None


def _input_errors(error: InputValidationError) -> dict[str, Any]:
    """The plugin's Input errors, located from the request body's root (under ``payload``)."""
    details = error.details
    errors = details.get("errors") if isinstance(details, dict) else None
    if not isinstance(errors, list) or not all(isinstance(item, dict) for item in errors):
        errors = [{"location": [], "message": error.message, "type": "invalid"}]
    return {
        "errors": [
            {
                "location": ["payload", *item.get("location", [])],
                "message": str(item.get("message", "")),
                "type": str(item.get("type", "invalid")),
                **({"semantic": True} if item.get("semantic") is True else {}),
            }
            for item in errors
        ]
    }
