"""Waiting for an execution, with its time limit and a way to stop it from outside.

The caller of ToolRunner may pass an :class:`ExecutionControl`. ToolRunner tells
it when the execution has been handed to the plugin's process or thread (so the
caller can do its own bookkeeping while the plugin works) and then asks it every
``poll_s`` whether to stop (the job was cancelled, or the worker is shutting down
and hands the job back). ToolRunner knows nothing about jobs: the control is how
the layer above talks to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from plugins.errors.exceptions import (
    ExecutionCancelledError,
    GovernedExecutionError,
    PluginTimeoutError,
    WorkerLostError,
)

if TYPE_CHECKING:
    from plugins.progress import ProgressReport

DEFAULT_POLL_S = 0.2


class StopReason(StrEnum):
    CANCELLED = "cancelled"
    """Somebody cancelled the job: the execution ends as Cancelled."""
    RELEASED = "released"
    """The process is shutting down and hands the job back: the execution ends as WorkerLost."""


class ExecutionControl(Protocol):
    def started(self) -> None:
        """The execution was handed over and runs; ToolRunner waits for it next.

        If this raises, the execution is stopped and ToolRunner raises
        :class:`ControlFailed` from it: the caller's failure, not the plugin's.
        """

    def stop_reason(self) -> StopReason | None:
        """Why the running execution must stop now, or None to let it go on.

        Asked every ``poll_s`` (and after each progress report) in the thread that
        waits for the execution: the place for the caller's periodic work.
        """

    def progress(self, report: ProgressReport) -> None:
        """The plugin reported progress (plugins/progress.py), already checked.

        Called in the waiting thread (process isolation) or the plugin's own
        (thread isolation), so it must be quick, thread-safe and must not raise.
        """


class ControlFailed(Exception):
    """The caller's :meth:`ExecutionControl.started` raised; the execution was stopped."""


def stop_error(reason: StopReason) -> GovernedExecutionError:
    if reason is StopReason.CANCELLED:
        return ExecutionCancelledError("The job was cancelled; its execution was stopped")
    return WorkerLostError(
        "The worker stopped before the execution ended; it was interrupted and handed back"
    )


def wait_until_done(
    is_done: Callable[[float], bool],
    *,
    timeout_s: float,
    control: ExecutionControl | None = None,
    poll_s: float = DEFAULT_POLL_S,
) -> None:
    """Tell ``control`` the execution started, then wait for ``is_done(wait_s)`` to say it ended.

    Raises PluginTimeoutError at ``timeout_s``, the stop error when ``control``
    asks to stop, ControlFailed when ``control.started`` fails; the caller then
    stops the execution itself.
    """
    deadline = time.monotonic() + timeout_s
    if control is not None:
        try:
            control.started()
        except Exception as exc:
            raise ControlFailed(f"{type(exc).__name__}: {exc}") from exc
    while True:
        remaining = deadline - time.monotonic()
        step = remaining if control is None else min(remaining, poll_s)
        if is_done(max(step, 0.0)):
            return
        if control is not None and (reason := control.stop_reason()) is not None:
            raise stop_error(reason)
        if time.monotonic() >= deadline:
            raise PluginTimeoutError(
                f"Execution exceeded its time limit of {timeout_s:g} s",
                details={"timeout_s": timeout_s},
            )
