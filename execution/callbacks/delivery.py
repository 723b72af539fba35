"""One POST of a callback, with the stdlib's http.client, to an address that was checked.

The connection goes to the address :func:`destinations.resolve_destination` checked,
not to whatever the name resolves to a moment later (DNS rebinding); HTTPS still
verifies the certificate against the URL's host name. Redirects are never followed
(a 3xx is a failed attempt).

One deadline bounds the whole attempt: every socket operation (connect, TLS
handshake, sending, each read) gets what is left of ``timeout_s``, so a receiver
that trickles its answer a byte at a time cannot hold the worker longer. At most
``MAX_ADDRESSES`` of the checked addresses are tried, and only the status line is
read (at most ``MAX_STATUS_LINE_BYTES``, with any ``1xx`` interim answers before it):
the headers and body of the answer are never needed.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

from execution.callbacks.destinations import Destination

MAX_ADDRESSES = 2
MAX_STATUS_LINE_BYTES = 8 * 1024
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


class _Deadline:
    """What is left of one attempt's time, for each socket operation in turn."""

    def __init__(self, timeout_s: float) -> None:
        self._ends = time.monotonic() + timeout_s

    def left(self) -> float:
        """Seconds left; TimeoutError once none are."""
        left = self._ends - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        return left


def post(
    destination: Destination, body: bytes, headers: dict[str, str], *, timeout_s: float
) -> Delivered:
    """POST ``body`` to ``destination`` within ``timeout_s`` in all.

    Tries the first ``MAX_ADDRESSES`` checked addresses in turn until one connects.
    """
    started = time.monotonic()
    deadline = _Deadline(timeout_s)
    error = "no address to connect to"
    for address in destination.addresses[:MAX_ADDRESSES]:
        connection_class = (
            _PinnedHTTPSConnection if destination.scheme == "https" else _PinnedConnection
        )
        try:
            connection = connection_class(
                destination.host, destination.port, address=address, timeout=deadline.left()
            )
            try:
                connection.connect()  # the TLS handshake too, within the same timeout
            except OSError as exc:  # this address does not answer: the next one may
                error = _describe(exc)
                continue
            try:
                assert connection.sock is not None
                connection.sock.settimeout(deadline.left())  # sendall: in all, not per chunk
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
                status = _read_status(connection.sock, deadline)
            finally:
                connection.close()
        except (OSError, http.client.HTTPException) as exc:
            return Delivered(None, _describe(exc), _ms(started))
        return Delivered(status, _status_error(status), _ms(started))
    return Delivered(None, error, _ms(started))


STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])(?: [^\r\n]*)?\r?\n")


def _read_status(sock: socket.socket, deadline: _Deadline) -> int:
    """The final status code of the answer on ``sock``, reading no more than it needs.

    Each read waits only for what is left of the attempt's time. ``1xx`` interim
    answers (status line and headers) are skipped; the final one's headers are not read.
    """
    received = b""
    while True:
        match = STATUS_LINE.match(received)
        if match is not None:
            status = int(match.group(1))
            if status >= 200:
                return status
            interim_end = received.find(b"\r\n\r\n")
            if interim_end >= 0:
                received = received[interim_end + 4 :]
                continue
        elif b"\n" in received or not b"HTTP/1.".startswith(received[:7]):
            raise http.client.BadStatusLine(received[:80].decode("latin-1", "replace"))
        if len(received) >= MAX_STATUS_LINE_BYTES:
            raise http.client.LineTooLong("status line")
        sock.settimeout(deadline.left())
        chunk = sock.recv(MAX_STATUS_LINE_BYTES - len(received))
        if not chunk:
            raise http.client.RemoteDisconnected("the receiver closed the connection unanswered")
        received += chunk


def _status_error(status: int) -> str:
    if 200 <= status < 300:
        return ""
    if 300 <= status < 400:
        return f"HTTP {status}: redirects are not followed"
    return f"HTTP {status}"


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000.0, 3)
