"""The Celery engine with real processes: a private redis-server, gunicorn, Celery workers.

Each test gets its own redis-server on a free loopback port (never a shared one),
started as one of the test's processes, so it is stopped with them. Servers and
workers run with TASKS_BACKEND=celery; the test process itself keeps the default
engine unless a test asks for ``celery_engine`` (then it queues through Celery too).
The tests skip, saying why, only where Celery (or redis-server) is not installed;
with REQUIRE_CELERY_TESTS set (CI's Celery pass) they fail instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Iterator

import pytest

from tests.faults import conftest as faults
from tests.faults.conftest import Managed, Processes, RedisServer, Server, redis_server, wait_until

# The fault tests' fixtures: real processes, cleaned up; a user's token; their plugins.
processes = faults.processes
token = faults.token
_fault_plugins = faults._fault_plugins

CELERY_MISSING = "the Celery engine needs its extra: pip install -e '.[celery]'"
# Longer than the longest lease of the plugins these tests install (20 s + 2 s grace)
# backoff, short enough that a test sees Redis hand a lost worker's message back.
VISIBILITY_TIMEOUT_S = "25"


def require_celery() -> None:
    """Skip, saying why, without Celery or redis-server; fail instead in CI's Celery pass."""
    required = bool(os.environ.get("REQUIRE_CELERY_TESTS"))
    try:
        import celery  # noqa: F401
    except ImportError:
        if required:
            raise
        pytest.skip(CELERY_MISSING, allow_module_level=True)
    if shutil.which("redis-server") is None:
        missing = "redis-server is not installed (Debian: apt-get install redis-server)"
        if required:
            raise RuntimeError(missing)
        pytest.skip(missing, allow_module_level=True)


class Broker(RedisServer):
    """The Celery engine's broker, with what the tests read of it."""

    def queued(self, queue: str = "default") -> int:
        """Messages waiting in ``queue`` (Redis list named after it), read with the protocol."""
        return int(self.command("LLEN", queue))

    def command(self, *words: str) -> str:
        payload = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(payload.encode())
            reply = sock.recv(4096).decode()
        if reply[0] in "+:":
            return reply[1:].strip()
        raise AssertionError(f"redis answered {reply!r}")


@pytest.fixture
def broker(processes: Processes) -> Broker:
    """A redis-server of this test's own: loopback, a free port, nothing saved to disk."""
    require_celery()
    server = redis_server(processes)
    return Broker(server.url, server.port, server.process)


def celery_env(broker: Broker, **extra: str) -> dict[str, str]:
    return {
        "TASKS_BACKEND": "celery",
        "CELERY_BROKER_URL": broker.url,
        "CELERY_VISIBILITY_TIMEOUT_S": VISIBILITY_TIMEOUT_S,
        "CELERY_RESTORE_INTERVAL_S": "1",
        **extra,
    }


def start_celery_worker(
    processes: Processes,
    broker: Broker,
    *extra: str,
    **extra_env: str,
) -> Managed:
    """``celery -A project worker`` with the flags docs/celery.md recommends; once it is ready."""
    args = [sys.executable, "-m", "celery", "-A", "project", "worker", "--loglevel", "INFO"]
    args += ["--pool", "prefork", "--concurrency", "1", "--without-gossip", "--without-mingle"]
    args += ["--hostname", f"w{len(processes.started)}@%h", *extra]
    managed = processes.start(args, "celery-worker", **celery_env(broker, **extra_env))
    wait_until(lambda: "ready." in managed.output() or not managed.alive(), timeout_s=60)
    assert managed.alive(), managed.output()
    return managed


@pytest.fixture
def celery_server(processes: Processes, broker: Broker, token: str) -> Server:
    server = processes.server(2, **celery_env(broker))
    server.token = token
    return server


@pytest.fixture
def celery_engine(settings, broker: Broker) -> Iterator[Broker]:
    """The test process queues through Celery too (its Celery app sends to ``broker``)."""
    settings.TASKS = {
        "default": {
            "BACKEND": "execution.task_engine.celery_tasks.backend.CeleryBackend",
            "QUEUES": ["default"],
        }
    }
    settings.TASK_ENGINE = "execution.task_engine.celery_tasks.engine.CeleryEngine"
    settings.CELERY_BROKER_URL = broker.url
    before = use_broker(broker.url)
    try:
        yield broker
    finally:
        use_broker(before)


def use_broker(url: str) -> str:
    """Point this process's Celery app at ``url``, with no connection to the last one; that one."""
    from execution.task_engine.celery_tasks.app import app

    before = str(app.conf.broker_url)
    if app._pool is not None:
        app._pool.force_close_all()
    app._pool = None
    app.amqp._producer_pool = None
    app.conf.broker_url = url
    return before
