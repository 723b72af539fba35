"""Process isolation: whatever a plugin does in its host, the caller gets an envelope and lives.

These run real host processes (sandboxed, as in production), and check the
processes themselves: killed, replaced, holding nothing of the server's.
"""

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from plugins.errors.error_envelope import ErrorType
from plugins.registry import PluginRegistry
from plugins.runtime.control import StopReason
from plugins.runtime.isolation.host import MAX_MESSAGE_CHARS, MAX_TRACEBACK_CHARS
from plugins.runtime.isolation.process import ProcessIsolation
from plugins.runtime.limits import ExecutionLimits, IsolationKind
from plugins.runtime.tool_runner import ToolRunner
from tests.plugin_hosts import gone, plugin_hosts, watching
from tests.plugins import sample_plugins

pytestmark = [pytest.mark.any_database, pytest.mark.django_db]

MISBEHAVING = (
    sample_plugins.EchoPlugin,
    sample_plugins.CrashingPlugin,
    sample_plugins.SegfaultingPlugin,
    sample_plugins.SpinningPlugin,
    sample_plugins.SpawningPlugin,
    sample_plugins.MemoryHogPlugin,
    sample_plugins.SleepingPlugin,
    sample_plugins.ProcessInfoPlugin,
    sample_plugins.SneakyPlugin,
)


@pytest.fixture
def registry() -> PluginRegistry:
    registry = PluginRegistry(
        defaults=ExecutionLimits(isolation=IsolationKind.PROCESS, timeout_s=5)
    )
    for cls in MISBEHAVING:
        registry.register(cls)
    return registry


@pytest.fixture
def hosts() -> Iterator[ProcessIsolation]:
    """Hosts of the test's own: none is shared with another test, all are killed after it."""
    isolation = ProcessIsolation()
    yield isolation
    isolation.shutdown()


@pytest.fixture
def runner(registry, hosts) -> ToolRunner:
    return ToolRunner(registry=registry, isolations={IsolationKind.PROCESS: hosts})


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def all_gone(seen: set[int], hosts: ProcessIsolation, within_s: float = 10.0) -> bool:
    """Every process seen is gone within ``within_s``, but the hosts started to replace them."""
    deadline = time.monotonic() + within_s
    while True:
        idle = {host.pid for host in hosts.hosts() if not host.busy}
        left = {pid for pid in seen - idle if not gone(pid, within_s=0)}
        if not left:
            return bool(seen - idle)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def still_serves(runner: ToolRunner) -> None:
    assert runner.run("echo", {"message": "alive"}) == ({"echoed": "alive"}, None)


@pytest.mark.parametrize("exit_code", [3, 0, 1])
def test_a_plugin_that_exits_is_a_crash_with_its_exit_code(runner, exit_code):
    before = counter("governed_plugin_crashes_total", plugin="crashing")
    result, error = runner.run("crashing", {"message": "x", "repeat": exit_code})
    assert result is None
    assert error["error"]["type"] == ErrorType.PLUGIN_CRASHED
    assert error["error"]["details"] == {"exit_code": exit_code}
    assert counter("governed_plugin_crashes_total", plugin="crashing") == before + 1
    still_serves(runner)


def test_a_segfault_is_a_crash_with_the_signal_name(runner):
    _, error = runner.run("segfaulting", {"message": "x"})
    assert error["error"]["type"] == ErrorType.PLUGIN_CRASHED
    assert error["error"]["details"] == {"signal": "SIGSEGV"}
    still_serves(runner)


def test_a_host_killed_from_outside_is_a_crash(runner):
    killed = []

    def kill_when_started():
        for _ in range(500):
            for pid in plugin_hosts(sample_plugins.SleepingPlugin, under=os.getpid()):
                os.kill(pid, signal.SIGKILL)  # as the OOM killer does
                killed.append(pid)
                return
            time.sleep(0.01)

    thread = threading.Thread(target=kill_when_started)
    thread.start()
    _, error = runner.run("sleeping", {"message": "x", "repeat": 4000})
    thread.join()
    assert killed
    assert error["error"]["type"] == ErrorType.PLUGIN_CRASHED
    assert error["error"]["details"] == {"signal": "SIGKILL"}


def test_a_busy_loop_is_killed_at_its_time_limit_and_its_process_replaced(runner, hosts):
    kills = counter("governed_plugin_kills_total", plugin="spinning", reason="timeout")
    with watching(sample_plugins.SpinningPlugin, under=os.getpid()) as seen:
        _, error = runner.run("spinning", {"message": "x"})
    assert error["error"]["type"] == ErrorType.PLUGIN_TIMEOUT
    assert error["error"]["details"] == {"timeout_s": 0.5}
    assert all_gone(seen, hosts)  # killed, not left spinning
    assert counter("governed_plugin_kills_total", plugin="spinning", reason="timeout") == kills + 1
    still_serves(runner)


def test_twenty_busy_loops_leave_nothing_spinning(runner, hosts):
    with watching(sample_plugins.SpinningPlugin, under=os.getpid()) as seen:
        for _ in range(20):
            _, error = runner.run("spinning", {"message": "x"})
            assert error["error"]["type"] == ErrorType.PLUGIN_TIMEOUT
    assert len(seen) >= 20
    assert all_gone(seen, hosts)
    still_serves(runner)


def test_processes_a_plugin_started_are_killed_with_it(runner, hosts):
    with watching(sample_plugins.SpawningPlugin, under=os.getpid()) as seen:
        _, error = runner.run("spawning", {"message": "x"})
    assert error["error"]["type"] == ErrorType.PLUGIN_TIMEOUT
    assert len(seen) >= 2  # the host and the process its plugin started
    assert all_gone(seen, hosts)


def test_memory_over_the_limit_is_a_resource_limit_and_the_caller_does_not_grow(runner):
    before_kb = _rss_kb()
    hits = counter("governed_plugin_limit_hits_total", plugin="memory_hog", limit="memory")
    _, error = runner.run("memory_hog", {"message": "x", "repeat": 2048})
    assert error["error"]["type"] == ErrorType.PLUGIN_RESOURCE_LIMIT
    assert error["error"]["details"] == {"max_memory_mb": 256}
    assert "256 MB" in error["error"]["message"]
    assert _rss_kb() - before_kb < 100 * 1024  # 2 GiB were asked for, in another process
    assert counter("governed_plugin_limit_hits_total", plugin="memory_hog", limit="memory") == (
        hits + 1
    )
    result, error = runner.run("memory_hog", {"message": "x", "repeat": 64})
    assert error is None
    assert result == {"echoed": str(64 * 1024 * 1024)}


def test_the_runtime_guard_holds_in_the_host(runner):
    _, error = runner.run("sneaky", {"message": "x"})
    assert error["error"]["type"] == ErrorType.PLUGIN_EXECUTION_ERROR
    assert error["error"]["details"] == {"exception": "UngovernedExecutionError"}


@contextlib.contextmanager
def one_host(max_executions: int) -> Iterator[ToolRunner]:
    """A ToolRunner with hosts of its own, each replaced after ``max_executions``."""
    isolation = ProcessIsolation(max_executions_per_host=max_executions)
    registry = PluginRegistry(defaults=ExecutionLimits(isolation=IsolationKind.PROCESS))
    registry.register(sample_plugins.ProcessInfoPlugin)
    registry.register(sample_plugins.EchoPlugin)
    try:
        yield ToolRunner(registry=registry, isolations={IsolationKind.PROCESS: isolation})
    finally:
        isolation.shutdown()


def test_a_host_keeps_its_plugin_module_and_instance_between_executions():
    with one_host(max_executions=100) as runner:
        first, _ = runner.run("process_info", {})
        second, _ = runner.run("process_info", {})
    assert first["pid"] == second["pid"] != os.getpid()
    assert second["module_imported_at"] == first["module_imported_at"]  # not re-imported
    assert (first["runs"], second["runs"]) == (1, 2)


def test_hosts_are_replaced_after_max_executions():
    with one_host(max_executions=2) as runner:
        pids = [runner.run("process_info", {})[0]["pid"] for _ in range(4)]
    assert pids[0] == pids[1] != pids[2] == pids[3]


def test_a_host_holds_nothing_of_the_servers_but_its_channel(runner):
    result, error = runner.run("process_info", {})
    assert error is None
    # stdio, then the requests, replies and lifeline pipes: no socket, file or database.
    assert result["open_fds"][:3] == [0, 1, 2]
    assert result["fd_kinds"][3:] == ["fifo", "fifo", "fifo"]
    assert result["environment"] == sorted(
        ["DJANGO_SETTINGS_MODULE", "HOME", "PATH", "TMPDIR", *result["passed_locale"]]
    )


def test_each_plugin_has_hosts_of_its_own(runner):
    info, _ = runner.run("process_info", {})
    runner.run("echo", {"message": "x"})
    echo_hosts = plugin_hosts(sample_plugins.EchoPlugin, under=os.getpid())
    assert echo_hosts
    assert info["pid"] not in echo_hosts


class Stopper:
    def __init__(self, reason: StopReason, after_s: float) -> None:
        self.reason, self.at = reason, time.monotonic() + after_s

    def started(self):
        pass

    def stop_reason(self):
        return self.reason if time.monotonic() >= self.at else None

    def progress(self, report):
        pass


@pytest.mark.parametrize(
    ("reason", "error_type", "kill_reason"),
    [
        (StopReason.CANCELLED, ErrorType.CANCELLED, "cancel"),
        (StopReason.RELEASED, ErrorType.WORKER_LOST, "release"),
    ],
)
def test_a_control_stops_a_running_host(runner, hosts, reason, error_type, kill_reason):
    kills = counter("governed_plugin_kills_total", plugin="sleeping", reason=kill_reason)
    with watching(sample_plugins.SleepingPlugin, under=os.getpid()) as seen:
        _, error = runner.run(
            "sleeping", {"message": "x", "repeat": 4000}, control=Stopper(reason, 0.6)
        )
    assert error["error"]["type"] == error_type
    assert all_gone(seen, hosts)
    assert counter("governed_plugin_kills_total", plugin="sleeping", reason=kill_reason) == (
        kills + 1
    )


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


# What comes back from a host is data, bounded, and ToolRunner's to judge ------------------


@pytest.fixture
def hostile_runner(hosts) -> ToolRunner:
    registry = PluginRegistry(
        defaults=ExecutionLimits(isolation=IsolationKind.PROCESS, timeout_s=10)
    )
    for cls in (
        sample_plugins.EchoPlugin,
        sample_plugins.PicklingTrapPlugin,
        sample_plugins.HugeErrorPlugin,
        sample_plugins.BrokenDetailsPlugin,
        sample_plugins.SpoofingPlugin,
        sample_plugins.LeakyPlugin,
    ):
        registry.register(cls)
    return ToolRunner(registry=registry, isolations={IsolationKind.PROCESS: hosts})


def test_nothing_a_plugin_raises_is_unpickled_by_the_caller(hostile_runner, tmp_path):
    marker = tmp_path / "trap-sprung"
    _, error = hostile_runner.run("pickling_trap", {"message": str(marker)})
    assert error["error"]["type"] == ErrorType.PLUGIN_EXECUTION_ERROR
    assert error["error"]["message"] == "<trap>"  # the object, as text
    assert error["error"]["details"] == {"trap": "<trap>"}
    assert not marker.exists()


def test_an_enormous_error_is_cut_down_to_size(hostile_runner):
    before_kb = _rss_kb()
    _, error = hostile_runner.run("huge_error", {"message": "x", "repeat": 50})
    assert error["error"]["type"] == ErrorType.PLUGIN_EXECUTION_ERROR
    assert error["error"]["details"] == {"exception": "ValueError"}
    assert len(error["_internal"]["traceback"]) <= MAX_TRACEBACK_CHARS
    assert len(error["error"]["message"]) <= MAX_MESSAGE_CHARS
    assert _rss_kb() - before_kb < 20 * 1024


def test_an_error_that_breaks_its_own_report_is_still_reported(hostile_runner):
    _, error = hostile_runner.run("broken_details", {"message": "x"})
    assert error["error"]["type"] == ErrorType.PLUGIN_EXECUTION_ERROR
    still_serves(hostile_runner)


@pytest.mark.parametrize("pretends", ["input", "timeout"])
def test_a_plugin_cannot_pass_its_failure_off_as_toolrunners(hostile_runner, pretends):
    _, error = hostile_runner.run("spoofing", {"message": pretends})
    assert error["error"]["type"] == ErrorType.PLUGIN_EXECUTION_ERROR
    assert error["error"]["details"]["exception"] in ("InputValidationError", "PluginTimeoutError")


def test_a_host_that_hit_its_memory_limit_is_replaced_with_what_it_kept(hostile_runner):
    _, error = hostile_runner.run("leaky", {"message": "x", "repeat": 1})
    assert error["error"]["type"] == ErrorType.PLUGIN_RESOURCE_LIMIT
    for _ in range(3):  # a fresh host each time: nothing of the leak is left
        _, error = hostile_runner.run("leaky", {"message": "x", "repeat": 1})
        assert error["error"]["type"] == ErrorType.PLUGIN_RESOURCE_LIMIT
    result, error = hostile_runner.run("leaky", {"message": "x", "repeat": 0})
    assert error is None
    assert result == {"echoed": "holding 0 blocks"}
    still_serves(hostile_runner)
