"""Real processes for fault tests: a gunicorn server, db_workers, and a way to talk to them.

Every process a test starts is stopped (and its process group killed) when the
test ends; the fixtures also check that nothing a plugin started is left running.
"""

from __future__ import annotations

import contextlib
import json
import os
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
from rest_framework.authtoken.models import Token

from tests.conftest import ROOT, subprocess_env

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
}


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


def process_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


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
        log = self.tmp_path / f"{name}-{len(self.started)}.log"
        handle = log.open("wb")
        popen = subprocess.Popen(
            args,
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

    def server(self, **extra_env: str) -> Server:
        port = free_port()
        args = [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            "2",
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
        try:
            return self.request("GET", "/v1/health", timeout_s=5)[0] == 200
        except OSError:
            return False


@pytest.fixture
def processes(transactional_db, tmp_path) -> Iterator[Processes]:
    manager = Processes(tmp_path, subprocess_env(**FAULT_SETTINGS))
    try:
        yield manager
    finally:
        manager.stop_all()


@pytest.fixture
def token(db) -> str:
    user = get_user_model().objects.create_user("fault", password="pw-fault-123")
    return Token.objects.create(user=user).key


@pytest.fixture
def server(processes, token) -> Server:
    server = processes.server()
    server.token = token
    return server


@pytest.fixture(autouse=True)
def _fault_plugins(settings) -> None:
    """The test process submits jobs of the same plugins its servers and workers run."""
    settings.PLUGINS = FAULT_PLUGINS.split(",")
