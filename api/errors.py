"""The protocol's error types, and the union of every type an error body can have.

Execution's types (``plugins.errors.ErrorType``: what a run can fail with, and
what a job records) are the plugins' contract. These are the HTTP layer's own:
a request the protocol refuses never reaches an execution, so they never reach
a job. ``ValidationError`` and ``ServiceUnavailable`` are execution's, and the
HTTP layer answers them too.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeAlias

from plugins.errors.error_envelope import ErrorType


class ProtocolErrorType(StrEnum):
    """Errors of the request itself, answered before (or instead of) any execution."""

    CONFLICT = "Conflict"
    PARSE_ERROR = "ParseError"
    AUTHENTICATION_FAILED = "AuthenticationFailed"
    PERMISSION_DENIED = "PermissionDenied"
    NOT_FOUND = "NotFound"
    METHOD_NOT_ALLOWED = "MethodNotAllowed"
    UNSUPPORTED_MEDIA_TYPE = "UnsupportedMediaType"
    NOT_ACCEPTABLE = "NotAcceptable"
    LENGTH_REQUIRED = "LengthRequired"
    PAYLOAD_TOO_LARGE = "PayloadTooLarge"
    THROTTLED = "Throttled"


AnyErrorType: TypeAlias = ErrorType | ProtocolErrorType

# Every type a client can see, in the order the schema lists them: execution's, the
# protocol's, and last ServiceUnavailable, the catch-all both answer.
ERROR_TYPES: tuple[AnyErrorType, ...] = (
    *(kind for kind in ErrorType if kind is not ErrorType.SERVICE_UNAVAILABLE),
    *ProtocolErrorType,
    ErrorType.SERVICE_UNAVAILABLE,
)
