"""WSGI middleware for request bodies sent without a Content-Length."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

from django.http import JsonResponse

from api.errors import ProtocolErrorType
from api.responses import envelope_response
from plugins.errors.error_envelope import build_error_envelope

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ChunkedRequestBody:
    """Gives Django the length of a chunked request body, or answers 411.

    Django reads exactly ``CONTENT_LENGTH`` bytes, so a chunked body would be read
    as empty and the request fail with a misleading error. A server that decodes
    the chunks itself says so with ``wsgi.input_terminated`` (gunicorn does): the
    body is read here, at most one byte past ``max_bytes`` so Django's own size
    check still answers 413. Any other server (runserver) gets a clear 411.
    """

    def __init__(self, app: WSGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not environ.get("CONTENT_LENGTH"):
            if not environ.get("wsgi.input_terminated"):
                return _length_required(start_response)
            body = environ["wsgi.input"].read(self.max_bytes + 1)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)


def _length_required(start_response: Callable[..., Any]) -> list[bytes]:
    envelope = build_error_envelope(
        ProtocolErrorType.LENGTH_REQUIRED,
        "This server cannot read a chunked request body; send a Content-Length.",
    )
    response = envelope_response(envelope, 411, response_class=JsonResponse)
    start_response(
        f"{response.status_code} {response.reason_phrase}",
        [*response.items(), ("Content-Length", str(len(response.content)))],
    )
    return [response.content]
