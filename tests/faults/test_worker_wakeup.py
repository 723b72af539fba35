"""A real idle db_worker on PostgreSQL starts a queued job on its notification, not its poll.

(And on either database, a stopping idle worker does not first sleep out its interval.)

Each worker polls every 30 s (``--interval 30``) and logs, at -v 2, why each of
its waits ended (wakeup.py): the assertions read those lines. A job that ran
while the worker logged no "polling" line was started by a notification, however
slow the machine; no assertion depends on how long anything took.
"""

from __future__ import annotations

import signal
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django_tasks_db.models import DBTaskResult

from execution.clock import database_now
from execution.models import Job, JobStatus
from execution.services import AnalysisExecutionService
from execution.task_engine.django_tasks_db.engine import DjangoTasksDbEngine
from execution.task_engine.django_tasks_db.wakeup import APPLICATION_NAME
from tests.faults.conftest import Managed, Processes, wait_until
from tests.faults.test_worker_containment import DatabaseOutage

on_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="LISTEN/NOTIFY is PostgreSQL's"
)

INTERVAL = "30"
LISTENING = "Listening for queued tasks"
NOTIFIED = "Woken by a queued task"
FELL_DUE = "Woken: a delayed task falls due"
TOLD_OF_DELAYED = "A queued task falls due in"
POLLED = "No task queued within"
IDLE_WAIT = "Waiting for work"


def idle_since_listening(worker: Managed, times: int = 1) -> bool:
    """Whether the worker began listening ``times`` times, and has waited for work since."""
    parts = worker.output().split(LISTENING)
    return len(parts) == times + 1 and IDLE_WAIT in parts[-1]


def idle_worker(processes: Processes, worker_id: str) -> Managed:
    """A worker that listens, has polled once since, and now waits for work."""
    worker = processes.worker("--interval", INTERVAL, "-v", "2", "--worker-id", worker_id)
    wait_until(lambda: idle_since_listening(worker) or not worker.alive(), timeout_s=60)
    assert worker.alive(), worker.output()
    return worker


def submit(user) -> Job:
    return AnalysisExecutionService().submit(
        plugin_name="echo", payload={"message": "at once"}, user=user
    )


def finished(job: Job) -> bool:
    job.refresh_from_db()
    return job.status == JobStatus.SUCCESS


@pytest.fixture
def user(db, django_user_model):
    return django_user_model.objects.create_user("wakeup", password="pw-wakeup-123")


@on_postgres
def test_an_idle_worker_starts_a_submitted_job_on_its_notification(processes, user) -> None:
    worker = idle_worker(processes, "wakeup-notified")

    first = submit(user)
    wait_until(lambda: finished(first), timeout_s=60)
    # Once more, to a worker that went idle again after running a job.
    wait_until(lambda: worker.output().count(IDLE_WAIT) >= 2, timeout_s=60)
    second = submit(user)
    wait_until(lambda: finished(second), timeout_s=60)

    log = worker.output()
    assert log.count(NOTIFIED) == 2, log
    assert POLLED not in log, log  # no poll at its interval: the notifications started both


@on_postgres
def test_the_listen_connection_survives_being_terminated(processes, user) -> None:
    worker = idle_worker(processes, "wakeup-terminated")

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database()",
            [f"{APPLICATION_NAME} wakeup-terminated"],
        )
        assert cursor.fetchall() == [(True,)]
    # Listening again, and idle again after the poll that follows.
    wait_until(lambda: idle_since_listening(worker, times=2), timeout_s=60)

    job = submit(user)
    wait_until(lambda: finished(job), timeout_s=60)

    log = worker.output()
    assert "Lost the connection that listens for queued tasks" in log, log
    assert log.count(LISTENING) == 2, log
    after_reconnect = log.rsplit(LISTENING, 1)[1]
    assert NOTIFIED in after_reconnect, log
    assert POLLED not in log, log
    assert worker.alive()


@on_postgres
def test_after_a_database_outage_the_worker_listens_again(processes, user, tmp_path) -> None:
    """The database goes away (every connection cut, like a restart) and comes back."""
    outage = DatabaseOutage(tmp_path)
    worker = processes.worker(
        "--interval", INTERVAL, "-v", "2", "--worker-id", "wakeup-outage", **outage.worker_env()
    )
    wait_until(lambda: idle_since_listening(worker) or not worker.alive(), timeout_s=60)

    outage.begin()
    wait_until(lambda: "The database is unavailable" in worker.output(), timeout_s=60)
    outage.end()
    wait_until(lambda: idle_since_listening(worker, times=2), timeout_s=60)

    job = submit(user)
    wait_until(lambda: finished(job), timeout_s=60)

    log = worker.output()
    assert "Lost the connection that listens for queued tasks" in log, log
    assert NOTIFIED in log.rsplit(LISTENING, 1)[1], log
    assert POLLED not in log, log


@on_postgres
def test_a_delayed_task_wakes_an_idle_worker_when_due_not_before(processes) -> None:
    worker = idle_worker(processes, "wakeup-delayed")

    run_after = database_now() + timedelta(seconds=2)
    task_id = DjangoTasksDbEngine().enqueue(uuid.uuid4(), run_after=run_after)  # no such job

    def ran() -> bool:
        return DBTaskResult.objects.filter(pk=task_id, status="SUCCESSFUL").exists()

    wait_until(ran, timeout_s=60)
    task = DBTaskResult.objects.get(pk=task_id)
    assert task.started_at is not None
    assert task.started_at >= run_after

    log = worker.output()
    told = log.index(TOLD_OF_DELAYED)
    # Between being told of the task and its running, the worker woke once: when it fell due.
    assert log[told:].count(FELL_DUE) == 1, log
    assert NOTIFIED not in log, log
    assert POLLED not in log, log


def test_a_stopping_idle_worker_does_not_sleep_out_its_interval(processes) -> None:
    worker = processes.worker("--interval", INTERVAL, "-v", "2")
    wait_until(lambda: IDLE_WAIT in worker.output() or not worker.alive(), timeout_s=60)

    worker.popen.send_signal(signal.SIGTERM)
    # Managed.stop() would wait 20 s, then kill: an exit code 0 means it stopped by itself.
    assert worker.popen.wait(20) == 0, worker.output()
