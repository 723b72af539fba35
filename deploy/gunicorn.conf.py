"""gunicorn's settings for the documented production setup, behind nginx.

    gunicorn -c deploy/gunicorn.conf.py

nginx (deploy/nginx/governed.conf) reads every request whole before it passes it on,
and every response whole before it trickles it to a slow client, so a gunicorn
thread is only ever held by the application itself: mostly by synchronous plugin
runs. The sizes below and why are in docs/deployment.md ("Behind nginx"). Any
setting given on the command line (``--bind``, ``--workers``, ``--threads``) wins
over this file.
"""

from __future__ import annotations

from typing import Any

wsgi_app = "project.wsgi:application"

# Only nginx talks to gunicorn: a socket no client can reach, and that gunicorn
# trusts for X-Forwarded-Proto (a unix socket's peer always is).
bind = ["unix:/run/governed/gunicorn.sock"]
umask = 0o007  # the socket: its owner and group (nginx's user is in the group)

# Threads, not processes: a synchronous run waits on its plugin's host process, which
# holds no GIL, so a thread per run in flight costs a few MB where a sync worker
# costs a whole Django process (and hosts of its own for every plugin).
worker_class = "gthread"
workers = 4
threads = 8

# A gthread worker accepts up to worker_connections and queues what its threads
# cannot serve yet; with one connection per thread, a worker whose threads are all
# busy stops accepting, and the request waits in the socket's backlog for a worker
# that has a thread free instead of behind a slow run.
worker_connections = threads
# nginx opens a connection per request (HTTP/1.0 to the upstream): nothing to keep alive.
keepalive = 0
backlog = 2048

# gthread's timeout watches each worker's main loop, not its requests: a run is bounded
# by its plugin's time limit. Stopping waits for runs in flight, up to that limit
# (PLUGIN_DEFAULT_TIMEOUT_S, 30 s by default) and a margin.
timeout = 60
graceful_timeout = 40

# Headers too large for a request line are refused before Django sees them.
limit_request_line = 8190
limit_request_fields = 100

# gunicornc's control socket is not used, and its default path ($HOME/.gunicorn) is
# shared by every gunicorn of the user.
control_socket_disable = True

accesslog = None  # nginx logs each request, with its X-Request-ID
errorlog = "-"


def on_starting(server: Any) -> None:
    """Keep one connection per thread when ``--threads`` on the command line changes the count."""
    server.cfg.set("worker_connections", server.cfg.threads)


def post_worker_init(worker: Any) -> None:
    """Start the plugins' hosts now, in the background, rather than on the first request."""
    from plugins.runtime.tool_runner import warm_up_once

    warm_up_once()


def child_exit(server: Any, worker: Any) -> None:
    """Forget the exited worker's live gauges; its counters stay in the totals."""
    import os

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
