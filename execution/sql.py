"""Plain SQL on the hot path, at the cost of the statement itself.

Django's SQLite cursor rewrites every statement's ``%s`` placeholders with a
regular expression on each call; for the few statements every job runs (claim,
finish, audit entries) that was a good part of their cost. Here the rewrite is
done once per statement text, and the driver's cursor runs it. Errors are still
Django's (``wrap_database_errors``), so callers catch ``OperationalError`` as
anywhere else. Other databases go through Django's cursor unchanged.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

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
