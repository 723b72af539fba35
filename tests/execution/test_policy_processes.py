"""Quotas against real gunicorn processes: atomic across workers, healed after a killed one.

Run on SQLite and on PostgreSQL (DATABASE_URL=postgres://...).
"""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model

from execution.clock import database_now
from execution.models import Job, JobStatus
from execution.policy.models import PluginGrant, PolicyUsage
from execution.policy.tokens import create_token
from tests.faults.conftest import Server, process_gone, processes, wait_until

__all__ = ["processes"]  # the fixture, imported to be used here

RESTRICTED = {"PLUGIN_ACCESS": "restricted", "POLICY_MAX_ACTIVE_JOBS": "0"}


def user_with_token(name: str, *plugins: str) -> tuple[Any, str]:
    user = get_user_model().objects.create_user(name, password=f"pw-{name}-12345")
    for plugin in plugins:
        PluginGrant.objects.create(plugin_name=plugin, user=user)
    return user, create_token(user=user).key


def as_user(server: Server, token: str) -> Server:
    return Server(server.process, server.base, token)


def test_20_parallel_submits_one_below_the_cap_accept_exactly_one(processes):
    """4 workers x 5 threads: the 20 submissions are all in flight at once."""
    user, token = user_with_token("carol", "echo")
    for _ in range(4):  # one below the cap of 5; no worker runs them
        Job.objects.create(plugin_name="echo", requested_by=user)  # PENDING
    server = processes.server(
        workers=4,
        GUNICORN_CMD_ARGS="--threads 5",
        **{**RESTRICTED, "POLICY_MAX_ACTIVE_JOBS": "5"},
    )
    client = as_user(server, token)
    assert client.request("GET", "/v1/plugins")[0] == 200  # every worker's host is up soon

    barrier = threading.Barrier(20)

    def submit(index: int) -> tuple[int, dict]:
        barrier.wait()
        return client.request("POST", "/v1/jobs", {"plugin": "echo", "payload": {"message": "x"}})

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(submit, range(20)))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [202] + [429] * 19, answers
    refused = [body["detail"] for status, body in answers if status == 429]
    assert {(e["type"], e["details"]["quota"], e["details"]["limit"]) for e in refused} == {
        ("QuotaExceeded", "max_active_jobs", 5)
    }
    assert {e["details"]["used"] for e in refused} == {5}
    assert Job.objects.filter(requested_by=user).count() == 5


def test_the_synchronous_cap_holds_across_2_gunicorn_workers_and_frees_others(processes):
    """Of two runs at once, one is refused; another user is not held; the cap is free after."""
    _, token = user_with_token("dave", "sleeping", "echo")
    _, other_token = user_with_token("erin", "echo")
    server = processes.server(workers=2, **{**RESTRICTED, "POLICY_MAX_SYNC_RUNS": "1"})
    client, other = as_user(server, token), as_user(server, other_token)
    assert client.execute("echo", {"message": "warm"})[0] == 200

    def slow() -> tuple[int, dict]:
        return client.execute("sleeping", {"message": "x", "repeat": 2500})

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(slow)
        wait_until(lambda: Job.objects.filter(status=JobStatus.RUNNING).exists(), timeout_s=30)
        second = pool.submit(slow)
        refused_status, refused = second.result(timeout=60)
        # The cap is dave's: erin's run is not refused (a worker is free once dave's 429 is out).
        assert other.execute("echo", {"message": "meanwhile"})[0] == 200
        ran_status, _ = first.result(timeout=60)
    assert (ran_status, refused_status) == (200, 429), refused
    assert refused["detail"]["details"]["quota"] == "max_sync_runs"
    assert refused["detail"]["details"]["used"] == 1
    assert PolicyUsage.objects.get(user__username="dave").sync_runs == 0
    assert client.execute("echo", {"message": "after"})[0] == 200


def test_a_run_a_killed_worker_never_released_is_forgotten_once_its_lease_ends(processes):
    """FAULT_SETTINGS: a 5 s time limit + 2 s of grace, so a run's place lasts 7 s at most."""
    _, token = user_with_token("frank", "sleeping", "echo")
    server = processes.server(workers=1, **{**RESTRICTED, "POLICY_MAX_SYNC_RUNS": "1"})
    client = as_user(server, token)
    assert client.execute("echo", {"message": "warm"})[0] == 200

    def slow() -> object:
        try:
            return client.execute("sleeping", {"message": "x", "repeat": 4000})
        except OSError as exc:  # the worker is killed under it
            return exc

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(slow)
        wait_until(lambda: Job.objects.filter(status=JobStatus.RUNNING).exists(), timeout_s=30)
        workers = gunicorn_workers(server.process.pid)
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: all(process_gone(pid) for pid in workers), timeout_s=10)
        assert not isinstance(running.result(timeout=30), tuple)
    usage = PolicyUsage.objects.get(user__username="frank")
    assert usage.sync_runs == 1  # nobody counted it out
    wait_until(server.alive_and_healthy, timeout_s=60)  # the master started a new worker
    status, body = client.execute("echo", {"message": "too soon"})
    if usage.sync_runs_until > database_now():  # not healed yet: still counted
        assert (status, body["detail"]["details"]["quota"]) == (429, "max_sync_runs")
    wait_until(lambda: database_now() > usage.sync_runs_until, timeout_s=30)
    assert client.execute("echo", {"message": "healed"})[0] == 200
    assert PolicyUsage.objects.get(user__username="frank").sync_runs == 0


def gunicorn_workers(master: int) -> list[int]:
    """The worker processes of gunicorn ``master`` (its direct children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == master:
            found.append(int(entry.name))
    assert found
    return found
