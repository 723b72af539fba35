"""WALCheckpointer: copies SQLite's write-ahead log into the database from a thread of its own.

By default SQLite checkpoints inside the COMMIT that takes the log past 1,000
pages: that request copies the pages and waits for the disk to sync them, while
its client waits. Here each process that writes runs one daemon thread that
checkpoints every ``SQLITE_CHECKPOINT_INTERVAL_S`` (PASSIVE: it never blocks a
reader or a writer), and a commit checkpoints only past ``BACKSTOP_PAGES``, if
the thread falls behind or does not run.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time

logger = logging.getLogger("execution.backends.sqlite3")

BACKSTOP_PAGES = 20_000


class WALCheckpointer:
    _lock = threading.Lock()
    _started: set[tuple[int, str]] = set()

    @classmethod
    def ensure_started(cls, database: str, interval_s: float) -> None:
        """Start this process's checkpointer of ``database`` unless it runs already."""
        key = (os.getpid(), database)
        if key in cls._started:
            return
        with cls._lock:
            if key in cls._started:
                return
            cls._started.add(key)
        thread = threading.Thread(
            target=cls._run, args=(database, interval_s), name="sqlite-checkpointer", daemon=True
        )
        thread.start()

    @staticmethod
    def _run(database: str, interval_s: float) -> None:
        failing = False
        connection: sqlite3.Connection | None = None
        while True:
            time.sleep(interval_s)
            try:
                if connection is None:
                    connection = sqlite3.connect(database, timeout=0, isolation_level=None)
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                failing = False
            except sqlite3.Error as exc:
                if not failing:
                    logger.warning("SQLite's log could not be checkpointed: %s", exc)
                failing = True
                if connection is not None:
                    connection.close()
                connection = None
