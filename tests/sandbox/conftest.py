"""What the hostile plugins run in: a server with its background worker, or a ToolRunner.

The server stack is one gunicorn worker and one db_worker, started with secrets in
their environment that no plugin may see (CANARIES) and the hostile plugins
registered. One gunicorn worker, so that the hosts a test finds under the server
are the ones its requests used. The processes come from tests/faults/conftest.py.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from execution.models import Job, JobStatus
from execution.policy.tokens import create_token
from plugins.contract import Plugin
from plugins.registry import PluginRegistry
from plugins.runtime.isolation.process import ProcessIsolation, SandboxSettings
from plugins.runtime.limits import ExecutionLimits, IsolationKind
from plugins.runtime.tool_runner import ToolRunner
from tests.conftest import subprocess_env
from tests.faults.conftest import Managed, Processes, Server, wait_until
from tests.plugin_hosts import group_members, plugin_hosts
from tests.sandbox.hostile_plugins import HOSTILE_PLUGINS

CANARIES = {
    name: f"canary-{name.lower()}-{secrets.token_hex(8)}"
    for name in ("SECRET_KEY", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN")
}
"""Secrets in the server's environment: no plugin may see any of them."""
STACK_SETTINGS = {
    "PLUGINS": ",".join(f"{cls.__module__}.{cls.__qualname__}" for cls in HOSTILE_PLUGINS),
    "PLUGIN_DEFAULT_TIMEOUT_S": "5",
    "PLUGIN_WARM_HOSTS": "0",  # each host starts at its plugin's first use: a stack starts fast
    "JOB_LEASE_GRACE_S": "2",
    "JOB_RECOVERY_INTERVAL_S": "0.5",
    "JOB_RETRY_BACKOFF_S": "0.2",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    **CANARIES,
}
FINAL = {JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELLED}


def host_leaders(plugin: type[Plugin], under: int) -> list[int]:
    """The hosts of ``plugin`` below ``under``; not what they forked (same command line)."""
    leaders = []
    for pid in plugin_hosts(plugin, under=under):
        try:
            if os.getpgid(pid) == pid:
                leaders.append(pid)
        except ProcessLookupError:
            continue
    return leaders


def nothing_left_of(host: int) -> bool:
    """Whether host ``host`` and every process of its group are gone."""
    return not group_members(host)


@dataclass
class Stack:
    """A served project: talk to it over HTTP, find its hosts, check it is unharmed."""

    processes: Processes
    server: Server
    worker: Managed
    database_url: str

    def run(self, plugin: str, targets: dict[str, Any]) -> tuple[int, Any]:
        """A synchronous execution: the gunicorn worker's host runs it."""
        return self.server.execute(plugin, targets)

    def submit(self, plugin: str, targets: dict[str, Any]) -> str:
        """A background job: the db_worker's host runs it. Its id."""
        status, body = self.server.request(
            "POST", "/v1/jobs", {"plugin": plugin, "payload": targets}
        )
        assert status == 202, body
        return str(body["id"])

    def final_job(self, job_id: str, timeout_s: float = 30) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            status, body = self.server.request("GET", f"/v1/jobs/{job_id}")
            assert status == 200, body
            return body if body["status"] in FINAL else None

        job: dict[str, Any] = wait_until(final, timeout_s=timeout_s)
        return job

    def background(self, plugin: str, targets: dict[str, Any]) -> dict[str, Any]:
        return self.final_job(self.submit(plugin, targets))

    def hosts(self, plugin: type[Plugin], of: Managed) -> list[int]:
        """The hosts of ``plugin`` that process ``of`` (the server or the worker) started."""
        return host_leaders(plugin, under=of.pid)

    def assert_unharmed(self) -> None:
        """Both processes live and serve, every job is final, another plugin still runs."""
        assert self.server.process.alive(), self.server.process.output()
        assert self.worker.alive(), self.worker.output()
        assert self.server.alive_and_healthy()
        status, body = self.run("bystander", {"mode": "still here"})
        assert status == 200, body
        assert body["result"]["attempts"]["echo"] == {"value": "still here"}
        job = self.background("bystander", {"mode": "still here"})
        assert job["status"] == JobStatus.SUCCESS, job
        assert not Job.objects.exclude(status__in=FINAL).exists()
        for plugin in HOSTILE_PLUGINS:
            for process in (self.server.process, self.worker):
                for host in self.hosts(plugin, of=process):
                    assert group_members(host) == [host], f"{plugin.name} left processes"


@pytest.fixture
def stack(transactional_db, tmp_path) -> Iterator[Stack]:
    env = subprocess_env(**STACK_SETTINGS)
    processes = Processes(tmp_path, env)
    user = get_user_model().objects.create_superuser("victim", password="pw-victim-123")
    try:
        # One gunicorn worker: the hosts a test finds are the ones its requests used.
        server = processes.server(workers=1)
        server.token = create_token(user=user).key
        yield Stack(processes, server, processes.worker(), env["DATABASE_URL"])
    finally:
        processes.stop_all()


@pytest.fixture
def hostile_runner() -> Iterator[ToolRunner]:
    """A ToolRunner of this process with the hostile plugins, on hosts of its own."""
    registry = PluginRegistry(
        record_metrics=False,
        defaults=ExecutionLimits(isolation=IsolationKind.PROCESS, timeout_s=5),
    )
    for plugin in HOSTILE_PLUGINS:
        registry.register(plugin, source="tests")
    isolation = ProcessIsolation(sandbox=SandboxSettings.from_settings())
    try:
        yield ToolRunner(registry=registry, isolations={IsolationKind.PROCESS: isolation})
    finally:
        isolation.shutdown()


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory in /tmp that anyone may write: only the sandbox keeps a plugin out of it."""
    path = Path(tempfile.mkdtemp(prefix="hostile-targets-", dir="/tmp"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def database_file(django_db_setup) -> str:
    """The test database's file (what a plugin would steal or rewrite); '' on PostgreSQL."""
    if connection.vendor != "sqlite":
        return ""
    return str(connection.settings_dict["NAME"])
