"""What a plugin prints: captured per execution, bounded, and handed to whoever asked.

A host's stdout and stderr (fds 1 and 2, inherited by whatever the plugin starts)
are one append-only, already unlinked file the server opened, so the server can
read it whatever the host did: returned, crashed, timed out or was killed. It is
emptied before each execution; what the execution left there is read back, at
most ``PLUGIN_OUTPUT_MAX_BYTES``, with a marker when there was more.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

DEFAULT_MAX_BYTES = 64 * 1024


@dataclass
class CapturedOutput:
    """The output of the executions run in a ``captured_plugin_output()`` block (the last)."""

    text: str = ""


_sink: contextvars.ContextVar[CapturedOutput | None] = contextvars.ContextVar(
    "plugin_output_sink", default=None
)


@contextmanager
def captured_plugin_output() -> Iterator[CapturedOutput]:
    """Collect, in this thread, what the plugin executions of this block print."""
    captured = CapturedOutput()
    token = _sink.set(captured)
    try:
        yield captured
    finally:
        _sink.reset(token)


def wanted() -> bool:
    """Whether anyone in this thread collects the output (else it is not read at all)."""
    return _sink.get() is not None


def deliver(text: str) -> None:
    captured = _sink.get()
    if captured is not None:
        captured.text = text


def max_bytes() -> int:
    from django.conf import settings

    return int(getattr(settings, "PLUGIN_OUTPUT_MAX_BYTES", DEFAULT_MAX_BYTES))


def truncation_marker(total_bytes: int, kept_bytes: int) -> str:
    return f"\n[plugin output truncated: {total_bytes} bytes, the first {kept_bytes} kept]\n"


def read_bounded(fd: int, limit: int) -> str:
    """The first ``limit`` bytes written to ``fd``'s file, with a marker if there were more."""
    total = os.fstat(fd).st_size
    data = os.pread(fd, min(total, max(limit, 0)), 0)
    text = data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")  # not in SQL text
    if total > len(data):
        text += truncation_marker(total, len(data))
    return text
