"""The database refuses writes while jobs run (a lock held too long, a full disk): nothing is lost.

Real gunicorn and db_worker processes; the test takes the database's write lock
(SQLite) or locks the job table (PostgreSQL) while a plugin runs, so the
servers' writes of its outcome time out and fail, then lets go. The full-disk
test puts a SQLite database on a small tmpfs and fills it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from execution.models import Job, JobStatus
from execution.services import AnalysisExecutionService
from plugins.models import PluginMetrics
from tests.conftest import run_in_subprocess
from tests.faults.conftest import Managed, Processes, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

REFUSED = "Could not record the outcome of job"


@contextlib.contextmanager
def writes_locked() -> Iterator[None]:
    """Hold the database's write lock (SQLite) or an EXCLUSIVE lock on the job table."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        writer = sqlite3.connect(settings["NAME"], isolation_level=None, timeout=30)
        writer.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            writer.execute("ROLLBACK")
            writer.close()
        return
    import psycopg

    with psycopg.connect(
        host=settings["HOST"] or "localhost",
        port=settings["PORT"] or 5432,
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
        dbname=settings["NAME"],
    ) as lock:
        lock.execute(f"LOCK TABLE {Job._meta.db_table} IN EXCLUSIVE MODE")
        yield
        lock.rollback()


def short_write_waits(processes: Processes) -> dict[str, str]:
    """Settings under which a server's write gives up after half a second of waiting."""
    if connection.vendor == "sqlite":
        return {"SQLITE_BUSY_TIMEOUT_S": "0.5"}
    url = processes.env["DATABASE_URL"]
    return {"DATABASE_URL": f"{url}?options=-c%20lock_timeout%3D500"}


def refusals_logged(process: Managed, job_id: object, count: int) -> bool:
    return process.output().count(f"{REFUSED} {job_id}") >= count


def running_job_id() -> Any:
    return Job.objects.filter(status=JobStatus.RUNNING).values_list("pk", flat=True).first()


def sleeping_metrics() -> tuple[int, int]:
    row = PluginMetrics.objects.filter(plugin_name="sleeping").first()
    return (row.success_count, row.error_count) if row else (0, 0)


@pytest.mark.parametrize("refusals", [1, 2])
def test_a_synchronous_outcome_is_recorded_once_the_lock_is_gone(processes, token, refusals):
    # The client waits, and the lease lasts, long enough for a loaded machine's retries.
    server = processes.server(
        **short_write_waits(processes), JOB_OUTCOME_SYNC_WAIT_S="15", JOB_LEASE_GRACE_S="10"
    )
    server.token = token
    answer: dict[str, Any] = {}
    request = threading.Thread(
        target=lambda: answer.update(
            reply=server.execute("sleeping", {"message": "x", "repeat": 1500})
        )
    )
    request.start()
    job_id = wait_until(running_job_id, timeout_s=30, step_s=0.02)
    with writes_locked():
        wait_until(lambda: refusals_logged(server.process, job_id, refusals), timeout_s=30)
    request.join(60)
    status, body = answer["reply"]
    assert status == 200, body
    assert body["job_id"] == str(job_id)
    assert body["result"] == {"echoed": "slept 1500 ms"}
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.result) == (JobStatus.SUCCESS, body["result"])
    assert sleeping_metrics() == (1, 0)


@pytest.mark.parametrize("refusals", [1, 2])
def test_a_background_outcome_is_recorded_once_the_lock_is_gone(processes, refusals):
    job = AnalysisExecutionService().submit(
        plugin_name="sleeping", payload={"message": "x", "repeat": 1500}
    )
    worker = processes.worker(**short_write_waits(processes))
    wait_until(lambda: running_job_id() == job.pk, timeout_s=30, step_s=0.02)
    with writes_locked():
        wait_until(lambda: refusals_logged(worker, job.pk, refusals), timeout_s=30)
    wait_until(
        lambda: Job.objects.filter(pk=job.pk, status=JobStatus.SUCCESS).exists(), timeout_s=30
    )
    assert Job.objects.get(pk=job.pk).result == {"echoed": "slept 1500 ms"}
    assert sleeping_metrics() == (1, 0)
    assert worker.alive()


# A real full disk ----------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 48 MB tmpfs, mounted for the test (root only)."""
    if connection.vendor != "sqlite":
        pytest.skip("the full-disk test puts a SQLite file on a small disk")
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"this machine cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the disk is full; returns it (delete it to free the disk)."""
    filler = disk / "filler"
    with filler.open("wb") as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * (1024 * 1024))
            handle.flush()
    with contextlib.suppress(OSError), filler.open("ab") as handle:  # the last bytes
        while True:
            handle.write(b"\0" * 4096)
            handle.flush()
    return filler


def wal_emptied(database: Path) -> bool:
    """Checkpoint and truncate the WAL, so that the next write has to grow a file."""
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as db:
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    wal = database.with_name(database.name + "-wal")
    return busy == 0 and (not wal.exists() or wal.stat().st_size == 0)


def test_a_full_disk_refuses_outcomes_until_it_is_freed_and_health_says_so(processes, small_disk):
    database = small_disk / "db.sqlite3"
    env = {**processes.env, "DATABASE_URL": f"sqlite:///{database}"}
    run_in_subprocess([sys.executable, "manage.py", "migrate", "--noinput"], env)
    token = run_in_subprocess(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from django.contrib.auth.models import User; "
            "from execution.policy.tokens import create_token; "
            "print(create_token(user=User.objects.create_user('disk')).key)",
        ],
        env,
    ).split()[-1]  # the shell prints its imports first
    # Both outcomes must be written while the disk is full: the jobs run long enough for
    # a loaded machine to start both and fill the disk, and neither lease may end while
    # it is full (the fault settings' short grace and time limit are for recovery).
    slow = {"DATABASE_URL": env["DATABASE_URL"], "JOB_LEASE_GRACE_S": "20"}
    slow["PLUGIN_DEFAULT_TIMEOUT_S"] = "30"
    server = processes.server(**slow, PLUGIN_WARM_HOSTS="1")
    server.token = token
    worker = processes.worker(**slow, PLUGIN_WARM_HOSTS="1")
    payload = {"message": "x", "repeat": 15000}
    status, queued = server.request("POST", "/v1/jobs", {"plugin": "sleeping", "payload": payload})
    assert status == 202, queued
    answer: dict[str, Any] = {}
    request = threading.Thread(
        target=lambda: answer.update(reply=server.execute("sleeping", payload))
    )
    request.start()

    def both_running() -> bool:
        status, page = server.request("GET", "/v1/jobs?status=RUNNING")
        return status == 200 and page["count"] == 2

    wait_until(both_running, timeout_s=30, step_s=0.05)
    wait_until(functools.partial(wal_emptied, database), timeout_s=10)
    filler = fill(small_disk)
    try:
        wait_until(lambda: REFUSED in server.process.output(), timeout_s=30)
        wait_until(lambda: REFUSED in worker.output(), timeout_s=30)
        status, health = server.request("GET", "/v1/health")
        assert status == 503, health
        assert health["detail"]["details"]["database"].startswith(("disk full", "error"))
    finally:
        filler.unlink()
    request.join(60)
    status, body = answer["reply"]
    assert status in (200, 503), body  # 503 when the disk stayed full past the request's wait
    wait_until(lambda: server.request("GET", "/v1/health")[0] == 200, timeout_s=30)

    def final(job_id: str) -> dict[str, Any] | None:
        status, job = server.request("GET", f"/v1/jobs/{job_id}")
        return job if status == 200 and job["status"] not in ("PENDING", "RUNNING") else None

    sync_id = body["job_id"] if status == 200 else body["detail"]["details"]["job_id"]
    for job_id in (queued["id"], sync_id):
        job = wait_until(functools.partial(final, job_id), timeout_s=30)
        assert (job["status"], job["result"]) == ("SUCCESS", {"echoed": "slept 15000 ms"}), job
    status, plugin = server.request("GET", "/v1/plugins/sleeping")
    assert plugin["metrics"]["success_count"] == 2, plugin
    assert worker.alive()
