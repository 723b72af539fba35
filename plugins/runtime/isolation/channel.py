"""Frames between a server process and a plugin host: a 4-byte length, then that many bytes.

Each frame holds JSON or, for a result, the JSON text the plugin side made. Nothing
that crosses here is unpickled, evaluated or imported: a host runs plugin code,
and what it sends is only ever parsed as JSON. Both sides read with a size limit,
checked on the length before the body is read, so a host cannot make the server
allocate what it likes, and the server's reads have a deadline, so a host that
sends half a frame cannot hold it.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
from collections.abc import Callable
from typing import Any

_LENGTH = struct.Struct(">I")
_CHUNK_BYTES = 1 << 20


class ChannelClosed(Exception):
    """The other end closed the channel (its process exited, or closed it)."""


class FrameTooLarge(Exception):
    """A frame announced more bytes than the reader accepts."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"a frame of {size} bytes; the limit is {limit}")
        self.size = size
        self.limit = limit


def send(fd: int, data: bytes, deadline: float | None = None) -> None:
    """Write one frame; by ``deadline`` (monotonic) if given, on a non-blocking ``fd``.

    Without a deadline, it blocks until the reader has taken what the pipe cannot
    hold. With one, a reader that stops reading raises TimeoutError at the deadline.
    """
    view = memoryview(_LENGTH.pack(len(data)) + data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            if deadline is None or not _writable(fd, deadline - time.monotonic()):
                raise TimeoutError("the other end stopped reading") from None
            continue
        view = view[written:]


def send_json(fd: int, value: Any, deadline: float | None = None) -> None:
    send(fd, json.dumps(value, separators=(",", ":")).encode(), deadline)


def _writable(fd: int, timeout_s: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return bool(poller.poll(max(timeout_s, 0.0) * 1000.0))


def readable(fd: int, timeout_s: float) -> bool:
    """Whether a frame (or the end of the channel) is waiting within ``timeout_s``."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(timeout_s, 0.0) * 1000.0))


def receive(fd: int, max_bytes: int, deadline: float | None = None) -> bytes:
    """Read one frame of at most ``max_bytes``; by ``deadline`` (monotonic), if given.

    Raises ChannelClosed at the end of the channel, FrameTooLarge (the body is not
    read: the channel is unusable after it) and TimeoutError past the deadline.
    """
    (size,) = _LENGTH.unpack(_read_exactly(fd, _LENGTH.size, deadline))
    if size > max_bytes:
        raise FrameTooLarge(size, max_bytes)
    return _read_exactly(fd, size, deadline)


def receive_json(fd: int, max_bytes: int, deadline: float | None = None) -> Any:
    """Read one frame and parse it as JSON; ValueError if it is not JSON."""
    return json.loads(receive(fd, max_bytes, deadline))


def receive_into(
    fd: int, sink: Callable[[bytes], object], max_bytes: int, deadline: float | None = None
) -> int:
    """Read one frame of at most ``max_bytes`` and hand it to ``sink`` in pieces; its size.

    For frames too large to hold at once (an artifact): at most 1 MiB is in memory.
    Raises as :func:`receive`.
    """
    size: int = _LENGTH.unpack(_read_exactly(fd, _LENGTH.size, deadline))[0]
    if size > max_bytes:
        raise FrameTooLarge(size, max_bytes)
    missing = size
    while missing:
        chunk = _read_exactly(fd, min(missing, _CHUNK_BYTES), deadline)
        sink(chunk)
        missing -= len(chunk)
    return size


def _read_exactly(fd: int, size: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    missing = size
    while missing:
        if deadline is not None and not readable(fd, deadline - time.monotonic()):
            raise TimeoutError("the other end sent part of a frame, then nothing")
        chunk = os.read(fd, min(missing, _CHUNK_BYTES))
        if not chunk:
            raise ChannelClosed()
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)
