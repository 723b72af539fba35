"""Warm from the first request: gunicorn's workers and db_workers start plugin hosts at boot.

The hosts are looked for in the process tree (a child of the worker running the host's
entry point) before anything asks the server for a plugin run.
"""

import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import ROOT
from tests.faults.conftest import descendants, free_port, wait_until

HOST_ENTRY_POINT = b"plugins.runtime.isolation.host"


def plugin_hosts(pid: int) -> set[int]:
    """The plugin hosts among the live processes below ``pid``."""
    hosts = set()
    for child in descendants(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        if HOST_ENTRY_POINT in cmdline:
            hosts.add(child)
    return hosts


def start_production_gunicorn(processes, port: int, **env: str):
    """gunicorn with deploy/gunicorn.conf.py (its post_worker_init hook), on ``port``."""
    args = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py")]
    args += ["--workers", "1", "--threads", "2", "--bind", f"127.0.0.1:{port}"]
    return processes.start(args, "gunicorn", PLUGINS="", **env)


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def test_gunicorn_workers_start_plugin_hosts_before_any_request(processes):
    managed = start_production_gunicorn(processes, free_port(), PLUGIN_WARM_HOSTS="1")
    hosts = wait_until(lambda: plugin_hosts(managed.pid) or not managed.alive())
    assert managed.alive(), managed.output()
    assert hosts  # with no request made: the worker's boot started them


def test_without_warm_start_no_host_runs_until_a_plugin_is_called(processes):
    port = free_port()
    managed = start_production_gunicorn(processes, port, PLUGIN_WARM_HOSTS="0")
    # Booted and answering (a health check runs no plugin), and still no host.
    wait_until(lambda: healthy(f"http://127.0.0.1:{port}/v1/health") or not managed.alive())
    assert managed.alive(), managed.output()
    assert plugin_hosts(managed.pid) == set()


def test_db_workers_start_plugin_hosts_before_any_job(processes):
    worker = processes.worker(PLUGINS="", PLUGIN_WARM_HOSTS="1")
    hosts = wait_until(lambda: plugin_hosts(worker.pid) or not worker.alive())
    assert worker.alive(), worker.output()
    assert hosts
