"""Background workers that die, are stopped or lose their database: no job is left behind."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from django.db import connection
from django_tasks_db.models import DBTaskResult

from execution.models import Job, JobStatus
from execution.services import AnalysisExecutionService
from tests.faults.conftest import (
    descendants,
    group_gone,
    process_gone,
    running_host,
    wait_until,
)
from tests.faults.tcp_proxy import TcpProxy
from tests.plugin_hosts import group_members
from tests.plugins.sample_plugins import RetriedSleepingPlugin, SleepingPlugin

pytestmark = pytest.mark.django_db(transaction=True)

FINAL = {JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELLED}


def submit(plugin: str, payload: dict) -> Job:
    return AnalysisExecutionService().submit(plugin_name=plugin, payload=payload)


def status_of(job: Job) -> str:
    return Job.objects.values_list("status", flat=True).get(pk=job.pk)


def wait_for_status(job: Job, *statuses: str, timeout_s: float = 60) -> Job:
    wait_until(lambda: status_of(job) in statuses, timeout_s=timeout_s)
    return Job.objects.get(pk=job.pk)


def host_gone(host: int) -> bool:
    """Whether the host and every process of its group ended."""
    return process_gone(host) and group_gone(host)


def test_kill_9_of_a_worker_mid_job_leaves_no_job_running_and_no_child(processes):
    lost = submit("sleeping", {"message": "x", "repeat": 3000})
    queued = [submit("sleeping", {"message": "x", "repeat": 10}) for _ in range(4)]
    worker = processes.worker()
    host = running_host(SleepingPlugin, under=worker.pid)
    assert wait_for_status(lost, JobStatus.RUNNING).lease_holder.split(":")[1] == str(worker.pid)

    os.kill(worker.pid, signal.SIGKILL)
    worker.popen.wait(10)
    # The plugin's host dies with its worker (its lifeline), nothing spins on.
    wait_until(lambda: host_gone(host), timeout_s=10)

    processes.worker()  # a worker that lives recovers the lost job and runs the rest
    failed = wait_for_status(lost, JobStatus.FAILED)
    assert failed.error_type == "WorkerLost"
    for job in queued:
        assert wait_for_status(job, JobStatus.SUCCESS).result == {"echoed": "slept 10 ms"}
    assert failed.task_id is not None
    task = DBTaskResult.objects.get(pk=failed.task_id)
    assert task.status == "FAILED"  # django-tasks-db's own row of the lost task
    assert task.exception_class_path.endswith("LostWorker")


def test_a_lost_job_of_a_plugin_with_retries_runs_again_to_success(processes):
    job = submit("retried_sleeping", {"message": "x", "repeat": 1500})
    worker = processes.worker()
    host = running_host(RetriedSleepingPlugin, under=worker.pid)
    os.kill(worker.pid, signal.SIGKILL)
    worker.popen.wait(10)
    wait_until(lambda: host_gone(host), timeout_s=10)
    processes.worker()
    done = wait_for_status(job, JobStatus.SUCCESS)
    assert done.attempt == 2
    assert [attempt["error"]["type"] for attempt in done.attempts] == ["WorkerLost"]


def test_sigterm_lets_the_running_job_finish_then_the_worker_stops(processes):
    job = submit("sleeping", {"message": "x", "repeat": 1500})
    later = submit("sleeping", {"message": "x", "repeat": 1})
    worker = processes.worker()
    host = running_host(SleepingPlugin, under=worker.pid)
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.popen.wait(30) == 0
    assert status_of(job) == JobStatus.SUCCESS
    assert status_of(later) == JobStatus.PENDING  # not started: it waits for the next worker
    wait_until(lambda: host_gone(host), timeout_s=10)  # its host ends with it


def test_a_second_signal_hands_the_running_job_back_at_once(processes):
    job = submit("sleeping", {"message": "x", "repeat": 20_000})
    worker = processes.worker()
    host = running_host(SleepingPlugin, under=worker.pid)
    os.kill(worker.pid, signal.SIGINT)  # Ctrl-C ...
    os.kill(worker.pid, signal.SIGTERM)  # ... then make run's trap
    worker.popen.wait(15)
    wait_until(lambda: host_gone(host), timeout_s=2)
    handed_back = Job.objects.get(pk=job.pk)
    assert (handed_back.status, handed_back.attempt) == (JobStatus.PENDING, 1)
    assert handed_back.attempts[0]["error"]["type"] == "WorkerLost"
    Job.objects.filter(pk=job.pk).update(input_payload={"message": "x", "repeat": 5})
    processes.worker()  # the queue still holds a task for it
    assert wait_for_status(job, JobStatus.SUCCESS).attempt == 1


@pytest.mark.skipif(sys.platform != "linux", reason="the database path trick needs Linux")
def test_a_worker_rides_out_a_database_outage(processes, tmp_path):
    """The database disappears for a while; the worker waits, then goes on by itself."""
    outage = DatabaseOutage(tmp_path)
    env = outage.worker_env()
    worker = processes.worker(**env)
    first = submit("sleeping", {"message": "x", "repeat": 1})
    wait_for_status(first, JobStatus.SUCCESS)

    outage.begin()
    wait_until(lambda: "The database is unavailable" in worker.output(), timeout_s=30)
    wait_until(lambda: worker.output().count("trying again") >= 3, timeout_s=30)
    assert worker.alive()
    outage.end()

    after = submit("sleeping", {"message": "x", "repeat": 1})
    assert wait_for_status(after, JobStatus.SUCCESS, timeout_s=60).result is not None
    assert worker.alive()
    assert "Traceback" not in worker.output()


class DatabaseOutage:
    """Makes the test database unreachable for a worker, then reachable again.

    PostgreSQL: the worker connects through a TCP proxy that drops every
    connection and refuses new ones. SQLite: the worker opens the database
    through a symlinked folder that is removed, then put back.
    """

    def __init__(self, tmp_path: Path) -> None:
        self._settings = connection.settings_dict
        self._proxy: TcpProxy | None = None
        self._link = tmp_path / "database-folder"

    def worker_env(self) -> dict[str, str]:
        if self._settings["ENGINE"].endswith("sqlite3"):
            database = Path(self._settings["NAME"])
            self._link.symlink_to(database.parent, target_is_directory=True)
            # A connection per query, so the worker notices the file is gone.
            return {
                "DATABASE_URL": f"sqlite:///{self._link / database.name}",
                "CONN_MAX_AGE": "0",
            }
        self._proxy = TcpProxy(self._settings["HOST"] or "localhost", int(self._settings["PORT"]))
        self._proxy.start()
        user, password = self._settings["USER"] or "", self._settings["PASSWORD"] or ""
        return {
            "DATABASE_URL": f"postgres://{user}:{password}@127.0.0.1:{self._proxy.port}/"
            f"{self._settings['NAME']}",
        }

    def begin(self) -> None:
        if self._proxy is not None:
            self._proxy.cut()
        else:
            self._link.unlink()

    def end(self) -> None:
        if self._proxy is not None:
            self._proxy.restore()
        else:
            self._link.symlink_to(Path(self._settings["NAME"]).parent, target_is_directory=True)


def test_no_plugin_process_outlives_its_worker(processes):
    submit("sleeping", {"message": "x", "repeat": 20_000})
    worker = processes.worker()
    host = running_host(SleepingPlugin, under=worker.pid)
    tree = descendants(worker.pid)
    assert host in tree
    assert group_members(host) == [host]  # the host leads its own group
    os.kill(worker.pid, signal.SIGKILL)
    worker.popen.wait(10)
    wait_until(lambda: all(process_gone(pid) for pid in tree) and group_gone(host), timeout_s=10)
