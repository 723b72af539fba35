"""One POST of a callback, with the stdlib's http.client, to an address that was checked.

The connection goes to the address :func:`destinations.resolve_destination` checked,
not to whatever the name resolves to a moment later (DNS rebinding); HTTPS still
verifies the certificate against the URL's host name. Redirects are never followed
(a 3xx is a failed attempt), the timeout bounds the connect and each read, and at
most ``MAX_RESPONSE_BYTES`` of the answer are read.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

from execution.callbacks.destinations import Destination

MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "governed-plugin-execution-callbacks/1"


@dataclass(frozen=True)
class Delivered:
    """What one attempt got: the receiver's status, or the error that stopped it."""

    status_code: int | None
    error: str
    duration_ms: float

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _pin(connection: http.client.HTTPConnection, address: str) -> None:
    """Make ``connection`` open its socket to ``address`` instead of resolving its host.

    http.client opens sockets through the instance's ``_create_connection`` (set to
    ``socket.create_connection`` by its ``__init__``); the host name still goes in the
    ``Host`` header and, for HTTPS, in SNI and the certificate check.
    """

    def create_connection(_target: Any, timeout: Any, source: Any = None) -> socket.socket:
        return socket.create_connection((address, connection.port), timeout, source)

    connection._create_connection = create_connection  # type: ignore[attr-defined]


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP connection to ``address``, whatever its host name resolves to now."""

    def __init__(self, host: str, port: int, *, address: str, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        _pin(self, address)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to ``address``; the certificate is checked against the URL's host name."""

    def __init__(self, host: str, port: int, *, address: str, **kwargs: Any) -> None:
        super().__init__(host, port, context=ssl.create_default_context(), **kwargs)
        _pin(self, address)


def post(
    destination: Destination, body: bytes, headers: dict[str, str], *, timeout_s: float
) -> Delivered:
    """POST ``body`` to ``destination``, trying its checked addresses in turn until one connects."""
    started = time.monotonic()
    error = "no address to connect to"
    for address in destination.addresses:
        connection_class = (
            _PinnedHTTPSConnection if destination.scheme == "https" else _PinnedConnection
        )
        connection = connection_class(
            destination.host, destination.port, address=address, timeout=timeout_s
        )
        try:
            try:
                connection.connect()
            except OSError as exc:  # this address does not answer: the next one may
                error = _describe(exc)
                continue
            connection.request(
                "POST",
                destination.target,
                body=body,
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": USER_AGENT,
                    **headers,
                },
            )
            response = connection.getresponse()
            response.read(MAX_RESPONSE_BYTES)  # bounded; the answer itself is not kept
            return Delivered(response.status, _status_error(response), _ms(started))
        except (OSError, http.client.HTTPException) as exc:
            return Delivered(None, _describe(exc), _ms(started))
        finally:
            connection.close()
    return Delivered(None, error, _ms(started))


def _status_error(response: http.client.HTTPResponse) -> str:
    if 200 <= response.status < 300:
        return ""
    if 300 <= response.status < 400:
        return f"HTTP {response.status}: redirects are not followed"
    return f"HTTP {response.status}"


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000.0, 3)
