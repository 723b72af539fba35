"""Django's SQLite backend, with a finer wait for the write lock at the start of a transaction,
and JSON stored as UTF-8 text (operations.py).

SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20 ... ms between tries. A
transaction that finds the write lock taken by one that holds it for 100 µs
(most of ours: a job's claim, its outcome) so waits a whole millisecond or more,
and the longer a transaction holds the lock the more others collide with it: a
few microseconds more per transaction cost whole milliseconds under load. Here
``BEGIN IMMEDIATE`` is tried without the busy handler, with sleeps that start at
50 µs and double up to 2 ms, until the configured busy timeout. Statements in
autocommit mode keep SQLite's handler.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from django.conf import settings
from django.db import OperationalError
from django.db.backends.sqlite3 import base

from execution.backends.sqlite3.checkpointer import BACKSTOP_PAGES, WALCheckpointer
from execution.backends.sqlite3.operations import DatabaseOperations

FIRST_WAIT_S = 50e-6
LONGEST_WAIT_S = 2e-3


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations  # JSON stored as UTF-8 (see operations.py)

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        connection = super().get_new_connection(conn_params)
        interval = getattr(settings, "SQLITE_CHECKPOINT_INTERVAL_S", 0)
        if interval > 0 and not self.is_in_memory_db():
            connection.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
            WALCheckpointer.ensure_started(str(self.settings_dict["NAME"]), interval)
        return connection

    def _start_transaction_under_autocommit(self) -> None:
        if self.transaction_mode != "IMMEDIATE":  # type: ignore[attr-defined]
            super()._start_transaction_under_autocommit()  # type: ignore[misc]
            return
        connection = self.connection
        (busy_timeout_ms,) = connection.execute("PRAGMA busy_timeout").fetchone()
        deadline = time.monotonic() + busy_timeout_ms / 1000
        wait = FIRST_WAIT_S
        connection.execute("PRAGMA busy_timeout = 0")
        try:
            while True:
                try:
                    with self.wrap_database_errors:
                        connection.execute("BEGIN IMMEDIATE")
                    return
                except OperationalError as exc:
                    if not _is_busy(exc) or time.monotonic() + wait > deadline:
                        raise
                time.sleep(wait)
                wait = min(wait * 2, LONGEST_WAIT_S)
        finally:
            connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")


def _is_busy(exc: OperationalError) -> bool:
    cause = exc.__cause__
    code = getattr(cause, "sqlite_errorcode", 0)
    return isinstance(cause, sqlite3.OperationalError) and code & 0xFF == sqlite3.SQLITE_BUSY
