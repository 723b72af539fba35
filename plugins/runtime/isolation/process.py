"""Process isolation, the server's side: sandboxed plugin hosts, one plugin each.

A host (plugins/runtime/isolation/host.py) is a clean interpreter, started with an
allow-listed environment and no inherited file descriptor but its three pipes. It
confines itself by the kernel before any plugin code runs (plugins/runtime/sandbox/),
loads one plugin and serves its executions over length-prefixed JSON frames
(channel.py). This module keeps, per plugin and per server process, a small pool
of hosts started ahead of demand, and makes sure of what containment needs:

* nothing a host sends is unpickled or evaluated: headers and results are JSON,
  read with size limits and deadlines, and checked again here;
* a host leads its own process group, which plugin code cannot leave (the sandbox
  forbids setsid and setpgid): past its time limit, on a stop, or when it dies,
  the group is SIGKILLed, double-forked daemons included;
* a host is the subreaper of what its plugin starts: if any of those processes is
  left when an execution returns, the host and its group are killed;
* when the server process dies however (``kill -9``), the kernel kills every
  host's group (the lifeline, see host.py);
* a host runs one plugin only, so a plugin that poisons its host (globals,
  limits, handlers) harms only its own later executions; ``fresh_process``
  plugins get a new host every time.

Why not a pool library: pebble (used before) and multiprocessing pickle on a
channel that all children share; here each host has its own pipes and speaks JSON.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import logging
import os
import pwd
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import plugins.runtime.isolation.artifacts as plugin_artifacts
import plugins.runtime.isolation.channel as channel
import plugins.runtime.isolation.output as plugin_output
from plugins.errors.error_envelope import ErrorType, build_error_envelope
from plugins.errors.exceptions import (
    GovernedExecutionError,
    InputValidationError,
    OutputValidationError,
    PluginCrashedError,
    PluginExecutionError,
    PluginTimeoutError,
    PluginUnavailableError,
    ReportedExecutionError,
)
from plugins.progress import ProgressError, ProgressReport
from plugins.runtime.control import ExecutionControl, wait_until_done
from plugins.runtime.isolation.base import PluginSide
from plugins.runtime.isolation.host import (
    FUNCTIONS,
    MAX_ENVELOPE_BYTES,
    MAX_MESSAGE_CHARS,
    MAX_TRACEBACK_CHARS,
    PluginRef,
)
from plugins.runtime.limits import ExecutionLimits
from plugins.runtime.provenance import RanCode
from plugins.validation.json_values import storable_copy

if TYPE_CHECKING:
    from plugins.contract import Plugin

logger = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024
# A host's start (the interpreter, its confinement, the plugin's imports) is not part of
# an execution's time limit: hosts are started ahead of demand, and one that must
# start for a call gets this long, then the execution its own limit from then on.
HOST_START_TIMEOUT_S = 10.0
_EXIT_WAIT_S = 1.0
# The only variables a host gets; whatever else the server has (SECRET_KEY,
# DATABASE_URL, tokens, cloud credentials) stays out.
_PASSED_ENVIRONMENT = ("LANG", "LC_ALL", "LC_CTYPE", "TZ")
HOST_SETTINGS_MODULE = "plugins.runtime.isolation.host_settings"
# What a host may say went wrong. The rest (a timeout, a crash, a lost worker, a cancel)
# only the server knows: a host that reports one is lying about itself.
HOST_ERROR_TYPES = frozenset(
    {
        ErrorType.VALIDATION_ERROR,
        ErrorType.PLUGIN_VERSION_MISMATCH,
        ErrorType.PLUGIN_EXECUTION_ERROR,
        ErrorType.PLUGIN_RESOURCE_LIMIT,
        ErrorType.OUTPUT_VALIDATION_ERROR,
        ErrorType.PLUGIN_UNAVAILABLE,
    }
)
WORKDIR_PREFIX = "governed-plugin-"


def plugin_ref(plugin_class: type) -> PluginRef:
    return plugin_class.__module__, plugin_class.__qualname__


def importable_problem(plugin_class: type) -> str | None:
    """Why a host process could not import ``plugin_class``, or None if it can."""
    module, qualname = plugin_ref(plugin_class)
    if "<locals>" in qualname or module == "__main__":
        return (
            f"{module}.{qualname} must be importable by its module path to run in a "
            "host process (define it at module level, or set isolation = 'thread')"
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


@dataclass(frozen=True)
class SandboxSettings:
    """How hosts are confined: the operator's settings."""

    enabled: bool = True
    user: str = "nobody"
    max_open_files: int = 256

    @classmethod
    def from_settings(cls) -> SandboxSettings:
        from django.conf import settings

        return cls(
            enabled=settings.PLUGIN_SANDBOX != "off",
            user=settings.PLUGIN_SANDBOX_USER,
        )

    def describe(self) -> dict[str, Any]:
        """What confines hosts on this machine with these settings: for logs and /v1/health."""
        if not self.enabled:
            return {"mode": "off", "confined": False}
        if not sys.platform.startswith("linux"):
            return {"mode": "on", "confined": False, "problem": "not Linux"}
        from plugins.runtime.sandbox import kernel_support

        support = kernel_support()
        problem = ""
        if not support["landlock_abi"]:
            problem = "this kernel has no Landlock: process-isolated plugins do not run"
        elif not support["seccomp"]:
            problem = "libseccomp cannot be loaded: process-isolated plugins do not run"
        described: dict[str, Any] = {
            "mode": "on",
            "confined": not problem,
            "landlock_abi": support["landlock_abi"],
            "seccomp": support["seccomp"],
            "user": self.user if support["root"] else "the server's (it does not run as root)",
        }
        if problem:
            described["problem"] = problem
        return described

    def user_ids(self) -> tuple[int, int] | None:
        """The (uid, gid) hosts switch to when the server runs as root; None otherwise."""
        if os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam(self.user)
        except KeyError:
            raise PluginUnavailableError(
                f"PLUGIN_SANDBOX_USER {self.user!r} is no user of this machine: plugins "
                "do not run as root",
                details={"reason": f"no user {self.user}"},
            ) from None
        return entry.pw_uid, entry.pw_gid


@dataclass(frozen=True)
class HostSpec:
    """Everything a host is started with; hosts of equal specs are interchangeable."""

    plugin: PluginRef
    packages: tuple[tuple[str, str], ...]
    read_only: tuple[str, ...]
    network: bool
    max_memory_mb: int | None
    fresh_process: bool
    sandbox: SandboxSettings

    @classmethod
    def of(cls, plugin: Plugin, limits: ExecutionLimits, sandbox: SandboxSettings) -> HostSpec:
        plugin_class = type(plugin)
        packages = _package_locations(plugin_class)
        declared = tuple(str(Path(path).resolve()) for path in limits.read_paths)
        read_only = (*_interpreter_paths(), *(location for _, location in packages), *declared)
        exposed = _exposed_by(read_only) if sandbox.enabled else None
        if exposed:
            raise PluginUnavailableError(
                f"Plugin {plugin.name!r} cannot be sandboxed: its readable paths would "
                f"expose the server ({exposed})",
                details={"reason": exposed},
            )
        return cls(
            plugin=plugin_ref(plugin_class),
            packages=packages,
            read_only=read_only,
            network=limits.network,
            max_memory_mb=limits.max_memory_mb,
            fresh_process=limits.fresh_process,
            sandbox=sandbox,
        )


class ProcessIsolation:
    """Pools of sandboxed hosts, one pool per plugin (and limits), in this process."""

    def __init__(
        self,
        *,
        hosts_per_plugin: int = 1,
        max_executions_per_host: int = 10000,
        sandbox: SandboxSettings | None = None,
    ) -> None:
        self.hosts_per_plugin = max(hosts_per_plugin, 1)
        self.max_executions_per_host = max_executions_per_host
        self.sandbox = sandbox if sandbox is not None else SandboxSettings()
        self._lock = threading.Lock()
        self._pools: dict[HostSpec, _HostPool] = {}
        self._specs: dict[tuple[type, ExecutionLimits], HostSpec] = {}
        self._owner_pid = os.getpid()

    @classmethod
    def shared(cls) -> ProcessIsolation:
        """This process's hosts, configured from settings."""
        global _shared
        if _shared is None or _shared._owner_pid != os.getpid():
            with _shared_lock:
                if _shared is None or _shared._owner_pid != os.getpid():
                    from django.conf import settings

                    _shared = cls(
                        hosts_per_plugin=settings.PLUGIN_HOSTS_PER_PLUGIN,
                        max_executions_per_host=settings.PLUGIN_MAX_EXECUTIONS_PER_HOST,
                        sandbox=SandboxSettings.from_settings(),
                    )
                    remove_directories_of_dead_servers()
                    atexit.register(_shared.shutdown, wait=True)
        return _shared

    def call(
        self,
        function: PluginSide,
        plugin: Plugin,
        *args: Any,
        limits: ExecutionLimits,
        control: ExecutionControl | None = None,
    ) -> tuple[bytes, RanCode | None]:
        """Run ``function(plugin, *args)`` in one of the plugin's hosts, under ``limits``.

        A failure the host reports is raised here with what ran attached (``exc.ran``).
        """
        if function.__name__ not in FUNCTIONS:
            raise ValueError(f"{function.__name__} is not something a plugin host runs")
        try:
            request = json.dumps({"function": function.__name__, "args": list(args)}).encode()
        except (TypeError, ValueError) as exc:
            raise InputValidationError(f"The payload is not JSON: {exc}") from exc
        pool = self._pool(self._spec(plugin, limits))
        with pool.host() as host:
            deadline = time.monotonic() + limits.timeout_s
            try:
                ok, data = host.execute(request, deadline, limits, control)
            finally:
                if plugin_output.wanted():  # kept also when it crashed or timed out
                    plugin_output.deliver(host.output(plugin_output.max_bytes()))
            if ok and data:
                _must_be_json(data)  # a host that lies is not reused
        return _checked(ok, data, limits.max_result_bytes, host.ran)

    def warm_up(self, plugins: Iterable[tuple[Plugin, ExecutionLimits]]) -> None:
        """Start a host for each of these plugins now, in the background."""
        for plugin, limits in plugins:
            self._pool(self._spec(plugin, limits)).fill()

    def keep_hosts_per_plugin(self, count: int) -> None:
        """Keep at least ``count`` hosts ready per plugin, in the pools to come and those there are.

        For a process that runs up to ``count`` executions of one plugin at once
        (a db_worker's concurrency): with fewer hosts, the others wait for a start.
        """
        with self._lock:
            self.hosts_per_plugin = max(self.hosts_per_plugin, count)
            pools = list(self._pools.values())
        for pool in pools:
            pool.size = max(pool.size, count)

    def hosts(self) -> list[HostInfo]:
        """Every host of this process: its pid, its plugin, whether it runs an execution now."""
        with self._lock:
            pools = list(self._pools.values())
        return [info for pool in pools for info in pool.hosts()]

    def shutdown(self, *, wait: bool = False) -> None:
        """Kill every host of this process (``wait``: and remove their directories now)."""
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close(wait=wait)

    def _spec(self, plugin: Plugin, limits: ExecutionLimits) -> HostSpec:
        key = (type(plugin), limits)
        spec = self._specs.get(key)
        if spec is None:
            spec = self._specs[key] = HostSpec.of(plugin, limits, self.sandbox)
        return spec

    def _pool(self, spec: HostSpec) -> _HostPool:
        pool = self._pools.get(spec)
        if pool is None:
            with self._lock:
                pool = self._pools.get(spec)
                if pool is None:
                    pool = _HostPool(spec, self.hosts_per_plugin, self.max_executions_per_host)
                    self._pools[spec] = pool
        return pool


@dataclass(frozen=True)
class HostInfo:
    pid: int
    plugin: str
    busy: bool


class _HostPool:
    """The idle hosts of one spec: taken last in, first out, and replaced ahead of demand."""

    def __init__(self, spec: HostSpec, size: int, max_executions: int) -> None:
        self.spec = spec
        self.size = size
        self.max_executions = max_executions
        self._idle: collections.deque[_Host] = collections.deque()
        self._busy: set[_Host] = set()
        self._starting = 0
        self._closed = False
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def host(self) -> Iterator[_Host]:
        """A ready host for one execution; it goes back to the pool only if it is still fit."""
        host = self._take()
        try:
            host.wait_ready()
            yield host
        except BaseException:
            host.kill()
            self.fill()
            raise
        finally:
            with self._lock:
                self._busy.discard(host)
        if self._fit(host):
            self._give_back(host)
        else:
            host.kill()
        self.fill()

    def fill(self) -> None:
        """Start hosts in the background until ``size`` are idle or on their way."""
        with self._lock:
            missing = 0 if self._closed else self.size - len(self._idle) - self._starting
            self._starting += max(missing, 0)
        for _ in range(missing):
            threading.Thread(target=self._start_one, name="plugin-host-start", daemon=True).start()

    def hosts(self) -> list[HostInfo]:
        with self._lock:
            busy, idle = list(self._busy), list(self._idle)
        plugin = ".".join(self.spec.plugin)
        return [HostInfo(host.pid, plugin, True) for host in busy] + [
            HostInfo(host.pid, plugin, False) for host in idle
        ]

    def close(self, *, wait: bool = False) -> None:
        """Kill its hosts, and those still starting once they have."""
        with self._lock:
            self._closed = True
            idle, self._idle = list(self._idle), collections.deque()
            busy = list(self._busy)
        for host in idle:
            host.kill(wait=wait)
        for host in busy:  # its caller sees it die, and closes its pipes itself
            host.kill_group()

    def _take(self) -> _Host:
        with self._lock:
            while self._idle:
                host = self._idle.pop()
                # A process its plugin's threads started since its last execution ends it.
                if host.alive() and not host.has_leftover_processes():
                    self._busy.add(host)
                    return host
                host.kill()
        host = _Host(self.spec)  # none ready: this call waits for a start
        with self._lock:
            self._busy.add(host)
        return host

    def _give_back(self, host: _Host) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self.size + 1:
                self._idle.append(host)
                return
        host.kill()

    def _fit(self, host: _Host) -> bool:
        """Whether ``host`` may serve again: not retired, not used up, nothing left running."""
        if self.spec.fresh_process or host.retiring or host.executions >= self.max_executions:
            return False
        return not host.has_leftover_processes()

    def _start_one(self) -> None:
        try:
            host = _Host(self.spec)
        except Exception:
            logger.exception("Starting a plugin host for %s.%s failed", *self.spec.plugin)
            host = None
        with self._lock:
            self._starting -= 1
            if host is not None and not self._closed:
                self._idle.appendleft(host)
                return
        if host is not None:
            host.kill()


class _Host:
    """One host process, seen from the server: its pipes, its group, its temporary directory."""

    def __init__(self, spec: HostSpec) -> None:
        self.spec = spec
        self.ran: RanCode | None = None
        self.retiring = False
        self.executions = 0
        self._ready = False
        self._dead = False
        self.started_at = time.monotonic()
        self.workdir = tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-")
        # The host's stdout and stderr: ours to read whatever becomes of the host.
        self._output = tempfile.TemporaryFile(mode="a+b", buffering=0)  # noqa: SIM115  # lives as long as the host
        self._requests = self._replies = self._lifeline = -1
        try:
            self._start(spec)
        except BaseException:
            self._close_pipes()
            self._output.close()
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise

    def _start(self, spec: HostSpec) -> None:
        user = spec.sandbox.user_ids() if spec.sandbox.enabled else None
        if user is not None:
            os.chown(self.workdir, *user)
        host_ends: list[int] = []
        try:
            host_requests, self._requests = os.pipe2(os.O_CLOEXEC)
            host_ends.append(host_requests)
            self._replies, host_replies = os.pipe2(os.O_CLOEXEC)
            host_ends.append(host_replies)
            host_lifeline, self._lifeline = os.pipe2(os.O_CLOEXEC)
            host_ends.append(host_lifeline)
            label = "plugin=" + ".".join(spec.plugin)
            self.process = subprocess.Popen(
                # The plugin's name last: for ps and top, the host ignores it.
                [sys.executable, "-I", "-B", "-u", "-c", _bootstrap(), *map(str, host_ends), label],
                pass_fds=host_ends,
                env=_host_environment(self.workdir),
                cwd=self.workdir,
                # Not the server's output: a plugin could forge its log lines, or reach
                # its terminal. It goes to the job instead (output.py); what fails at
                # the start is in the host's ready message.
                stdin=subprocess.DEVNULL,
                stdout=self._output,
                stderr=self._output,
                start_new_session=True,
            )
        finally:
            for fd in host_ends:
                os.close(fd)
        os.set_blocking(self._requests, False)  # a host that stops reading holds no one
        with contextlib.suppress(BrokenPipeError, TimeoutError):  # its first read says why
            channel.send_json(
                self._requests, self._config(user), time.monotonic() + HOST_START_TIMEOUT_S
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self) -> None:
        """Wait for the host's first message: it confined itself and loaded its plugin."""
        if self._ready:
            return
        deadline = self.started_at + HOST_START_TIMEOUT_S
        try:
            self._await_message(deadline, HOST_START_TIMEOUT_S, None)
            header, data = self._read_message(deadline, HOST_START_TIMEOUT_S, MAX_ENVELOPE_BYTES)
        except PluginTimeoutError:
            raise PluginTimeoutError(
                f"The plugin's process did not start within {HOST_START_TIMEOUT_S:g} s",
                details={"timeout_s": HOST_START_TIMEOUT_S},
            ) from None
        if not header.get("ready"):
            raise _reported_failure(data, None)
        self.ran = RanCode.from_report(header.get("ran"))
        self._ready = True

    def execute(
        self,
        request: bytes,
        deadline: float,
        limits: ExecutionLimits,
        control: ExecutionControl | None,
    ) -> tuple[bool, bytes]:
        """Send one request; return (succeeded, result or error envelope as JSON)."""
        self.executions += 1
        os.ftruncate(self._output.fileno(), 0)  # appends start again at 0: this run's only
        try:
            channel.send(self._requests, request, deadline)
        except BrokenPipeError:
            raise self._crash() from None
        except TimeoutError:  # it stopped reading its requests
            raise _timed_out(limits.timeout_s) from None
        header, data = self._await_outcome(deadline, limits, control)
        self.retiring = bool(header.get("retire"))
        if header.get("ok") and "artifacts" in header:
            data = self._receive_artifacts(header["artifacts"], data, deadline, limits)
        return bool(header.get("ok")), data

    def _receive_artifacts(
        self, announced: object, data: bytes, deadline: float, limits: ExecutionLimits
    ) -> bytes:
        """The artifacts that follow a result, each into a file of ours (artifacts.py)."""
        try:
            received = plugin_artifacts.receive_all(
                self._replies,
                announced,
                max_bytes=limits.max_artifact_bytes,
                max_total_bytes=limits.max_artifacts_total_bytes,
                deadline=deadline,
            )
        except channel.ChannelClosed:
            raise self._crash() from None
        except channel.FrameTooLarge:
            raise OutputValidationError(
                "The plugin's process sent an artifact other than the one it announced"
            ) from None
        except TimeoutError:
            raise _timed_out(limits.timeout_s) from None
        return plugin_artifacts.with_artifacts(data, received)

    def _await_outcome(
        self, deadline: float, limits: ExecutionLimits, control: ExecutionControl | None
    ) -> tuple[dict[str, Any], bytes]:
        """The execution's outcome message, by ``deadline``; ``control`` is told it started.

        The progress the host reports meanwhile, each a message of its own, is
        checked and handed to ``control``, one per wait, so that the time limit
        and stops are checked between them however many come.
        """
        max_bytes = max(limits.max_result_bytes, MAX_ENVELOPE_BYTES)
        outcome: tuple[dict[str, Any], bytes] | None = None

        def arrived(wait_s: float) -> bool:
            nonlocal outcome
            if not channel.readable(self._replies, wait_s):
                return False
            header, data = self._read_message(deadline, limits.timeout_s, max_bytes)
            if "progress" not in header:
                outcome = header, data
                return True
            report = _progress_report(header, data)
            if control is not None:
                control.progress(report)
            return False

        try:
            wait_until_done(
                arrived, timeout_s=max(deadline - time.monotonic(), 0.0), control=control
            )
        except PluginTimeoutError:
            raise _timed_out(limits.timeout_s) from None
        assert outcome is not None
        return outcome

    def _await_message(
        self, deadline: float, timeout_s: float, control: ExecutionControl | None
    ) -> None:
        """Until the host sends, or ``deadline``; ``control`` is told the execution started."""
        try:
            wait_until_done(
                lambda wait_s: channel.readable(self._replies, wait_s),
                timeout_s=max(deadline - time.monotonic(), 0.0),
                control=control,
            )
        except PluginTimeoutError:
            raise _timed_out(timeout_s) from None

    def _read_message(
        self, deadline: float, timeout_s: float, max_data_bytes: int
    ) -> tuple[dict[str, Any], bytes]:
        """The host's message: a JSON header and its data, both read by ``deadline``."""
        try:
            header = channel.receive_json(self._replies, MAX_HEADER_BYTES, deadline)
            data = channel.receive(self._replies, max_data_bytes, deadline)
        except channel.ChannelClosed:
            raise self._crash() from None
        except channel.FrameTooLarge as exc:
            raise OutputValidationError(
                f"The plugin returned a result of {exc.size} bytes; the limit is {exc.limit}",
                details={"result_bytes": exc.size, "max_result_bytes": exc.limit},
            ) from None
        except TimeoutError:
            raise _timed_out(timeout_s) from None
        except ValueError:
            raise _not_an_outcome() from None
        if not isinstance(header, dict):
            raise _not_an_outcome()
        return header, data

    def _crash(self) -> PluginCrashedError:
        """The channel ended: the host died (or closed it, which is as bad)."""
        try:
            exitcode = self.process.wait(timeout=_EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            return PluginCrashedError("The plugin's process closed its channel before it returned")
        message = (
            "The plugin's process ended before it returned"
            if exitcode == 0
            else "The plugin's process died before it returned"
        )
        return PluginCrashedError(message, details=describe_exit(exitcode))

    def output(self, limit: int) -> str:
        """What the last execution printed (and what it started), at most ``limit`` bytes."""
        try:
            return plugin_output.read_bounded(self._output.fileno(), limit)
        except (OSError, ValueError):  # closed: the host was taken down meanwhile
            return ""

    def alive(self) -> bool:
        return not self._dead and self.process.poll() is None

    def has_leftover_processes(self) -> bool:
        """Whether a process the plugin started is still there (a child of this subreaper)."""
        try:
            tasks = os.listdir(f"/proc/{self.pid}/task")
        except OSError:  # gone, or not ours to look at: not to be reused either way
            return sys.platform.startswith("linux")
        for task in tasks:
            try:
                with open(f"/proc/{self.pid}/task/{task}/children") as children:
                    if children.read().strip():
                        return True
            except OSError:
                continue
        return False

    def kill(self, *, wait: bool = False) -> None:
        """SIGKILL the host's whole group now; reap it and remove its directory meanwhile.

        ``wait``: reap and remove before returning (at exit, no thread would finish).
        """
        if self._dead:
            return
        self._dead = True
        self.kill_group()
        self._close_pipes()
        if wait:
            self._reap()
        else:
            threading.Thread(target=self._reap, name="plugin-host-reap", daemon=True).start()

    def kill_group(self) -> None:
        """SIGKILL the host and every process of its group; nothing else."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def _close_pipes(self) -> None:
        for fd in (self._requests, self._replies, self._lifeline):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _reap(self) -> None:
        with contextlib.suppress(Exception):
            self.process.wait(timeout=30)
        remove_tree(self.workdir)
        self._output.close()

    def _config(self, user: tuple[int, int] | None) -> dict[str, Any]:
        spec = self.spec
        sandbox = None
        if spec.sandbox.enabled:
            sandbox = {
                "read_only": list(spec.read_only),
                "read_write": [self.workdir],
                "network": spec.network,
                "user": list(user) if user else None,
                "max_open_files": spec.sandbox.max_open_files,
            }
        return {
            "plugin": list(spec.plugin),
            "packages": dict(spec.packages),
            "sandbox": sandbox,
            "max_memory_mb": spec.max_memory_mb,
        }


def remove_directories_of_dead_servers() -> None:
    """Remove the hosts' directories a server process left when it was killed (SIGKILL)."""
    root = Path(tempfile.gettempdir())
    for folder in root.glob(f"{WORKDIR_PREFIX}*-*"):
        server = folder.name[len(WORKDIR_PREFIX) :].partition("-")[0]
        if server.isdigit() and not _alive(int(server)):
            remove_tree(str(folder))


def remove_tree(path: str) -> None:
    """Remove a host's directory, even where its plugin took away the modes' write or search bit."""

    def allow_and_retry(function: Any, failed: str, _: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(failed), 0o700)
            if os.path.isdir(failed) and not os.path.islink(failed):
                os.chmod(failed, 0o700)
            function(failed)

    shutil.rmtree(path, onerror=allow_and_retry)
    if os.path.exists(path):  # what was below a folder it could not list at first
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, and another user's
        pass
    return True


def _timed_out(timeout_s: float) -> PluginTimeoutError:
    return PluginTimeoutError(
        f"Execution exceeded its time limit of {timeout_s:g} s", details={"timeout_s": timeout_s}
    )


def _not_an_outcome() -> PluginExecutionError:
    return PluginExecutionError("The plugin's process sent something other than its outcome")


def _progress_report(header: dict[str, Any], data: bytes) -> ProgressReport:
    """A progress message, checked as ``report_progress`` checks a call: the host may lie."""
    try:
        if data:
            raise ProgressError("a progress message carries no data")
        return ProgressReport.from_json(header["progress"])
    except ProgressError:
        raise _not_an_outcome() from None


def _must_be_json(data: bytes) -> None:
    try:
        json.loads(data)
    except (ValueError, RecursionError):
        raise _not_an_outcome() from None


def _bootstrap() -> str:
    """The host's first code: import the runtime from where this server has it, then run."""
    root = str(Path(__file__).resolve().parents[3])
    return (
        "import sys\n"
        f"sys.path.insert(0, {root!r})\n"
        "from plugins.runtime.isolation.host import main\n"
        f"sys.path.remove({root!r})\n"
        "main(sys.argv[1:])\n"
    )


def _host_environment(workdir: str) -> dict[str, str]:
    env = {name: os.environ[name] for name in _PASSED_ENVIRONMENT if name in os.environ}
    env.update(
        PATH="/usr/local/bin:/usr/bin:/bin",
        HOME=workdir,
        TMPDIR=workdir,
        DJANGO_SETTINGS_MODULE=HOST_SETTINGS_MODULE,
    )
    return env


@cache
def _interpreter_paths() -> tuple[str, ...]:
    """What a host reads to run Python: the interpreter, the standard library, the packages.

    Not the prefixes themselves: a system Python's is ``/usr``, which may hold the
    project (``/usr/src/app``).
    """
    paths = set(site.getsitepackages())
    for name in ("stdlib", "platstdlib", "purelib", "platlib"):
        paths.add(sysconfig.get_path(name))
    paths.add(str(Path(sys.executable).resolve().parent))
    return tuple(sorted({str(Path(p).resolve()) for p in paths if p}))


def _exposed_by(read_only: tuple[str, ...]) -> str | None:
    """What of the server one of these trees would let a host read, if any.

    The project folder, the SQLite file, and the artifacts' folder: every user's
    files are there, so no tree may hold it nor lie inside it.
    """
    from django.conf import settings

    secrets = [Path(settings.BASE_DIR).resolve()]
    database = settings.DATABASES.get("default", {})
    if "sqlite" in str(database.get("ENGINE", "")):
        secrets.append(Path(str(database.get("NAME", ""))).resolve())
    artifacts = _artifacts_folder()
    for root in read_only:
        for secret in secrets:
            if secret.is_relative_to(root):
                return f"{root} holds {secret}"
        if artifacts is not None and (
            artifacts.is_relative_to(root) or Path(root).is_relative_to(artifacts)
        ):
            return f"{root} reaches the artifacts in {artifacts}"
    return None


def _artifacts_folder() -> Path | None:
    """Where the artifacts storage keeps its files, when it is a folder here (FileSystemStorage)."""
    from django.core.files.storage import FileSystemStorage, InvalidStorageError, storages

    try:
        storage = storages["artifacts"]
    except InvalidStorageError:
        return None
    if not isinstance(storage, FileSystemStorage):
        return None
    return Path(storage.location).resolve()


def _package_locations(plugin_class: type) -> tuple[tuple[str, str], ...]:
    """Top-level packages a host imports from outside the installed packages, by location.

    The runtime's own (``plugins``) and the plugin's: a host reads them, and nothing
    else of the folder they are in (the project's folder holds its settings and,
    with SQLite, its database).
    """
    installed = _interpreter_paths()
    locations = {}
    for name in ("plugins", plugin_class.__module__.partition(".")[0]):
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if path is None:
            continue
        location = Path(path).resolve()
        if location.name == "__init__.py":
            location = location.parent
        if not any(location.is_relative_to(root) for root in installed):
            locations[name] = str(location)
    return tuple(sorted(locations.items()))


def _checked(
    succeeded: bool, data: bytes, max_result_bytes: int, ran: RanCode | None
) -> tuple[bytes, RanCode | None]:
    """A host's outcome, checked again here: the host runs plugin code, it may lie."""
    if succeeded:
        if len(data) > max_result_bytes:
            error = OutputValidationError(
                f"The plugin returned a result of {len(data)} bytes; the limit is "
                f"{max_result_bytes}",
                details={"result_bytes": len(data), "max_result_bytes": max_result_bytes},
            )
            error.ran = ran
            raise error
        return data, ran
    raise _reported_failure(data, ran)


def _reported_failure(data: bytes, ran: RanCode | None) -> GovernedExecutionError:
    """The error a host reported, rebuilt here from the fields it may set; what ran attached.

    Nothing else of what it sent is kept: the host runs plugin code, and its report
    goes to clients, the job's row and the admin.
    """
    error: GovernedExecutionError
    if len(data) > MAX_ENVELOPE_BYTES:
        error = PluginExecutionError("The plugin's process sent an oversized error report")
    else:
        try:
            error = _rebuilt(json.loads(data))
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            error = PluginExecutionError("The plugin's process sent an unreadable error report")
    error.ran = ran
    return error


def _rebuilt(report: Any) -> GovernedExecutionError:
    reported = report["error"]
    kind = ErrorType(reported["type"])
    if kind not in HOST_ERROR_TYPES:
        return PluginExecutionError(
            "The plugin's process reported an error only the server can know of",
            details={"reported": str(kind)},
        )
    details = reported.get("details")
    envelope = build_error_envelope(
        kind,
        str(reported.get("message", ""))[:MAX_MESSAGE_CHARS],
        details=storable_copy(details) if isinstance(details, dict) else None,
    )
    internal = report.get("_internal")
    if isinstance(internal, dict) and isinstance(internal.get("traceback"), str):
        envelope["_internal"] = {"traceback": internal["traceback"][-MAX_TRACEBACK_CHARS:]}
    return ReportedExecutionError(envelope)


_shared: ProcessIsolation | None = None
_shared_lock = threading.Lock()
