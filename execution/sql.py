"""Plain SQL on the hot path, at the cost of the statement itself.

Django's SQLite cursor rewrites every statement's ``%s`` placeholders with a
regular expression on each call; for the few statements every job runs (claim,
finish, audit entries) that was a good part of their cost. Here the rewrite is
done once per statement text, and the driver's cursor runs it. Errors are still
Django's (``wrap_database_errors``), so callers catch ``OperationalError`` as
anywhere else. Other databases go through Django's cursor unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator, Sequence
from typing import Any

from django.db import connections, transaction

_PLACEHOLDER = re.compile(r"(?<!%)%s")


def fetch_one(connection: Any, sql: str, params: Sequence[Any]) -> Any:
    """Run ``sql`` (``%s`` placeholders); its first row, or None (also for no result)."""
    if connection.vendor != "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone() if cursor.description else None
    connection.ensure_connection()
    with connection.wrap_database_errors:
        return connection.connection.execute(_qmark(sql), params).fetchone()


@functools.cache
def _qmark(sql: str) -> str:
    return _PLACEHOLDER.sub("?", sql).replace("%%", "%")


def fetch_all(connection: Any, sql: str, params: Sequence[Any]) -> list[Any]:
    """Run ``sql`` (``%s`` placeholders); all its rows."""
    if connection.vendor != "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
    connection.ensure_connection()
    with connection.wrap_database_errors:
        return list(connection.connection.execute(_qmark(sql), params).fetchall())


@contextlib.contextmanager
def commit_without_flush(using: str = "default") -> Iterator[None]:
    """The block's writes commit without waiting for PostgreSQL to flush them to disk.

    For bookkeeping a database crash may lose harmlessly (a worker's heartbeat, a
    task marked taken before its job is claimed): a commit then costs no fsync. A
    later synchronous commit flushes the log up to itself, so such a write is lost
    only together with everything after it. Opens a transaction unless one is
    open (it covers that one's commit). SQLite: the plain block.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        yield
        return
    with contextlib.ExitStack() as stack:
        if not connection.in_atomic_block:
            stack.enter_context(transaction.atomic(using))
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield
