"""Thread isolation: run one call in a reusable daemon thread, waiting at most ``timeout_s``.

This is the opt-in mode for trusted, latency-critical plugins. Python cannot kill
a thread: when a call overruns (or is cancelled), the caller stops waiting and
the thread is *abandoned*: it finishes the call in the background, its result is
thrown away, and only then does it become reusable. A fresh thread serves the
next call meanwhile, so one hung plugin never blocks the others; the number of
abandoned threads is exported as a metric. Process isolation has none of these
limits (plugins/runtime/isolation/process.py).
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from plugins.errors.exceptions import PluginExecutionError
from plugins.progress import ProgressSink, reporting_to
from plugins.runtime.control import ControlFailed, ExecutionControl, wait_until_done
from plugins.runtime.isolation.base import PluginSide
from plugins.runtime.limits import ExecutionLimits
from plugins.runtime.provenance import RanCode, code_of

if TYPE_CHECKING:
    from plugins.contract import Plugin

MAX_IDLE_THREADS = 8


class _Call:
    __slots__ = (
        "abandoned",
        "args",
        "context",
        "done",
        "error",
        "finished",
        "func",
        "lock",
        "value",
    )

    def __init__(
        self, context: contextvars.Context, func: Callable[..., Any], args: tuple[Any, ...]
    ) -> None:
        self.context = context
        self.func = func
        self.args = args
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.finished = False
        self.abandoned = False
        self.value: Any = None
        self.error: BaseException | None = None


class _Worker:
    def __init__(self, pool: ThreadIsolation) -> None:
        self._pool = pool
        self._inbox: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="plugin-execution", daemon=True).start()

    def submit(self, call: _Call) -> None:
        self._inbox.put(call)

    def _loop(self) -> None:
        while (call := self._inbox.get()) is not None:
            try:
                call.value = call.context.run(call.func, *call.args)
            except BaseException as exc:  # a plugin may raise SystemExit; it must not kill us
                call.error = exc
            with call.lock:
                call.finished = True
                abandoned = call.abandoned
            call.done.set()
            if abandoned:
                self._pool._abandoned_finished()
            if not self._pool._release(self):
                return


class ThreadIsolation:
    """A small pool of daemon threads that grows when threads are abandoned."""

    def __init__(self, max_idle: int = MAX_IDLE_THREADS) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._max_idle = max_idle
        self._abandoned = 0

    @classmethod
    def shared(cls) -> ThreadIsolation:
        """The process-wide pool of execution threads."""
        return _shared

    @property
    def abandoned(self) -> int:
        """Threads still busy with a call whose caller gave up waiting."""
        return self._abandoned

    def warm_up(self, plugins: Iterable[tuple[Plugin, ExecutionLimits]]) -> None:
        """Nothing to start: threads are made on demand."""

    def call(
        self,
        function: PluginSide,
        plugin: Plugin,
        *args: Any,
        limits: ExecutionLimits,
        control: ExecutionControl | None = None,
    ) -> tuple[bytes, RanCode | None]:
        """Run ``function(plugin, *args)`` in a pool thread, on the caller's plugin instance.

        What ran is the code this process imported; a failure is raised with it
        attached (``exc.ran``).
        """
        ran = code_of(type(plugin))
        # Progress is a direct call: the plugin's thread hands its reports to ``control``.
        sink = control.progress if control is not None else None
        try:
            data = self._in_thread(
                _reporting_to,
                sink,
                function,
                plugin,
                *args,
                timeout_s=limits.timeout_s,
                control=control,
            )
        except Exception as exc:
            exc.ran = ran  # type: ignore[attr-defined]
            raise
        return data, ran

    def _in_thread(
        self,
        func: Callable[..., Any],
        *args: Any,
        timeout_s: float,
        control: ExecutionControl | None,
    ) -> Any:
        """Run ``func(*args)`` in a pool thread, in a context of its own.

        Waits at most ``timeout_s`` (PluginTimeoutError) and stops waiting when
        ``control`` says so; either way the thread is abandoned.
        """
        call = _Call(contextvars.Context(), func, args)
        with self._lock:
            worker = self._idle.pop() if self._idle else None
        if worker is None:
            worker = _Worker(self)
        worker.submit(call)
        try:
            wait_until_done(call.done.wait, timeout_s=timeout_s, control=control)
        except Exception as exc:
            with call.lock:
                if not call.finished:
                    call.abandoned = True
            if call.abandoned:
                with self._lock:
                    self._abandoned += 1
                raise
            if isinstance(exc, ControlFailed):
                raise  # the caller failed: its result is of no use, even if just in time
            call.done.wait()
        if isinstance(call.error, Exception):
            raise call.error
        if call.error is not None:  # SystemExit, KeyboardInterrupt: must not end the caller
            raise PluginExecutionError(
                f"Plugin stopped with {type(call.error).__name__}",
                details={"exception": type(call.error).__name__},
            ) from call.error
        return call.value

    def _release(self, worker: _Worker) -> bool:
        with self._lock:
            if len(self._idle) >= self._max_idle:
                return False
            self._idle.append(worker)
            return True

    def _abandoned_finished(self) -> None:
        with self._lock:
            self._abandoned -= 1


def _reporting_to(sink: ProgressSink | None, function: PluginSide, *args: Any) -> bytes:
    with reporting_to(sink):
        return function(*args)


_shared = ThreadIsolation()
