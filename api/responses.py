"""``envelope_response()``: the one way an error leaves over HTTP.

Every error body is ``{"detail": <envelope.error>}``, never the envelope's
``_internal`` part (the traceback). DRF views answer with DRF's ``Response``
(rendered by the negotiated renderer); what Django answers outside DRF (its own
error pages, the WSGI middleware) passes ``response_class=JsonResponse``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, overload

from django.http import JsonResponse
from rest_framework.response import Response

from plugins.errors.error_envelope import ErrorEnvelope

_AnyResponse = TypeVar("_AnyResponse", Response, JsonResponse)


@overload
def envelope_response(
    envelope: ErrorEnvelope, status: int, *, headers: Mapping[str, str] | None = None
) -> Response: ...


@overload
def envelope_response(
    envelope: ErrorEnvelope,
    status: int,
    *,
    headers: Mapping[str, str] | None = None,
    response_class: type[_AnyResponse],
) -> _AnyResponse: ...


def envelope_response(
    envelope: ErrorEnvelope,
    status: int,
    *,
    headers: Mapping[str, str] | None = None,
    response_class: Any = Response,
) -> Any:
    """The response carrying ``envelope``'s public part, with ``status`` and ``headers``."""
    return response_class({"detail": envelope["error"]}, status=status, headers=headers)
