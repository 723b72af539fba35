"""The database's clock: the one clock that every process compares job times on.

Leases are written by one machine and checked by another. Compared on each
process's own clock, a worker whose clock runs ahead would recover other
machines' healthy jobs, and one that lags would see its own leases taken away.
So the conditional updates of the state machine read the time from the database
(:func:`now_sql`), and the few times computed in Python (a new job's
``created_at``, a retry's ``next_attempt_at``) come from :func:`database_now`:
this process's clock corrected by its measured offset from the database's.

SQLite runs inside each process, so there the database's clock is the host's:
one host, one clock, and the offset is zero by construction. Its own ``'now'``
has only milliseconds, which would sort a time just written by Python after the
"now" of the next statement; so on SQLite the SQL calls ``governed_now()``, a
function each connection gets that reads the same clock with microseconds.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from prometheus_client import Gauge

logger = logging.getLogger(__name__)

CLOCK_SKEW = Gauge(
    "governed_clock_skew_seconds",
    "This process's clock minus the database's, as last measured (positive: ahead).",
)


def now_sql(connection: Any, *, plus_param: bool = False) -> str:
    """SQL for the database's current time; with ``plus_param``, plus ``%s`` seconds (a float).

    PostgreSQL's ``statement_timestamp()`` is the time of this statement, not of
    the transaction's start, so a long transaction does not write stale times.
    """
    if connection.vendor == "sqlite":
        return "governed_now(%s)" if plus_param else "governed_now(0)"
    if plus_param:
        return "(STATEMENT_TIMESTAMP() + %s * INTERVAL '1 second')"
    return "STATEMENT_TIMESTAMP()"


def install_sqlite_clock(sender: Any, connection: Any, **kwargs: Any) -> None:
    """Give a new SQLite connection ``governed_now(seconds)`` (on connection_created)."""
    if connection.vendor == "sqlite":
        connection.connection.create_function("governed_now", 1, _sqlite_now)


def _sqlite_now(plus_s: float | None) -> str:
    # The text Django's SQLite backend writes for a datetime (UTC, naive).
    moment = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=plus_s or 0.0)
    return str(moment)


def greatest_sql(connection: Any, *expressions: str) -> str:
    """SQL for the largest of ``expressions`` (none of them NULL)."""
    function = "MAX" if connection.vendor == "sqlite" else "GREATEST"
    return f"{function}({', '.join(expressions)})"


def from_db_datetime(value: Any) -> datetime | None:
    """A timestamp a raw cursor returned: SQLite gives UTC, naive or as text; PostgreSQL aware."""
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else parse_datetime(str(value))
    if parsed is None:
        raise ValueError(f"Not a timestamp: {value!r}")
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)


class DatabaseClock:
    """This process's offset from the database's clock, measured now and then.

    A measurement is one ``SELECT`` of the database's time, taken as the middle
    of the round trip. It is refreshed every ``JOB_CLOCK_CHECK_INTERVAL_S`` when
    the time is asked for, and by the lease monitor. A process whose offset is
    past ``JOB_CLOCK_SKEW_WARN_S`` logs a WARNING; the offset is the gauge
    ``governed_clock_skew_seconds``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset_s = 0.0  # database's clock minus ours
        self._measured_at: float | None = None  # time.monotonic() of the last measurement
        self._warned_skew_s: float | None = None

    @property
    def skew_s(self) -> float:
        """How far this process's clock is ahead of the database's (negative: behind)."""
        return -self._offset_s

    def now(self) -> datetime:
        """The database's time, as this process best knows it."""
        self._measure_if_stale()
        return timezone.now() + timedelta(seconds=self._offset_s)

    def measure(self, using: str = "default") -> float:
        """Measure the offset now; returns the skew (ours minus the database's), in seconds.

        Raises DatabaseError when the database cannot be asked; the last offset stays.
        """
        connection = connections[using]
        if connection.vendor == "sqlite":  # the same clock (see the module's docstring)
            self._set_offset(0.0)
            return 0.0
        before = time.time()
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {now_sql(connection)}", [])
            database_time = from_db_datetime(cursor.fetchone()[0])
        after = time.time()
        assert database_time is not None
        offset = database_time.timestamp() - (before + after) / 2
        self._set_offset(offset)
        self._warn_about(-offset)
        return -offset

    def _set_offset(self, offset: float) -> None:
        with self._lock:
            self._offset_s = offset
            self._measured_at = time.monotonic()
        CLOCK_SKEW.set(-offset)

    def _measure_if_stale(self) -> None:
        measured_at = self._measured_at
        interval = settings.JOB_CLOCK_CHECK_INTERVAL_S
        if measured_at is not None and time.monotonic() - measured_at < interval:
            return
        if connections["default"].in_atomic_block:
            return  # a failed SELECT would abort the caller's transaction (PostgreSQL)
        try:
            self.measure()
        except DatabaseError:
            # Keep the last offset; the next write will report the outage itself.
            self._measured_at = time.monotonic()

    def _warn_about(self, skew_s: float) -> None:
        limit = settings.JOB_CLOCK_SKEW_WARN_S
        if abs(skew_s) <= limit:
            if self._warned_skew_s is not None:
                logger.info("This process's clock agrees with the database's again")
            self._warned_skew_s = None
            return
        warned = self._warned_skew_s
        if warned is None or abs(warned - skew_s) > limit:
            logger.warning(
                "This process's clock is %+.1f s off the database's (more than "
                "JOB_CLOCK_SKEW_WARN_S = %s s); job times use the database's clock, "
                "but fix the host's time synchronisation",
                skew_s,
                limit,
            )
            self._warned_skew_s = skew_s


database_clock = DatabaseClock()


def database_now() -> datetime:
    """The database's time, as this process best knows it (see :class:`DatabaseClock`)."""
    return database_clock.now()
