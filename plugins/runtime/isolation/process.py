"""Process isolation: plugin code runs in pooled child processes that can be killed.

The pool is pebble's ``ProcessPool`` (docs/containment.md says why pebble). This module
adds what containment needs on top of it:

* children come from a *forkserver*, not from a fork of the caller: they inherit
  no database connection, socket, lock or thread of a web or worker process. The
  forkserver imports Django and the runtime once, so a new child is a cheap fork
  of an already warm process, and a plugin module a child imported stays
  imported for the child's life (it is recycled after ``max_tasks_per_child``);
* each child leads its own process group, which dies with the process that uses
  the pool: the child holds the read end of a *lifeline* pipe whose only writer
  is that process, and asks the kernel (``O_ASYNC``, ``F_SETSIG``) to SIGKILL its
  whole group when the pipe closes. So a ``kill -9`` of a worker leaves nothing
  spinning, even a plugin stuck in C code, even what the plugin started;
* on SIGTERM (how pebble stops a child past its deadline or cancelled) a child
  kills its whole group at once, including processes the plugin started; a child
  stuck in C code gets SIGKILL after ``kill_grace_s`` and its orphans are reaped;
* the deadline and cancellation are the caller's (plugins/runtime/control.py),
  measured from the call, so a queued execution cannot outlive its job's lease;
* what comes back is checked again here: the child runs plugin code, it may lie.

What a child runs is plugins/runtime/isolation/child.py.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import itertools
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError
from typing import TYPE_CHECKING, Any

import pebble
from pebble import ProcessExpired, ProcessPool

from plugins.errors.error_envelope import ErrorType
from plugins.errors.exceptions import (
    GovernedExecutionError,
    OutputValidationError,
    PluginCrashedError,
    PluginExecutionError,
    ReportedExecutionError,
)
from plugins.runtime.control import ExecutionControl, wait_until_done
from plugins.runtime.isolation.base import PluginSide
from plugins.runtime.isolation.child import (
    MAX_ENVELOPE_BYTES,
    ChildOutcome,
    PluginRef,
    initialise_child,
    run_in_child,
    run_tracked,
)
from plugins.runtime.limits import ExecutionLimits
from plugins.runtime.provenance import RanCode
from plugins.validation.json_values import storable_copy

if TYPE_CHECKING:
    from plugins.contract import Plugin

logger = logging.getLogger(__name__)

# Imported by the forkserver before it forks any child (see bootstrap.py).
FORKSERVER_PRELOAD = ["plugins.runtime.isolation.bootstrap"]
_EXIT_CHECK_S = 0.25
_EXITED_GRACE_S = 1.0


def plugin_ref(plugin_class: type) -> PluginRef:
    return plugin_class.__module__, plugin_class.__qualname__


def importable_problem(plugin_class: type) -> str | None:
    """Why a child process could not import ``plugin_class``, or None if it can."""
    module, qualname = plugin_ref(plugin_class)
    if "<locals>" in qualname or module == "__main__":
        return (
            f"{module}.{qualname} must be importable by its module path to run in a "
            "child process (define it at module level, or set isolation = 'thread')"
        )
    return None


def describe_exit(exitcode: int | None) -> dict[str, Any]:
    """An exit status as envelope details: the signal's name or the exit code."""
    if exitcode is not None and exitcode < 0:
        try:
            return {"signal": signal.Signals(-exitcode).name}
        except ValueError:
            return {"signal": f"signal {-exitcode}"}
    return {"exit_code": exitcode}


class ProcessIsolation:
    """A lazily started pool of plugin child processes, one per calling process."""

    def __init__(self, *, size: int, max_tasks_per_child: int, kill_grace_s: float) -> None:
        self.size = size
        self.max_tasks_per_child = max_tasks_per_child
        self.kill_grace_s = kill_grace_s
        self._lock = threading.Lock()
        self._pool: ProcessPool | None = None
        self._owner_pid = 0
        self._slots: _TaskSlots | None = None
        self._lifeline: Any = None  # the write end: kept open, never written, until we exit

    @classmethod
    def shared(cls) -> ProcessIsolation:
        """The process-wide pool of plugin child processes, configured from settings."""
        global _shared
        if _shared is None:
            with _shared_lock:
                if _shared is None:
                    from django.conf import settings

                    _shared = cls(
                        size=settings.PLUGIN_PROCESS_POOL_SIZE or 2,
                        max_tasks_per_child=settings.PLUGIN_MAX_TASKS_PER_CHILD,
                        kill_grace_s=settings.PLUGIN_KILL_GRACE_S,
                    )
        return _shared

    def call(
        self,
        function: PluginSide,
        plugin: Plugin,
        *args: Any,
        limits: ExecutionLimits,
        control: ExecutionControl | None = None,
    ) -> tuple[bytes, RanCode | None]:
        """Run ``function(plugin, *args)`` in a child, under ``limits``, and check what it sent.

        The child has its own instance of the plugin's class; a failure it reports
        is raised here with what ran attached (``exc.ran``).
        """
        outcome = self._in_child(
            run_in_child,
            function,
            plugin_ref(type(plugin)),
            limits.max_memory_mb,
            *args,
            timeout_s=limits.timeout_s,
            control=control,
        )
        return _unwrap(outcome, limits.max_result_bytes)

    def _in_child(
        self,
        function: Callable[..., Any],
        *args: Any,
        timeout_s: float,
        control: ExecutionControl | None,
    ) -> Any:
        """Run ``function(*args)`` in a child; kill the child past ``timeout_s`` or on a stop.

        Raises PluginTimeoutError, the control's stop error, or PluginCrashedError
        when the child dies; ``function`` itself must not raise. A child that
        hit its memory limit asks to be retired, and is replaced once it returns.
        """
        pool, slots = self._current_pool()
        with slots.slot() as (slot, token):
            future = self._schedule(pool, run_tracked, (slot, token, function, *args))
            try:
                wait_until_done(
                    lambda wait_s: self._finished(future, slots, slot, wait_s),
                    timeout_s=timeout_s,
                    control=control,
                )
            except Exception as exc:
                pid = slots.pid(slot)
                future.cancel()  # pebble stops the child running it (SIGTERM, then SIGKILL)
                _kill_group_later(slots, slot, token, self.kill_grace_s + 0.5)
                if not pid:
                    self._check_not_jammed(pool, slots)
                if isinstance(exc, _ExitedCleanly):
                    raise PluginCrashedError(
                        "The plugin's process ended before it returned", details=describe_exit(0)
                    ) from exc
                raise
            try:
                retire, value = future.result()
            except ProcessExpired as exc:
                _kill_group_later(slots, slot, token, 0)
                raise PluginCrashedError(
                    "The plugin's process died before it returned",
                    details=describe_exit(exc.exitcode),
                ) from exc
            except BaseException as exc:  # whatever pebble or the child sent instead of a result
                raise PluginExecutionError(
                    "The plugin process pool failed; the execution did not complete",
                    details={"exception": type(exc).__name__},
                ) from None
            if retire and not slots.any_running(except_slot=slot):
                # pebble replaces no child on request; a new pool is cheap (the forkserver
                # is warm) and, with nothing else running in this one, hurts no one.
                self._replace(pool, "a plugin process was retired")
            return value

    def shutdown(self) -> None:
        """Stop the pool of this process, if any (its children are killed)."""
        with self._lock:
            pool, self._pool = self._pool, None
            if pool is not None and self._owner_pid == os.getpid():
                pool.stop()  # type: ignore[no-untyped-call]
                pool.join(timeout=self.kill_grace_s + 5)

    @staticmethod
    def _finished(future: Any, slots: _TaskSlots, slot: int | None, wait_s: float) -> bool:
        """Wait up to ``wait_s`` for the result; notice a child that exited with status 0.

        pebble reports a child that dies with any other status; one that calls
        ``os._exit(0)`` in the middle of a task would otherwise look like a hang.
        """
        deadline = time.monotonic() + wait_s
        while True:
            if _wait(future, min(deadline - time.monotonic(), _EXIT_CHECK_S)):
                return True
            pid = slots.running_pid(slot)
            if pid and not _alive(pid):
                # pebble reports any other exit status (and delivers a result sent just
                # before a normal exit) within a few of its 0.1 s polls.
                if _wait(future, _EXITED_GRACE_S):
                    return True
                raise _ExitedCleanly()
            if time.monotonic() >= deadline:
                return False

    def _check_not_jammed(self, pool: ProcessPool, slots: _TaskSlots) -> None:
        """A task that never started while no other one runs: replace the pool.

        pebble's children share one pipe behind a lock; a child that died holding
        it (killed by the OOM killer while sending a result) leaves every later
        task waiting forever.
        """
        if not slots.any_running():
            self._replace(pool, "no plugin process took a task in time")

    def _replace(self, pool: ProcessPool, reason: str) -> None:
        """Have the next call start a new pool, and stop this one in the background."""
        logger.info("Replacing the plugin process pool: %s", reason)
        with self._lock:
            if self._pool is pool:
                self._pool = None
        _stop_in_background(pool)

    @staticmethod
    def _schedule(pool: ProcessPool, function: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        try:
            return pool.schedule(function, args=args)
        except RuntimeError as exc:  # a broken pool is inactive: the next call starts a new one
            raise PluginExecutionError(
                "The plugin process pool was broken; it is being restarted",
                details={"exception": type(exc).__name__},
            ) from exc

    def _current_pool(self) -> tuple[ProcessPool, _TaskSlots]:
        pool, slots = self._pool, self._slots
        usable = pool is not None and slots is not None and self._owner_pid == os.getpid()
        if usable and pool.active:  # type: ignore[union-attr]
            return pool, slots  # type: ignore[return-value]
        with self._lock:
            if self._pool is None or self._owner_pid != os.getpid() or not self._pool.active:
                if self._pool is not None and self._owner_pid == os.getpid():
                    logger.warning("The plugin process pool was broken; starting a new one")
                    _stop_in_background(self._pool)
                self._pool, self._slots = self._start_pool()
                self._owner_pid = os.getpid()
            assert self._slots is not None
            return self._pool, self._slots

    def _start_pool(self) -> tuple[ProcessPool, _TaskSlots]:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(FORKSERVER_PRELOAD)
        # pebble waits this long between SIGTERM and SIGKILL; its default is 3 s.
        pebble.common.CONSTS.term_timeout = self.kill_grace_s  # type: ignore[attr-defined]
        slots = _TaskSlots(context)
        lifeline, self._lifeline = context.Pipe(duplex=False)
        pool = ProcessPool(
            max_workers=self.size,
            max_tasks=self.max_tasks_per_child,
            initializer=initialise_child,
            initargs=(slots.pids, slots.tokens, lifeline),
            context=context,
        )
        return pool, slots


class _ExitedCleanly(Exception):
    """The child running a task ended with status 0 without sending a result."""


class _TaskSlots:
    """Which child runs which task: a child writes its pid into the task's slot as it starts.

    Shared memory, so knowing it costs the fast path nothing. It lets the caller
    notice a child that exited with status 0 and kill what a dead child left
    behind. With every slot taken, tasks still run, just without that tracking.
    A slot is reused last (first in, first out) and carries a token, so a task
    that starts late, after its caller gave up, cannot claim a newer task's slot.
    """

    SIZE = 256

    def __init__(self, context: Any) -> None:
        self.pids = context.Array(ctypes.c_int, self.SIZE, lock=False)
        self.tokens = context.Array(ctypes.c_uint, self.SIZE, lock=False)
        self._free = collections.deque(range(self.SIZE))
        self._tokens = itertools.count(1)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def slot(self) -> Iterator[tuple[int | None, int]]:
        with self._lock:
            index = self._free.popleft() if self._free else None
            token = next(self._tokens) % 2**32
        if index is not None:
            self.pids[index] = 0
            self.tokens[index] = token
        try:
            yield index, token
        finally:
            if index is not None:
                with self._lock:
                    self._free.append(index)

    def pid(self, index: int | None) -> int:
        """The child that took the task in slot ``index``, whether it still runs it or not."""
        return 0 if index is None else abs(int(self.pids[index]))

    def running_pid(self, index: int | None) -> int:
        """The child running the task in slot ``index``; 0 before it starts and once it ends.

        A child marks the end of its task by negating its pid (see ``run_tracked``, in child.py).
        """
        return 0 if index is None else max(int(self.pids[index]), 0)

    def still_running(self, index: int | None, token: int, pid: int) -> bool:
        """Whether child ``pid`` is still on the task ``token`` in slot ``index``."""
        return index is not None and self.tokens[index] == token and self.running_pid(index) == pid

    def any_running(self, except_slot: int | None = None) -> bool:
        """Whether a task (but ``except_slot``'s) has started in a child that is still alive."""
        with self._lock:
            free = set(self._free)
        return any(
            self.running_pid(index) and _alive(self.running_pid(index))
            for index in range(self.SIZE)
            if index not in free and index != except_slot
        )


def _stop_in_background(pool: ProcessPool) -> None:
    """Stop a pool and its children without making the caller wait for them."""

    def stop() -> None:
        pool.stop()  # type: ignore[no-untyped-call]
        with contextlib.suppress(Exception):
            pool.join(timeout=30)

    threading.Thread(target=stop, name="plugin-pool-stop", daemon=True).start()


def _kill_group_later(slots: _TaskSlots, slot: int | None, token: int, delay_s: float) -> None:
    """After ``delay_s``, make sure the child on this task and its process group are gone.

    A child normally kills its own group when stopped; one stuck in C code could
    not, a crashed one did not, and pebble cannot stop one while another child
    holds their shared pipe. A child that finished the task meanwhile is left
    alone: it is healthy, and may already be running someone else's task.
    """
    pid = slots.running_pid(slot)
    if not pid:
        return

    def kill() -> None:
        for _ in range(20):  # pebble's own stop comes first, if it can
            if not _alive(pid):
                break
            time.sleep(0.1)
        if slots.still_running(slot, token, pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

    timer = threading.Timer(delay_s, kill)
    timer.daemon = True
    timer.start()


def _wait(future: Any, timeout_s: float) -> bool:
    """Whether ``future`` is done within ``timeout_s`` (cheaper than concurrent.futures.wait)."""
    try:
        future.exception(timeout=max(timeout_s, 0.0))
    except (TimeoutError, CancelledError):
        return bool(future.done())
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, and not ours to signal
        pass
    return True


_shared: ProcessIsolation | None = None
_shared_lock = threading.Lock()


def size_pool_for_one_execution_at_a_time() -> None:
    """Give this process's pool one child: it executes plugins one after another (a worker).

    Unless PLUGIN_PROCESS_POOL_SIZE says otherwise. Call it before the first
    execution: a pool that has started keeps its size.
    """
    from django.conf import settings

    if not settings.PLUGIN_PROCESS_POOL_SIZE:
        ProcessIsolation.shared().size = 1


def _unwrap(outcome: ChildOutcome, max_result_bytes: int) -> tuple[bytes, RanCode | None]:
    """A child's outcome, checked again here: the child runs plugin code, it may lie.

    A failure is raised with what ran attached (``exc.ran``).
    """
    succeeded, data, ran_data = outcome
    if not isinstance(data, bytes) or not isinstance(ran_data, bytes):
        raise PluginExecutionError("The plugin's process sent something other than its outcome")
    ran = RanCode.from_json(ran_data)
    try:
        return _checked(succeeded, data, max_result_bytes), ran
    except GovernedExecutionError as exc:
        exc.ran = ran  # type: ignore[attr-defined]
        raise


def _checked(succeeded: bool, data: bytes, max_result_bytes: int) -> bytes:
    if succeeded:
        if len(data) > max_result_bytes:
            raise OutputValidationError(
                f"The plugin returned a result of {len(data)} bytes; the limit is "
                f"{max_result_bytes}",
                details={"result_bytes": len(data), "max_result_bytes": max_result_bytes},
            )
        return data
    if len(data) > MAX_ENVELOPE_BYTES:
        raise PluginExecutionError("The plugin's process sent an oversized error report")
    try:
        envelope = storable_copy(json.loads(data))
        envelope["error"]["type"] = ErrorType(envelope["error"]["type"])
    except (ValueError, KeyError, TypeError) as exc:
        raise PluginExecutionError("The plugin's process sent an unreadable error report") from exc
    raise ReportedExecutionError(envelope)
