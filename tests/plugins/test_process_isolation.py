"""Process isolation: whatever a plugin does in its child, the caller gets an envelope and lives.

These run real child processes (the project's pool), and check the processes
themselves: killed, replaced, holding nothing of the parent's.
"""

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection
from prometheus_client import REGISTRY

from plugins.errors.error_envelope import ErrorType
from plugins.registry import PluginRegistry
from plugins.runtime.control import StopReason
from plugins.runtime.isolation.process import ProcessIsolation
from plugins.runtime.limits import ExecutionLimits, IsolationKind
from plugins.runtime.tool_runner import ToolRunner
from tests.plugins import sample_plugins

pytestmark = pytest.mark.django_db

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
def runner(registry) -> ToolRunner:
    return ToolRunner(registry=registry)


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def gone(pid: int, within_s: float = 10.0) -> bool:
    """Whether process ``pid`` disappears (or is a zombie) within ``within_s``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # no such file, or the process went while it was read
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


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


def test_a_child_killed_from_outside_is_a_crash(runner, tmp_path):
    pid_file = tmp_path / "pid"
    killer_done = []

    def kill_when_started():
        for _ in range(200):
            if pid_file.exists() and pid_file.read_text():
                os.kill(int(pid_file.read_text()), signal.SIGKILL)  # as the OOM killer does
                killer_done.append(True)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=kill_when_started)
    thread.start()
    _, error = runner.run("sleeping", {"message": str(pid_file), "repeat": 4000})
    thread.join()
    assert killer_done
    assert error["error"]["type"] == ErrorType.PLUGIN_CRASHED
    assert error["error"]["details"] == {"signal": "SIGKILL"}


def test_a_busy_loop_is_killed_at_its_time_limit_and_its_process_replaced(runner, tmp_path):
    pid_file = tmp_path / "pid"
    kills = counter("governed_plugin_kills_total", plugin="spinning", reason="timeout")
    _, error = runner.run("spinning", {"message": str(pid_file)})
    assert error["error"]["type"] == ErrorType.PLUGIN_TIMEOUT
    assert error["error"]["details"] == {"timeout_s": 0.5}
    assert gone(int(pid_file.read_text()))  # killed, not left spinning
    assert counter("governed_plugin_kills_total", plugin="spinning", reason="timeout") == kills + 1
    still_serves(runner)


def test_twenty_busy_loops_leave_nothing_spinning(runner, tmp_path):
    pids = []
    for index in range(20):
        pid_file = tmp_path / f"pid{index}"
        _, error = runner.run("spinning", {"message": str(pid_file)})
        assert error["error"]["type"] == ErrorType.PLUGIN_TIMEOUT
        pids.append(int(pid_file.read_text()))
    assert all(gone(pid) for pid in pids)
    still_serves(runner)


def test_processes_a_plugin_started_are_killed_with_it(runner, tmp_path):
    pid_file = tmp_path / "pids"
    _, error = runner.run("spawning", {"message": str(pid_file)})
    assert error["error"]["type"] == ErrorType.PLUGIN_TIMEOUT
    child_pid, grandchild_pid = map(int, pid_file.read_text().split())
    assert gone(child_pid)
    assert gone(grandchild_pid)


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


def test_the_runtime_guard_holds_in_the_child(runner):
    _, error = runner.run("sneaky", {"message": "x"})
    assert error["error"]["type"] == ErrorType.PLUGIN_EXECUTION_ERROR
    assert error["error"]["details"] == {"exception": "UngovernedExecutionError"}


@contextlib.contextmanager
def one_child(max_tasks_per_child: int) -> Iterator[ToolRunner]:
    """A ToolRunner with a pool of its own: one child, recycled after ``max_tasks_per_child``."""
    processes = ProcessIsolation(size=1, max_tasks_per_child=max_tasks_per_child, kill_grace_s=1)
    registry = PluginRegistry(defaults=ExecutionLimits(isolation=IsolationKind.PROCESS))
    registry.register(sample_plugins.ProcessInfoPlugin)
    try:
        yield ToolRunner(registry=registry, isolations={IsolationKind.PROCESS: processes})
    finally:
        processes.shutdown()


def test_a_child_keeps_its_plugin_module_and_instance_between_executions():
    with one_child(max_tasks_per_child=100) as runner:
        first, _ = runner.run("process_info", {})
        second, _ = runner.run("process_info", {})
    assert first["pid"] == second["pid"] != os.getpid()
    assert second["module_imported_at"] == first["module_imported_at"]  # not re-imported
    assert (first["runs"], second["runs"]) == (1, 2)


def test_children_are_recycled_after_max_tasks_per_child():
    with one_child(max_tasks_per_child=2) as runner:
        pids = [runner.run("process_info", {})[0]["pid"] for _ in range(4)]
    assert pids[0] == pids[1] != pids[2] == pids[3]


def test_a_child_holds_no_database_connection_or_file_of_the_parent(runner):
    connection.ensure_connection()
    parent_files = _open_files(os.getpid())
    database = str(connection.settings_dict["NAME"])
    result, error = runner.run("process_info", {})
    assert error is None
    child_files = set(result["open_files"])
    # No socket and no database file of this process is open in the child.
    assert not {f for f in parent_files if f.startswith("socket:")} & child_files
    assert not any(database in f for f in child_files)


class Stopper:
    def __init__(self, reason: StopReason, after_s: float) -> None:
        self.reason, self.at = reason, time.monotonic() + after_s

    def started(self):
        pass

    def stop_reason(self):
        return self.reason if time.monotonic() >= self.at else None


@pytest.mark.parametrize(
    ("reason", "error_type", "kill_reason"),
    [
        (StopReason.CANCELLED, ErrorType.CANCELLED, "cancel"),
        (StopReason.RELEASED, ErrorType.WORKER_LOST, "release"),
    ],
)
def test_a_control_stops_a_running_child(runner, tmp_path, reason, error_type, kill_reason):
    pid_file = tmp_path / "pid"
    kills = counter("governed_plugin_kills_total", plugin="sleeping", reason=kill_reason)
    _, error = runner.run(
        "sleeping", {"message": str(pid_file), "repeat": 4000}, control=Stopper(reason, 0.3)
    )
    assert error["error"]["type"] == error_type
    assert gone(int(pid_file.read_text()))
    assert counter("governed_plugin_kills_total", plugin="sleeping", reason=kill_reason) == (
        kills + 1
    )


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _open_files(pid: int) -> set[str]:
    files = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            files.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return files


# What comes back from a child is data, bounded, and ToolRunner's to judge -----------------


@pytest.fixture
def hostile_runner() -> ToolRunner:
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
    return ToolRunner(registry=registry)


def test_nothing_a_plugin_raises_is_unpickled_by_the_caller(hostile_runner, tmp_path):
    marker = tmp_path / "trap-sprung"
    _, error = hostile_runner.run("pickling_trap", {"message": str(marker)})
    assert error["error"]["type"] == ErrorType.PLUGIN_EXECUTION_ERROR
    assert error["error"]["message"] == "<trap>"  # the object, as text
    assert error["error"]["details"] == {"trap": "<trap>"}
    assert not marker.exists()


def test_an_enormous_error_is_cut_down_to_size(hostile_runner):
    from plugins.runtime.isolation.child import MAX_MESSAGE_CHARS, MAX_TRACEBACK_CHARS

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


def test_a_child_that_hit_its_memory_limit_is_replaced_with_what_it_kept(hostile_runner):
    _, error = hostile_runner.run("leaky", {"message": "x", "repeat": 1})
    assert error["error"]["type"] == ErrorType.PLUGIN_RESOURCE_LIMIT
    for _ in range(3):  # a fresh child each time: nothing of the leak is left
        _, error = hostile_runner.run("leaky", {"message": "x", "repeat": 1})
        assert error["error"]["type"] == ErrorType.PLUGIN_RESOURCE_LIMIT
    result, error = hostile_runner.run("leaky", {"message": "x", "repeat": 0})
    assert error is None
    assert result == {"echoed": "holding 0 blocks"}
    still_serves(hostile_runner)


@pytest.mark.parametrize(("finished", "killed"), [(False, True), (True, False)])
def test_a_late_kill_spares_a_child_that_finished_its_task(finished, killed):
    """A child pebble could not stop may finish its task and serve the next caller's:
    the delayed kill meant for the task it gave up on must then leave it alone."""
    import multiprocessing
    import subprocess

    from plugins.runtime.isolation import process

    slots = process._TaskSlots(multiprocessing.get_context("forkserver"))
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)  # its own group
    try:
        with slots.slot() as (slot, token):
            slots.pids[slot] = child.pid
            process._kill_group_later(slots, slot, token, 0)
            if finished:
                slots.pids[slot] = -child.pid  # as run_tracked marks the end of a task
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
        assert (child.poll() is not None) == killed
    finally:
        child.kill()
        child.wait()
