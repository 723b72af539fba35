"""The wakeup of idle db_workers: NOTIFY on PostgreSQL when a task row commits, a plain sleep else.

The PostgreSQL tests listen in this process, on a connection of the wakeup's own,
and queue tasks through the engine as the services do. They assert why a wait
ended (its counts), never how long it took, except that a delayed task's wait
lasts at least until the task falls due.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from execution.clock import database_now
from execution.task_engine.django_tasks_db import wakeup as wakeup_module
from execution.task_engine.django_tasks_db.engine import DjangoTasksDbEngine
from execution.task_engine.django_tasks_db.wakeup import (
    APPLICATION_NAME,
    NotifiedWakeup,
    QueuedTask,
    Wakeup,
    notify_task_queued,
)

on_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="LISTEN/NOTIFY is PostgreSQL's"
)
# Long enough that a wait which returns True was ended by what the test did.
LONG_S = 30.0


def default_queue(task: QueuedTask) -> bool:
    return task.backend_name == "default" and task.queue_name == "default"


@pytest.fixture
def listening() -> Iterator[NotifiedWakeup]:
    """A wakeup that listens: its first wait connects and returns at once."""
    wakeup = Wakeup.for_connection("default", wanted=default_queue, name="test-wakeup")
    assert isinstance(wakeup, NotifiedWakeup)
    try:
        assert wakeup.wait(LONG_S) is True
        assert wakeup.listening
        assert wakeup.counts.connected == 1
        yield wakeup
    finally:
        wakeup.close()


def enqueue(run_after_s: float | None = None) -> uuid.UUID:
    run_after = None if run_after_s is None else database_now() + timedelta(seconds=run_after_s)
    return DjangoTasksDbEngine().enqueue(uuid.uuid4(), run_after=run_after)


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_a_committed_enqueue_wakes_the_listener(listening: NotifiedWakeup) -> None:
    enqueue()

    assert listening.wait(LONG_S) is True
    assert listening.counts.notified == 1
    assert listening.counts.timed_out == 0


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_the_notification_is_sent_at_commit_and_never_on_rollback(
    listening: NotifiedWakeup,
) -> None:
    with transaction.atomic():
        enqueue()
        assert listening.wait(0.3) is False  # the row is not committed yet: no wakeup
    assert listening.wait(LONG_S) is True
    assert listening.counts.notified == 1

    with transaction.atomic():
        enqueue()
        transaction.set_rollback(True)
    assert listening.wait(0.3) is False
    assert listening.counts.notified == 1
    assert listening.counts.timed_out == 2


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_a_delayed_task_wakes_the_listener_when_it_falls_due_not_before(
    listening: NotifiedWakeup,
) -> None:
    delay_s = 1.5
    enqueue(run_after_s=delay_s)
    told = time.monotonic()

    assert listening.wait(LONG_S) is True
    waited = time.monotonic() - told

    assert listening.counts.fell_due == 1
    assert listening.counts.notified == 0
    assert waited >= delay_s - 0.05  # a lower bound: it did not wake early
    # Handed back at once (a delay of zero, as requeue() gives), a task is ready now.
    enqueue(run_after_s=0.0)
    assert listening.wait(LONG_S) is True
    assert listening.counts.notified == 1


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_a_delayed_task_still_pending_when_the_interval_ends_keeps_its_time(
    listening: NotifiedWakeup,
) -> None:
    enqueue(run_after_s=2.0)

    assert listening.wait(0.2) is False  # the worker polls at its interval meanwhile
    assert listening.wait(LONG_S) is True
    assert listening.counts.timed_out == 1
    assert listening.counts.fell_due == 1


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_tasks_of_queues_the_worker_does_not_take_do_not_wake_it(
    listening: NotifiedWakeup,
) -> None:
    notify_task_queued("default", QueuedTask("default", "other", None))
    notify_task_queued("default", QueuedTask("other_backend", "default", None))

    assert listening.wait(0.3) is False
    assert listening.counts.notified == 0


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_a_terminated_listen_connection_is_opened_again(listening: NotifiedWakeup) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database()",
            [f"{APPLICATION_NAME} test-wakeup"],
        )
        assert cursor.fetchall() == [(True,)]

    assert listening.wait(LONG_S) is True  # lost: the worker polls at once
    assert listening.counts.lost == 1
    assert listening.wait(LONG_S) is True  # listening again: it polls once more
    assert listening.counts.connected == 2
    assert listening.listening

    enqueue()
    assert listening.wait(LONG_S) is True
    assert listening.counts.notified == 1


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_without_a_listen_connection_the_wait_is_the_poll_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import psycopg

    def refused(*args: object, **kwargs: object) -> None:
        raise psycopg.OperationalError("connection refused")

    wakeup = Wakeup.for_connection("default", wanted=default_queue)
    try:
        with monkeypatch.context() as patched:
            patched.setattr(psycopg, "connect", refused)
            assert wakeup.wait(0.2) is False  # no error: the worker polls at its interval
            assert wakeup.wait(0.2) is False
        assert isinstance(wakeup, NotifiedWakeup)
        assert not wakeup.listening
        assert wakeup.counts.timed_out == 2
        assert wakeup.counts.connected == 0

        # The database answers again: the next attempt (after its pause) listens.
        assert wakeup.wait(LONG_S) is True
        assert wakeup.listening
        assert wakeup.counts.connected == 1
    finally:
        wakeup.close()


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_notifications_off_make_the_plain_poll(settings) -> None:
    settings.JOB_NOTIFY_WORKERS = False

    wakeup = Wakeup.for_connection("default")
    wakeup.close()

    assert type(wakeup) is Wakeup
    with CaptureQueriesContext(connection) as queries:
        notify_task_queued("default", QueuedTask("default", "default", None))
    assert len(queries) == 0


def test_interrupt_ends_a_wait_at_once() -> None:
    wakeup = Wakeup()
    try:
        wakeup.interrupt()
        wakeup.interrupt()  # twice, as two signals would: one wait ends, the next is whole
        assert wakeup.wait(LONG_S) is False
        assert wakeup.wait(0.05) is False
        assert wakeup.counts.interrupted == 1
        assert wakeup.counts.timed_out == 1
    finally:
        wakeup.close()
    wakeup.interrupt()  # closed: nothing, not an error (a late signal)


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_interrupt_ends_a_listening_wait_at_once(listening: NotifiedWakeup) -> None:
    listening.interrupt()

    assert listening.wait(LONG_S) is False
    assert listening.counts.interrupted == 1


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's wait")
@pytest.mark.django_db
def test_on_sqlite_a_worker_polls_and_an_enqueue_sends_nothing() -> None:
    wakeup = Wakeup.for_connection("default", wanted=default_queue)
    try:
        assert type(wakeup) is Wakeup
        with CaptureQueriesContext(connection) as queries:
            notify_task_queued("default", QueuedTask("default", "default", None))
        assert len(queries) == 0
        assert wakeup.wait(0.05) is False
        assert wakeup.counts.timed_out == 1
    finally:
        wakeup.close()


def test_a_payload_that_is_not_ours_is_ignored() -> None:
    assert wakeup_module._parse("not json") is None
    assert wakeup_module._parse('{"queue": "default"}') is None
    parsed = wakeup_module._parse(
        '{"backend": "default", "queue": "q", "run_after": "2026-01-01T00:00:00+00:00"}'
    )
    assert parsed is not None
    assert parsed.queue_name == "q"
    assert parsed.run_after is not None
