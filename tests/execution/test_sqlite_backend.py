"""The SQLite backend's wait for the write lock: it waits while another holds it, then
starts; it gives up with Django's OperationalError at the busy timeout; and it leaves
the connection's own busy timeout as configured."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from django.db import OperationalError, connection, transaction

from execution.backends.sqlite3 import base
from execution.models import Job

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
