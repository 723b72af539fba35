"""The plugin host: a clean interpreter that confines itself, loads one plugin and runs it.

The server's side is plugins/runtime/isolation/process.py; this module is only
ever executed in a host, started as ``python -I -B -c <bootstrap> REQUESTS REPLIES
LIFELINE plugin=NAME`` with an allow-listed environment and no other file descriptor. In order:

1. it ties its process group's life to the server (the lifeline) and becomes
   the subreaper of whatever the plugin starts, so nothing escapes the server's view;
2. it reads its configuration (one JSON frame), caps its address space and
   confines itself for good: hard limits, another uid when started as root, no
   capabilities, Landlock, seccomp (plugins/runtime/sandbox/);
3. only then does it import the plugin's module, which is plugin code too;
4. it serves executions, one at a time, each in its emptied temporary directory.

Every message it sends is a JSON header frame, then a data frame (the result's JSON
text, or an error envelope); a result's header may announce artifacts, one raw frame
each after the data (plugins/runtime/isolation/artifacts.py). During an execution,
progress the plugin reports comes first, as messages of their own (``{"progress": ...}``,
empty data). It runs one plugin for its whole life: what a plugin leaves behind here
(globals, cwd, environment, limits, handlers) meets only that plugin's own later
executions.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import plugins.runtime.isolation.channel as channel
from plugins.contract import Plugin
from plugins.errors.error_envelope import ErrorEnvelope, ErrorType, build_error_envelope
from plugins.errors.exceptions import (
    PluginResourceLimitError,
    PluginUnavailableError,
    envelope_for,
)
from plugins.progress import ProgressReport, reporting_to
from plugins.runtime import plugin_side
from plugins.runtime.isolation.artifacts import announce, artifacts_of, send_all
from plugins.runtime.provenance import code_of

PluginRef = tuple[str, str]
"""A plugin class by module and qualified name: how a host finds it."""

FUNCTIONS: dict[str, Callable[..., bytes]] = {
    "validate_and_run": plugin_side.validate_and_run,
    "validate_only": plugin_side.validate_only,
}
"""What the server may ask a host to run, by name."""

MAX_CONFIG_BYTES = 1024 * 1024
MAX_REQUEST_BYTES = 256 * 1024 * 1024
MAX_ENVELOPE_BYTES = 256 * 1024
MAX_MESSAGE_CHARS = 2000
MAX_TRACEBACK_CHARS = 64 * 1024

_PR_SET_CHILD_SUBREAPER = 36
_retiring = False  # unfit to serve: the server replaces this host after its reply


def main(argv: Sequence[str]) -> None:
    requests, replies, lifeline = (int(arg) for arg in argv[:3])
    _die_with_server(lifeline)
    _become_subreaper()
    signal.signal(signal.SIGTERM, _kill_own_group)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the server to handle
    config = channel.receive_json(requests, MAX_CONFIG_BYTES)
    ref: PluginRef = (str(config["plugin"][0]), str(config["plugin"][1]))
    workdir = os.getcwd()
    try:
        _import_packages_from(config["packages"])
        _limit_memory(config["max_memory_mb"])  # measured on /proc, which confined is unreadable
        confinement = _confine(config["sandbox"], lifeline)
        plugin = _load_plugin(ref)
        ran = code_of(type(plugin))
    except BaseException as exc:
        _reply(replies, {"ready": False}, _failure_report(exc, ref[1], config["max_memory_mb"]))
        return
    _reply(replies, {"ready": True, "ran": ran.as_report(), "confinement": confinement}, b"")
    _serve(plugin, requests, replies, workdir, config["max_memory_mb"])


def _serve(
    plugin: Plugin, requests: int, replies: int, workdir: str, max_memory_mb: int | None
) -> None:
    while True:
        try:
            request = channel.receive_json(requests, MAX_REQUEST_BYTES)
        except channel.ChannelClosed:
            return
        _reap_children()
        ok = False
        progress = _ProgressToServer(replies)
        try:
            function = FUNCTIONS[request["function"]]
            with reporting_to(progress):
                data, ok = function(plugin, *request["args"]), True
        except BaseException as exc:
            data = _failure_report(exc, plugin.name, max_memory_mb)
        finally:
            _empty(workdir)
        progress.close()
        _reply(replies, {"ok": ok, "retire": _retiring}, data)


def _reply(fd: int, header: dict[str, Any], data: bytes) -> None:
    """The header, the data, then (a result with artifacts) one frame per artifact."""
    artifacts = artifacts_of(data)
    if artifacts:
        header["artifacts"] = announce(artifacts)
    channel.send_json(fd, header)
    channel.send(fd, data)
    send_all(fd, artifacts)


class _ProgressToServer:
    """Sends one execution's progress reports to the server as they are made (plugins/progress.py).

    Each is a message of its own before the outcome: a ``{"progress": ...}`` header
    and empty data. A lock keeps the frames of two of the plugin's threads apart;
    once the execution ended, reports (from a thread it left behind) are dropped.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self._open = True

    def __call__(self, report: ProgressReport) -> None:
        with self._lock:
            if self._open:
                _reply(self._fd, {"progress": report.as_json()}, b"")

    def close(self) -> None:
        with self._lock:
            self._open = False


# Ties to the server -----------------------------------------------------------------


def _die_with_server(lifeline: int) -> None:
    """When the server's end of the lifeline closes (it exited, however), SIGKILL our group.

    The kernel does it, so a host stuck in C code or spinning goes too, with every
    process its plugin started (they cannot leave the group: the sandbox forbids
    setsid and setpgid). The sandbox also keeps plugin code from undoing this.
    """
    if not sys.platform.startswith("linux"):
        return
    fcntl.fcntl(lifeline, fcntl.F_SETOWN, -os.getpgrp())
    fcntl.fcntl(lifeline, fcntl.F_SETSIG, signal.SIGKILL)
    fcntl.fcntl(lifeline, fcntl.F_SETFL, fcntl.fcntl(lifeline, fcntl.F_GETFL) | os.O_ASYNC)


def _become_subreaper() -> None:
    """Orphans of the plugin's processes become this host's children, where the server sees them."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _kill_own_group(signum: int, frame: Any) -> None:
    os.killpg(0, signal.SIGKILL)


def _reap_children() -> None:
    """Collect the plugin's processes that ended, so that none lingers as a zombie."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


# Confinement ------------------------------------------------------------------------


def _confine(sandbox: dict[str, Any] | None, lifeline: int) -> dict[str, Any]:
    """Confine this process as the server asked; what is in force. None: the operator said off."""
    if sandbox is None:
        return {"sandbox": "off"}
    from plugins.runtime.sandbox import SandboxPolicy, SandboxUnavailable, confine

    user = sandbox["user"]
    policy = SandboxPolicy(
        read_only=tuple(sandbox["read_only"]),
        read_write=tuple(sandbox["read_write"]),
        network=bool(sandbox["network"]),
        user=(int(user[0]), int(user[1])) if user else None,
        max_open_files=int(sandbox["max_open_files"]),
        protected_fds=(lifeline,),
    )
    try:
        confinement = confine(policy)
    except SandboxUnavailable as exc:  # fail closed: no plugin code runs unconfined
        raise PluginUnavailableError(
            f"The plugin sandbox cannot confine its process: {exc}. Plugins do not run "
            "unconfined unless the operator sets PLUGIN_SANDBOX=off",
            details={"reason": str(exc)},
        ) from exc
    return dict(confinement.describe())


def _limit_memory(max_memory_mb: int | None) -> None:
    """Cap the address space, soft and hard, before any plugin code runs: it cannot raise it."""
    if max_memory_mb is None or not sys.platform.startswith("linux"):
        return
    from plugins.runtime.sandbox import limit_memory

    limit_memory(max_memory_mb * 1024 * 1024)


def _empty(workdir: str) -> None:
    """Leave the temporary directory empty for the next execution, and be in it."""
    os.chdir(workdir)
    os.environ["TMPDIR"] = tempfile.tempdir = workdir
    try:
        names = os.listdir(workdir)
    except OSError:
        return
    for name in names:
        path = os.path.join(workdir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)


# The plugin -------------------------------------------------------------------------


class _PackageFinder(importlib.abc.MetaPathFinder):
    """Finds the top-level packages the server named, and nothing else of its folders.

    The project's folder is not on this host's path (nor readable): only the
    packages a plugin needs, the runtime's and the plugin's own, are imported from it.
    """

    def __init__(self, locations: dict[str, str]) -> None:
        self._locations = locations

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        location = self._locations.get(fullname)
        if location is None:
            return None
        if os.path.isdir(location):
            return importlib.util.spec_from_file_location(
                fullname,
                os.path.join(location, "__init__.py"),
                submodule_search_locations=[location],
            )
        return importlib.util.spec_from_file_location(fullname, location)


def _import_packages_from(locations: dict[str, str]) -> None:
    sys.meta_path.insert(0, _PackageFinder(dict(locations)))


def _load_plugin(ref: PluginRef) -> Plugin:
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
    return plugin  # type: ignore[no-any-return]


# Failures ---------------------------------------------------------------------------


def _failure_report(exc: BaseException, name: str, max_memory_mb: int | None) -> bytes:
    """The failure as a bounded envelope in JSON; whatever the plugin put in it, this returns."""
    global _retiring
    try:
        if isinstance(exc, MemoryError):
            _retiring = True  # it may still hold what it allocated
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
    """The envelope as JSON, cut to sizes that cannot flood the server or the job row."""
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
