"""Hostile plugins: each tries from inside ``run`` what an attacker would, and says how it went.

tests/sandbox/test_hostile_plugins.py runs them through the real runtime (a server,
its background worker, or a ToolRunner) and checks both sides: every attempt failed
the way the sandbox makes it fail, and whoever ran the plugin came out unharmed.
Each attempt is reported as its value or its exception (name and errno), so that a
test tells the kernel's refusal from an attempt that never happened.

This module imports only the standard library, pydantic and the plugin contract,
and its top level does nothing: a plugin host imports it, and so does the server's
registry.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import pickle
import platform
import resource
import signal
import socket
import sqlite3
import stat
import struct
import sys
import time
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import BaseModel

from plugins.contract import Plugin

Outcome = dict[str, Any]
MiB = 1024 * 1024
# What a database would hold if an attack on it worked.
FORGED_RESULT = '{"forged": true}'
STOLEN_SUCCESS_COUNT = 123456


class Targets(BaseModel):
    """What a test points an attack at; each plugin reads the fields it needs."""

    database: str = ""
    """The server's SQLite database file."""
    database_url: str = ""
    paths: dict[str, str] = {}
    """Files to write, by label."""
    port: int = 0
    unix_socket: str = ""
    abstract_socket: str = ""
    marker: str = ""
    """A file the server would create if it ran what the plugin sent."""
    mode: str = ""
    job_id: str = ""
    pid: int = 0
    """Another process: another plugin's host."""
    delay_s: float = 0.0


class Findings(BaseModel):
    attempts: dict[str, Any]


def attempt(action: Callable[[], Any]) -> Outcome:
    """What came of ``action()``: ``{"value": ...}``, or the exception's name and errno."""
    try:
        value = action()
    except Exception as exc:
        return {"error": type(exc).__name__, "errno": getattr(exc, "errno", None)}
    return {"value": value}


class HostilePlugin(Plugin):
    version = "1.0"
    Input = Targets
    Output = Findings


# Secrets ----------------------------------------------------------------------------


def _read(path: str) -> str:
    with open(path, "rb") as file:
        return repr(file.read(64 * 1024))


def _open_parent_memory(pid: int) -> str:
    with open(f"/proc/{pid}/mem", "rb"):
        return "opened"


def _django_settings() -> dict[str, Any]:
    import django
    from django.conf import settings

    django.setup()
    return {
        "module": settings.SETTINGS_MODULE,
        "SECRET_KEY": settings.SECRET_KEY,
        "DATABASES": settings.DATABASES,
    }


def _orm_tokens() -> list[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT digest FROM execution_apitoken")
        return [str(row[0]) for row in cursor.fetchall()]


def _server_settings() -> str:
    import importlib

    return str(importlib.import_module("project.settings").SECRET_KEY)


def _open_fds() -> dict[str, str]:
    """Every descriptor this process has, found by probing (no /proc needed): its kind."""
    kinds = {
        stat.S_IFIFO: "pipe",
        stat.S_IFREG: "file",
        stat.S_IFCHR: "char",
        stat.S_IFSOCK: "socket",
    }
    found = {}
    for fd in range(resource.getrlimit(resource.RLIMIT_NOFILE)[0]):
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            continue
        found[str(fd)] = kinds.get(stat.S_IFMT(mode), "other")
    return found


class SecretsPlugin(HostilePlugin):
    """Looks for the server's secrets: environment, settings, database file, parent's /proc."""

    name = "hostile_secrets"

    def run(self, targets: Targets) -> Findings:
        parent = os.getppid()
        return Findings(
            attempts={
                "environ": attempt(lambda: dict(os.environ)),
                "own_proc_environ": attempt(lambda: _read("/proc/self/environ")),
                "django_settings": attempt(_django_settings),
                "orm_tokens": attempt(_orm_tokens),
                "server_settings": attempt(_server_settings),
                "database_file": attempt(lambda: _read(targets.database)),
                "database_log": attempt(lambda: _read(targets.database + "-wal")),
                "parent_environ": attempt(lambda: _read(f"/proc/{parent}/environ")),
                "parent_cmdline": attempt(lambda: _read(f"/proc/{parent}/cmdline")),
                "parent_mem": attempt(lambda: _open_parent_memory(parent)),
                "parent_fds": attempt(lambda: os.listdir(f"/proc/{parent}/fd")),
                "own_fd_listing": attempt(lambda: os.listdir("/proc/self/fd")),
                "open_fds": attempt(_open_fds),
                "root_home": attempt(lambda: os.listdir("/root")),
                "homes": attempt(lambda: os.listdir("/home")),
            }
        )


# The database -----------------------------------------------------------------------


def _sqlite(database: str, sql: str, *parameters: Any, uri: bool = False) -> list[list[str]]:
    connection = sqlite3.connect(database, uri=uri, timeout=1)
    try:
        rows = [[str(value) for value in row] for row in connection.execute(sql, parameters)]
        connection.commit()
        return rows
    finally:
        connection.close()


def _postgres(url: str) -> str:
    import psycopg

    with psycopg.connect(url, connect_timeout=2) as connection:
        return str(connection.execute("SELECT count(*) FROM execution_apitoken").fetchone())


def _tcp(host: str, port: int) -> str:
    with socket.create_connection((host, port), timeout=2):
        return "connected"


class DatabasePlugin(HostilePlugin):
    """Reads and writes the server's database by every way around the ORM."""

    name = "hostile_database"

    def run(self, targets: Targets) -> Findings:
        database = targets.database
        attempts = {"postgres_port": attempt(lambda: _tcp("127.0.0.1", 5432))}
        if targets.database_url.startswith("postgres"):
            attempts["postgres"] = attempt(lambda: _postgres(targets.database_url))
        if not database:
            return Findings(attempts=attempts)
        attempts.update(
            read_tokens=attempt(lambda: _sqlite(database, "SELECT digest FROM execution_apitoken")),
            read_only_uri=attempt(
                lambda: _sqlite(f"file:{database}?mode=ro", "SELECT 1", uri=True)
            ),
            immutable_uri=attempt(
                lambda: _sqlite(f"file:{database}?immutable=1", "SELECT 1", uri=True)
            ),
            inflate_metrics=attempt(
                lambda: _sqlite(
                    database,
                    "UPDATE plugins_pluginmetrics SET success_count = ?",
                    STOLEN_SUCCESS_COUNT,
                )
            ),
            make_superusers=attempt(
                lambda: _sqlite(database, "UPDATE auth_user SET is_superuser = 1, is_staff = 1")
            ),
        )
        return Findings(attempts=attempts)


# The network ------------------------------------------------------------------------


def _connect(family: socket.AddressFamily, address: Any) -> str:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        sock.connect(address)
        return "connected"


def _listen() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def _udp(port: int) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        return sock.sendto(b"hostile", ("127.0.0.1", port))


def _datagram_pair_to(path: str) -> int:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with left, right:
        return left.sendto(b"hostile", path)


def _stream_pair_to(path: str) -> int:
    left, right = socket.socketpair()
    with left, right:
        return left.sendto(b"hostile", path)


class NetworkPlugin(HostilePlugin):
    """Reaches for listeners on this machine: TCP, UDP, unix sockets by path and abstract."""

    name = "hostile_network"

    def run(self, targets: Targets) -> Findings:
        port, path = targets.port, targets.unix_socket
        return Findings(
            attempts={
                "tcp": attempt(lambda: _connect(socket.AF_INET, ("127.0.0.1", port))),
                "tcp6": attempt(lambda: _connect(socket.AF_INET6, ("::1", port))),
                "listen": attempt(_listen),
                "udp": attempt(lambda: _udp(port)),
                "unix": attempt(lambda: _connect(socket.AF_UNIX, path)),
                "abstract": attempt(
                    lambda: _connect(socket.AF_UNIX, "\0" + targets.abstract_socket)
                ),
                "datagram_pair": attempt(lambda: _datagram_pair_to(path)),
                "stream_pair": attempt(lambda: _stream_pair_to(path)),
                "netlink": attempt(
                    lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW).close()
                ),
            }
        )


# Writing outside the temporary directory --------------------------------------------


def _append(path: str) -> str:
    with open(path, "ab") as file:
        file.write(b"hostile")
    return "written"


def _write_own_file() -> str:
    """Where a plugin may write: its temporary directory, its cwd."""
    _append("own-file")
    return os.path.abspath("own-file")


def _chmod_as_is(path: str) -> str:
    """chmod to the mode the file has: harmless, and proof that any mode would do."""
    os.chmod(path, stat.S_IMODE(os.stat(path).st_mode))
    return "changed"


def _touch_as_is(path: str) -> str:
    times = os.stat(path)
    os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))
    return "changed"


def _truncate_as_is(path: str) -> str:
    os.truncate(path, os.stat(path).st_size)
    return "truncated"


def _link_and_read(path: str, name: str) -> str:
    os.link(path, name)
    return _read(name)


def _symlink_and_read(path: str, name: str) -> str:
    os.symlink(path, name)
    return _read(name)


_ATTRIBUTE_CHANGES: dict[str, Callable[[str], Any]] = {
    "chmod": _chmod_as_is,
    "utime": _touch_as_is,
    "xattr": lambda path: os.setxattr(path, "user.hostile", b"1"),
}


class WriterPlugin(HostilePlugin):
    """Writes where it must not: the project folder, /tmp, the database file, a file beside it.

    With ``mode`` one of chmod, utime or xattr, it changes only that attribute of the
    database file instead.
    """

    name = "hostile_writer"

    def run(self, targets: Targets) -> Findings:
        database, decoy = targets.database, targets.paths.get("decoy", "")
        if targets.mode:
            change = _ATTRIBUTE_CHANGES[targets.mode]
            return Findings(attempts={targets.mode: attempt(lambda: change(database))})
        attempts = {
            f"create_{label}": attempt(functools.partial(_append, path))
            for label, path in targets.paths.items()
        }
        attempts.update(
            own_directory=attempt(_write_own_file),
            append_database=attempt(lambda: _append(database)),
            truncate_database=attempt(lambda: _truncate_as_is(database)),
            hardlink_database=attempt(lambda: _link_and_read(database, "linked")),
            symlink_database=attempt(lambda: _symlink_and_read(database, "symlinked")),
            rename_decoy=attempt(lambda: os.rename(decoy, "stolen")),
            unlink_decoy=attempt(lambda: os.unlink(decoy)),
        )
        return Findings(attempts=attempts)


# The channel to the server ----------------------------------------------------------


class _Trap:
    """Pickled, a call of ``open(marker, "w")``: unpickling it creates the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def trap(marker: str) -> bytes:
    return pickle.dumps(_Trap(marker))


def framed(data: bytes) -> bytes:
    """``data`` in the channel's framing: a 4-byte big-endian length, then the bytes."""
    return struct.pack(">I", len(data)) + data


GARBAGE = framed(b"\xff\xfe{not json\x00")


def channel_fds() -> tuple[int, int, int]:
    """The host's descriptors to its server (requests, replies, lifeline): its command line says."""
    requests, replies, lifeline = (int(arg) for arg in sys.argv[1:4])
    return requests, replies, lifeline


def _write(fd: int, data: bytes) -> int:
    return os.write(fd, data)


def _write_through_proc(fd: int, data: bytes) -> int:
    with open(f"/proc/self/fd/{fd}", "wb") as file:
        return file.write(data)


def _replace_reply(marker: str) -> str:
    """Every reply of this host becomes a well-formed header, then a pickle as the result."""
    from plugins.runtime.isolation import channel, host

    def forged_reply(fd: int, header: dict[str, Any], data: bytes) -> None:
        channel.send_json(fd, {"ok": True, "retire": False})
        channel.send(fd, trap(marker))

    host._reply = forged_reply
    return "replaced"


def _replace_send(marker: str) -> str:
    """Every frame this host sends becomes a pickle."""
    from plugins.runtime.isolation import channel

    channel.send = lambda fd, data, *rest: _write(fd, framed(trap(marker)))  # type: ignore[assignment]
    return "replaced"


class ChannelPlugin(HostilePlugin):
    """Sends the server what it must never run or believe: pickles, garbage, forged replies.

    ``mode`` picks the attack; with none, it only says which descriptors it has.
    """

    name = "hostile_channel"

    def run(self, targets: Targets) -> Findings:
        payload = trap(targets.marker)
        replies = channel_fds()[1]
        attacks: dict[str, Callable[[], Any]] = {
            "pickle_on_replies": lambda: _write(replies, payload),
            "garbage_on_replies": lambda: _write(replies, GARBAGE),
            "replaced_reply": lambda: _replace_reply(targets.marker),
            "replaced_send": lambda: _replace_send(targets.marker),
        }
        attempts = {}
        if targets.mode == "every_descriptor":
            for fd in (0, 1, 2, *channel_fds()):
                attempts[f"fd{fd}"] = attempt(functools.partial(_write, fd, framed(payload)))
            for fd in channel_fds():
                attempts[f"proc_fd{fd}"] = attempt(
                    functools.partial(_write_through_proc, fd, framed(payload))
                )
        elif targets.mode:
            attempts[targets.mode] = attempt(attacks[targets.mode])
        attempts["open_fds"] = attempt(_open_fds)
        return Findings(attempts=attempts)


# The parent process -----------------------------------------------------------------

_PTRACE_ATTACH, _PTRACE_DETACH, _PTRACE_SEIZE, _PTRACE_INTERRUPT = 16, 17, 0x4206, 0x4207
_WALL = 0x40000000
_SYSCALLS = {
    "x86_64": {"process_vm_readv": 310, "pidfd_getfd": 438},
    "aarch64": {"process_vm_readv": 270, "pidfd_getfd": 438},
}


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("length", ctypes.c_size_t)]


def _libc() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.ptrace.restype = ctypes.c_long
    return libc


def _checked(result: int) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def _ptrace(request: int, pid: int) -> str:
    libc = _libc()
    _checked(libc.ptrace(request, pid, None, None))
    # It worked: stop the parent, wait for it to stop, let go of it at once.
    if request == _PTRACE_SEIZE:
        libc.ptrace(_PTRACE_INTERRUPT, pid, None, None)
    os.waitpid(pid, _WALL)
    libc.ptrace(_PTRACE_DETACH, pid, None, None)
    return "attached"


def _read_memory_of(pid: int) -> int:
    buffer = ctypes.create_string_buffer(64)
    local = _IoVec(ctypes.cast(buffer, ctypes.c_void_p), 64)
    remote = _IoVec(ctypes.c_void_p(0x400000), 64)
    number = _SYSCALLS[platform.machine()]["process_vm_readv"]
    return _checked(
        _libc().syscall(number, pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    )


def _steal_descriptor_of(pid: int) -> int:
    """pidfd_getfd: a copy of the parent's descriptor 3 (with SQLite, often its database)."""
    pidfd = os.pidfd_open(pid)
    try:
        number = _SYSCALLS[platform.machine()]["pidfd_getfd"]
        return _checked(_libc().syscall(number, pidfd, 3, 0))
    finally:
        os.close(pidfd)


def _limits_of(pid: int) -> list[int]:
    """prlimit on the parent, setting what it has: had it worked, any limit would have."""
    current = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, current)
    return list(current)


def _priority_of(pid: int) -> int:
    niceness = os.getpriority(os.PRIO_PROCESS, pid)
    os.setpriority(os.PRIO_PROCESS, pid, niceness)
    return niceness


def _affinity_of(pid: int) -> list[int]:
    cpus = os.sched_getaffinity(pid)
    os.sched_setaffinity(pid, cpus)
    return sorted(cpus)


class PtracePlugin(HostilePlugin):
    """Goes for the process that started its host: ptrace, its memory, its fds, its limits."""

    name = "hostile_ptrace"

    def run(self, targets: Targets) -> Findings:
        parent = os.getppid()
        return Findings(
            attempts={
                "parent": {"value": parent},
                "attach": attempt(lambda: _ptrace(_PTRACE_ATTACH, parent)),
                "seize": attempt(lambda: _ptrace(_PTRACE_SEIZE, parent)),
                "read_memory": attempt(lambda: _read_memory_of(parent)),
                "steal_descriptor": attempt(lambda: _steal_descriptor_of(parent)),
                "signal": attempt(lambda: os.kill(parent, 0)),
                "limits": attempt(lambda: _limits_of(parent)),
                "priority": attempt(lambda: _priority_of(parent)),
                "affinity": attempt(lambda: _affinity_of(parent)),
            }
        )


def _signal_through_pidfd(pid: int) -> str:
    pidfd = os.pidfd_open(pid)
    try:
        signal.pidfd_send_signal(pidfd, 0)
    finally:
        os.close(pidfd)
    return "signalled"


def _starve_of_files(pid: int) -> list[int]:
    """What the issue's poisoner did to its own reused process, done to a neighbour's."""
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (16, 16))
    return list(resource.prlimit(pid, resource.RLIMIT_NOFILE))


class NeighbourPlugin(HostilePlugin):
    """Goes for another plugin's host (``pid``): signals, ptrace, its limits and scheduling.

    It could find one without being told: prlimit answers ESRCH for a pid nobody has.
    """

    name = "hostile_neighbour"

    def run(self, targets: Targets) -> Findings:
        pid = targets.pid
        return Findings(
            attempts={
                "signal": attempt(lambda: os.kill(pid, 0)),
                "pidfd_signal": attempt(lambda: _signal_through_pidfd(pid)),
                "attach": attempt(lambda: _ptrace(_PTRACE_ATTACH, pid)),
                "read_memory": attempt(lambda: _read_memory_of(pid)),
                "limits": attempt(lambda: _starve_of_files(pid)),
                "priority": attempt(lambda: _priority_of(pid)),
                "affinity": attempt(lambda: _affinity_of(pid)),
            }
        )


# Processes that outlive their execution ---------------------------------------------


def _listen_on(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def _daemon(report_to: int, targets: Targets) -> None:
    """The second child: reports how it fared, then waits, then rewrites a job. Never returns."""
    try:
        kept: list[Any] = []
        report = {
            "pid": {"value": os.getpid()},
            "setsid": attempt(os.setsid),
            "setpgid": attempt(lambda: os.setpgid(0, 0)),
            "pgid": {"value": os.getpgrp()},
            "listen": attempt(lambda: kept.append(_listen_on(targets.port))),
        }
        os.write(report_to, json.dumps(report).encode() + b"\n")
        os.close(report_to)
        time.sleep(targets.delay_s)
        _sqlite(
            targets.database,
            "UPDATE execution_job SET result = ? WHERE id = ?",
            FORGED_RESULT,
            targets.job_id.replace("-", ""),
        )
    finally:
        os._exit(0)


class DaemonPlugin(HostilePlugin):
    """Double-forks a daemon (setsid between the forks) that listens on a port and waits.

    The plugin returns what the daemon reported; with ``mode = "linger"`` it then
    sleeps ``delay_s`` itself, so that a test can kill its server meanwhile.
    """

    name = "hostile_daemon"

    def run(self, targets: Targets) -> Findings:
        reader, writer = os.pipe()
        first = os.fork()
        if first == 0:
            try:
                os.close(reader)
                os.setsid()
            except OSError:
                pass  # refused: fork on all the same
            finally:
                if os.fork() == 0:
                    _daemon(writer, targets)
                os._exit(0)
        os.close(writer)
        os.waitpid(first, 0)
        with os.fdopen(reader) as pipe:
            line = pipe.readline()
        if targets.mode == "linger":
            time.sleep(targets.delay_s)
        return Findings(attempts=json.loads(line))


# Objects no process holds -----------------------------------------------------------

IPC_PRIVATE, IPC_CREAT, IPC_RMID = 0, 0o1000, 0
SHARED_MIB = 16


def _filled_segment(libc: Any) -> int:
    """A shared memory segment, written to the end: memory held by no process, once detached."""
    segment = _checked(libc.shmget(IPC_PRIVATE, SHARED_MIB * MiB, IPC_CREAT | 0o666))
    libc.shmat.restype = ctypes.c_void_p
    address = libc.shmat(segment, None, 0)
    if address in (None, ctypes.c_void_p(-1).value):
        return segment
    ctypes.memset(address, 1, SHARED_MIB * MiB)
    libc.shmdt(ctypes.c_void_p(address))
    return segment


class IpcPlugin(HostilePlugin):
    """Creates System V IPC objects, which outlive every process: a queue, memory, semaphores.

    Made readable by all, they would also let any two plugins of one uid talk.
    """

    name = "hostile_ipc"

    def run(self, targets: Targets) -> Findings:
        libc = _libc()
        return Findings(
            attempts={
                "message_queue": attempt(
                    lambda: _checked(libc.msgget(IPC_PRIVATE, IPC_CREAT | 0o666))
                ),
                "shared_memory": attempt(lambda: _filled_segment(libc)),
                "semaphores": attempt(
                    lambda: _checked(libc.semget(IPC_PRIVATE, 1, IPC_CREAT | 0o666))
                ),
            }
        )


# Limits -----------------------------------------------------------------------------


def _allocate(mib: int) -> int:
    return len(bytearray(mib * MiB))


class RlimitPlugin(HostilePlugin):
    """Raises its own hard limits, then takes the memory its limit (64 MB) refuses.

    With ``mode = "allocate"`` it does not catch the MemoryError.
    """

    name = "hostile_rlimits"
    max_memory_mb: ClassVar[int | None] = 64

    def run(self, targets: Targets) -> Findings:
        infinite = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
        attempts = {
            "address_space": {"value": list(resource.getrlimit(resource.RLIMIT_AS))},
            "raise_address_space": attempt(
                lambda: resource.setrlimit(resource.RLIMIT_AS, infinite)
            ),
            "prlimit_address_space": attempt(
                lambda: resource.prlimit(0, resource.RLIMIT_AS, infinite)
            ),
            "open_files": {"value": list(nofile)},
            "raise_open_files": attempt(
                lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile[1] * 4, nofile[1] * 4))
            ),
            "raise_core_size": attempt(lambda: resource.setrlimit(resource.RLIMIT_CORE, infinite)),
        }
        if targets.mode == "allocate":
            _allocate(512)
        attempts["allocate_512_mib"] = attempt(lambda: _allocate(512))
        attempts["address_space_after"] = {"value": list(resource.getrlimit(resource.RLIMIT_AS))}
        return Findings(attempts=attempts)


# Poisoning its own host -------------------------------------------------------------

_captured: list[str] = []
"""What the poisoned json.dumps saw: in a shared host, other users' data."""


def _poison() -> dict[str, Any]:
    resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))
    os.chdir("/")
    os.environ["PATH"] = "/poisoned"
    os.environ["HOSTILE_POISON"] = "1"
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    original = json.dumps

    def eavesdropping_dumps(value: Any, *args: Any, **kwargs: Any) -> str:
        text = original(value, *args, **kwargs)
        _captured.append(text[:1000])
        return text

    json.dumps = eavesdropping_dumps  # type: ignore[assignment]
    return {"open_files": list(resource.getrlimit(resource.RLIMIT_NOFILE)), "cwd": os.getcwd()}


class PoisonPlugin(HostilePlugin):
    """Poisons the process it runs in (limits, cwd, environment, a monkeypatched json.dumps).

    ``mode = "poison"`` does it; any other mode reports what the poison captured since.
    """

    name = "hostile_poison"

    def run(self, targets: Targets) -> Findings:
        if targets.mode == "poison":
            return Findings(attempts={"poison": attempt(_poison)})
        return Findings(
            attempts={
                "captured": {"value": list(_captured)},
                "environ": {"value": dict(os.environ)},
            }
        )


def _open_many(count: int) -> int:
    files = [open(f"file-{index}", "w") for index in range(count)]  # noqa: SIM115
    for file in files:
        file.close()
    return len(files)


class BystanderPlugin(HostilePlugin):
    """Not hostile: another plugin, reporting what its process is like (it echoes ``mode``)."""

    name = "bystander"

    def run(self, targets: Targets) -> Findings:
        return Findings(
            attempts={
                "echo": {"value": targets.mode},
                "cwd": {"value": os.getcwd()},
                "environ": {"value": dict(os.environ)},
                "open_files": {"value": list(resource.getrlimit(resource.RLIMIT_NOFILE))},
                "open_32_files": {"value": _open_many(32)},  # fails the job if it cannot
                "json_dumps": {"value": f"{json.dumps.__module__}.{json.dumps.__qualname__}"},
                "sigterm": {"value": str(signal.getsignal(signal.SIGTERM))},
            }
        )


HOSTILE_PLUGINS: tuple[type[Plugin], ...] = (
    SecretsPlugin,
    DatabasePlugin,
    NetworkPlugin,
    WriterPlugin,
    ChannelPlugin,
    PtracePlugin,
    NeighbourPlugin,
    DaemonPlugin,
    IpcPlugin,
    RlimitPlugin,
    PoisonPlugin,
    BystanderPlugin,
)
