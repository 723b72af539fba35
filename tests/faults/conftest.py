"""Real processes for fault tests: a gunicorn server, db_workers, and a way to talk to them.

Every process a test starts is stopped (and its process group killed) when the
test ends; the fixtures also check that nothing a plugin started is left running.
Plugins run sandboxed (the default), in host processes found by tests/plugin_hosts.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from execution.policy.tokens import create_token
from plugins.runtime.isolation.process import ProcessIsolation
from tests.conftest import ROOT, subprocess_env
from tests.plugin_hosts import group_members, plugin_hosts

FAULT_PLUGINS = ",".join(
    f"tests.plugins.sample_plugins.{name}"
    for name in (
        "EchoPlugin",
        "CrashingPlugin",
        "SegfaultingPlugin",
        "SpinningPlugin",
        "MemoryHogPlugin",
        "SleepingPlugin",
        "RetriedSleepingPlugin",
    )
)
# Short limits, so that lost jobs are recovered within seconds.
FAULT_SETTINGS = {
    "PLUGINS": FAULT_PLUGINS,
    "PLUGIN_DEFAULT_TIMEOUT_S": "5",
    "JOB_LEASE_GRACE_S": "2",
    "JOB_RECOVERY_INTERVAL_S": "0.5",
    "JOB_RETRY_BACKOFF_S": "0.2",
    "JOB_CANCEL_POLL_S": "0.2",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    # One host per plugin and process, started when a job needs it: below a fresh
    # worker, the only host of a plugin is the one running its first job.
    "PLUGIN_HOSTS_PER_PLUGIN": "1",
    "PLUGIN_WARM_HOSTS": "0",
    # No rate limits: these tests load servers on purpose (the throttles' own tests set them).
    **dict.fromkeys(
        ("API_THROTTLE_BURST", "API_THROTTLE_SUSTAINED", "API_THROTTLE_AUTH_FAILURES"), "off"
    ),
    # The fault tests' user runs every plugin, as often as a test needs: policy has
    # tests of its own (tests/execution/test_policy_*.py).
    "PLUGIN_ACCESS": "open",
    "POLICY_MAX_ACTIVE_JOBS": "0",
    "POLICY_MAX_SYNC_RUNS": "0",
}
_PR_SET_CHILD_SUBREAPER = 36


def wait_until(condition: Callable[[], Any], timeout_s: float = 60, step_s: float = 0.1) -> Any:
    """Poll ``condition`` until it returns something true; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s: {condition}")
        time.sleep(step_s)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command's name (the state first); None: no process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def process_gone(pid: int) -> bool:
    fields = proc_stat(pid)
    return fields is None or fields[0] == "Z"


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        fields = proc_stat(int(entry.name)) if entry.name.isdigit() else None
        if fields is not None and fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _cpu_ticks(pid: int) -> int | None:
    fields = proc_stat(pid)
    return int(fields[11]) + int(fields[12]) if fields else None  # utime + stime


def asleep(pids: list[int], for_s: float = 0.2) -> bool:
    """Whether each of ``pids`` sleeps and used no CPU time for ``for_s`` seconds.

    A host that starts, or a plugin that spins, uses CPU all along; one that sat
    still this long waits: for a request, or in a sleeping plugin's run.
    """
    before = {pid: _cpu_ticks(pid) for pid in pids}
    time.sleep(for_s)
    for pid in pids:
        fields = proc_stat(pid)
        if fields is None or fields[0] != "S" or _cpu_ticks(pid) != before[pid]:
            return False
    return True


def running_host(plugin: type, under: int, timeout_s: float = 60) -> int:
    """The one host of ``plugin`` below process ``under``, once it has started and sits still.

    For a sleeping plugin's job, that is its host inside the plugin's run.
    """

    def settled() -> int | None:
        hosts = plugin_hosts(plugin, under=under)
        assert len(hosts) <= 1, f"more than one host of {plugin.__name__}: {hosts}"
        return hosts[0] if hosts and asleep(hosts) else None

    return int(wait_until(settled, timeout_s=timeout_s))


def group_gone(pgid: int) -> bool:
    """Whether no process of group ``pgid`` (a host and what its plugin started) is left."""
    return not group_members(pgid)


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return "?"


@contextlib.contextmanager
def orphans_adopted() -> Iterator[None]:
    """For the block, orphans of the processes this one starts become its children.

    A host whose worker was killed, or a daemon a plugin double-forked, then stays
    below the test process, where the check at the end finds it, instead of going
    to init. Zombies adopted meanwhile are reaped at the end.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_CHILD_SUBREAPER")
    try:
        yield
    finally:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        _reap_zombie_children()


def _reap_zombie_children() -> None:
    for entry in Path("/proc").iterdir():
        fields = proc_stat(int(entry.name)) if entry.name.isdigit() else None
        if fields is not None and fields[0] == "Z" and int(fields[1]) == os.getpid():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(int(entry.name), os.WNOHANG)


def assert_nothing_left(before: set[int], timeout_s: float = 15) -> None:
    """No process is left below this one but those it had ``before``; any other is killed."""

    def left() -> set[int]:
        return descendants(os.getpid()) - before

    with contextlib.suppress(AssertionError):
        wait_until(lambda: not left(), timeout_s=timeout_s)
    stray = {pid: _command_line(pid) for pid in left()}
    for pid in stray:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    assert not stray, f"left running after the test: {stray}"


# Sets SIGINT to its default, then becomes the command (the same pid: exec keeps it).
DEFAULT_SIGINT_THEN_EXEC = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


@dataclass
class Managed:
    """A process started in its own process group; stopping it kills the whole group."""

    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)


@dataclass
class Processes:
    """Starts the processes of one test and cleans them all up afterwards."""

    tmp_path: Path
    env: dict[str, str]
    started: list[Managed] = field(default_factory=list)

    def start(self, args: list[str], name: str, **extra_env: str) -> Managed:
        """Start ``args`` with Ctrl-C (SIGINT) at its default, whatever pytest inherited.

        A process started from a terminal gets Ctrl-C; one started in the background
        of a script has it ignored, and so would every process of a test run that was.
        """
        log = self.tmp_path / f"{name}-{len(self.started)}.log"
        handle = log.open("wb")
        popen = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", DEFAULT_SIGINT_THEN_EXEC, *args],
            cwd=ROOT,
            env={**self.env, **extra_env},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, like a service
        )
        handle.close()
        managed = Managed(popen, log)
        self.started.append(managed)
        return managed

    def worker(self, *extra: str, **extra_env: str) -> Managed:
        args = [sys.executable, "manage.py", "db_worker", "--interval", "0.1", *extra]
        return self.start(args, "db_worker", **extra_env)

    def server(self, workers: int = 2, **extra_env: str) -> Server:
        port = free_port()
        args = [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            str(workers),
            "--timeout",
            "60",
            "--bind",
            f"127.0.0.1:{port}",
            "project.wsgi:application",
        ]
        managed = self.start(args, "gunicorn", **extra_env)
        server = Server(managed, f"http://127.0.0.1:{port}")
        wait_until(lambda: server.alive_and_healthy() or not managed.alive(), timeout_s=60)
        assert managed.alive(), managed.output()
        return server

    def stop_all(self) -> None:
        for managed in reversed(self.started):
            managed.stop()


@dataclass
class Server:
    process: Managed
    base: str
    token: str = ""

    def request(
        self, method: str, path: str, body: Any = None, timeout_s: float = 60
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Token {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def execute(self, plugin: str, payload: dict[str, Any]) -> tuple[int, Any]:
        return self.request("POST", "/v1/analyze-execution", {"plugin": plugin, "payload": payload})

    def alive_and_healthy(self) -> bool:
        """The server answers /v1/health and its database and plugins are fine.

        Jobs waiting with no worker alive (a 503 that names only ``workers``) count as
        healthy here: many tests queue jobs on purpose without starting a worker.
        """
        try:
            status, body = self.request("GET", "/v1/health", timeout_s=5)
        except OSError:
            return False
        if status == 200:
            return True
        details = (body or {}).get("detail", {}).get("details", {}) if status == 503 else {}
        return (
            details.get("database") == "ok"
            and details.get("workers", "ok") != "ok"
            and details.get("plugins", {}).get("available", 0) > 0
        )


@pytest.fixture
def processes(transactional_db, tmp_path) -> Iterator[Processes]:
    """The test's processes; afterwards, nothing any of them (or their plugins) started runs on."""
    manager = Processes(tmp_path, subprocess_env(**FAULT_SETTINGS))
    before = descendants(os.getpid())
    with orphans_adopted():
        try:
            yield manager
        finally:
            manager.stop_all()
            # The test process's own hosts: it validates what it submits in them.
            ProcessIsolation.shared().shutdown()
        assert_nothing_left(before)


@pytest.fixture
def token(db) -> str:
    user = get_user_model().objects.create_user("fault", password="pw-fault-123")
    return create_token(user=user).key


@pytest.fixture
def server(processes, token) -> Server:
    server = processes.server()
    server.token = token
    return server


@pytest.fixture(autouse=True)
def _fault_plugins(settings) -> None:
    """The test process submits jobs of the same plugins its servers and workers run."""
    settings.PLUGINS = FAULT_PLUGINS.split(",")


# --- A private Redis (the Celery engine's broker in the fleet test) --------------------


@dataclass
class RedisServer:
    """A redis-server of one test's own: its broker URL, port and process."""

    url: str
    port: int
    process: Managed


def redis_server(processes: Processes) -> RedisServer:
    """Start a redis-server of this test's own on a free loopback port.

    Nothing is saved to disk; it stops with the test's other processes (after the
    workers started later, which ``stop_all`` stops first).
    """
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("Debian's redis-server is not installed (.ci/run installs it)")
    port = free_port()
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    redis = processes.start([*args, "--dir", str(processes.tmp_path)], "redis-server")
    wait_until(lambda: _redis_answers(port) or not redis.alive(), timeout_s=30)
    assert redis.alive(), redis.output()
    return RedisServer(f"redis://127.0.0.1:{port}/0", port, redis)


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False
