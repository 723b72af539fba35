"""WALCheckpointer: copies SQLite's write-ahead log into the database from a thread of its own.

By default SQLite checkpoints inside the COMMIT that takes the log past 1,000
pages: that request copies the pages and waits for the disk to sync them, while
its client waits. Here each process that writes runs one daemon thread that
checkpoints every ``SQLITE_CHECKPOINT_INTERVAL_S`` (PASSIVE: it never blocks a
reader or a writer), and a commit checkpoints only past ``BACKSTOP_PAGES``, if
the thread falls behind or does not run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from urllib.parse import quote

logger = logging.getLogger("execution.backends.sqlite3")

BACKSTOP_PAGES = 20_000


class WALCheckpointer:
    _lock = threading.Lock()
    _started: set[tuple[int, str]] = set()

    @classmethod
    def ensure_started(cls, database: str, interval_s: float) -> None:
        """Start this process's checkpointer of ``database`` unless it runs already."""
        key = (os.getpid(), database)
        with cls._lock:
            if key in cls._started:
                return
            thread = threading.Thread(
                target=cls._run,
                args=(database, interval_s),
                name="sqlite-checkpointer",
                daemon=True,
            )
            thread.start()
            cls._started.add(key)

    @staticmethod
    def _run(database: str, interval_s: float) -> None:
        failing = False
        while True:
            time.sleep(interval_s)
            try:
                checkpoint(database)
                failing = False
            except Exception as exc:  # the thread must outlive any one failure
                if not failing:
                    logger.warning("SQLite's log could not be checkpointed: %s", exc)
                failing = True


def checkpoint(database: str) -> None:
    """One PASSIVE checkpoint of ``database`` (a path or a ``file:`` URI, as Django opens it).

    A connection of its own each time, opened read-write only: a database that was
    replaced or removed is never recreated, and no file stays open across ticks.
    """
    uri = database if database.startswith("file:") else f"file:{quote(database)}?mode=rw"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=0)) as connection:
        connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
