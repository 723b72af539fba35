"""The write API of the audit trail: one INSERT per call, in the caller's transaction.

Call it inside the transaction that makes the change an entry describes, after
the change succeeded (a conditional UPDATE that matched), so that the entry
commits with it or not at all, exactly once. Nothing here hashes the chain:
the sealer does that later, in batches, off the request path.

The INSERT is one SQL statement written here, not ``Model.objects.create``:
compiling the ORM's INSERT costs a few hundred microseconds, several times the
statement itself (the same reason as in execution/models.py). The time column is
left out of it, so the database fills it in from its own clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connections

from execution.audit.events import CHAIN_EVENT_PREFIX, AuditEvent
from execution.audit.models import RECORDED_FIELDS, AuditEntry
from execution.sql import fetch_one

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

__all__ = ["AuditEvent", "AuditRecord", "record", "record_many"]

SYSTEM_ACTOR = "system"

_COLUMNS = ("event", *RECORDED_FIELDS, "prev_hash", "entry_hash")


@dataclass(frozen=True)
class AuditRecord:
    """One entry to write; see :func:`record` for the meaning of each field."""

    event: str
    job_id: uuid.UUID | str | None = None
    actor: AbstractBaseUser | str | None = None
    plugin_name: str = ""
    plugin_version: str = ""
    plugin_fingerprint: str = ""
    input_sha256: str = ""
    result_sha256: str = ""
    error_type: str = ""
    details: dict[str, Any] | None = field(default=None)


def record(
    event: str,
    *,
    job_id: uuid.UUID | str | None = None,
    actor: AbstractBaseUser | str | None = None,
    plugin_name: str = "",
    plugin_version: str = "",
    plugin_fingerprint: str = "",
    input_sha256: str = "",
    result_sha256: str = "",
    error_type: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    """Append one entry to the audit trail (nothing when ``AUDIT_ENABLED`` is off).

    ``actor``: the user who asked, None for the system, or a name. ``input_sha256``
    and ``result_sha256``: ``execution.audit.digest.payload_sha256`` of the job's input and result
    (``result_sha256`` empty when there is no result). ``details``: JSON; a job's
    entries put the job's status after the event in ``details["status"]`` where the
    event does not imply it, and ``details["metrics"] = "success" | "error"`` on the
    entry whose transaction also counted the execution in the plugin's metrics.
    """
    record_many(
        [
            AuditRecord(
                event=event,
                job_id=job_id,
                actor=actor,
                plugin_name=plugin_name,
                plugin_version=plugin_version,
                plugin_fingerprint=plugin_fingerprint,
                input_sha256=input_sha256,
                result_sha256=result_sha256,
                error_type=error_type,
                details=details,
            )
        ]
    )


def record_many(records: Sequence[AuditRecord], *, using: str = "default") -> None:
    """Append several entries with one INSERT, in this order (e.g. submitted, then started)."""
    if not records or not settings.AUDIT_ENABLED:
        return
    connection = connections[using]
    values: list[Any] = []
    for entry in records:
        values.extend(_values(entry, connection))
    fetch_one(connection, _insert_sql(connection.alias, len(records)), values)


def _values(entry: AuditRecord, connection: Any) -> list[Any]:
    """The entry's column values, prepared as its fields would (UUIDField, JSONField)."""
    event = str(entry.event)
    if event.startswith(CHAIN_EVENT_PREFIX):
        raise ValueError(f"{event} entries are written by the chain, not recorded")
    actor_name, actor_id = _actor(entry.actor)
    job_id = entry.job_id
    if job_id is not None and not isinstance(job_id, uuid.UUID):
        job_id = uuid.UUID(str(job_id))
    if job_id is not None and not connection.features.has_native_uuid_field:
        job_id = job_id.hex
    return [
        event,
        actor_name,
        actor_id,
        job_id,
        entry.plugin_name,
        entry.plugin_version,
        entry.plugin_fingerprint,
        entry.input_sha256,
        entry.result_sha256,
        entry.error_type or "",
        connection.ops.adapt_json_value(entry.details or {}, None),
        "",
        "",
    ]


def _actor(actor: AbstractBaseUser | str | None) -> tuple[str, int | None]:
    if actor is None:
        return SYSTEM_ACTOR, None
    if isinstance(actor, str):
        return actor, None
    return actor.get_username(), actor.pk


@cache
def _insert_sql(alias: str, rows: int) -> str:
    connection = connections[alias]
    quote = connection.ops.quote_name
    placeholders = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"
    return (
        f"INSERT INTO {quote(AuditEntry._meta.db_table)} "
        f"({', '.join(quote(column) for column in _COLUMNS)}) "
        f"VALUES {', '.join([placeholders] * rows)}"
    )
