"""The SQLite backend's wait for the write lock: it waits while another holds it, then
starts; it gives up with Django's OperationalError at the busy timeout; and it leaves
the connection's own busy timeout as configured."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time

import pytest
from django.db import OperationalError, connection, transaction

from execution.backends.sqlite3 import base, checkpointer
from execution.backends.sqlite3.checkpointer import BACKSTOP_PAGES
from execution.models import Job
from tests.faults.conftest import wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "sqlite", reason="the SQLite backend only"),
]


def _hold_write_lock(until: threading.Event, holding: threading.Event) -> None:
    other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        holding.set()
        until.wait(timeout=30)
        other.execute("COMMIT")
    finally:
        other.close()


def _busy_timeout_ms() -> int:
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        return int(cursor.fetchone()[0])


def test_a_transaction_waits_for_the_write_lock_then_starts(monkeypatch):
    connection.ensure_connection()
    configured = _busy_timeout_ms()
    waits: list[float] = []
    sleep = time.sleep

    me = threading.get_ident()

    def recorded_sleep(seconds: float) -> None:
        if threading.get_ident() == me:  # other tests' daemon threads sleep too
            waits.append(seconds)
        sleep(seconds)

    monkeypatch.setattr(time, "sleep", recorded_sleep)
    release, holding = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(release, holding))
    holder.start()
    assert holding.wait(timeout=10)
    threading.Timer(0.3, release.set).start()

    with transaction.atomic():
        assert release.is_set()  # it could only begin once the other let go
        Job.objects.create(plugin_name="echo")
    holder.join(timeout=10)

    assert Job.objects.count() == 1
    assert _busy_timeout_ms() == configured
    # Its own short waits, not SQLite's handler (which sleeps a millisecond and more).
    assert waits[:3] == [base.FIRST_WAIT_S, 2 * base.FIRST_WAIT_S, 4 * base.FIRST_WAIT_S]
    assert max(waits) == base.LONGEST_WAIT_S


def test_it_gives_up_at_the_busy_timeout_with_djangos_error():
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout = 200")
    release, holding = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(release, holding))
    holder.start()
    try:
        assert holding.wait(timeout=10)
        with pytest.raises(OperationalError, match="locked"), transaction.atomic():
            Job.objects.create(plugin_name="echo")
    finally:
        release.set()
        holder.join(timeout=10)

    assert Job.objects.count() == 0
    assert _busy_timeout_ms() == 200


def test_a_thread_checkpoints_the_log_so_commits_need_not(settings, tmp_path):
    """Rows committed reach the database file itself (read ignoring the log), with commits
    left to checkpoint only past the backstop."""
    settings.SQLITE_CHECKPOINT_INTERVAL_S = 0.05
    name = tmp_path / "checkpointed.sqlite3"
    wrapper = base.DatabaseWrapper({**connection.settings_dict, "NAME": str(name)}, alias="other")
    try:
        wrapper.ensure_connection()
        with wrapper.cursor() as cursor:
            cursor.execute("PRAGMA wal_autocheckpoint")
            assert cursor.fetchone()[0] == BACKSTOP_PAGES
            cursor.execute("CREATE TABLE t (n INTEGER)")
            cursor.execute("INSERT INTO t VALUES (1), (2), (3)")
        main_file_only = f"file:{name}?immutable=1"

        def rows_in_main_file() -> int:
            with contextlib.closing(sqlite3.connect(main_file_only, uri=True)) as reader:
                try:
                    return int(reader.execute("SELECT count(*) FROM t").fetchone()[0])
                except sqlite3.OperationalError:  # the table is not there yet either
                    return 0

        wait_until(lambda: rows_in_main_file() == 3, timeout_s=10)
        assert any(thread.name == "sqlite-checkpointer" for thread in threading.enumerate())
    finally:
        wrapper.close()


def test_the_checkpointer_never_creates_a_database_that_is_gone(tmp_path):
    missing = tmp_path / "gone.sqlite3"
    with pytest.raises(sqlite3.OperationalError):
        checkpointer.checkpoint(str(missing))
    assert not missing.exists()
