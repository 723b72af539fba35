"""What SQL a piece of code runs, for tests that count statements."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.db import connection
from django.test.utils import CaptureQueriesContext


@contextlib.contextmanager
def statements() -> Iterator[list[str]]:
    """The statements the default connection runs meanwhile.

    On SQLite also those that bypass Django's cursor (execution/sql.py), through
    the driver's trace callback.
    """
    if connection.vendor != "sqlite":
        with CaptureQueriesContext(connection) as context:
            run: list[str] = []
            yield run
        run.extend(query["sql"] for query in context.captured_queries)
        return
    connection.ensure_connection()
    run = []
    connection.connection.set_trace_callback(run.append)
    try:
        yield run
    finally:
        connection.connection.set_trace_callback(None)
