"""DRF exception handler: every API error leaves as ``{"detail": <envelope.error>}``.

Protocol errors keep their status code; governed execution errors map to the
code that fits them; anything unexpected, a database outage included, is a 503
(the client cannot fix it) and is logged with its traceback, never sent.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import DatabaseError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

from plugins.errors.error_envelope import ErrorType, build_error_envelope
from plugins.errors.exceptions import GovernedExecutionError

logger = logging.getLogger(__name__)

# Most specific first: NotAuthenticated is an AuthenticationFailed-like 401 in DRF.
PROTOCOL_ERROR_TYPES: list[tuple[type[exceptions.APIException], ErrorType]] = [
    (exceptions.ParseError, ErrorType.PARSE_ERROR),
    (exceptions.NotAuthenticated, ErrorType.AUTHENTICATION_FAILED),
    (exceptions.AuthenticationFailed, ErrorType.AUTHENTICATION_FAILED),
    (exceptions.PermissionDenied, ErrorType.PERMISSION_DENIED),
    (exceptions.NotFound, ErrorType.NOT_FOUND),
    (exceptions.MethodNotAllowed, ErrorType.METHOD_NOT_ALLOWED),
    (exceptions.UnsupportedMediaType, ErrorType.UNSUPPORTED_MEDIA_TYPE),
    (exceptions.NotAcceptable, ErrorType.UNSUPPORTED_MEDIA_TYPE),
    (exceptions.Throttled, ErrorType.THROTTLED),
    (exceptions.ValidationError, ErrorType.VALIDATION_ERROR),
]
# Other APIExceptions (a project's own, e.g. the 413 of the size-limited parser).
STATUS_ERROR_TYPES = {
    status.HTTP_413_REQUEST_ENTITY_TOO_LARGE: ErrorType.PAYLOAD_TOO_LARGE,
    status.HTTP_429_TOO_MANY_REQUESTS: ErrorType.THROTTLED,
    status.HTTP_404_NOT_FOUND: ErrorType.NOT_FOUND,
    status.HTTP_409_CONFLICT: ErrorType.CONFLICT,
}


def error_response(
    error_type: ErrorType,
    message: str,
    status_code: int,
    *,
    details: Any = None,
    plugin: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    envelope = build_error_envelope(error_type, message, details=details, plugin=plugin)
    return Response({"detail": envelope["error"]}, status=status_code, headers=headers)


def _api_exception_response(exc: exceptions.APIException) -> Response:
    error_type = next(
        (kind for cls, kind in PROTOCOL_ERROR_TYPES if isinstance(exc, cls)),
        STATUS_ERROR_TYPES.get(
            exc.status_code,
            ErrorType.SERVICE_UNAVAILABLE if exc.status_code >= 500 else ErrorType.VALIDATION_ERROR,
        ),
    )
    if isinstance(exc, exceptions.ValidationError):
        message, details = "The request is invalid", exc.detail
    else:
        message, details = str(exc.detail), {}
    headers: dict[str, str] = {}
    wait = getattr(exc, "wait", None)
    if isinstance(exc, exceptions.Throttled) and wait is not None:
        headers["Retry-After"] = str(int(wait))
    status_code = exc.status_code if exc.status_code < 500 else 503
    return error_response(error_type, message, status_code, details=details, headers=headers)


def envelope_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.APIException):
        response = _api_exception_response(exc)
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            request = context.get("request")
            authenticators = getattr(request, "authenticators", None)
            if authenticators:
                header = authenticators[0].authenticate_header(request)
                if header:
                    response["WWW-Authenticate"] = header
        return response
    if isinstance(exc, GovernedExecutionError):
        # Execution errors (unknown plugin, invalid payload, ...) are the client's to fix.
        return error_response(
            exc.error_type,
            exc.message,
            status.HTTP_400_BAD_REQUEST,
            details=exc.details,
            plugin=exc.plugin,
        )
    if isinstance(exc, DatabaseError):
        logger.exception("Database error while serving an API request")
        return error_response(
            ErrorType.SERVICE_UNAVAILABLE,
            "The database is unavailable; try again later",
            status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    logger.exception("Unexpected error while serving an API request")
    return error_response(
        ErrorType.SERVICE_UNAVAILABLE,
        "The server could not complete the request; try again later",
        status.HTTP_503_SERVICE_UNAVAILABLE,
    )
