"""The kernel's confinement, tried for real.

Each test starts a fresh interpreter (``sys.executable -I``) that confines itself with
:func:`plugins.runtime.sandbox.confine` and then tries what a hostile plugin would; it
prints what came of each attempt as JSON, and the test checks that.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
from pathlib import Path

import pytest

import plugins

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
READ_ONLY = [
    sysconfig.get_path("stdlib"),
    sysconfig.get_path("purelib"),
    str(Path(plugins.__file__).parent),
]
AS_ROOT = os.geteuid() == 0
NOBODY = 65534
MiB = 1024 * 1024

PRELUDE = '''
import ctypes, json, os, platform, sys
from plugins.runtime.sandbox import SandboxPolicy, SandboxUnavailable, confine, limit_memory

config = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
SYS = {"x86_64": {"close": 3, "clone": 56}, "aarch64": {"close": 57, "clone": 220}}[
    platform.machine()
]

def policy(**overrides):
    paths = {"read_only": tuple(config["read_only"]), "read_write": tuple(config["read_write"])}
    return SandboxPolicy(**{**paths, **overrides})

def attempt(action):
    """What came of action(): its value, or its exception's name and errno."""
    try:
        value = action()
    except Exception as exc:
        return {"error": type(exc).__name__, "errno": getattr(exc, "errno", None)}
    plain = isinstance(value, (int, str, bool, list, type(None)))
    return {"value": value if plain else repr(value)}

def raw(result):
    """A libc call's result, -1 as the errno it set."""
    return {"value": result} if result >= 0 else {"error": "OSError", "errno": ctypes.get_errno()}

def report(**results):
    print(json.dumps(results))
'''


def run_confined(body: str, read_write: Path, *, pass_fds: tuple[int, ...] = (), **config):
    """Run ``body`` after the prelude in a new interpreter; what it reported."""
    config = {"read_only": READ_ONLY, "read_write": [str(read_write)], **config}
    completed = subprocess.run(
        [sys.executable, "-I", "-c", PRELUDE + textwrap.dedent(body), json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=60,
        pass_fds=pass_fds,
        cwd=read_write,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.splitlines()[-1])


def denied(result, error="PermissionError"):
    return result.get("error") == error


@pytest.fixture
def inside(tmp_path: Path) -> Path:
    """The tree a confined process may write."""
    path = tmp_path / "inside"
    path.mkdir()
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A tree beside it, which it may not touch."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret.txt").write_text("the server's secret")
    return path


@pytest.fixture
def shared_dir():
    """A directory outside pytest's own (mode 700), so another uid can reach it."""
    path = Path(tempfile.mkdtemp(prefix="sandbox-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def listener():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server
    server.close()


def test_reads_outside_its_trees_are_refused(inside: Path, outside: Path) -> None:
    (inside / "own.txt").write_text("mine")
    results = run_confined(
        """
        confine(policy())
        report(
            secret=attempt(lambda: open(config["secret"]).read()),
            listing=attempt(lambda: os.listdir(config["outside"])),
            project=attempt(lambda: open(config["pyproject"]).read()),
            own=attempt(lambda: open("own.txt").read()),
        )
        """,
        inside,
        secret=str(outside / "secret.txt"),
        outside=str(outside),
        pyproject=str(PROJECT_ROOT / "pyproject.toml"),
    )
    assert denied(results["secret"])
    assert denied(results["listing"])
    assert denied(results["project"])
    assert results["own"] == {"value": "mine"}


def test_writes_outside_its_tree_are_refused_and_inside_work(inside: Path, outside: Path) -> None:
    results = run_confined(
        """
        confine(policy())
        def write(path):
            with open(path, "w") as file:
                return file.write("written")
        report(
            outside=attempt(lambda: write(os.path.join(config["outside"], "planted.txt"))),
            overwrite=attempt(lambda: write(os.path.join(config["outside"], "secret.txt"))),
            directory=attempt(lambda: os.mkdir(os.path.join(config["outside"], "planted"))),
            inside=attempt(lambda: write("made.txt")),
        )
        """,
        inside,
        outside=str(outside),
    )
    assert denied(results["outside"])
    assert denied(results["overwrite"])
    assert denied(results["directory"])
    assert sorted(path.name for path in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "the server's secret"
    assert results["inside"] == {"value": 7}
    assert (inside / "made.txt").read_text() == "written"


def test_tcp_is_refused_and_the_listener_sees_nothing(inside: Path, listener) -> None:
    results = run_confined(
        """
        import socket
        made_before = [socket.socket(), socket.socket()]  # Landlock, not seccomp, must refuse
        confine(policy())
        report(
            connect=attempt(lambda: made_before[0].connect(("127.0.0.1", config["port"]))),
            bind=attempt(lambda: made_before[1].bind(("127.0.0.1", 0))),
            new_socket=attempt(lambda: socket.socket()),
            new_socket6=attempt(lambda: socket.socket(socket.AF_INET6)),
        )
        """,
        inside,
        port=listener.getsockname()[1],
    )
    assert denied(results["connect"])
    assert denied(results["bind"])
    assert results["new_socket"] == {"error": "PermissionError", "errno": 13}
    assert denied(results["new_socket6"])
    listener.setblocking(False)
    with pytest.raises(BlockingIOError):
        listener.accept()


def test_network_true_allows_tcp(inside: Path, listener) -> None:
    results = run_confined(
        """
        import socket
        confine(policy(network=True))
        def send():
            with socket.create_connection(("127.0.0.1", config["port"]), timeout=10) as conn:
                return conn.send(b"hello")
        report(send=attempt(send), unix=attempt(lambda: socket.socket(socket.AF_UNIX)))
        """,
        inside,
        port=listener.getsockname()[1],
    )
    assert results["send"] == {"value": 5}
    assert denied(results["unix"])
    listener.settimeout(10)
    connection, _ = listener.accept()
    with connection:
        assert connection.recv(16) == b"hello"


def test_unix_sockets_are_refused(inside: Path, outside: Path) -> None:
    stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stream.bind(str(outside / "stream.sock"))
    stream.listen()
    datagram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    datagram.bind(str(outside / "datagram.sock"))
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind(f"\0sandbox-test-{os.getpid()}")
    abstract.listen()
    try:
        results = run_confined(
            """
            import socket
            made_before = socket.socket(socket.AF_UNIX)  # Landlock's scope must refuse
            confine(policy())
            def send_by_path():
                left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
                return left.sendto(b"hello", config["datagram"])
            def stream_pair():
                left, right = socket.socketpair()
                left.send(b"ok")
                return right.recv(2).decode()
            report(
                new_socket=attempt(lambda: socket.socket(socket.AF_UNIX)),
                connect=attempt(lambda: made_before.connect(config["abstract"])),
                send_by_path=attempt(send_by_path),
                stream_pair=attempt(stream_pair),
            )
            """,
            inside,
            datagram=str(outside / "datagram.sock"),
            abstract=f"\0sandbox-test-{os.getpid()}",
        )
        assert results["new_socket"] == {"error": "PermissionError", "errno": 13}
        assert denied(results["connect"])
        assert denied(results["send_by_path"])
        assert denied(results["stream_pair"])  # it could pass descriptors (SCM_RIGHTS)
        for server in (stream, datagram, abstract):
            server.setblocking(False)
        for server in (stream, abstract):
            with pytest.raises(BlockingIOError):
                server.accept()
        with pytest.raises(BlockingIOError):
            datagram.recv(16)
    finally:
        for server in (stream, datagram, abstract):
            server.close()


def test_the_parent_is_out_of_reach(inside: Path) -> None:
    results = run_confined(
        """
        parent = os.getppid()
        confine(policy())
        report(
            ptrace=raw(libc.ptrace(16, parent, None, None)),  # PTRACE_ATTACH
            environ=attempt(lambda: open(f"/proc/{parent}/environ", "rb").read()),
            mem=attempt(lambda: open(f"/proc/{parent}/mem", "rb").read(1)),
            signal=attempt(lambda: os.kill(parent, 0)),
            everyone=attempt(lambda: os.kill(-1, 0)),
            own_signal=attempt(lambda: os.kill(os.getpid(), 0)),
        )
        """,
        inside,
    )
    assert denied(results["everyone"])
    assert results["ptrace"] == {"error": "OSError", "errno": 1}
    assert denied(results["environ"])
    assert denied(results["mem"])
    assert denied(results["signal"])
    assert results["own_signal"] == {"value": None}


def test_it_cannot_leave_its_process_group(inside: Path) -> None:
    results = run_confined(
        """
        confine(policy())
        report(
            setsid=attempt(os.setsid),
            setpgid=attempt(lambda: os.setpgid(0, 0)),
            group=os.getpgrp(),
        )
        """,
        inside,
    )
    assert denied(results["setsid"])
    assert denied(results["setpgid"])
    assert results["group"] == os.getpgrp()


def test_limits_cannot_be_raised_and_memory_is_capped(inside: Path) -> None:
    results = run_confined(
        """
        import resource
        limit_memory(64 * 1024 * 1024)
        confine(policy(max_open_files=64))
        unlimited = resource.RLIM_INFINITY
        report(
            address_space=list(resource.getrlimit(resource.RLIMIT_AS)),
            open_files=list(resource.getrlimit(resource.RLIMIT_NOFILE)),
            core=list(resource.getrlimit(resource.RLIMIT_CORE)),
            raise_address_space=attempt(
                lambda: resource.setrlimit(resource.RLIMIT_AS, (unlimited, unlimited))
            ),
            raise_open_files=attempt(
                lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 4096))
            ),
            within=attempt(lambda: len(bytearray(8 * 1024 * 1024))),
            beyond=attempt(lambda: len(bytearray(128 * 1024 * 1024))),
        )
        """,
        inside,
    )
    soft, hard = results["address_space"]
    assert soft == hard != -1
    assert results["open_files"] == [64, 64]
    assert results["core"] == [0, 0]
    assert denied(results["raise_address_space"], "ValueError")
    assert denied(results["raise_open_files"], "ValueError")
    assert results["within"] == {"value": 8 * MiB}
    assert denied(results["beyond"], "MemoryError")


def test_a_protected_fd_cannot_be_closed_replaced_or_reflagged(inside: Path) -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"alive")
    try:
        results = run_confined(
            """
            import fcntl, struct
            fd = config["fd"]
            confine(policy(protected_fds=(fd,)))
            report(
                close=attempt(lambda: os.close(fd)),
                close_high_bits=raw(libc.syscall(SYS["close"], ctypes.c_long((1 << 32) | fd))),
                close_range=raw(libc.syscall(436, fd, fd, 0)),
                close_range_high_bits=raw(libc.syscall(436, ctypes.c_long(1 << 32), fd, 0)),
                dup2=attempt(lambda: os.dup2(0, fd)),
                dup3=attempt(lambda: os.dup2(0, fd, inheritable=False)),
                nonblocking=attempt(lambda: fcntl.fcntl(fd, fcntl.F_SETFL, os.O_NONBLOCK)),
                owner=attempt(lambda: fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())),
                signal=attempt(lambda: fcntl.fcntl(fd, fcntl.F_SETSIG, 0)),
                async_ioctl=attempt(lambda: fcntl.ioctl(fd, 0x5452, struct.pack("i", 0))),
                closerange=attempt(lambda: os.closerange(fd, fd + 1)),
                still_open=os.read(fd, 5).decode(),
                # A copy shares the file description, whose flags would then be changed.
                dup=attempt(lambda: os.dup(fd)),
                dup_fcntl=attempt(lambda: fcntl.fcntl(fd, fcntl.F_DUPFD, 100)),
                dup_from=attempt(lambda: os.dup2(fd, 100)),
                other_fd=attempt(lambda: os.close(os.dup(0))),
            )
            """,
            inside,
            pass_fds=(read_end,),
            fd=read_end,
        )
    finally:
        os.close(read_end)
        os.close(write_end)
    for name in (
        "close",
        "dup2",
        "dup3",
        "nonblocking",
        "owner",
        "signal",
        "async_ioctl",
        "dup",
        "dup_fcntl",
        "dup_from",
    ):
        assert denied(results[name]), name
    assert results["close_high_bits"] == {"error": "OSError", "errno": 1}
    assert results["close_range"] == {"error": "OSError", "errno": 1}
    assert results["close_range_high_bits"] == {"error": "OSError", "errno": 1}
    assert results["still_open"] == "alive"
    assert results["other_fd"] == {"value": None}


def test_new_namespaces_are_refused(inside: Path) -> None:
    results = run_confined(
        """
        CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
        confine(policy())
        cloned = libc.syscall(SYS["clone"], CLONE_NEWUSER | 17, 0, 0, 0, 0)  # 17: SIGCHLD
        if cloned == 0:  # the filter failed: the child must not carry on
            os._exit(0)
        clone = raw(cloned)
        CLONE_PARENT = 0x8000  # a sibling of the host, out of its subreaping
        sibling = libc.syscall(SYS["clone"], CLONE_PARENT | 17, 0, 0, 0, 0)
        if sibling == 0:
            os._exit(0)
        clone_parent = raw(sibling)
        child = os.fork()  # without a new namespace, processes are still made
        if child == 0:
            os._exit(3)
        report(
            unshare=raw(libc.unshare(CLONE_NEWUSER)),
            unshare_net=raw(libc.unshare(CLONE_NEWNET)),
            clone=clone,
            clone_parent=clone_parent,
            clone3=raw(libc.syscall(435, None, 0)),
            fork=os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]),
        )
        """,
        inside,
    )
    assert results["unshare"] == {"error": "OSError", "errno": 1}
    assert results["unshare_net"] == {"error": "OSError", "errno": 1}
    assert results["clone"] == {"error": "OSError", "errno": 1}
    assert results["clone_parent"] == {"error": "OSError", "errno": 1}
    assert results["clone3"] == {"error": "OSError", "errno": 38}  # ENOSYS: use clone
    assert results["fork"] == 3


def _status_fields(status: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)


STATUS_BODY = """
status = os.open("/proc/self/status", os.O_RDONLY)  # /proc is closed once confined
confinement = confine(policy(user=config["user"]))
report(
    status=os.pread(status, 65536, 0).decode(),
    dumpable=libc.prctl(3, 0, 0, 0, 0),  # PR_GET_DUMPABLE
    uid=os.getuid(),
    describe=confinement.describe(),
)
"""


def test_every_capability_is_dropped(inside: Path) -> None:
    results = run_confined(STATUS_BODY, inside, user=None)
    fields = _status_fields(results["status"])
    # Only a privileged process can empty its bounding set; no_new_privs makes it moot.
    sets = ("CapInh", "CapPrm", "CapEff", "CapAmb") + (("CapBnd",) if AS_ROOT else ())
    for capabilities in sets:
        assert int(fields[capabilities], 16) == 0, capabilities
    assert fields["NoNewPrivs"] == "1"
    assert fields["Seccomp"] == "2"
    assert results["dumpable"] == 0
    assert results["uid"] == os.getuid()


def test_prctl_cannot_undo_or_escape_the_host(inside: Path) -> None:
    results = run_confined(
        """
        confine(policy())
        def prctl(option, value):
            return raw(libc.prctl(ctypes.c_long(option), ctypes.c_ulong(value), 0, 0, 0))
        report(
            subreaper=prctl(36, 1),  # PR_SET_CHILD_SUBREAPER
            subreaper_high_bits=prctl((1 << 32) | 36, 1),  # the kernel reads an int
            death_signal=prctl(1, 9),  # PR_SET_PDEATHSIG
            dumpable=prctl(4, 1),  # PR_SET_DUMPABLE
            name=prctl(15, 0),  # PR_SET_NAME (NULL): not denied, so EFAULT
        )
        """,
        inside,
    )
    for option in ("subreaper", "subreaper_high_bits", "death_signal", "dumpable"):
        assert results[option] == {"error": "OSError", "errno": 1}, option
    assert results["name"] == {"error": "OSError", "errno": 14}


@pytest.mark.skipif(not AS_ROOT, reason="switching to another uid needs root; this run is not root")
def test_root_switches_to_the_unprivileged_user(shared_dir: Path) -> None:
    os.chown(shared_dir, NOBODY, NOBODY)
    results = run_confined(STATUS_BODY, shared_dir, user=[NOBODY, NOBODY])
    fields = _status_fields(results["status"])
    assert results["uid"] == NOBODY
    assert fields["Uid"].split() == [str(NOBODY)] * 4
    assert fields["Gid"].split() == [str(NOBODY)] * 4
    assert fields["Groups"].strip() == ""
    for capabilities in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(fields[capabilities], 16) == 0, capabilities
    assert results["describe"]["uid"] == NOBODY


@pytest.mark.skipif(not AS_ROOT, reason="switching to another uid needs root; this run is not root")
def test_a_tree_the_new_user_cannot_read_fails_closed(shared_dir: Path) -> None:
    private = shared_dir / "private"
    private.mkdir(mode=0o700)
    results = run_confined(
        """
        try:
            read_only = (*config["read_only"], config["private"])
            confine(policy(user=(65534, 65534), read_only=read_only))
        except SandboxUnavailable as exc:
            report(error=str(exc))
        else:
            report(error=None)
        """,
        shared_dir,
        private=str(private),
    )
    assert str(private) in results["error"]
    assert "PLUGIN_SANDBOX_USER" in results["error"]


def test_kernel_support_and_what_is_in_force(inside: Path) -> None:
    results = run_confined(
        """
        from plugins.runtime.sandbox import kernel_support
        before = kernel_support()
        report(support=before, describe=confine(policy()).describe())
        """,
        inside,
    )
    support, describe = results["support"], results["describe"]
    assert support["landlock_abi"] >= 1
    assert support["seccomp"] is True
    assert support["root"] is AS_ROOT
    assert describe == {
        "landlock_abi": support["landlock_abi"],
        "filesystem": True,
        "network": True,
        "scopes": support["landlock_abi"] >= 6,
        "seccomp": True,
        "uid": os.getuid(),
        "no_new_privs": True,
    }


def test_pure_python_still_works_when_confined(inside: Path) -> None:
    results = run_confined(
        """
        confine(policy())
        import datetime, decimal, hashlib, json, tempfile, zoneinfo
        import pydantic

        class Order(pydantic.BaseModel):
            quantity: int
            placed: datetime.datetime

        order = Order.model_validate({"quantity": "3", "placed": "2024-03-31T01:30:00Z"})
        paris = order.placed.astimezone(zoneinfo.ZoneInfo("Europe/Paris"))
        with tempfile.NamedTemporaryFile(dir=".") as scratch:
            scratch.write(os.urandom(16))
        report(
            quantity=order.quantity,
            paris=paris.isoformat(),
            digest=hashlib.sha256(b"governed").hexdigest(),
            total=str(decimal.Decimal("0.1") * 3),
            encoded=json.dumps({"ok": True}),
        )
        """,
        inside,
    )
    assert results["quantity"] == 3
    assert results["paris"] == "2024-03-31T03:30:00+02:00"  # the summer time rule applied
    assert results["digest"] == hashlib.sha256(b"governed").hexdigest()
    assert results["total"] == "0.3"
    assert results["encoded"] == '{"ok": true}'


def test_a_process_with_threads_is_not_confined(inside: Path) -> None:
    results = run_confined(
        """
        import threading
        release = threading.Event()
        threading.Thread(target=release.wait).start()
        try:
            confine(policy())
        except SandboxUnavailable as exc:
            report(error=str(exc))
        else:
            report(error=None)
        finally:
            release.set()
        """,
        inside,
    )
    assert "thread" in results["error"]


def test_a_system_call_this_architecture_lacks_is_skipped(inside: Path) -> None:
    results = run_confined(
        """
        from plugins.runtime.sandbox import seccomp
        # socketcall exists only on 32-bit architectures; the other exists nowhere.
        seccomp._DENIED = [*seccomp._DENIED, "socketcall", "no_such_call"]
        report(confined=attempt(lambda: confine(policy()).seccomp), setsid=attempt(os.setsid))
        """,
        inside,
    )
    assert results["confined"] == {"value": True}
    assert denied(results["setsid"])
