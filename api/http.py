"""JSON envelopes for errors Django answers itself (outside DRF) under the API prefixes."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt

from api.errors import ProtocolErrorType
from api.responses import envelope_response
from plugins.errors.error_envelope import ErrorType, build_error_envelope

API_PREFIXES = ("/v1/", "/api/")


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIXES)


@csrf_exempt  # a POST to a wrong URL is a 404, not a CSRF failure
def api_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Unknown URL under the API, whatever the method: a NotFound envelope, in DEBUG too."""
    envelope = build_error_envelope(
        ProtocolErrorType.NOT_FOUND, f"No endpoint at {request.path[:200]}"
    )
    return envelope_response(envelope, 404, response_class=JsonResponse)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return api_not_found(request, exception)
    return defaults.page_not_found(request, exception)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        envelope = build_error_envelope(ErrorType.VALIDATION_ERROR, "The request is invalid")
        return envelope_response(envelope, 400, response_class=JsonResponse)
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        envelope = build_error_envelope(ProtocolErrorType.PERMISSION_DENIED, "Permission denied")
        return envelope_response(envelope, 403, response_class=JsonResponse)
    return defaults.permission_denied(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        envelope = build_error_envelope(
            ErrorType.SERVICE_UNAVAILABLE, "The server could not complete the request"
        )
        return envelope_response(envelope, 503, response_class=JsonResponse)
    return defaults.server_error(request)
