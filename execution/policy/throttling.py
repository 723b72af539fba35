"""The API's rate limits: DRF throttles whose state is one database row per client.

DRF's own throttles keep a list of request times in Django's cache: per process
with LocMemCache, and read-modify-write with DatabaseCache, so two gunicorn
workers both let the last request through. Here each check is one conditional
upsert (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``) of the client's
:class:`~execution.policy.throttle_models.ThrottleBucket`, which the database
serialises across every process, on SQLite and PostgreSQL alike.

Each rate ``N/period`` is a GCRA (generic cell rate algorithm): a client may
make N requests at once, and after that one more every ``period / N``; over any
long time, N per period. Its state is one time, the *theoretical arrival time*
(TAT): a request at ``now`` is allowed when ``TAT - now <= (N - 1) * period / N``,
and then moves the TAT to ``max(TAT, now) + period / N``; a refused request
moves nothing. A throttle's two rates (burst and sustained) live in one row and
are checked together: a request is allowed only if both allow it, so a refusal
by one never spends the other.

Times come from the database's clock as this process knows it
(:func:`execution.clock.database_now`), so web processes on several machines
agree; ``timer`` is the hook a test moves time with (as DRF's ``timer``).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection
from rest_framework.exceptions import Throttled
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from api.errors import ProtocolErrorType
from execution.clock import database_now
from execution.policy.decisions import Decision, record_decision
from execution.policy.throttle_models import ThrottleBucket

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from rest_framework.request import Request
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)

# The throttles' scopes: a bucket row's ``scope``, and what a view's ``throttle_scope`` names.
EXECUTION = "execution"
CANCEL = "cancel"
FAILED_AUTHENTICATION = "failed_authentication"

# Keys of REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"].
BURST = "burst"
SUSTAINED = "sustained"

_PERIODS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*", re.IGNORECASE)
_US = 1_000_000
# A rate that is off: no TAT is ever this far ahead.
_UNLIMITED_US = 1 << 62
# Stale rows are swept by each process at most this often (see delete_stale_buckets).
SWEEP_INTERVAL_S = 300.0
SWEEP_BATCH = 1000


@dataclass(frozen=True)
class Rate:
    """``N/period`` as configured ("60/min"): N requests at once, then one every period / N."""

    text: str
    requests: int
    period_s: int

    @classmethod
    def parse(cls, text: str | None) -> Rate | None:
        """The rate ``text`` says; None when it is off (None, "" or "off")."""
        if text is None or text.strip().lower() in {"", "off"}:
            return None
        match = _RATE.fullmatch(text)
        if match is None or int(match[1]) < 1:
            raise ImproperlyConfigured(
                f"Not a throttle rate: {text!r} (expected N/s, N/min, N/hour or N/day, N >= 1, "
                "or off)"
            )
        return cls(text.strip(), int(match[1]), _PERIODS_S[match[2][0].lower()])

    @property
    def interval_us(self) -> int:
        """Microseconds between two requests at this rate (the emission interval; 1 at least)."""
        return max(self.period_s * _US // self.requests, 1)

    @property
    def tolerance_us(self) -> int:
        """How far ahead of now the TAT may be for a request to pass: N - 1 intervals."""
        return self.interval_us * (self.requests - 1)


def configured_rate(name: str) -> Rate | None:
    """The rate ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][name]``; None when off or unset."""
    value = api_settings.DEFAULT_THROTTLE_RATES.get(name)
    return Rate.parse(value if isinstance(value, str) else None)


@dataclass(frozen=True)
class Verdict:
    """One check's answer. ``waits_s``: for each rate that refused, seconds until it allows."""

    allowed: bool
    waits_s: dict[str, float]
    refused_in_a_row: int
    on_record: bool  # the first refusal of this client in its audit interval

    @property
    def limit(self) -> str:
        """The rate that refused the longest (the one Retry-After waits for)."""
        return max(self.waits_s, key=lambda name: self.waits_s[name])

    @property
    def wait_s(self) -> float:
        return self.waits_s[self.limit]


@functools.cache
def _check_statements(vendor: str) -> tuple[str, str]:
    """The check as (UPDATE, upsert): each moves the TATs only if both rates allow the request.

    The UPDATE is the check of a known client; the upsert, of a new one (or one whose
    row was swept), whose first request always passes. Named parameters, each bound
    once: SQLite binds a parameter per placeholder, and these are repeated.
    """
    placeholder = ":{}" if vendor == "sqlite" else "%({})s"

    def param(name: str) -> str:
        return placeholder.format(name)

    greatest = "MAX" if vendor == "sqlite" else "GREATEST"
    now, since = param("now"), param("noted_since")
    allowed = (
        f"(b.burst_tat - {now} <= {param('burst_tolerance')} "
        f"AND b.sustained_tat - {now} <= {param('sustained_tolerance')})"
    )
    assignments = (
        f"burst_tat = CASE WHEN {allowed} THEN {greatest}(b.burst_tat, {now}) "
        f"+ {param('burst_interval')} ELSE b.burst_tat END, "
        f"sustained_tat = CASE WHEN {allowed} THEN {greatest}(b.sustained_tat, {now}) "
        f"+ {param('sustained_interval')} ELSE b.sustained_tat END, "
        f"refused = CASE WHEN {allowed} THEN 0 ELSE b.refused + 1 END, "
        f"unrecorded = CASE WHEN {allowed} THEN b.unrecorded "
        f"WHEN b.noted_at > {since} THEN b.unrecorded + 1 ELSE 0 END, "
        f"noted_at = CASE WHEN {allowed} OR b.noted_at > {since} THEN b.noted_at ELSE {now} END"
    )
    table = ThrottleBucket._meta.db_table
    returning = "RETURNING burst_tat, sustained_tat, refused, unrecorded"
    update = (
        f"UPDATE {table} AS b SET {assignments} "
        f"WHERE b.scope = {param('scope')} AND b.ident = {param('ident')} {returning}"
    )
    upsert = (
        f"INSERT INTO {table} AS b "
        "(scope, ident, burst_tat, sustained_tat, refused, unrecorded, noted_at) "
        f"VALUES ({param('scope')}, {param('ident')}, {now} + {param('burst_interval')}, "
        f"{now} + {param('sustained_interval')}, 0, 0, NULL) "
        f"ON CONFLICT (scope, ident) DO UPDATE SET {assignments} {returning}"
    )
    return update, upsert


def _fetch_one(statement: str, params: dict[str, Any]) -> Any:
    """The statement's first row, or None; on SQLite straight through the driver's cursor.

    Django's SQLite cursor rewrites placeholders with a regular expression on every
    call (see execution/sql.py); these are already in the driver's own style.
    """
    if connection.vendor != "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchone()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        return connection.connection.execute(statement, params).fetchone()


def check_rates(
    scope: str,
    ident: str,
    rates: dict[str, Rate | None],
    *,
    now_us: int,
    audit_interval_s: float | None = None,
) -> Verdict:
    """Count one request of ``ident`` against its ``burst`` and ``sustained`` rates.

    One statement for a known client (two for a new one): the allowed request's
    TATs move, a refused one's do not. Of a run of refusals, one per
    ``audit_interval_s`` (``API_THROTTLE_AUDIT_INTERVAL_S``) is marked ``on_record``.
    """
    burst, sustained = rates.get(BURST), rates.get(SUSTAINED)
    if audit_interval_s is None:
        audit_interval_s = settings.API_THROTTLE_AUDIT_INTERVAL_S
    params = {
        "scope": scope,
        "ident": ident,
        "now": now_us,
        "burst_interval": burst.interval_us if burst else 0,
        "burst_tolerance": burst.tolerance_us if burst else _UNLIMITED_US,
        "sustained_interval": sustained.interval_us if sustained else 0,
        "sustained_tolerance": sustained.tolerance_us if sustained else _UNLIMITED_US,
        # A refusal put on the record since then is enough for this interval.
        "noted_since": now_us - int(audit_interval_s * _US),
    }
    update, upsert = _check_statements(connection.vendor)
    row = _fetch_one(update, params) or _fetch_one(upsert, params)
    burst_tat, sustained_tat, refused, unrecorded = row
    if not refused:
        return Verdict(allowed=True, waits_s={}, refused_in_a_row=0, on_record=False)
    waits_s = {
        name: (tat - now_us - rate.tolerance_us) / _US
        for name, rate, tat in ((BURST, burst, burst_tat), (SUSTAINED, sustained, sustained_tat))
        if rate is not None and tat - now_us > rate.tolerance_us
    }
    return Verdict(
        allowed=False, waits_s=waits_s, refused_in_a_row=refused, on_record=unrecorded == 0
    )


def delete_stale_buckets(now_us: int) -> int:
    """Delete the rows whose every rate is whole again (a missing row means the same).

    Such a row's TATs are all in the past: the client may make a full burst, as
    a new one may. So rows do not outlive their longest rate's period (a day at
    most for ``N/day``) past their client's last request. In batches, so that no
    statement holds SQLite's write lock for long. Returns how many went.
    """
    table = ThrottleBucket._meta.db_table
    stale = "burst_tat <= %s AND sustained_tat <= %s"
    # The outer condition again: PostgreSQL re-checks it on a row a concurrent check just
    # moved (the subquery's answer it does not), so a busy client's row stays.
    statement = (
        f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {stale} "
        f"LIMIT {SWEEP_BATCH}) AND {stale}"
    )
    deleted = 0
    with connection.cursor() as cursor:
        while True:
            cursor.execute(statement, [now_us] * 4)
            deleted += int(cursor.rowcount)
            if cursor.rowcount < SWEEP_BATCH:
                return deleted


class _Sweeper:
    """Runs :func:`delete_stale_buckets` at most every ``SWEEP_INTERVAL_S`` in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next_at = time.monotonic() + SWEEP_INTERVAL_S

    def maybe_sweep(self, now_us: int) -> None:
        if time.monotonic() < self._next_at or connection.in_atomic_block:
            return
        with self._lock:
            if time.monotonic() < self._next_at:
                return
            self._next_at = time.monotonic() + SWEEP_INTERVAL_S
        try:
            delete_stale_buckets(now_us)
        except DatabaseError:  # the next sweep tries again; the check itself was done
            logger.warning("Stale throttle rows could not be deleted", exc_info=True)


sweeper = _Sweeper()


class RateLimited(Throttled):
    """429 ``Throttled``, saying which limit refused and when to come back.

    Raised by the throttles themselves (DRF's own ``Throttled`` knows only the
    wait); the API's handler sends ``wait`` as Retry-After and ``error_details``
    as the envelope's ``details``.
    """

    error_type = ProtocolErrorType.THROTTLED

    def __init__(self, *, scope: str, limit: str, rate: Rate, wait_s: float, message: str) -> None:
        retry_after_s = max(math.ceil(wait_s), 1)  # whole seconds, never 0: DRF would send none
        super().__init__(wait=retry_after_s, detail=message)
        self.error_details = {
            "scope": scope,
            "limit": limit,
            "rate": rate.text,
            "retry_after_s": retry_after_s,
        }


def client_address(request: Request) -> str:
    """The client's address as throttles key it (DRF's ``get_ident``, NUM_PROXIES honoured).

    An IPv6 client is keyed by its /64: one host commonly has the whole network.
    """
    ident = BaseThrottle().get_ident(request) or ""
    try:
        address = ipaddress.ip_address(ident)
    except ValueError:
        return ident[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class GCRAThrottle(BaseThrottle):
    """A throttle of up to two rates (``burst``, ``sustained``) over one bucket row per client.

    Subclasses say whose requests count together (:meth:`get_ident`) and which
    rates apply (:meth:`get_rates`). A refusal raises :class:`RateLimited` itself:
    DRF's ``view.throttled()`` could only say how long to wait.
    """

    # Microseconds on the database's clock (a test replaces it to move time).
    timer: ClassVar[Any] = staticmethod(lambda: int(database_now().timestamp() * _US))
    # What a refusal names as its limit and reason: the rate that refused, or this when set.
    reason: ClassVar[str | None] = None

    def get_scope(self, view: APIView | None) -> str | None:
        raise NotImplementedError

    def get_ident(self, request: Request) -> str:
        raise NotImplementedError

    def get_rates(self) -> dict[str, Rate | None]:
        return {BURST: configured_rate(BURST), SUSTAINED: configured_rate(SUSTAINED)}

    def get_user(self, request: Request) -> AbstractBaseUser | None:
        """Who is refused, for the record (None: not known)."""
        user = request.user
        return user if user is not None and user.is_authenticated else None

    def describe(self, scope: str, limit: str, rate: Rate) -> str:
        return f"Too many requests: the {limit} rate of {rate.text} is used up."

    def allow_request(self, request: Request, view: APIView | None) -> bool:
        scope = self.get_scope(view)
        rates = self.get_rates()
        if scope is None or not any(rates.values()):
            return True
        now_us = self.timer()
        verdict = check_rates(scope, self.get_ident(request), rates, now_us=now_us)
        sweeper.maybe_sweep(now_us)
        if verdict.allowed:
            return True
        self.refuse(request, scope, rates, verdict, self.get_user(request))
        return False  # not reached: refuse() raises

    def refuse(
        self,
        request: Request,
        scope: str,
        rates: dict[str, Rate | None],
        verdict: Verdict,
        user: AbstractBaseUser | None,
    ) -> None:
        """Record the refusal (every one counted, the first of each interval audited); raise."""
        rate = rates[verdict.limit]
        limit = self.reason or verdict.limit
        assert rate is not None
        error = RateLimited(
            scope=scope,
            limit=limit,
            rate=rate,
            wait_s=verdict.wait_s,
            message=self.describe(scope, limit, rate),
        )
        details = {**error.error_details, "refused_in_a_row": verdict.refused_in_a_row}
        if scope == FAILED_AUTHENTICATION:
            details["client"] = self.get_ident(request)
        record_decision(
            Decision.THROTTLED,
            reason=limit,
            user=user,
            error_type=str(ProtocolErrorType.THROTTLED),
            details=details,
            on_record=verdict.on_record,
        )
        raise error


class ExecutionRateThrottle(GCRAThrottle):
    """Per user: ``burst`` and ``sustained`` (``API_THROTTLE_BURST``, ``API_THROTTLE_SUSTAINED``).

    On the views whose ``throttle_scope`` says what counts together: ``execution``
    (running or submitting a plugin) and ``cancel`` (cancelling a job), each a
    bucket of its own with the same rates.
    """

    def get_scope(self, view: APIView | None) -> str | None:
        return getattr(view, "throttle_scope", None)

    def get_ident(self, request: Request) -> str:
        if request.user is not None and request.user.is_authenticated:
            return str(request.user.pk)
        return f"address:{client_address(request)}"  # not reached behind IsAuthenticated

    def describe(self, scope: str, limit: str, rate: Rate) -> str:
        what = "cancelled jobs" if scope == CANCEL else "executions"
        return f"Too many {what}: your {limit} rate of {rate.text} is used up."


class FailedAuthenticationThrottle(GCRAThrottle):
    """Per client address: failed authentications (``API_THROTTLE_AUTH_FAILURES``).

    Not a view's throttle: :class:`~execution.policy.authentication.ThrottledTokenAuthentication`
    counts each failed attempt (:meth:`allow_request`: may it be answered 401?)
    and, while the address is over its limit, refuses even right credentials
    (:meth:`refuse_if_blocked`), so that answers tell a guesser nothing.
    """

    reason = FAILED_AUTHENTICATION

    def get_scope(self, view: APIView | None) -> str | None:
        return FAILED_AUTHENTICATION

    def get_ident(self, request: Request) -> str:
        return client_address(request)

    def get_rates(self) -> dict[str, Rate | None]:
        return {BURST: configured_rate(FAILED_AUTHENTICATION)}

    def get_user(self, request: Request) -> AbstractBaseUser | None:
        return None  # asked while authenticating: request.user would authenticate again

    def describe(self, scope: str, limit: str, rate: Rate) -> str:
        return (
            f"Too many failed authentications from this address (more than {rate.text}); "
            "no credentials are checked until then."
        )

    @property
    def enabled(self) -> bool:
        return self.get_rates()[BURST] is not None

    def refuse_if_blocked(
        self, request: Request, tat_us: int | None, user: AbstractBaseUser
    ) -> None:
        """Raise RateLimited if the next failure would be refused (``tat_us``: the TAT)."""
        rate = self.get_rates()[BURST]
        if rate is None or tat_us is None:
            return
        now_us = self.timer()
        if tat_us - now_us <= rate.tolerance_us:
            return
        waits_s = {BURST: (tat_us - now_us - rate.tolerance_us) / _US}
        verdict = Verdict(allowed=False, waits_s=waits_s, refused_in_a_row=0, on_record=False)
        self.refuse(request, FAILED_AUTHENTICATION, {BURST: rate}, verdict, user)
