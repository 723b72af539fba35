"""Who may run what, and how much: the checks AnalysisExecutionService makes before a run.

Every check that must hold across processes is one statement on the user's
``PolicyUsage`` row, which is the lock: an upsert whose ``WHERE`` is the check
(a synchronous run), or an upsert that locks the row before the count of the
user's live jobs in the same transaction as the job's insert (a submission).
SQLite's ``BEGIN IMMEDIATE`` and PostgreSQL's row lock both serialize a user's
admissions there; no check is ever made apart from the write it guards.

Budgets (bytes, seconds) are counted where a run's outcome is recorded, in its
transaction (:func:`record_usage`), and compared at admission with what is
recorded: runs already in flight when a budget is reached still finish and count.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError, connections

from api.errors import ProtocolErrorType
from api.exceptions import RequestRefused
from execution import sql
from execution.clock import database_now, now_sql
from execution.policy.models import PluginGrant, PolicyUsage
from plugins.errors.error_envelope import ErrorType

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

    from execution.models import Job

logger = logging.getLogger("execution.policy")

RESTRICTED = "restricted"
OPEN = "open"
# What a refused run is told to wait before trying again, when no day has to end first.
CAP_RETRY_AFTER_S = 1


@dataclass(frozen=True)
class Limits:
    """The quotas that apply to one run; 0 is no limit."""

    max_active_jobs: int
    max_sync_runs: int
    daily_stored_bytes: int
    daily_execution_s: int

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(
            max_active_jobs=settings.POLICY_MAX_ACTIVE_JOBS,
            max_sync_runs=settings.POLICY_MAX_SYNC_RUNS,
            daily_stored_bytes=settings.POLICY_DAILY_STORED_BYTES,
            daily_execution_s=settings.POLICY_DAILY_EXECUTION_S,
        )

    def overridden_by(self, grants: list[tuple[bool, tuple[int | None, ...]]]) -> Limits:
        """These limits with the grants' own: a user's grant first, else the groups' largest.

        ``grants``: per grant, whether it is the user's own, and its limits in
        field order (None: not set). Among groups, 0 (no limit) is the largest.
        """
        values = []
        for index, field in enumerate(fields(self)):
            own = [limits[index] for is_own, limits in grants if is_own]
            if own and own[0] is not None:
                values.append(own[0])
                continue
            groups = [limits[index] for is_own, limits in grants if not is_own]
            chosen = [value for value in groups if value is not None]
            if not chosen:
                values.append(getattr(self, field.name))
            else:
                values.append(0 if 0 in chosen else max(chosen))
        return Limits(*values)


@dataclass(frozen=True)
class Access:
    """A user may run a plugin: why, and under which limits."""

    plugin_name: str
    reason: str  # "superuser", "grant" or "open": the decision's label
    limits: Limits


class PolicyRefusal(RequestRefused):
    """A run refused by policy before anything was recorded; the API answers it as is."""

    reason = ""


class PluginAccessDenied(PolicyRefusal):
    """The user holds no grant of the plugin (and access is restricted)."""

    status_code = 403
    error_type = ProtocolErrorType.PERMISSION_DENIED
    reason = "no_grant"


class QuotaExceededError(PolicyRefusal):
    """The run would go past one of the user's quotas; ``details`` say which."""

    status_code = 429
    error_type = ErrorType.QUOTA_EXCEEDED

    def __init__(
        self,
        *,
        plugin: str,
        quota: str,
        limit: int,
        used: int | float,
        resets_at: datetime | None,
        resets: str,
    ) -> None:
        retry_after = CAP_RETRY_AFTER_S
        if resets_at is not None:
            retry_after = max(1, int((resets_at - database_now()).total_seconds()) + 1)
        super().__init__(
            f"Over the quota {quota} ({used} of {limit}) for plugin {plugin!r}; {resets}.",
            plugin=plugin,
            details={
                "quota": quota,
                "limit": limit,
                "used": used,
                "resets_at": resets_at.isoformat() if resets_at is not None else None,
                "resets": resets,
            },
            retry_after_s=retry_after,
        )
        self.reason = quota


def plugin_access() -> str:
    return str(getattr(settings, "PLUGIN_ACCESS", RESTRICTED))


def check_access(user: AbstractBaseUser | None, plugin_name: str) -> Access:
    """Whether ``user`` may run ``plugin_name``, and under which limits (one SELECT at most).

    Raises PluginAccessDenied. A superuser may run everything, under the default
    limits; otherwise the user's grants of the plugin (their own and their
    groups') decide, and say the limits. ``user`` None is the system itself.
    """
    defaults = Limits.from_settings()
    if user is None or getattr(user, "is_superuser", False):
        return Access(plugin_name, "system" if user is None else "superuser", defaults)
    grants = _grants_of(user.pk, plugin_name)
    if grants:
        return Access(plugin_name, "grant", defaults.overridden_by(grants))
    if plugin_access() == OPEN:
        return Access(plugin_name, "open", defaults)
    raise PluginAccessDenied(
        f"You may not run plugin {plugin_name!r}: it is not granted to you.",
        plugin=plugin_name,
        details={"plugin": plugin_name, "access": plugin_access()},
    )


def _grants_of(user_id: Any, plugin_name: str) -> list[tuple[bool, tuple[int | None, ...]]]:
    connection = connections[PluginGrant.objects.db]
    table = PluginGrant._meta.db_table
    memberships = get_user_model().groups.through._meta.db_table
    rows = sql.fetch_all(
        connection,
        f"SELECT user_id IS NOT NULL, max_active_jobs, max_sync_runs, daily_stored_bytes, "
        f"daily_execution_s FROM {table} WHERE plugin_name = %s AND (user_id = %s OR "
        f"group_id IN (SELECT group_id FROM {memberships} WHERE user_id = %s))",
        [plugin_name, user_id, user_id],
    )
    return [(bool(row[0]), tuple(row[1:])) for row in rows]


def stored_size(value: Any) -> int:
    """Bytes ``value`` takes as stored JSON (UTF-8)."""
    if value is None:
        return 0
    return len(
        json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(
            "utf-8", "surrogatepass"
        )
    )


class SyncSlot:
    """A synchronous run counted in its user's ``sync_runs``, until released.

    The outcome's transaction releases it (:func:`record_usage`); a run that
    ends otherwise (refused input, an error) is released by :meth:`release`.
    """

    def __init__(self, user_id: Any) -> None:
        self.user_id = user_id
        self.held = True

    def release(self) -> None:
        """Count the run out, if its outcome did not; a failure is healed by the lease."""
        if not self.held:
            return
        self.held = False
        connection = connections[PolicyUsage.objects.db]
        try:
            sql.fetch_one(
                connection,
                f"UPDATE {PolicyUsage._meta.db_table} SET sync_runs = "
                "CASE WHEN sync_runs > 0 THEN sync_runs - 1 ELSE 0 END WHERE user_id = %s",
                [self.user_id],
            )
        except DatabaseError:
            logger.warning(
                "A synchronous run of user %s was not counted out; its lease ends it",
                self.user_id,
            )


def admit_sync(
    user: AbstractBaseUser | None, access: Access, *, payload: Any, lease_s: float
) -> SyncSlot | None:
    """Admit a synchronous run: one statement that checks and counts it; raises QuotaExceededError.

    Returns the run's slot when ``sync_runs`` counts it (there is a cap), else None.
    """
    if user is None:
        return None
    limits = access.limits
    input_bytes = _check_input_fits(access, payload)
    if not (limits.max_sync_runs or limits.daily_stored_bytes or limits.daily_execution_s):
        return None
    connection = connections[PolicyUsage.objects.db]
    statement = _sync_admission_sql(
        connection.vendor,
        capped=bool(limits.max_sync_runs),
        bytes_limited=bool(limits.daily_stored_bytes),
        time_limited=bool(limits.daily_execution_s),
    )
    today = _today()
    params: list[Any] = [user.pk, _day(today, connection)]
    if limits.max_sync_runs:
        params.append(float(lease_s))
        params.append(limits.max_sync_runs)
    if limits.daily_stored_bytes:
        params += [input_bytes, limits.daily_stored_bytes]
    if limits.daily_execution_s:
        params.append(limits.daily_execution_s * 1000.0)
    for _ in range(3):
        if sql.fetch_one(connection, statement, params) is not None:
            return SyncSlot(user.pk) if limits.max_sync_runs else None
        refusal = _over_quota(user.pk, access, input_bytes=input_bytes, sync=True, active=0)
        if refusal is not None:
            raise refusal
        # Nothing over any more: what refused it ended meanwhile; try again.
    raise QuotaExceededError(
        plugin=access.plugin_name,
        quota="max_sync_runs",
        limit=limits.max_sync_runs,
        used=limits.max_sync_runs,
        resets_at=None,
        resets="when one of your synchronous runs ends",
    )


def admit_submission(user: AbstractBaseUser | None, access: Access, *, payload: Any) -> None:
    """Check a job about to be recorded, inside the transaction that records it.

    Locks the user's usage row (so that their admissions take turns), then
    counts their live jobs: the count sees every job committed before the lock
    was granted. Raises QuotaExceededError, which rolls the transaction back.
    """
    if user is None:
        return
    limits = access.limits
    input_bytes = _check_input_fits(access, payload)
    if not (limits.max_active_jobs or limits.daily_stored_bytes or limits.daily_execution_s):
        return
    connection = connections[PolicyUsage.objects.db]
    sql.fetch_one(connection, _lock_sql(), [user.pk, _day(_today(), connection)])
    active = 0
    if limits.max_active_jobs:
        active = _active_jobs(user.pk)
    refusal = _over_quota(user.pk, access, input_bytes=input_bytes, sync=False, active=active)
    if refusal is not None:
        raise refusal


def record_usage(job: Job, *, result: Any, elapsed_ms: float | None) -> None:
    """Count a run's stored bytes and execution time in its user's day (the outcome's transaction).

    Also counts a synchronous run out (its ``sync_slot``). One statement. If the
    transaction then fails, the slot stays released: its lease heals the count.
    """
    user_id = job.requested_by_id
    if user_id is None:
        return
    slot: SyncSlot | None = job.__dict__.get("sync_slot")
    releases = slot is not None and slot.held
    # A job handed back for another attempt has its input counted when it ends.
    final = job.status != "PENDING"
    stored = (stored_size(job.input_payload) if final else 0) + stored_size(result)
    connection = connections[PolicyUsage.objects.db]
    sql.fetch_one(
        connection,
        _usage_sql(releases=releases),
        [user_id, _day(_today(), connection), stored, float(elapsed_ms or 0.0)],
    )
    if slot is not None:
        slot.held = False


# Reading back what refused a run ------------------------------------------------------


def _check_input_fits(access: Access, payload: Any) -> int:
    """The input's size; an input larger than the whole daily budget is refused at once."""
    limit = access.limits.daily_stored_bytes
    if not limit:
        return 0
    size = stored_size(payload)
    if size > limit:
        raise QuotaExceededError(
            plugin=access.plugin_name,
            quota="daily_stored_bytes",
            limit=limit,
            used=size,
            resets_at=None,
            resets="the input alone is larger than the daily budget",
        )
    return size


def _over_quota(
    user_id: Any, access: Access, *, input_bytes: int, sync: bool, active: int
) -> QuotaExceededError | None:
    limits = access.limits
    plugin = access.plugin_name
    usage = PolicyUsage.objects.filter(pk=user_id).first()
    now = database_now()
    today = now.date()
    if limits.max_active_jobs and not sync and active >= limits.max_active_jobs:
        return QuotaExceededError(
            plugin=plugin,
            quota="max_active_jobs",
            limit=limits.max_active_jobs,
            used=active,
            resets_at=None,
            resets="when one of your pending or running jobs ends",
        )
    if usage is None:
        return None
    if (
        sync
        and limits.max_sync_runs
        and usage.sync_runs >= limits.max_sync_runs
        and usage.sync_runs_until is not None
        and usage.sync_runs_until >= now
    ):
        return QuotaExceededError(
            plugin=plugin,
            quota="max_sync_runs",
            limit=limits.max_sync_runs,
            used=usage.sync_runs,
            resets_at=None,
            resets="when one of your synchronous runs ends",
        )
    if usage.day != today:
        return None
    midnight = datetime.combine(today + timedelta(days=1), time(0), tzinfo=UTC)
    if limits.daily_stored_bytes and usage.stored_bytes + input_bytes > limits.daily_stored_bytes:
        return QuotaExceededError(
            plugin=plugin,
            quota="daily_stored_bytes",
            limit=limits.daily_stored_bytes,
            used=usage.stored_bytes,
            resets_at=midnight,
            resets="at midnight UTC",
        )
    if limits.daily_execution_s and usage.execution_ms >= limits.daily_execution_s * 1000.0:
        return QuotaExceededError(
            plugin=plugin,
            quota="daily_execution_s",
            limit=limits.daily_execution_s,
            used=round(usage.execution_ms / 1000.0, 3),
            resets_at=midnight,
            resets="at midnight UTC",
        )
    return None


def _active_jobs(user_id: Any) -> int:
    from execution.models import Job, JobStatus

    connection = connections[Job.objects.db]
    row = sql.fetch_one(
        connection,
        f"SELECT COUNT(*) FROM {Job._meta.db_table} "
        "WHERE requested_by_id = %s AND status IN (%s, %s)",
        [user_id, JobStatus.PENDING, JobStatus.RUNNING],
    )
    return int(row[0])


def _today() -> date:
    return database_now().astimezone(UTC).date()


def _day(day: date, connection: Any) -> Any:
    return PolicyUsage._meta.get_field("day").get_db_prep_value(day, connection)


def sync_runs_in_flight(usage: PolicyUsage) -> int:
    """The synchronous runs ``usage`` counts that may still be alive (0 once all leases ended)."""
    if usage.sync_runs_until is None or usage.sync_runs_until < database_now():
        return 0
    return usage.sync_runs


# The statements, built once per database and shape ------------------------------------

_TABLE = PolicyUsage._meta.db_table
# A new day starts its budgets at zero.
_ROLL_DAY = (
    "day = excluded.day, "
    "stored_bytes = CASE WHEN u.day = excluded.day THEN u.stored_bytes ELSE 0 END, "
    "execution_ms = CASE WHEN u.day = excluded.day THEN u.execution_ms ELSE 0 END"
)


@functools.cache
def _sync_admission_sql(
    vendor: str, *, capped: bool, bytes_limited: bool, time_limited: bool
) -> str:
    """Upsert the user's row, counting the run in, only if every limit allows it.

    Params: user, day, [lease_s, cap], [input bytes, bytes limit], [ms limit].
    Counted runs whose leases have all ended are forgotten (the count restarts at 1).
    """
    db = SimpleNamespace(vendor=vendor)  # all now_sql() reads of a connection
    now = now_sql(db)
    expired = f"(u.sync_runs_until IS NULL OR u.sync_runs_until < {now})"
    columns, values, sets, checks = "", "", [_ROLL_DAY], []
    if capped:
        columns = ", sync_runs, sync_runs_until"
        values = f", 1, {now_sql(db, plus_param=True)}"
        sets.append(f"sync_runs = CASE WHEN {expired} THEN 1 ELSE u.sync_runs + 1 END")
        sets.append(
            "sync_runs_until = CASE WHEN u.sync_runs_until IS NULL "
            "OR u.sync_runs_until < excluded.sync_runs_until "
            "THEN excluded.sync_runs_until ELSE u.sync_runs_until END"
        )
        checks.append(f"(u.sync_runs < %s OR {expired})")
    if bytes_limited:
        checks.append("(u.day <> excluded.day OR u.stored_bytes + %s <= %s)")
    if time_limited:
        checks.append("(u.day <> excluded.day OR u.execution_ms < %s)")
    zero_sync = "" if capped else ", sync_runs"
    zero_value = "" if capped else ", 0"
    return (
        f"INSERT INTO {_TABLE} AS u (user_id, day, stored_bytes, execution_ms{columns}{zero_sync}) "
        f"VALUES (%s, %s, 0, 0{values}{zero_value}) "
        f"ON CONFLICT (user_id) DO UPDATE SET {', '.join(sets)} "
        f"WHERE {' AND '.join(checks) or '1 = 1'} RETURNING user_id"
    )


@functools.cache
def _lock_sql() -> str:
    """Upsert the user's row (the day rolled over): a submission's lock. Params: user, day."""
    return (
        f"INSERT INTO {_TABLE} AS u (user_id, day, stored_bytes, execution_ms, sync_runs) "
        "VALUES (%s, %s, 0, 0, 0) "
        f"ON CONFLICT (user_id) DO UPDATE SET {_ROLL_DAY} RETURNING user_id"
    )


@functools.cache
def _usage_sql(*, releases: bool) -> str:
    """Add a run's bytes and time to the user's day. Params: user, day, bytes, ms."""
    release = (
        ", sync_runs = CASE WHEN u.sync_runs > 0 THEN u.sync_runs - 1 ELSE 0 END"
        if releases
        else ""
    )
    return (
        f"INSERT INTO {_TABLE} AS u (user_id, day, stored_bytes, execution_ms, sync_runs) "
        "VALUES (%s, %s, %s, %s, 0) "
        "ON CONFLICT (user_id) DO UPDATE SET day = excluded.day, "
        "stored_bytes = CASE WHEN u.day = excluded.day "
        "THEN u.stored_bytes + excluded.stored_bytes ELSE excluded.stored_bytes END, "
        "execution_ms = CASE WHEN u.day = excluded.day "
        "THEN u.execution_ms + excluded.execution_ms ELSE excluded.execution_ms END"
        f"{release}"
    )
