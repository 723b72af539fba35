"""The chain: canonical hashing of entries, sealing them in batches, checkpoints.

An entry's hash covers the hash of the entry before it and the entry's whole
content, so editing, deleting, inserting or reordering a sealed entry breaks
the chain at that entry (execution/audit/verify.py finds where). With an
``AUDIT_SIGNING_KEY`` the hash is an HMAC: without the key nobody can seal a
forged entry that verifies.

Sealing is batched and off the request path: the recorder only INSERTs, and a
sealer chains what is waiting every few seconds, in one transaction per batch,
moving the chain's head with a compare-and-swap (``UPDATE ... WHERE head_seq =
<the head it read>``). A sealer that loses that race rolls back and has sealed
nothing, so several sealers in several processes cannot fork the chain.

The chain's first entry is an ``audit.checkpoint`` made by the first seal: its
baseline says what the database held before the audit started (each plugin's
metrics counts, the jobs that have no ``job.submitted`` entry). Pruning
(execution/audit/retention.py) seals a new checkpoint, carrying the baseline on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, connections, models, transaction
from django.db.models.functions import Now

from execution.audit import signing
from execution.audit.digest import canonical_json, plain_json
from execution.audit.events import CHAIN_EVENT_PREFIX, AuditEvent
from execution.audit.models import RECORDED_FIELDS, AuditChain, AuditEntry

logger = logging.getLogger("execution.audit")

GENESIS_HASH = "0" * 64
SEAL_BATCH_SIZE = 2000

# What an entry's hash covers, in this order (the id first, for the UPDATE).
CONTENT_FIELDS = ("id", "seq", "event", "recorded_at", *RECORDED_FIELDS)
_DIGEST_MODULUS = 2**256


# Entries' hashes ------------------------------------------------------------------


def entry_message(prev_hash: str, row: Sequence[Any]) -> bytes:
    """What an entry's hash is taken of: the previous hash, then its content.

    ``row`` is the entry's CONTENT_FIELDS as the ORM loads them, with ``seq`` set.
    """
    (entry_id, seq, event, recorded_at, actor, actor_id, job_id, *texts, details) = row
    fields = [
        seq,
        entry_id,
        str(event),
        _timestamp(recorded_at),
        str(actor),
        actor_id,
        str(job_id) if job_id is not None else None,
        *(str(text) for text in texts),
    ]
    # The same text as canonical_json([*fields, details]): the fields are plain by construction.
    content = f"{plain_json(fields)[:-1]},{canonical_json(details)}]"
    return f"{prev_hash}|{content}".encode("utf-8", "surrogatepass")


def entry_hash(key: bytes | None, prev_hash: str, row: Sequence[Any]) -> str:
    return signing.digest(key, entry_message(prev_hash, row))


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


# Sealing --------------------------------------------------------------------------


class SigningKeyMismatch(Exception):
    """This process's AUDIT_SIGNING_KEY is not the one the chain is sealed with."""


class _LostRace(Exception):
    """Another sealer moved the head first: this batch is rolled back."""


@dataclass(frozen=True)
class SealResult:
    sealed: int
    head_seq: int
    head_hash: str


def seal(
    *, batch_size: int = SEAL_BATCH_SIZE, pause_s: float = 0.0, using: str = "default"
) -> SealResult:
    """Chain every entry waiting to be sealed, in insertion order, a batch at a time.

    Safe with any number of sealers in any number of processes. Raises
    SigningKeyMismatch if this process has another key than the chain.
    ``pause_s``: a sleep between batches, which lets the other threads of this
    process run (Python's lock would keep them waiting up to 5 ms at each switch)
    and other transactions take SQLite's write lock.
    """
    sealed = 0
    lost = 0
    while _anything_waiting(using):
        if sealed and pause_s:
            time.sleep(pause_s)
        try:
            count = _seal_batch(batch_size, using)
        except (_LostRace, IntegrityError):
            lost += 1
            if lost > 100:
                raise
            continue
        sealed += count
        if count < batch_size:
            break
    chain = AuditChain.objects.using(using).filter(pk=AuditChain.SINGLETON_ID).first()
    head_seq, head_hash = (chain.head_seq, chain.head_hash) if chain else (0, "")
    if sealed:
        logger.info(
            "Audit chain sealed %d entries; head seq=%d hash=%s", sealed, head_seq, head_hash
        )
    return SealResult(sealed=sealed, head_seq=head_seq, head_hash=head_hash)


def _anything_waiting(using: str) -> bool:
    """A cheap look, outside any transaction: is an entry waiting, or the chain not begun?"""
    waiting = AuditEntry.objects.using(using).filter(seq__isnull=True)
    waiting = waiting.exclude(event__startswith=CHAIN_EVENT_PREFIX)
    if waiting.exists():
        return True
    return not AuditChain.objects.using(using).filter(pk=AuditChain.SINGLETON_ID).exists()


def _seal_batch(batch_size: int, using: str) -> int:
    """Seal the next batch optimistically: hash first, then take the lock only to write.

    The head and the batch are read without a lock, the hashes computed, and only
    then one short transaction moves the head (the compare-and-swap) and writes the
    seqs and hashes. On SQLite that transaction holds the database's only write
    lock, so hashing inside it would stall every request for the whole batch.
    Another sealer that moved the head meanwhile makes the swap fail: nothing is
    written and the batch is read again.
    """
    key = signing.signing_key()
    chain = AuditChain.objects.using(using).filter(pk=AuditChain.SINGLETON_ID).first()
    if chain is None:
        with transaction.atomic(using=using):
            chain = locked_chain(key, using)  # begins the chain
    _check_key(chain, key)
    rows = waiting_rows(batch_size, using)
    if not rows:
        return 0
    updates = []
    seq, prev = chain.head_seq, chain.head_hash
    for row in rows:
        seq += 1
        sealed_row = (row[0], seq, *row[2:])
        digest = entry_hash(key, prev, sealed_row)
        updates.append((seq, prev, digest, row[0]))
        prev = digest
    connection = connections[using]
    table = connection.ops.quote_name(AuditEntry._meta.db_table)
    with transaction.atomic(using=using):
        _move_head(chain, seq, prev, using)
        with connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {table} SET seq = %s, prev_hash = %s, entry_hash = %s "
                "WHERE id = %s AND seq IS NULL",
                updates,
            )
            if cursor.rowcount not in (-1, len(updates)):
                raise _LostRace()  # another sealer sealed some of them: roll back
    return len(rows)


def waiting_rows(limit: int, using: str) -> list[tuple[Any, ...]]:
    """The next ``limit`` unsealed entries' CONTENT_FIELDS, as the ORM would load them.

    One raw SELECT: the ORM's per-row converters cost more than hashing the row, and
    the sealer runs beside requests in their process. ``verify_audit`` reads with
    the ORM, so a difference here would show as edited entries.
    """
    connection = connections[using]
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(quote(name) for name in CONTENT_FIELDS)} "
            f"FROM {quote(AuditEntry._meta.db_table)} "
            f"WHERE {quote('seq')} IS NULL AND {quote('event')} NOT LIKE %s "
            f"ORDER BY {quote('id')} LIMIT %s",
            [CHAIN_EVENT_PREFIX + "%", limit],
        )
        return [_as_loaded(row) for row in cursor.fetchall()]


def _as_loaded(row: Sequence[Any]) -> tuple[Any, ...]:
    """A raw row as the ORM loads it: SQLite gives a naive time, the uuid and the JSON as text."""
    entry_id, seq, event, recorded_at, actor, actor_id, job_id, *texts, details = row
    if recorded_at.tzinfo is None:
        recorded_at = recorded_at.replace(tzinfo=UTC)
    if isinstance(job_id, str):
        job_id = uuid.UUID(job_id)
    if isinstance(details, str):
        details = json.loads(details)
    return (entry_id, seq, event, recorded_at, actor, actor_id, job_id, *texts, details)


def locked_chain(key: bytes | None, using: str) -> AuditChain:
    """The chain's row, locked until the transaction ends; begun here if it is not yet."""
    chain = (
        AuditChain.objects.using(using)
        .select_for_update()
        .filter(pk=AuditChain.SINGLETON_ID)
        .first()
    )
    if chain is None:
        chain = _begin_chain(key, using)
    _check_key(chain, key)
    return chain


def _check_key(chain: AuditChain, key: bytes | None) -> None:
    if chain.key_fingerprint != signing.key_fingerprint(key):
        raise SigningKeyMismatch(
            "The audit chain is sealed with "
            + ("no AUDIT_SIGNING_KEY" if not chain.key_fingerprint else "another AUDIT_SIGNING_KEY")
            + ("" if key is None else ", not this process's")
            + "; nothing was sealed"
        )


def _move_head(chain: AuditChain, seq: int, head_hash: str, using: str) -> None:
    """The compare-and-swap: the head moves only from where this sealer found it."""
    moved = (
        AuditChain.objects.using(using)
        .filter(pk=chain.pk, head_seq=chain.head_seq, head_hash=chain.head_hash)
        .update(head_seq=seq, head_hash=head_hash, sealed_at=Now())
    )
    if not moved:
        raise _LostRace()
    chain.head_seq, chain.head_hash = seq, head_hash


# Checkpoints ----------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    """What the chain does not itself show: counts and jobs from before its first entry."""

    metrics: dict[str, dict[str, int]]
    legacy_count: int
    legacy_digest: str

    def as_details(
        self, through_seq: int, through_hash: str, key_fingerprint: str
    ) -> dict[str, Any]:
        return {
            "through_seq": through_seq,
            "through_hash": through_hash,
            "key_fingerprint": key_fingerprint,
            "metrics": self.metrics,
            "legacy_jobs": {"count": self.legacy_count, "digest": self.legacy_digest},
        }

    @classmethod
    def from_details(cls, details: dict[str, Any]) -> Baseline:
        legacy = details.get("legacy_jobs") or {}
        return cls(
            metrics={
                name: {"success": int(c.get("success", 0)), "error": int(c.get("error", 0))}
                for name, c in (details.get("metrics") or {}).items()
            },
            legacy_count=int(legacy.get("count", 0)),
            legacy_digest=str(legacy.get("digest", set_digest([]))),
        )


def set_digest(job_ids: Iterable[uuid.UUID | str]) -> str:
    """An order-free digest of a set of job ids (the sum of their SHA-256s, mod 2**256).

    Order-free so that it can be computed in any order, and have ids taken out
    of it when their entries are pruned.
    """
    return f"{sum_digest(0, job_ids):064x}"


def sum_digest(start: int, job_ids: Iterable[uuid.UUID | str], sign: int = 1) -> int:
    total = start
    for job_id in job_ids:
        one = hashlib.sha256(uuid.UUID(str(job_id)).hex.encode()).digest()
        total = (total + sign * int.from_bytes(one, "big")) % _DIGEST_MODULUS
    return total


def _begin_chain(key: bytes | None, using: str) -> AuditChain:
    """The first seal: the chain's row, and its genesis checkpoint with the baseline.

    The baseline is what the database holds that no entry accounts for: each
    plugin's metrics counts less what waiting entries already count, and the jobs
    that have no ``job.submitted`` entry (they predate the audit).
    """
    from execution.models import Job
    from plugins.models import PluginMetrics

    fingerprint = signing.key_fingerprint(key)
    chain = AuditChain(
        pk=AuditChain.SINGLETON_ID,
        head_hash=GENESIS_HASH,
        base_hash=GENESIS_HASH,
        key_fingerprint=fingerprint,
    )
    chain.save(force_insert=True, using=using)  # IntegrityError if another sealer began it
    entries = AuditEntry.objects.using(using)

    def counted(outcome: str) -> Any:
        return models.Subquery(
            entries.filter(plugin_name=models.OuterRef("plugin_name"), details__metrics=outcome)
            .order_by()
            .values("plugin_name")
            .annotate(n=models.Count("id"))
            .values("n")
        )

    metrics = {}
    rows = PluginMetrics.objects.using(using).annotate(
        counted_success=counted("success"), counted_error=counted("error")
    )
    for name, success, error, counted_success, counted_error in rows.values_list(
        "plugin_name", "success_count", "error_count", "counted_success", "counted_error"
    ):
        metrics[name] = {
            "success": success - (counted_success or 0),
            "error": error - (counted_error or 0),
        }
    submitted = entries.filter(event=AuditEvent.JOB_SUBMITTED, job_id=models.OuterRef("pk"))
    legacy = Job.objects.using(using).exclude(models.Exists(submitted)).values_list("pk", flat=True)
    legacy_ids = list(legacy.iterator())
    baseline = Baseline(
        metrics=metrics, legacy_count=len(legacy_ids), legacy_digest=set_digest(legacy_ids)
    )
    append_checkpoint(chain, baseline.as_details(0, GENESIS_HASH, fingerprint), key, using)
    logger.info(
        "Audit chain begun: %d jobs predate it, baseline metrics for %d plugins",
        len(legacy_ids),
        len(metrics),
    )
    return chain


def append_checkpoint(
    chain: AuditChain, details: dict[str, Any], key: bytes | None, using: str
) -> int:
    """Seal an ``audit.checkpoint`` entry at the head, in the caller's transaction; its seq.

    Checkpoints never wait in the queue: they are written sealed by whoever holds
    the chain's row, and the sealer refuses any ``audit.*`` entry it finds waiting.
    """
    entry = AuditEntry.objects.using(using).create(
        event=AuditEvent.AUDIT_CHECKPOINT, actor="system", details=details
    )
    row = AuditEntry.objects.using(using).filter(pk=entry.pk).values_list(*CONTENT_FIELDS).get()
    seq = chain.head_seq + 1
    sealed_row = (row[0], seq, *row[2:])
    digest = entry_hash(key, chain.head_hash, sealed_row)
    AuditEntry.objects.using(using).filter(pk=entry.pk, seq__isnull=True).update(
        seq=seq, prev_hash=chain.head_hash, entry_hash=digest
    )
    AuditChain.objects.using(using).filter(pk=chain.pk).update(checkpoint_seq=seq)
    chain.checkpoint_seq = seq
    _move_head(chain, seq, digest, using)
    return seq
