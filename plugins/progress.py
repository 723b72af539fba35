"""Progress a plugin reports from inside its ``run``: ``report_progress(done, total, message)``.

A plugin calls :func:`report_progress` while it works; its job shows the latest
report (``progress`` in the API, the admin's job page). The report goes where the
plugin's isolation sends it: from a sandboxed host, as a JSON message on the
channel the host already speaks (plugins/runtime/isolation/host.py); in thread
isolation, by a direct call. Either way it ends at the ExecutionControl of whoever
runs the execution (a job's JobWatch), which writes it, throttled.

Called outside a plugin's ``run`` (at import, in a validator, in a thread the
plugin started without copying its context), it raises ProgressError: nothing
could ever show such a report. Inside a ``run`` that is no job's (ToolRunner used
directly, ``plugins.testing.run_plugin``), it checks its arguments and the report
goes nowhere.

This module imports nothing of Django: a plugin host loads it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from plugins.errors.exceptions import PluginExecutionError
from plugins.runtime.guard import running_plugin
from plugins.validation.json_values import first_unstorable_values

MAX_MESSAGE_CHARS = 200
"""A progress message is a status line, not a log: longer ones are refused."""


class ProgressError(PluginExecutionError):
    """A bad call of :func:`report_progress`; uncaught, it fails the execution with its message."""


@dataclass(frozen=True)
class ProgressReport:
    """One report: ``done`` of ``total`` steps, and what the plugin is doing."""

    done: int
    total: int
    message: str = ""

    def __post_init__(self) -> None:
        for name in ("done", "total"):
            value = getattr(self, name)
            # bool is an int to Python, but True of 10 steps is a mistake.
            if not isinstance(value, int) or isinstance(value, bool):
                raise ProgressError(
                    f"report_progress(): {name} must be an int, not {type(value).__name__}",
                    details={"argument": name},
                )
        if self.total <= 0:
            raise ProgressError(
                f"report_progress(): total must be at least 1, not {self.total}",
                details={"argument": "total"},
            )
        if not 0 <= self.done <= self.total:
            raise ProgressError(
                f"report_progress(): done must be between 0 and total ({self.total}), "
                f"not {self.done}",
                details={"argument": "done"},
            )
        if not isinstance(self.message, str):
            raise ProgressError(
                f"report_progress(): message must be a str, not {type(self.message).__name__}",
                details={"argument": "message"},
            )
        if len(self.message) > MAX_MESSAGE_CHARS:
            raise ProgressError(
                f"report_progress(): message has {len(self.message)} characters; "
                f"at most {MAX_MESSAGE_CHARS} are allowed",
                details={"argument": "message"},
            )
        for _location, problem in first_unstorable_values(self.message):
            # NUL or a lone surrogate: no database stores it, no client reads it back
            raise ProgressError(
                f"report_progress(): message: {problem}", details={"argument": "message"}
            )

    def as_json(self) -> dict[str, Any]:
        return {"done": self.done, "total": self.total, "message": self.message}

    @classmethod
    def from_json(cls, value: Any) -> ProgressReport:
        """A report that crossed from a plugin's process, checked as a call would be.

        Raises ProgressError for anything but ``{"done", "total", "message"}`` of the
        right kinds: a host that sends otherwise bypassed :func:`report_progress`.
        """
        if not isinstance(value, dict) or set(value) != {"done", "total", "message"}:
            raise ProgressError("A progress report must be an object of done, total and message")
        return cls(value["done"], value["total"], value["message"])


ProgressSink = Callable[[ProgressReport], None]
"""Where the reports of one execution go; set by the plugin's isolation."""

_sink: contextvars.ContextVar[ProgressSink | None] = contextvars.ContextVar(
    "plugin_progress_sink", default=None
)


@contextmanager
def reporting_to(sink: ProgressSink | None) -> Iterator[None]:
    """Send the reports made in this context until the block ends to ``sink`` (None: nowhere)."""
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)


def report_progress(done: int, total: int, message: str = "") -> None:
    """Report that ``done`` of ``total`` steps are done, with a short ``message``.

    Call it from inside your plugin's ``run``, as often as you like: what reaches
    the database is throttled (at most 2 writes a second per job), and the last
    report is never lost. ``done`` and ``total`` are ints with
    ``0 <= done <= total`` and ``total >= 1``; ``message`` at most
    ``MAX_MESSAGE_CHARS`` characters. A bad call raises ProgressError, which
    fails the execution with its message unless the plugin catches it.
    """
    report = ProgressReport(done, total, message)
    if running_plugin() is None:
        raise ProgressError(
            "report_progress() works only inside a plugin's run(), while ToolRunner runs it "
            "(not at import, in a validator, or in a thread the plugin started)"
        )
    sink = _sink.get()
    if sink is not None:
        sink(report)
