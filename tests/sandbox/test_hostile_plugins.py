"""Hostile plugins through the real runtime: each attack fails, and whoever ran it is unharmed.

Issue 16's proof. Every plugin (tests/sandbox/hostile_plugins.py) tries from inside
``run`` what a plugin's author could do to the service, and reports what came of
each attempt. Each test checks both what the plugin saw (refused, with the errno
the sandbox gives) and that nothing was harmed: the server still answers, every job
is final, the database holds what it held, no process of the plugin is left.

Attacks on the server itself (secrets, the channel, daemons, a poisoned host) go
through gunicorn and a db_worker; the rest through a ToolRunner of this process.
A test that fails here is an attack the runtime let through.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import json
import os
import pickle
import resource
import secrets
import shutil
import signal
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from execution.models import Job, JobStatus
from plugins.errors.error_envelope import ErrorType
from plugins.models import PluginMetrics
from plugins.runtime.tool_runner import ToolRunner
from tests.conftest import ROOT
from tests.faults.conftest import free_port, process_gone, wait_until
from tests.plugin_hosts import group_members
from tests.sandbox import hostile_plugins
from tests.sandbox.conftest import CANARIES, Stack, host_leaders, nothing_left_of

pytestmark = pytest.mark.skipif(os.uname().sysname != "Linux", reason="Linux only")

HOST_ENVIRONMENT = {
    *("LANG", "LC_ALL", "LC_CTYPE", "TZ"),
    *("PATH", "HOME", "TMPDIR", "DJANGO_SETTINGS_MODULE"),
}
"""All a host's environment may hold: the locale, the time zone, where it lives."""
CHANNEL_ATTACKS = [
    "pickle_on_replies",
    "garbage_on_replies",
    "every_descriptor",
    "replaced_reply",
    "replaced_send",
]
"""ChannelPlugin's modes: bytes written on the replies, and the runtime's reply replaced."""
PLUGIN_FAILURES = {ErrorType.PLUGIN_EXECUTION_ERROR, ErrorType.OUTPUT_VALIDATION_ERROR}


def assert_refused(attempts: dict[str, Any], *names: str, code: int | None = None) -> None:
    """Each attempt of ``names`` failed (with errno ``code``, if given)."""
    for name in names:
        outcome = attempts[name]
        assert "error" in outcome, f"{name} got through: {outcome}"
        if code is not None:
            assert outcome["errno"] == code, f"{name}: {outcome}"


def channel_fds_of(host: int) -> set[str]:
    """The host's three channel descriptors: its command line ends with them, then its label."""
    arguments = Path(f"/proc/{host}/cmdline").read_bytes().split(b"\0")[:-1]
    return {argument.decode() for argument in arguments[-4:-1]}


def run_hostile(runner: ToolRunner, plugin: str, **targets: Any) -> dict[str, Any]:
    """Run ``plugin`` in this process's ToolRunner; what it reported (it must not fail)."""
    result, error = runner.run(plugin, targets)
    assert error is None, error
    assert result is not None
    attempts: dict[str, Any] = result["attempts"]
    return attempts


def assert_runner_unharmed(runner: ToolRunner, plugin: type[hostile_plugins.HostilePlugin]) -> None:
    """Another plugin still runs, and no process ``plugin`` started is left beside its hosts."""
    result, error = runner.run("bystander", {"mode": "still here"})
    assert error is None, error
    assert result["attempts"]["echo"] == {"value": "still here"}
    for host in host_leaders(plugin, under=os.getpid()):
        assert group_members(host) == [host]


# Secrets ----------------------------------------------------------------------------


def test_a_served_plugin_finds_no_secret_of_its_server(stack: Stack, database_file):
    status, body = stack.run("hostile_secrets", {"database": database_file})
    assert status == 200, body
    attempts = body["result"]["attempts"]

    assert set(attempts["environ"]["value"]) <= HOST_ENVIRONMENT
    seen = json.dumps(attempts)
    for secret in (*CANARIES.values(), stack.server.token, stack.database_url):
        assert secret not in seen
    django_settings = attempts["django_settings"]["value"]
    assert django_settings["module"] == "plugins.runtime.isolation.host_settings"
    assert django_settings["DATABASES"]["default"]["ENGINE"] == "django.db.backends.dummy"
    assert attempts["orm_tokens"]["error"] == "ImproperlyConfigured"
    assert_refused(
        attempts,
        "own_proc_environ",
        "parent_environ",
        "parent_cmdline",
        "parent_mem",
        "parent_fds",
        "own_fd_listing",
        "server_settings",
        "root_home",
        "homes",
        code=errno.EACCES,
    )
    if database_file:
        assert_refused(attempts, "database_file", code=errno.EACCES)
    [host] = stack.hosts(hostile_plugins.SecretsPlugin, of=stack.server.process)
    assert set(attempts["open_fds"]["value"]) == {"0", "1", "2"} | channel_fds_of(host)
    stack.assert_unharmed()


def test_a_host_inherits_no_descriptor_of_its_server(hostile_runner):
    """A descriptor this process leaves inheritable (no CLOEXEC) does not reach the host."""
    reader, writer = os.pipe()
    os.set_inheritable(reader, True)
    os.set_inheritable(writer, True)
    try:
        attempts = run_hostile(hostile_runner, "hostile_secrets")
    finally:
        os.close(reader)
        os.close(writer)
    [host] = host_leaders(hostile_plugins.SecretsPlugin, under=os.getpid())
    assert set(attempts["open_fds"]["value"]) == {"0", "1", "2"} | channel_fds_of(host)
    assert set(attempts["environ"]["value"]) <= HOST_ENVIRONMENT
    assert "SECRET_KEY" not in attempts["environ"]["value"]
    assert_runner_unharmed(hostile_runner, hostile_plugins.SecretsPlugin)


def test_a_background_plugin_reaches_no_database(stack: Stack, database_file):
    user_model = get_user_model()
    superusers = set(user_model.objects.filter(is_superuser=True).values_list("pk", flat=True))
    stack.run("bystander", {"mode": "a metrics row to inflate"})

    job = stack.background(
        "hostile_database", {"database": database_file, "database_url": stack.database_url}
    )

    assert job["status"] == JobStatus.SUCCESS, job
    attempts = job["result"]["attempts"]
    assert_refused(attempts, *attempts)
    assert_refused(attempts, "postgres_port", code=errno.EACCES)
    assert not PluginMetrics.objects.filter(
        success_count=hostile_plugins.STOLEN_SUCCESS_COUNT
    ).exists()
    assert set(user_model.objects.filter(is_superuser=True).values_list("pk", flat=True)) == (
        superusers
    )
    stack.assert_unharmed()


# The channel ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", CHANNEL_ATTACKS)
def test_what_a_plugin_sends_on_its_channel_runs_nothing_in_the_server(
    stack: Stack, tmp_path, mode
):
    """Pickles, garbage and a replaced reply, in gunicorn and in the db_worker alike.

    Had either process unpickled what came, the pickle would have created the marker.
    A host that broke the framing, or whose well-framed reply lies (a pickle for a
    result), is replaced: the plugin's next run meets a clean host.
    """
    marker = tmp_path / "unpickled"
    for process, execute in (
        (stack.server.process, lambda targets: _sync_job(stack, targets)),
        (stack.worker, lambda targets: stack.background("hostile_channel", targets)),
    ):
        assert execute({})["status"] == JobStatus.SUCCESS  # the host the attack will meet
        [host] = stack.hosts(hostile_plugins.ChannelPlugin, of=process)

        job = execute({"mode": mode, "marker": str(marker)})

        assert job["status"] == JobStatus.FAILED, job
        assert job["error"]["type"] in PLUGIN_FAILURES, job["error"]
        assert not marker.exists()
        wait_until(functools.partial(nothing_left_of, host), timeout_s=10)
        assert execute({})["status"] == JobStatus.SUCCESS
    stack.assert_unharmed()


def test_the_pickle_plugins_send_would_create_the_marker_if_unpickled(tmp_path):
    """What makes the channel tests' missing marker mean something."""
    marker = tmp_path / "unpickled"
    pickle.loads(hostile_plugins.trap(str(marker))).close()
    assert marker.exists()


def _sync_job(stack: Stack, targets: dict[str, Any]) -> dict[str, Any]:
    stack.run("hostile_channel", targets)
    return stack.final_job(str(Job.objects.latest("created_at").pk))


# Daemons ----------------------------------------------------------------------------


def kill_at_the_end(request: pytest.FixtureRequest, pids: list[int]) -> None:
    """Should the runtime have left them, these processes go when the test ends."""

    def kill() -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    request.addfinalizer(kill)


def test_a_double_forked_daemon_ends_with_its_execution(stack: Stack, database_file, request):
    status, victim = stack.run("bystander", {"mode": "a result to rewrite"})
    assert status == 200, victim
    port = free_port()
    delay_s = 5.0
    started = time.monotonic()

    status, body = stack.run(
        "hostile_daemon",
        {"port": port, "database": database_file, "job_id": victim["job_id"], "delay_s": delay_s},
    )

    assert status == 200, body
    attempts = body["result"]["attempts"]
    assert_refused(attempts, "setsid", "setpgid", code=errno.EPERM)
    assert_refused(attempts, "listen", code=errno.EACCES)
    daemon, group = attempts["pid"]["value"], attempts["pgid"]["value"]
    kill_at_the_end(request, [daemon])
    wait_until(lambda: process_gone(daemon), timeout_s=10)
    wait_until(lambda: nothing_left_of(group), timeout_s=10)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 2):
        pass
    time.sleep(max(started + delay_s + 1.5 - time.monotonic(), 0))  # past the daemon's write
    assert Job.objects.get(pk=victim["job_id"]).result == victim["result"]
    stack.assert_unharmed()


def test_a_daemon_dies_with_the_worker_that_ran_it(stack: Stack, request):
    job_id = stack.submit("hostile_daemon", {"mode": "linger", "delay_s": 4, "port": free_port()})
    [host] = wait_until(lambda: stack.hosts(hostile_plugins.DaemonPlugin, of=stack.worker))
    members = wait_until(lambda: len(group_members(host)) >= 2 and group_members(host))
    kill_at_the_end(request, members)

    stack.worker.popen.send_signal(signal.SIGKILL)
    stack.worker.popen.wait(10)

    wait_until(lambda: nothing_left_of(host), timeout_s=10)  # the kernel killed the group
    assert all(process_gone(pid) for pid in members)
    stack.worker = stack.processes.worker()  # it recovers the lost job
    job = stack.final_job(job_id)
    assert (job["status"], job["error"]["type"]) == (JobStatus.FAILED, ErrorType.WORKER_LOST)
    stack.assert_unharmed()


def test_a_stopped_server_and_worker_leave_no_temporary_directory(stack: Stack, request):
    """A host's directory holds what its plugin wrote there: it goes with the host."""
    status, body = stack.run("bystander", {"mode": "served"})
    assert status == 200, body
    job = stack.background("bystander", {"mode": "in the background"})
    directories = [Path(body["result"]["attempts"]["cwd"]["value"])]
    directories.append(Path(job["result"]["attempts"]["cwd"]["value"]))
    assert all(directory.is_dir() for directory in directories)
    for directory in directories:  # whatever the runtime leaves
        request.addfinalizer(functools.partial(shutil.rmtree, directory, ignore_errors=True))

    for process in (stack.worker, stack.server.process):
        process.stop(signal.SIGTERM)  # as a service manager stops them

    left = [str(directory) for directory in directories if directory.exists()]
    assert not left, f"left behind: {left}"


# Another plugin's host ---------------------------------------------------------------


def test_a_plugin_cannot_reach_another_plugins_host(stack: Stack):
    """Its signals, ptrace and prlimit meet the neighbour in the same db_worker, and fail.

    The issue's poisoner set RLIMIT_NOFILE to 16 in its reused process; the same done to
    another plugin's host would fail that plugin's jobs and count them against it.
    """
    assert stack.background("bystander", {"mode": "first"})["status"] == JobStatus.SUCCESS
    [neighbour] = stack.hosts(hostile_plugins.BystanderPlugin, of=stack.worker)

    job = stack.background("hostile_neighbour", {"pid": neighbour})

    assert job["status"] == JobStatus.SUCCESS, job
    attempts = job["result"]["attempts"]
    assert_refused(attempts, "signal", "pidfd_signal", "attach", "read_memory", code=errno.EPERM)
    assert_refused(attempts, "limits", "priority", "affinity", code=errno.EPERM)
    for _ in range(3):
        job = stack.background("bystander", {"mode": "after"})
        assert job["status"] == JobStatus.SUCCESS, job
        assert job["result"]["attempts"]["open_files"] == {"value": [256, 256]}
    assert stack.hosts(hostile_plugins.BystanderPlugin, of=stack.worker) == [neighbour]
    bystander = PluginMetrics.objects.get(plugin_name="bystander")
    assert (bystander.success_count, bystander.error_count) == (4, 0)
    stack.assert_unharmed()


# A poisoned host --------------------------------------------------------------------


def test_a_plugin_that_poisons_its_host_harms_no_other_plugin(stack: Stack):
    """All in one db_worker: the poisoner's jobs and another plugin's, one after the other."""
    poisoned = stack.background("hostile_poison", {"mode": "poison"})
    assert poisoned["status"] == JobStatus.SUCCESS, poisoned
    assert poisoned["result"]["attempts"]["poison"]["value"] == {"open_files": [16, 16], "cwd": "/"}

    private = [f"another user's text {secrets.token_hex(4)}" for _ in range(3)]
    for text in private:
        job = stack.background("bystander", {"mode": text})
        assert job["status"] == JobStatus.SUCCESS, job
        seen = job["result"]["attempts"]
        assert seen["echo"] == {"value": text}
        environ = seen["environ"]["value"]
        assert set(environ) <= HOST_ENVIRONMENT
        assert environ["PATH"] == "/usr/local/bin:/usr/bin:/bin"
        assert seen["cwd"]["value"] == environ["TMPDIR"]
        assert seen["open_files"]["value"] == [256, 256]
        assert seen["open_32_files"] == {"value": 32}
        assert seen["json_dumps"] == {"value": "json.dumps"}
        assert "SIG_IGN" not in seen["sigterm"]["value"]
    assert stack.hosts(hostile_plugins.PoisonPlugin, of=stack.worker)
    assert stack.hosts(hostile_plugins.BystanderPlugin, of=stack.worker)

    report = stack.background("hostile_poison", {"mode": "report"})
    assert report["status"] == JobStatus.SUCCESS, report
    captured = json.dumps(report["result"]["attempts"]["captured"])
    assert not any(text in captured for text in private)
    assert report["result"]["attempts"]["environ"]["value"]["HOSTILE_POISON"] == "1"  # its own
    bystander = PluginMetrics.objects.get(plugin_name="bystander")
    assert (bystander.success_count, bystander.error_count) == (3, 0)
    stack.assert_unharmed()


# The network ------------------------------------------------------------------------


@pytest.fixture
def listeners(open_dir: Path) -> Iterator[dict[str, Any]]:
    """A TCP and a UDP socket on 127.0.0.1, a unix socket anyone may connect to, an abstract one."""
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    port = tcp.getsockname()[1]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", port))
    path = open_dir / "listener.sock"
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(path))
    path.chmod(0o777)
    unix.listen()
    name = f"hostile-{secrets.token_hex(8)}"
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind("\0" + name)
    abstract.listen()
    sockets = [tcp, udp, unix, abstract]
    try:
        yield {"port": port, "unix_socket": str(path), "abstract_socket": name, "sockets": sockets}
    finally:
        for sock in sockets:
            sock.close()


def test_a_plugin_reaches_no_listener_on_this_machine(hostile_runner, listeners):
    sockets = listeners.pop("sockets")

    attempts = run_hostile(hostile_runner, "hostile_network", **listeners)

    assert_refused(
        attempts,
        "tcp",
        "tcp6",
        "listen",
        "udp",
        "unix",
        "abstract",
        "datagram_pair",
        "stream_pair",  # no socketpair at all: it could pass descriptors
        "netlink",
        code=errno.EACCES,
    )
    for sock in sockets:
        sock.setblocking(False)
    tcp, udp, unix, abstract = sockets
    for listener in (tcp, unix, abstract):
        with pytest.raises(BlockingIOError):
            listener.accept()
    with pytest.raises(BlockingIOError):
        udp.recv(64)
    assert_runner_unharmed(hostile_runner, hostile_plugins.NetworkPlugin)


# Writing outside the temporary directory --------------------------------------------


@pytest.fixture
def files(open_dir: Path) -> Iterator[dict[str, Path]]:
    """A SQLite database and a file beside it that anyone may write, and paths to create."""
    database = open_dir / "db.sqlite3"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE secrets (value TEXT)")
        connection.execute("INSERT INTO secrets VALUES ('kept')")
    connection.close()
    decoy = open_dir / "decoy"
    decoy.write_text("kept")
    for path in (database, decoy):
        path.chmod(0o666)
    name = f"hostile-{secrets.token_hex(8)}"
    outside = {"project": ROOT / name, "tmp": Path("/tmp") / name, "beside": open_dir / name}
    try:
        yield {"database": database, "decoy": decoy, **outside}
    finally:
        for path in outside.values():  # what a write that got through created
            path.unlink(missing_ok=True)


def _content(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _attributes(path: Path) -> tuple[Any, ...]:
    """What changing ``path``'s attributes shows, even to the values it had: ctime moves."""
    info = path.stat()
    return info.st_mode, info.st_mtime_ns, info.st_ctime_ns, sorted(os.listxattr(path))


def test_a_plugin_writes_nothing_outside_its_temporary_directory(hostile_runner, files):
    database, decoy = _content(files["database"]), _content(files["decoy"])
    paths = {label: str(files[label]) for label in ("project", "tmp", "beside", "decoy")}

    attempts = run_hostile(
        hostile_runner, "hostile_writer", database=str(files["database"]), paths=paths
    )

    assert_refused(
        attempts,
        "create_project",
        "create_tmp",
        "create_beside",
        "create_decoy",
        "append_database",
        "truncate_database",
        "symlink_database",
        "rename_decoy",
        "unlink_decoy",
        code=errno.EACCES,
    )
    assert_refused(attempts, "hardlink_database", code=errno.EXDEV)
    for label in ("project", "tmp", "beside"):
        assert not files[label].exists()
    assert _content(files["database"]) == database
    assert _content(files["decoy"]) == decoy
    own_file = Path(attempts["own_directory"]["value"])  # where it may write: emptied after
    assert own_file.parent.name.startswith("governed-plugin-")
    assert not own_file.exists()
    assert_runner_unharmed(hostile_runner, hostile_plugins.WriterPlugin)


@pytest.mark.parametrize("change", ["chmod", "utime", "xattr"])
def test_a_plugin_changes_no_file_attribute_outside_its_temporary_directory(
    hostile_runner, files, change
):
    """chmod, utime and extended attributes of the database file, to values it has already.

    Landlock does not check these calls; the host's uid and seccomp must.
    """
    before = _attributes(files["database"])

    attempts = run_hostile(
        hostile_runner, "hostile_writer", database=str(files["database"]), mode=change
    )

    assert_refused(attempts, change)
    assert _attributes(files["database"]) == before
    assert_runner_unharmed(hostile_runner, hostile_plugins.WriterPlugin)


# The parent process -----------------------------------------------------------------


def _traced_by() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("TracerPid:"):
            return int(line.split()[1])
    raise AssertionError("no TracerPid in /proc/self/status")


def test_a_plugin_cannot_trace_read_or_signal_the_process_that_runs_it(hostile_runner):
    attempts = run_hostile(hostile_runner, "hostile_ptrace")

    assert attempts["parent"] == {"value": os.getpid()}
    assert_refused(
        attempts,
        "attach",
        "seize",
        "read_memory",
        "steal_descriptor",
        "signal",
        code=errno.EPERM,
    )
    assert _traced_by() == 0
    assert_runner_unharmed(hostile_runner, hostile_plugins.PtracePlugin)


@pytest.mark.parametrize("change", ["limits", "priority", "affinity"])
def test_a_plugin_cannot_change_the_limits_or_scheduling_of_the_process_that_runs_it(
    hostile_runner, change
):
    """prlimit, setpriority and sched_setaffinity on the parent, to the values it has already."""
    before = (
        resource.getrlimit(resource.RLIMIT_NOFILE),
        os.getpriority(os.PRIO_PROCESS, 0),
        os.sched_getaffinity(0),
    )

    attempts = run_hostile(hostile_runner, "hostile_ptrace")

    assert_refused(attempts, change, code=errno.EPERM)
    after = (
        resource.getrlimit(resource.RLIMIT_NOFILE),
        os.getpriority(os.PRIO_PROCESS, 0),
        os.sched_getaffinity(0),
    )
    assert after == before
    assert_runner_unharmed(hostile_runner, hostile_plugins.PtracePlugin)


# Objects no process holds -----------------------------------------------------------

_SYSV_LISTS = {
    "message_queue": "/proc/sysvipc/msg",
    "shared_memory": "/proc/sysvipc/shm",
    "semaphores": "/proc/sysvipc/sem",
}


def _sysv_ids(listing: str) -> set[int]:
    """The ids of a /proc/sysvipc table (its second column)."""
    rows = Path(listing).read_text().splitlines()[1:]
    return {int(row.split()[1]) for row in rows}


def _remove_sysv(kind: str, ident: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if kind == "message_queue":
        libc.msgctl(ident, hostile_plugins.IPC_RMID, None)
    elif kind == "shared_memory":
        libc.shmctl(ident, hostile_plugins.IPC_RMID, None)
    else:
        libc.semctl(ident, 0, hostile_plugins.IPC_RMID)


def test_a_plugin_leaves_no_ipc_object_behind(hostile_runner, request):
    attempts = run_hostile(hostile_runner, "hostile_ipc")
    created = {kind: outcome["value"] for kind, outcome in attempts.items() if "value" in outcome}

    def remove_created() -> None:
        for kind, ident in created.items():
            _remove_sysv(kind, ident)

    request.addfinalizer(remove_created)
    [host] = host_leaders(hostile_plugins.IpcPlugin, under=os.getpid())
    os.killpg(host, signal.SIGKILL)
    wait_until(functools.partial(nothing_left_of, host), timeout_s=10)

    left = {kind for kind, ident in created.items() if ident in _sysv_ids(_SYSV_LISTS[kind])}
    assert not left, f"{sorted(left)} outlived the host ({hostile_plugins.SHARED_MIB} MiB shared)"
    assert_refused(attempts, *_SYSV_LISTS)
    assert_runner_unharmed(hostile_runner, hostile_plugins.IpcPlugin)


# Limits -----------------------------------------------------------------------------


def test_a_plugin_cannot_raise_its_own_limits(hostile_runner):
    attempts = run_hostile(hostile_runner, "hostile_rlimits")

    assert_refused(attempts, "raise_address_space", "raise_open_files", "raise_core_size")
    assert_refused(attempts, "prlimit_address_space", code=errno.EPERM)
    assert attempts["allocate_512_mib"]["error"] == "MemoryError"
    assert attempts["address_space_after"] == attempts["address_space"]
    assert attempts["open_files"]["value"] == [256, 256]

    result, error = hostile_runner.run("hostile_rlimits", {"mode": "allocate"})
    assert result is None
    assert error["error"]["type"] == ErrorType.PLUGIN_RESOURCE_LIMIT
    assert error["error"]["details"] == {"max_memory_mb": 64}
    assert_runner_unharmed(hostile_runner, hostile_plugins.RlimitPlugin)
