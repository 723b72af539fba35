"""JSON envelopes for errors Django answers itself (outside DRF) under the API prefixes."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt

from plugins.errors.error_envelope import ErrorType, build_error_envelope

logger = logging.getLogger(__name__)

API_PREFIXES = ("/v1/", "/api/")


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIXES)


def _envelope(error_type: ErrorType, message: str, status: int) -> JsonResponse:
    envelope = build_error_envelope(error_type, message)
    return JsonResponse({"detail": envelope["error"]}, status=status)


@csrf_exempt  # a POST to a wrong URL is a 404, not a CSRF failure
def api_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Unknown URL under the API, whatever the method: a NotFound envelope, in DEBUG too."""
    return _envelope(ErrorType.NOT_FOUND, f"No endpoint at {request.path[:200]}", 404)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return api_not_found(request, exception)
    return defaults.page_not_found(request, exception)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return _envelope(ErrorType.VALIDATION_ERROR, "The request is invalid", 400)
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return _envelope(ErrorType.PERMISSION_DENIED, "Permission denied", 403)
    return defaults.permission_denied(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return _envelope(
            ErrorType.SERVICE_UNAVAILABLE, "The server could not complete the request", 503
        )
    return defaults.server_error(request)
