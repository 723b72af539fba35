"""What runs in a plugin's child process: its setup, the task wrapper, one execution.

The parent's side is plugins/runtime/isolation/process.py; this module is only
ever executed in a child (pebble imports it there by name), and its globals are
the child's own. One execution is one round trip: :func:`run_in_child` loads the
plugin, caps the child's memory and calls the plugin-side function it was given
(plugins/runtime/tool_runner.py: validation, the plugin's ``run``, output checks)
and sends back what came of it as data.
"""

from __future__ import annotations

import fcntl
import functools
import importlib
import json
import os
import resource
import signal
import sys
from collections.abc import Callable
from typing import Any

from plugins.contract import Plugin
from plugins.errors.error_envelope import ErrorEnvelope, ErrorType, build_error_envelope
from plugins.errors.exceptions import (
    PluginResourceLimitError,
    PluginUnavailableError,
    envelope_for,
)
from plugins.runtime.isolation.base import PluginSide
from plugins.runtime.provenance import code_of

PluginRef = tuple[str, str]
"""A plugin class by module and qualified name: how a child process finds it."""

ChildOutcome = tuple[bool, bytes, bytes]
"""What a child sends back: (True, what the function returned) or (False, an error
envelope as JSON), and what code it ran (:class:`RanCode` as JSON; empty when the
plugin did not load).

Only a bool and bytes cross from a child: nothing a plugin made (an exception, an
object in its details) is ever unpickled by the caller.
"""

MAX_ENVELOPE_BYTES = 256 * 1024
MAX_MESSAGE_CHARS = 2000
MAX_TRACEBACK_CHARS = 64 * 1024

# This child's state. Set by initialise_child(): the parent's task slots, the lifeline's read end.
_slot_pids: Any = None
_slot_tokens: Any = None
_lifeline: Any = None
_retiring = False  # unfit to serve: replace it once its task has returned
_loaded_plugins: dict[PluginRef, Plugin] = {}
_memory_limit_mb: int | None = None  # the limit in force (see _apply_memory_limit)


def initialise_child(slot_pids: Any, slot_tokens: Any, lifeline: Any) -> None:
    """Runs once in every new child, before its first task."""
    global _slot_pids, _slot_tokens, _lifeline
    _slot_pids, _slot_tokens, _lifeline = slot_pids, slot_tokens, lifeline
    os.setpgid(0, 0)
    if sys.platform.startswith("linux"):
        # When the parent's end closes (it exited, however), the kernel SIGKILLs our group.
        fd = lifeline.fileno()
        fcntl.fcntl(fd, fcntl.F_SETOWN, -os.getpgrp())
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGKILL)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)
    signal.signal(signal.SIGTERM, _kill_own_group)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent to handle


def run_tracked(
    slot: int | None, token: int, function: Callable[..., Any], *args: Any
) -> tuple[bool, Any]:
    """Every task: ``function(*args)``, with this child's pid in the task's slot meanwhile.

    Returns whether this child must be retired, and what the function returned.
    """
    tracked = slot is not None and _slot_tokens[slot] == token
    if tracked:
        _slot_pids[slot] = os.getpid()
    value = function(*args)
    if tracked and _slot_tokens[slot] == token:
        _slot_pids[slot] = -os.getpid()  # done: no longer this task's to kill
    return _retiring, value


def _retire_this_child() -> None:
    """Replace this process once its current task has returned.

    For a child that is no longer fit to serve, e.g. one whose plugin hit its
    memory limit and may still hold what it allocated.
    """
    global _retiring
    _retiring = True


def _kill_own_group(signum: int, frame: Any) -> None:
    os.killpg(0, signal.SIGKILL)


def run_in_child(
    function: PluginSide, ref: PluginRef, max_memory_mb: int | None, *args: Any
) -> ChildOutcome:
    """One execution: load the plugin, cap the memory, return ``function(plugin, *args)``.

    Never raises: any failure, the plugin's or its loading's, is the envelope sent back.
    """
    ran = b""
    try:
        plugin = _load_plugin(ref)
        ran = code_of(type(plugin)).to_json()
        _apply_memory_limit(max_memory_mb)
        return True, function(plugin, *args), ran
    except BaseException as exc:
        return False, _failure_report(exc, ref, max_memory_mb), ran


def _failure_report(exc: BaseException, ref: PluginRef, max_memory_mb: int | None) -> bytes:
    """The failure as a bounded envelope in JSON; whatever the plugin put in it, this returns."""
    try:
        name = getattr(_loaded_plugins.get(ref), "name", ref[1])
        if isinstance(exc, MemoryError):
            _retire_this_child()  # it may still hold what it allocated
            if max_memory_mb is not None:
                exc = PluginResourceLimitError(
                    f"Plugin {name!r} went past its memory limit of {max_memory_mb} MB",
                    details={"max_memory_mb": max_memory_mb},
                )
        return _bounded_json(envelope_for(exc, name))
    except BaseException:  # the plugin's exception broke even its own reporting
        return _bounded_json(
            build_error_envelope(
                ErrorType.PLUGIN_EXECUTION_ERROR,
                "The plugin failed, and so did reporting how",
                details={"exception": type(exc).__name__},
            )
        )


def _bounded_json(envelope: ErrorEnvelope) -> bytes:
    """The envelope as JSON, cut to sizes that cannot flood the caller or the job row."""
    error: Any = envelope["error"]
    error["message"] = str(error["message"])[:MAX_MESSAGE_CHARS]
    internal = envelope.get("_internal")
    if internal is not None:
        internal["traceback"] = str(internal["traceback"])[-MAX_TRACEBACK_CHARS:]
    encoded = json.dumps(envelope, default=repr).encode()
    if len(encoded) > MAX_ENVELOPE_BYTES:
        error["details"] = {"truncated": True}
        encoded = json.dumps(envelope, default=repr).encode()
    return encoded


def _load_plugin(ref: PluginRef) -> Plugin:
    """This child's own instance of the plugin class, made on first use and kept."""
    plugin = _loaded_plugins.get(ref)
    if plugin is None:
        module, qualname = ref
        try:
            plugin_class: Any = functools.reduce(
                getattr, qualname.split("."), importlib.import_module(module)
            )
            plugin = plugin_class()
            code_of(plugin_class)  # fingerprinted as imported, whatever the disk says later
        except Exception as exc:
            raise PluginUnavailableError(
                f"Plugin {module}.{qualname} cannot be loaded in its process: "
                f"{type(exc).__name__}: {exc}",
                details={"reason": f"{type(exc).__name__}: {exc}"},
            ) from exc
        _loaded_plugins[ref] = plugin
    return plugin


def _apply_memory_limit(max_memory_mb: int | None) -> None:
    """Let this child's address space grow by at most ``max_memory_mb`` over its current size.

    Past it, allocations fail: Python raises MemoryError (a C library may abort,
    which the parent reports as a crash) and the child is retired, so whatever
    the plugin kept goes with it. The limit stays set between executions
    (setting it costs system calls); it is measured afresh whenever a plugin
    with another limit runs.
    """
    global _memory_limit_mb
    if max_memory_mb == _memory_limit_mb:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:  # lift the previous limit before measuring
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    limit = hard
    if max_memory_mb is not None:
        in_use = _address_space_bytes()
        if in_use is not None:  # no /proc: not Linux, where the limit is not enforced anyway
            limit = in_use + max_memory_mb * 1024 * 1024
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    _memory_limit_mb = max_memory_mb


def _address_space_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * resource.getpagesize()
    except OSError:
        return None
