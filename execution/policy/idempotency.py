"""Idempotency keys: a request sent again with its ``Idempotency-Key`` makes no second job.

A client that does not know whether its request arrived (a timeout, a dropped
connection) sends it again with the same key. The first request with a key
*claims* it: one INSERT names the job it is about to make, before anything runs,
and the unique constraint on (user, key) lets exactly one of any number of
concurrent duplicates win, in every process and on SQLite and PostgreSQL alike.
Every other request with that key finds the claim and replays its job's answer;
with another body (or at another endpoint) it is a conflict.

A claim whose request makes no job (it was refused: bad input, no grant, over a
quota) is released, so the corrected request may use the key again. A key lives
``IDEMPOTENCY_TTL_S`` from its claim; an expired one is claimed anew by the same
statement, and the lease monitor of every process deletes expired keys in
batches (:func:`purge_expired_keys`), so the table holds about one TTL's keys.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import DatabaseError, connections

from execution import sql
from execution.audit.digest import payload_sha256
from execution.clock import database_now, now_sql
from execution.models import IdempotencyKey, Job
from execution.policy.idempotency_models import MAX_KEY_LENGTH

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
META_KEY = "HTTP_IDEMPOTENCY_KEY"  # how WSGI names the header in request.META

# Expired keys are deleted this many at a time, at most every PURGE_INTERVAL_S in a process.
PURGE_BATCH = 1000
PURGE_INTERVAL_S = 60.0
# A claim can vanish (released) or expire between its INSERT losing and the SELECT.
_CLAIM_TRIES = 3


class InvalidKey(ValueError):
    """The header's value cannot be a key: empty, too long, or not printable ASCII."""


class ConflictReason(StrEnum):
    """Why a request may not use a key it sent; ``details.reason`` of the 409."""

    OTHER_BODY = "other_body"
    OTHER_ENDPOINT = "other_endpoint"
    IN_PROGRESS = "in_progress"


class KeyConflict(Exception):
    """The key is taken by another request, or its request has no answer yet."""

    def __init__(
        self, reason: ConflictReason, message: str, *, job_id: uuid.UUID, endpoint: str
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.job_id = job_id
        self.endpoint = endpoint

    @property
    def details(self) -> dict[str, Any]:
        """What the 409's envelope says: why, and where to look."""
        details: dict[str, Any] = {"reason": str(self.reason)}
        if self.reason is ConflictReason.OTHER_ENDPOINT:
            details["used_with"] = self.endpoint
        if self.reason is ConflictReason.IN_PROGRESS:
            details["job_id"] = str(self.job_id)
        return details


def parse_key(raw: str) -> str:
    """The key a header value names; raises InvalidKey with the reason.

    A key is 1 to 255 printable ASCII characters (a UUID is the usual choice).
    WSGI gives header bytes as Latin-1, so any non-ASCII byte fails ``isascii``.
    """
    if not raw:
        raise InvalidKey(f"The {HEADER} header is empty.")
    if len(raw) > MAX_KEY_LENGTH:
        raise InvalidKey(f"The {HEADER} header is longer than {MAX_KEY_LENGTH} characters.")
    if not (raw.isascii() and raw.isprintable()):
        raise InvalidKey(f"The {HEADER} header must be printable ASCII.")
    return raw


@dataclass(frozen=True)
class Claim:
    """This request holds the key: it makes job ``job_id`` (or releases the key)."""

    user_id: Any
    key: str
    job_id: uuid.UUID

    def release(self) -> None:
        """Free the key for another try, unless its job was recorded after all.

        Called when the request failed; one DELETE that keeps the key if the job
        exists (the failure came after it was recorded, and a retry must find it).
        During a database outage the key stays claimed until it expires.
        """
        connection = connections[IdempotencyKey.objects.db]
        keys, jobs = IdempotencyKey._meta.db_table, Job._meta.db_table
        quote = connection.ops.quote_name
        job_id = _prep_uuid(self.job_id, connection)
        try:
            sql.fetch_one(
                connection,
                f"DELETE FROM {keys} WHERE user_id = %s AND {quote('key')} = %s "
                f"AND job_id = %s AND NOT EXISTS (SELECT 1 FROM {jobs} WHERE id = %s)",
                [self.user_id, self.key, job_id, job_id],
            )
        except DatabaseError:
            logger.warning("Idempotency key of job %s could not be released", self.job_id)


@dataclass(frozen=True)
class Replay:
    """The key's request came first: answer with its job (None: not recorded yet)."""

    job: Job | None
    job_id: uuid.UUID


def request_digest(body: Any) -> str:
    """What two requests must share to be the same request: their body's canonical JSON."""
    return payload_sha256(body)


def claim_key(*, user: AbstractBaseUser, key: str, endpoint: str, body: Any) -> Claim | Replay:
    """Claim ``key`` for a request to ``endpoint`` with ``body``, or find its first request.

    Returns a Claim (this request goes ahead and makes job ``claim.job_id``) or a
    Replay (an earlier request with the same key and body made, or is making, the
    job; :func:`in_progress` is the answer while it has none). Raises KeyConflict
    when the key was sent with another body or to another endpoint.
    """
    digest = request_digest(body)
    for _ in range(_CLAIM_TRIES):
        job_id = uuid.uuid4()
        if _insert_claim(user.pk, key, endpoint, digest, job_id):
            return Claim(user_id=user.pk, key=key, job_id=job_id)
        existing = _live_key(user.pk, key)
        if existing is not None:
            return _replay(existing, endpoint=endpoint, digest=digest)
    raise DatabaseError(f"Idempotency key {key!r} kept changing; it was not claimed")


def _insert_claim(user_id: Any, key: str, endpoint: str, digest: str, job_id: uuid.UUID) -> bool:
    """One statement: claim the key, or take over its expired claim; False if it is live.

    The unique constraint decides between concurrent claims; the losers' upsert
    matches the winner's live row and changes nothing.
    """
    connection = connections[IdempotencyKey.objects.db]
    table = IdempotencyKey._meta.db_table
    quote = connection.ops.quote_name
    now, expires = now_sql(connection), now_sql(connection, plus_param=True)
    row = sql.fetch_one(
        connection,
        f"INSERT INTO {table} (user_id, {quote('key')}, endpoint, request_sha256, job_id, "
        f"created_at, expires_at) VALUES (%s, %s, %s, %s, %s, {now}, {expires}) "
        f"ON CONFLICT (user_id, {quote('key')}) DO UPDATE SET "
        "endpoint = excluded.endpoint, request_sha256 = excluded.request_sha256, "
        "job_id = excluded.job_id, created_at = excluded.created_at, "
        f"expires_at = excluded.expires_at WHERE {table}.expires_at <= excluded.created_at "
        "RETURNING job_id",
        [
            user_id,
            key,
            endpoint,
            digest,
            _prep_uuid(job_id, connection),
            float(settings.IDEMPOTENCY_TTL_S),
        ],
    )
    return row is not None


def _live_key(user_id: Any, key: str) -> IdempotencyKey | None:
    return (
        IdempotencyKey.objects.filter(user_id=user_id, key=key, expires_at__gt=database_now())
        .only("endpoint", "request_sha256", "job_id")
        .first()
    )


def _replay(existing: IdempotencyKey, *, endpoint: str, digest: str) -> Replay:
    if existing.endpoint != endpoint:
        raise KeyConflict(
            ConflictReason.OTHER_ENDPOINT,
            f"This {HEADER} was sent to {existing.endpoint}; a key names one request.",
            job_id=existing.job_id,
            endpoint=existing.endpoint,
        )
    if existing.request_sha256 != digest:
        raise KeyConflict(
            ConflictReason.OTHER_BODY,
            f"This {HEADER} was sent with another request body; a key names one request.",
            job_id=existing.job_id,
            endpoint=existing.endpoint,
        )
    return Replay(job=Job.objects.filter(pk=existing.job_id).first(), job_id=existing.job_id)


def in_progress(replay: Replay, *, endpoint: str) -> KeyConflict:
    """The conflict that answers a duplicate of a request that has no answer yet."""
    return KeyConflict(
        ConflictReason.IN_PROGRESS,
        f"The first request with this {HEADER} is still running (job {replay.job_id}); "
        "send it again later, or read the job.",
        job_id=replay.job_id,
        endpoint=endpoint,
    )


_next_purge = 0.0


def purge_expired_keys(*, force: bool = False) -> int:
    """Delete expired keys, a batch at a time; at most every PURGE_INTERVAL_S unless ``force``.

    Called by every process's lease monitor. Returns how many were deleted.
    """
    global _next_purge
    if not force and time.monotonic() < _next_purge:
        return 0
    _next_purge = time.monotonic() + PURGE_INTERVAL_S
    deleted = 0
    while True:
        now = database_now()
        batch = list(
            IdempotencyKey.objects.filter(expires_at__lte=now).values_list("pk", flat=True)[
                :PURGE_BATCH
            ]
        )
        if not batch:
            return deleted
        count, _ = IdempotencyKey.objects.filter(pk__in=batch, expires_at__lte=now).delete()
        deleted += count
        if len(batch) < PURGE_BATCH:
            return deleted


def _prep_uuid(value: uuid.UUID, connection: Any) -> Any:
    field = IdempotencyKey._meta.get_field("job_id")
    return field.get_db_prep_value(value, connection)
