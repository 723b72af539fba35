"""What a plugin may ask of its sandbox, and what the operator must grant (tests/sandbox
tries the escapes)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from execution.policy.tokens import create_token
from plugins.errors.error_envelope import ErrorType
from plugins.registry import PluginRegistry
from plugins.runtime.isolation.process import ProcessIsolation, SandboxSettings
from plugins.runtime.limits import ExecutionLimits, IsolationKind
from plugins.runtime.tool_runner import ToolRunner
from tests.plugins import sandbox_plugins

pytestmark = [pytest.mark.any_database, pytest.mark.django_db]


@pytest.fixture
def hosts() -> Iterator[ProcessIsolation]:
    isolation = ProcessIsolation()
    yield isolation
    isolation.shutdown()


def runner_for(
    hosts: ProcessIsolation,
    plugin: type,
    network_allowed: frozenset[str] = frozenset(),
    read_paths_allowed: frozenset[str] = frozenset(),
) -> ToolRunner:
    registry = PluginRegistry(
        record_metrics=False,
        defaults=ExecutionLimits(
            isolation=IsolationKind.PROCESS,
            timeout_s=10,
            network_allowed=network_allowed,
            read_paths_allowed=read_paths_allowed,
        ),
    )
    registry.register(plugin)
    return ToolRunner(registry=registry, isolations={IsolationKind.PROCESS: hosts})


@pytest.fixture
def listener() -> Iterator[tuple[int, list[object]]]:
    """A TCP listener on 127.0.0.1: its port, and the connections it accepted."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[object] = []

    def accept() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            accepted.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    server.close()


def test_a_plugin_that_asks_for_the_network_gets_none_unless_the_operator_allows_it(
    hosts, listener
):
    port, accepted = listener
    denied = runner_for(hosts, sandbox_plugins.NetworkedPlugin)
    result, error = denied.run("networked", {"target": str(port)})
    assert error is None
    assert result["outcome"].startswith("refused: PermissionError")
    assert accepted == []
    allowed = runner_for(
        hosts, sandbox_plugins.NetworkedPlugin, network_allowed=frozenset({"networked"})
    )
    assert allowed.run("networked", {"target": str(port)}).result == {"outcome": "connected"}
    deadline = time.monotonic() + 10
    while not accepted and time.monotonic() < deadline:  # the listener's thread accepts it
        time.sleep(0.01)
    assert len(accepted) == 1


def test_a_plugin_reads_what_it_declares_once_allowed_and_nothing_beside_it(hosts, tmp_path):
    declared = Path("/tmp/governed-reader-plugin")
    shutil.rmtree(declared, ignore_errors=True)
    declared.mkdir(mode=0o755)
    try:
        (declared / "model.txt").write_text("weights")
        (declared / "model.txt").chmod(0o644)
        beside = declared.parent / "governed-reader-plugin-beside"
        beside.write_text("secret")
        target = {"target": str(declared / "model.txt")}
        not_allowed = runner_for(hosts, sandbox_plugins.ReaderPlugin)
        assert not_allowed.run("reader", target).result == {"outcome": "refused: PermissionError"}
        runner = runner_for(
            hosts, sandbox_plugins.ReaderPlugin, read_paths_allowed=frozenset({"reader"})
        )
        assert runner.run("reader", target).result == {"outcome": "weights"}
        refused = runner.run("reader", {"target": str(beside)}).result
        assert refused == {"outcome": "refused: PermissionError"}
    finally:
        shutil.rmtree(declared, ignore_errors=True)
        Path("/tmp/governed-reader-plugin-beside").unlink(missing_ok=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="hosts switch to another user only under root")
def test_a_host_that_cannot_be_confined_runs_nothing(hosts):
    """Fail closed: a declared path its user cannot read stops the host before any plugin code."""
    unreadable = Path("/tmp/governed-reader-plugin")
    shutil.rmtree(unreadable, ignore_errors=True)
    unreadable.mkdir(mode=0o700)  # root's only: the host's user (nobody) cannot read it
    try:
        result, error = runner_for(
            hosts, sandbox_plugins.ReaderPlugin, read_paths_allowed=frozenset({"reader"})
        ).run("reader", {"target": "/etc/hostname"})
    finally:
        shutil.rmtree(unreadable, ignore_errors=True)
    assert result is None
    assert error["error"]["type"] == ErrorType.PLUGIN_UNAVAILABLE
    assert "sandbox cannot confine" in error["error"]["message"]
    assert "PLUGIN_SANDBOX=off" in error["error"]["message"]


def test_the_plugins_api_shows_what_a_plugin_may_do(settings, admin_user):
    from plugins.registry import get_registry

    get_registry().register(sandbox_plugins.NetworkedPlugin, source="tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {create_token(user=admin_user).key}")
    plugins = {p["name"]: p for p in client.get("/v1/plugins").json()}
    assert plugins["networked"]["limits"]["network"] is False  # asked for, not allowed
    assert plugins["text_stats"]["limits"]["read_paths"] == []


def test_staff_see_the_confinement_in_health_and_others_do_not(admin_user):
    anonymous = APIClient().get("/v1/health").json()
    assert "sandbox" not in anonymous["checks"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {create_token(user=admin_user).key}")
    sandbox = client.get("/v1/health").json()["checks"]["sandbox"]
    assert sandbox == SandboxSettings().describe()
    assert sandbox["confined"] is True
    assert sandbox["landlock_abi"] >= 1


def test_a_plugin_that_asks_for_a_thread_stays_sandboxed_unless_the_operator_allows_it():
    class Trusting(sandbox_plugins.ReaderPlugin):
        name = "trusting"
        isolation = "thread"

    defaults = ExecutionLimits(isolation=IsolationKind.PROCESS)
    assert defaults.for_plugin(Trusting).isolation is IsolationKind.PROCESS
    allowed = ExecutionLimits(
        isolation=IsolationKind.PROCESS, thread_allowed=frozenset({"trusting"})
    )
    assert allowed.for_plugin(Trusting).isolation is IsolationKind.THREAD


def test_paths_that_would_expose_the_project_are_never_granted(hosts, settings):
    greedy = runner_for(
        hosts, sandbox_plugins.GreedyPlugin, read_paths_allowed=frozenset({"greedy"})
    )
    result, error = greedy.run("greedy", {"target": str(settings.BASE_DIR / "pyproject.toml")})
    assert result is None
    assert error["error"]["type"] == ErrorType.PLUGIN_UNAVAILABLE
    assert "would expose the server" in error["error"]["message"]


@pytest.mark.parametrize("inside", [False, True])
def test_paths_that_would_expose_the_artifacts_are_never_granted(hosts, settings, inside):
    """A MEDIA_ROOT shared under a granted tree, or a granted tree inside it."""
    reader_root = Path(sandbox_plugins.ReaderPlugin.read_paths[0])
    if inside:
        settings.MEDIA_ROOT = reader_root.parent
    else:
        settings.MEDIA_ROOT = reader_root / "media"
    reader = runner_for(
        hosts, sandbox_plugins.ReaderPlugin, read_paths_allowed=frozenset({"reader"})
    )
    result, error = reader.run("reader", {"target": str(reader_root / "media" / "a.png")})
    assert result is None
    assert error["error"]["type"] == ErrorType.PLUGIN_UNAVAILABLE
    assert "would expose the server" in error["error"]["message"]
    assert "artifacts" in error["error"]["details"]["reason"]
