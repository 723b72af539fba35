"""The documented production setup, run as documented: nginx in front of gunicorn.

nginx runs deploy/nginx/governed.conf from the repository, with only its lines marked
``site:`` changed (a free port, a socket and logs in the test's directory), inside a
minimal main configuration like Debian's; gunicorn runs deploy/gunicorn.conf.py, with
only its bind changed. Then one user captures what they can (20 synchronous runs of a
slow plugin in flight at all times) while 50 slowloris sockets trickle headers and
bodies, and the service must still answer everyone else at once.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import django.contrib.admin
import pytest
from django.contrib.auth import get_user_model

from execution.audit.models import AuditEntry
from execution.models import Job, JobStatus
from execution.policy.tokens import create_token
from tests.conftest import ROOT
from tests.faults.conftest import Processes, Server, asleep, free_port, wait_until
from tests.plugin_hosts import plugin_hosts
from tests.plugins.sample_plugins import EchoPlugin, SleepingPlugin

pytestmark = pytest.mark.any_database

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
REQUIRED = os.environ.get("REQUIRE_NGINX_TESTS") == "1"  # set by .ci/run

if not os.path.exists(NGINX):  # pragma: no cover - depends on the machine
    if REQUIRED:
        raise RuntimeError(f"The production setup's tests are required but {NGINX} is missing")
    pytest.skip(
        "nginx is not installed (apt-get install nginx); .ci/run installs it",
        allow_module_level=True,
    )

SITE_CONF = ROOT / "deploy" / "nginx" / "governed.conf"
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
ADMIN_STATIC = Path(django.contrib.admin.__file__).parent / "static"

# What docs/deployment.md recommends next to the sizing of deploy/gunicorn.conf.py.
MAX_SYNC_RUNS = 8
WORKERS, THREADS = 4, 8  # as deploy/gunicorn.conf.py says
SERVER_SETTINGS = {
    "POLICY_MAX_SYNC_RUNS": str(MAX_SYNC_RUNS),
    "PLUGIN_ACCESS": "open",
    "API_NUM_PROXIES": "1",  # as docs/deployment.md says: nginx sets X-Forwarded-For
    # The two plugins the test runs, each with a host ready per thread, started with the
    # workers, as docs/deployment.md says.
    "PLUGINS": f"{EchoPlugin.__module__}.EchoPlugin,{SleepingPlugin.__module__}.SleepingPlugin",
    "PLUGIN_HOSTS_PER_PLUGIN": str(THREADS),
    "PLUGIN_WARM_HOSTS": "1",
}

API_MAX_REQUEST_BYTES = 8 * 1024 * 1024  # its default, and client_max_body_size
SLOW_RUNS = 20
SLOW_RUN_MS = 4000  # under the fault settings' 5 s time limit
SLOWLORIS_SOCKETS = 50
ATTACK_S = 12
LIMIT_S = 1.0  # the threshold for every answer to everyone else


def render_site(tmp_path: Path, port: int, gunicorn_socket: Path) -> str:
    """The repository's site configuration with its ``site:`` lines pointed at this test."""
    text = SITE_CONF.read_text()
    for old, new in {
        "unix:/run/governed/gunicorn.sock": f"unix:{gunicorn_socket}",
        "listen 80;": f"listen 127.0.0.1:{port};",
        "/var/log/nginx/governed.access.log": str(tmp_path / "nginx-access.log"),
        "/srv/governed/staticfiles/": f"{ADMIN_STATIC}/",
    }.items():
        assert text.count(old) == 1, f"{SITE_CONF} no longer has {old!r} once"
        text = text.replace(old, new)
    return text


def main_conf(tmp_path: Path, site: Path) -> str:
    """What Debian's /etc/nginx/nginx.conf does around a site, with paths of the test's own."""
    temp = {
        name: tmp_path / f"nginx-{name}"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    }
    for path in temp.values():
        path.mkdir()
    # Debian's workers run as www-data, in its group for the socket; here they read
    # the test's private directory, so they keep the test's user.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (
        f"{user}worker_processes 1;\npid {tmp_path / 'nginx.pid'};\n"
        f"error_log {tmp_path / 'nginx-error.log'} warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        "    include /etc/nginx/mime.types;\n"
        "    default_type application/octet-stream;\n"
        + "".join(f"    {name}_temp_path {path};\n" for name, path in temp.items())
        + f"    include {site};\n}}\n"
    )


@dataclass
class Production:
    """nginx on a loopback port, in front of gunicorn on a unix socket."""

    processes: Processes
    base: str
    port: int

    def client(self, token: str) -> Server:
        return Server(self.processes.started[-1], self.base, token)


def start_production(processes: Processes, tmp_path: Path, **settings: str) -> Production:
    gunicorn_socket = tmp_path / "gunicorn.sock"
    gunicorn = processes.start(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(GUNICORN_CONF),
            "--bind",
            f"unix:{gunicorn_socket}",
        ],
        "gunicorn",
        **settings,
    )
    wait_until(lambda: gunicorn_socket.exists() or not gunicorn.alive(), timeout_s=60)
    assert gunicorn.alive(), gunicorn.output()
    # As deployed, a db_worker beside the server: it seals the audit trail, which the web
    # processes then leave alone (they seal only as its backstop).
    processes.worker(**settings)
    if settings.get("PLUGIN_WARM_HOSTS") == "1":
        wait_until(lambda: hosts_ready(gunicorn.pid), timeout_s=180, step_s=0.5)

    port = free_port()
    site = tmp_path / "governed.conf"
    site.write_text(render_site(tmp_path, port, gunicorn_socket))
    conf = tmp_path / "nginx.conf"
    conf.write_text(main_conf(tmp_path, site))
    nginx = processes.start(
        [
            NGINX,
            "-p",
            str(tmp_path),
            "-e",
            str(tmp_path / "nginx-error.log"),
            "-c",
            str(conf),
            "-g",
            "daemon off;",
        ],
        "nginx",
    )
    production = Production(processes, f"http://127.0.0.1:{port}", port)
    probe = production.client("")
    wait_until(lambda: probe.alive_and_healthy() or not nginx.alive(), timeout_s=60)
    assert nginx.alive(), nginx.output() + (tmp_path / "nginx-error.log").read_text()
    return production


@pytest.fixture
def production(processes: Processes, tmp_path: Path) -> Production:
    """The setup as documented, sized for the attack: every host each thread needs, ready."""
    return start_production(processes, tmp_path, **SERVER_SETTINGS)


@pytest.fixture
def proxy(processes: Processes, tmp_path: Path) -> Production:
    """The same, with hosts started on demand: for what only nginx does."""
    return start_production(processes, tmp_path, PLUGIN_ACCESS="open")


def hosts_ready(gunicorn: int) -> bool:
    """Whether both workers have started every host they keep ready, and these sit still."""
    echo, sleeping = (
        plugin_hosts(EchoPlugin, under=gunicorn),
        plugin_hosts(SleepingPlugin, under=gunicorn),
    )
    enough = len(echo) >= WORKERS * THREADS and len(sleeping) >= WORKERS * THREADS
    return enough and asleep(echo + sleeping)


def user_token(username: str) -> str:
    user = get_user_model().objects.create_user(username, password=f"pw-{username}-123")
    return create_token(user=user).key


def timed(call: Any) -> tuple[float, Any]:
    started = time.monotonic()
    try:
        answer = call()
    except OSError as exc:  # a timeout: far past the limit, and reported as such
        answer = exc
    return time.monotonic() - started, answer


@dataclass
class Slowloris:
    """Sockets that send their requests a byte at a time, reopened whenever nginx drops one."""

    address: tuple[str, int]
    token: str
    count: int
    stop: threading.Event = field(default_factory=threading.Event)
    reopened: int = 0
    sockets: list[socket.socket | None] = field(default_factory=list)

    def opening(self, index: int) -> bytes:
        if index % 2:  # a body that never ends
            return (
                "POST /v1/analyze-execution HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Token {self.token}\r\nContent-Type: application/json\r\n"
                'Content-Length: 100000\r\n\r\n{"plugin": "echo", "payload": {"message": "'
            ).encode()
        return b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # headers that never end

    def open(self, index: int) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=5)
        sock.sendall(self.opening(index))
        return sock

    def run(self) -> None:
        self.sockets = [self.open(index) for index in range(self.count)]
        while not self.stop.wait(0.5):
            for index, sock in enumerate(self.sockets):
                try:
                    assert sock is not None
                    sock.sendall(b"a" if index % 2 else b"X-Slow: a\r\n")
                except OSError:  # nginx gave up on it (client_header_timeout): a new one
                    with contextlib.suppress(OSError):
                        assert sock is not None
                        sock.close()
                    self.sockets[index] = self.open(index)
                    self.reopened += 1

    def close(self) -> None:
        for sock in self.sockets:
            if sock is not None:
                sock.close()


@contextlib.contextmanager
def running(*targets: Any) -> Iterator[None]:
    threads = [threading.Thread(target=target, daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)


def test_slow_clients_and_slow_runs_do_not_capture_the_web_workers(production):
    hog = production.client(user_token("hog"))
    other = production.client(user_token("other"))
    anyone = production.client("")
    stop = threading.Event()
    hog_answers: list[tuple[int, Any]] = []

    def slow_runs() -> None:
        while not stop.is_set():
            answer = hog.execute("sleeping", {"message": "m", "repeat": SLOW_RUN_MS})
            hog_answers.append(answer)
            if answer[0] == 429:  # over the cap: try again shortly, as a client would
                stop.wait(0.1)

    slowloris = Slowloris(("127.0.0.1", production.port), hog.token, SLOWLORIS_SOCKETS, stop)
    waits: dict[str, list[float]] = {"health": [], "other's job": [], "other's run": []}
    wrong: list[tuple[str, Any]] = []
    in_flight: list[int] = []

    slowest: list[tuple[float, float, str]] = []  # (wait, when, what): to say where it went

    def sample(name: str, call: Any) -> None:
        elapsed, answer = timed(call)
        waits[name].append(elapsed)
        slowest.append((round(elapsed, 3), round(time.monotonic() - attack_starts, 1), name))
        if not (isinstance(answer, tuple) and answer[0] == 200):
            wrong.append((name, answer))

    # A server that has been up: each of its threads has started and opened its database
    # connection (PostgreSQL's take a while to open on a loaded machine).
    warm = production.client(user_token("warm"))
    with running(*[lambda: warm.execute("sleeping", {"message": "m", "repeat": 500})] * 32):
        pass
    status, job = other.request("POST", "/v1/jobs", {"plugin": "echo", "payload": {"message": "m"}})
    assert status == 202, job
    # ...and at rest: its worker has run that job and sealed the audit trail of all this.
    wait_until(lambda: Job.objects.filter(pk=job["id"], status=JobStatus.SUCCESS).exists())
    wait_until(lambda: not AuditEntry.objects.filter(seq__isnull=True).exists())
    attack_starts = time.monotonic()
    with running(slowloris.run, *[slow_runs] * SLOW_RUNS):
        attack_ends = attack_starts + ATTACK_S
        probes = 0
        while time.monotonic() < attack_ends:
            sample("health", lambda: anyone.request("GET", "/v1/health", timeout_s=10))
            sample(
                "other's job", lambda: other.request("GET", f"/v1/jobs/{job['id']}", timeout_s=10)
            )
            if probes % 10 == 0:  # a run now and then: under any sane throttle
                sample("other's run", lambda: other.execute("echo", {"message": "hi"}))
                in_flight.append(
                    Job.objects.filter(plugin_name="sleeping", status=JobStatus.RUNNING).count()
                )
            probes += 1
            time.sleep(0.05)
        open_sockets = sum(sock is not None and sock.fileno() != -1 for sock in slowloris.sockets)
        stop.set()
    slowloris.close()

    worst = {name: max(times) for name, times in waits.items()}
    assert not wrong, wrong[:5]
    assert all(value < LIMIT_S for value in worst.values()), (
        worst,
        sorted(slowest, reverse=True)[:8],
        f"load average {os.getloadavg()}",
    )
    assert len(waits["health"]) > 50
    # The attack was real: 50 slowloris sockets were kept open to the end, and the one user
    # held as many web threads as the policy let them (all 20 before the cap exists).
    assert open_sockets == SLOWLORIS_SOCKETS
    # nginx cut off each slow header at client_header_timeout (10 s, within the attack).
    assert slowloris.reopened >= SLOWLORIS_SOCKETS // 2, slowloris.reopened
    assert max(in_flight) >= min(SLOW_RUNS, MAX_SYNC_RUNS), in_flight
    statuses = {status for status, _ in hog_answers}
    assert 200 in statuses, statuses
    assert statuses <= {200, 429}, statuses
    refusals = {body["detail"]["type"] for status, body in hog_answers if status == 429}
    assert refusals <= {"QuotaExceeded", "Throttled"}, refusals
    print(
        f"worst waits {worst}, runs in flight up to {max(in_flight)}, "
        f"{slowloris.reopened} sockets reopened"
    )


def test_nginx_passes_request_ids_forwarded_headers_and_static_files(proxy):
    client = proxy.client(user_token("reader"))

    def get(path: str, **headers: str) -> Any:
        request = urllib.request.Request(f"{proxy.base}{path}", headers=headers)
        return urllib.request.urlopen(request, timeout=10)

    with get("/v1/health", **{"X-Request-ID": "probe-42"}) as answer:
        assert answer.headers["X-Request-ID"] == "probe-42"
    with get("/v1/health") as answer:  # nginx's own id, which the application keeps
        assert len(answer.headers["X-Request-ID"]) == 32
    with get("/static/admin/css/base.css") as answer:
        assert answer.read() == (ADMIN_STATIC / "admin" / "css" / "base.css").read_bytes()

    # The scheme is nginx's, whatever the client claims: a forged https does not show.
    request = urllib.request.Request(
        f"{proxy.base}/v1/jobs",
        data=b'{"plugin": "echo", "payload": {"message": "hi"}}',
        headers={
            "Authorization": f"Token {client.token}",
            "Content-Type": "application/json",
            "X-Forwarded-Proto": "https",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 202
        assert answer.headers["Location"].startswith(f"{proxy.base}/v1/jobs/")


def test_a_body_past_the_limit_is_refused_by_nginx_in_the_envelope(proxy):
    """nginx answers from the Content-Length alone, before a byte of the body is sent."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/analyze-execution HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n"
            + f"Content-Length: {API_MAX_REQUEST_BYTES + 1}\r\n\r\n".encode()
        )
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        body = json.loads(answer.read())
    assert answer.status == 413
    assert answer.headers["Content-Type"] == "application/json"
    assert body["detail"]["type"] == "PayloadTooLarge"
    assert answer.headers["X-Request-ID"]
