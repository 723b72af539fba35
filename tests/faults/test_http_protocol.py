"""HTTP framing through a real gunicorn (DEBUG=0): chunked bodies, size limits, odd JSON, URLs.

The Django test client builds the WSGI environ itself, so it can show neither how
gunicorn hands over a chunked body nor what reaches the client when the server stops
reading a body past its limit. These tests speak HTTP/1.1 over raw sockets to control
the framing, then look at the database the server shares with the test.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import socket
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from PIL import Image

from api.wsgi import ChunkedRequestBody
from execution.models import Job, JobStatus
from tests.faults.conftest import Server

pytestmark = pytest.mark.any_database

MAX_BYTES = 8 * 1024 * 1024  # the real default of API_MAX_REQUEST_BYTES
SOCKET_TIMEOUT_S = 120  # only ever reached by a hung server: then the test fails


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.raw)

    def assert_error(self, status: int, error_type: str) -> dict[str, Any]:
        assert self.status == status, (self.status, self.raw[:500])
        assert self.headers.get("Content-Type", "").startswith("application/json")
        detail = self.json()["detail"]
        assert set(detail) == {"type", "message", "details", "plugin", "timestamp"}, detail
        assert detail["type"] == error_type, detail
        return detail


class _Recorded:
    """Bytes read from a socket, as http.client expects a socket to hand them over."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, *args: Any, **kwargs: Any) -> io.BytesIO:
        return io.BytesIO(self.data)


def exchange(
    server: Server,
    method: str,
    path: str,
    body: Iterable[bytes] = (),
    *,
    headers: dict[str, str] | None = None,
    token: str | None = None,
) -> Answer:
    """One request on its own connection; the body is sent while the answer is read.

    A server may answer (and close) before it has read a body it refuses: sending
    from another thread lets the answer be read whatever happens to the rest of the
    body, and a send that fails because of it is no error of the server's.
    """
    address = urlsplit(server.base)
    head = [f"{method} {path} HTTP/1.1", f"Host: {address.netloc}", "Connection: close"]
    token = server.token if token is None else token
    if token:
        head.append(f"Authorization: Token {token}")
    head += [f"{name}: {value}" for name, value in (headers or {}).items()]
    request_head = ("\r\n".join(head) + "\r\n\r\n").encode()

    sock = socket.create_connection(
        (address.hostname, address.port or 80), timeout=SOCKET_TIMEOUT_S
    )
    send_error: list[Exception] = []

    def send() -> None:
        try:
            sock.sendall(request_head)
            for part in body:
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed without reading the rest
        except Exception as exc:  # reported by the main thread
            send_error.append(exc)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    received = bytearray()
    try:
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break  # what was received before the reset is still the answer
            if not data:
                break
            received += data
    finally:
        sender.join(SOCKET_TIMEOUT_S)
        sock.close()
    assert not sender.is_alive(), "the request body was never sent"
    assert not send_error, send_error
    response = http.client.HTTPResponse(_Recorded(bytes(received)))  # type: ignore[arg-type]
    response.begin()
    return Answer(response.status, response.msg, response.read())


def chunked(body: bytes, size: int) -> Iterator[bytes]:
    """``body`` in the chunked transfer coding, ``size`` bytes a chunk."""
    for start in range(0, len(body), size):
        piece = body[start : start + size]
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    yield b"0\r\n\r\n"


def in_pieces(body: bytes, size: int = 1024 * 1024) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def json_body(plugin: str, payload: dict[str, Any]) -> bytes:
    return json.dumps({"plugin": plugin, "payload": payload}).encode()


def echo_body_of_size(size: int) -> bytes:
    """A well-formed echo request of exactly ``size`` bytes."""
    empty = json_body("echo", {"message": ""})
    body = json_body("echo", {"message": "x" * (size - len(empty))})
    assert len(body) == size
    return body


CHUNKED_JSON = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}


def test_the_real_default_limit_is_in_force():
    assert settings.API_MAX_REQUEST_BYTES == MAX_BYTES
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == MAX_BYTES


# --- a: a small chunked body is read and executed ----------------------------------------------


def test_a_chunked_body_without_content_length_is_executed(server):
    body = json_body("echo", {"message": "hi", "repeat": 3})
    answer = exchange(
        server, "POST", "/v1/analyze-execution", chunked(body, 7), headers=CHUNKED_JSON
    )
    assert answer.status == 200, answer.raw
    result = answer.json()
    assert result["status"] == "SUCCESS"
    assert result["result"] == {"echoed": "hihihi"}
    job = Job.objects.get(pk=result["job_id"])
    assert job.status == JobStatus.SUCCESS
    assert job.input_payload == {"message": "hi", "repeat": 3}


def test_a_chunked_body_without_content_length_submits_a_job(server):
    body = json_body("echo", {"message": "hi"})
    answer = exchange(server, "POST", "/v1/jobs", chunked(body, 5), headers=CHUNKED_JSON)
    assert answer.status == 202, answer.raw
    job = answer.json()
    assert job["status"] == "PENDING"
    assert job["input"] == {"message": "hi"}
    assert answer.headers["Location"].endswith(f"/v1/jobs/{job['id']}")
    assert Job.objects.get(pk=job["id"]).input_payload == {"message": "hi"}


# --- b, c: bodies past the limit are 413, one under it is read whole ---------------------------


@pytest.mark.parametrize("path", ["/v1/analyze-execution", "/v1/jobs"])
def test_a_chunked_body_past_the_limit_is_payload_too_large(server, path):
    body = echo_body_of_size(MAX_BYTES + 1024 * 1024)
    answer = exchange(server, "POST", path, chunked(body, 64 * 1024), headers=CHUNKED_JSON)
    answer.assert_error(413, "PayloadTooLarge")
    assert not Job.objects.exists()
    assert server.alive_and_healthy()


@pytest.mark.parametrize("path", ["/v1/analyze-execution", "/v1/jobs"])
def test_a_content_length_body_just_past_the_limit_is_payload_too_large(server, path):
    body = echo_body_of_size(MAX_BYTES + 1)
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    answer = exchange(server, "POST", path, in_pieces(body), headers=headers)
    answer.assert_error(413, "PayloadTooLarge")
    assert not Job.objects.exists()
    assert server.alive_and_healthy()


def test_a_content_length_body_at_the_limit_is_read(server):
    body = echo_body_of_size(MAX_BYTES)
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    answer = exchange(server, "POST", "/v1/jobs", in_pieces(body), headers=headers)
    assert answer.status == 202, answer.raw[:500]
    job = Job.objects.get(pk=answer.json()["id"])
    assert len(job.input_payload["message"]) == MAX_BYTES - len(json_body("echo", {"message": ""}))


def noise_png(width: int, height: int) -> bytes:
    image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_three_megabyte_image_is_read_and_measured(server):
    png = noise_png(1000, 1000)  # random noise does not compress: about 3 MB
    assert len(png) > 2_900_000
    body = json_body("image_metadata", {"image_base64": base64.b64encode(png).decode()})
    assert 3_900_000 < len(body) < MAX_BYTES
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    answer = exchange(server, "POST", "/v1/analyze-execution", in_pieces(body), headers=headers)
    assert answer.status == 200, answer.raw[:500]
    result = answer.json()["result"]
    assert (result["format"], result["width"], result["height"]) == ("PNG", 1000, 1000)
    assert result["mode"] == "RGB"


# --- d: an unknown URL is a JSON 404 whatever the method and credentials ------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
@pytest.mark.parametrize("credentials", ["token", "none"])
def test_an_unknown_url_is_a_json_not_found(server, method, credentials):
    token = server.token if credentials == "token" else ""
    body = b'{"plugin": "echo", "payload": {"message": "hi"}}'
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    answer = exchange(server, method, "/v1/nope", [body], headers=headers, token=token)
    detail = answer.assert_error(404, "NotFound")
    assert "/v1/nope" in detail["message"]
    assert not Job.objects.exists()


# --- e: JSON no database can store is refused at its location -----------------------------------


@pytest.mark.parametrize(
    ("payload_text", "field"),
    [
        ('{"message": "\\ud800"}', "message"),
        ('{"message": "x", "repeat": 1e400}', "repeat"),
        ('{"message": "a\\u0000b"}', "message"),
    ],
    ids=["lone-surrogate", "1e400", "nul"],
)
@pytest.mark.parametrize("path", ["/v1/analyze-execution", "/v1/jobs"])
def test_unstorable_json_is_a_located_validation_error(server, path, payload_text, field):
    body = ('{"plugin": "echo", "payload": ' + payload_text + "}").encode()
    assert b"\\u" in body or b"1e400" in body  # the escape itself travels, not a character
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    answer = exchange(server, "POST", path, [body], headers=headers)
    detail = answer.assert_error(400, "ValidationError")
    assert detail["details"]["errors"][0]["location"] == ["payload", field], detail
    assert not Job.objects.exists()

    listing = exchange(server, "GET", "/v1/jobs")
    assert listing.status == 200, listing.raw
    assert listing.json()["results"] == []


# --- f: the docs page answers OPTIONS without a server error ------------------------------------


def test_options_on_the_docs_page_is_not_a_server_error(server):
    answer = exchange(server, "OPTIONS", "/api/docs/", token="")
    assert answer.status in (200, 405), (answer.status, answer.raw[:500])


# --- the WSGI middleware on a server that does not decode chunks (runserver) --------------------


def wsgi_call(
    middleware: ChunkedRequestBody, environ: dict[str, Any]
) -> tuple[str, dict[str, str], bytes]:
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        started.append((status, headers))

    body = b"".join(middleware(environ, start_response))
    assert len(started) == 1
    status, headers = started[0]
    return status, dict(headers), body


def chunked_environ(body: bytes, **extra: Any) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/v1/analyze-execution",
        "CONTENT_TYPE": "application/json",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.input": io.BytesIO(body),
        **extra,
    }


def test_a_chunked_body_the_server_did_not_decode_is_length_required():
    def must_not_be_called(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise AssertionError("the application was called with a body it cannot read")

    middleware = ChunkedRequestBody(must_not_be_called, max_bytes=1024)
    raw = b"5\r\nhello\r\n0\r\n\r\n"  # what runserver leaves in wsgi.input: the coding itself
    status, headers, body = wsgi_call(middleware, chunked_environ(raw))
    assert status.startswith("411 ")
    assert headers["Content-Type"] == "application/json"
    assert headers["Content-Length"] == str(len(body))
    detail = json.loads(body)["detail"]
    assert set(detail) == {"type", "message", "details", "plugin", "timestamp"}
    assert detail["type"] == "LengthRequired"


def test_a_decoded_chunked_body_is_handed_on_with_its_length_read_one_byte_past_the_limit():
    seen: list[tuple[str, bytes]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append((environ["CONTENT_LENGTH"], environ["wsgi.input"].read()))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    middleware = ChunkedRequestBody(app, max_bytes=10)
    small = chunked_environ(b"0123456789", **{"wsgi.input_terminated": True})
    assert wsgi_call(middleware, small)[0] == "200 OK"
    large = chunked_environ(b"x" * 100, **{"wsgi.input_terminated": True})
    assert wsgi_call(middleware, large)[0] == "200 OK"
    # The whole small body; of the large one, one byte past the limit, so Django answers 413.
    assert seen == [("10", b"0123456789"), ("11", b"x" * 11)]


def test_a_body_with_content_length_is_left_alone():
    seen: list[dict[str, Any]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(dict(environ))
        start_response("200 OK", [])
        return []

    stream = io.BytesIO(b"{}")
    environ = {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "2", "wsgi.input": stream}
    wsgi_call(ChunkedRequestBody(app, max_bytes=1), environ)
    assert seen[0]["wsgi.input"] is stream
    assert seen[0]["CONTENT_LENGTH"] == "2"
