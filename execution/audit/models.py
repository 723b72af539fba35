"""The audit trail's two tables: its entries, and the one row that anchors the chain.

Entries are written unsealed (``seq`` NULL) by the recorder, inside the
transaction of the change they describe, and sealed into the chain later by
the sealer (execution/audit/chain.py), which gives each a gapless ``seq``, the
``prev_hash`` of the entry before it and its own ``entry_hash``.

Nothing here points at another table with a foreign key: deleting a job or a
user must never touch an entry, since any change to a sealed entry breaks the
chain. ``job_id`` and ``actor_id`` are plain values for that reason.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.functions import Now

from execution.audit.events import AuditEvent

HASH_LENGTH = 64

# What the recorder writes for each entry, after its event: the facts the chain hashes.
RECORDED_FIELDS = (
    "actor",
    "actor_id",
    "job_id",
    "plugin_name",
    "plugin_version",
    "plugin_fingerprint",
    "input_sha256",
    "result_sha256",
    "error_type",
    "details",
)


class RowIdField(models.BigAutoField):  # type: ignore[type-arg]
    """An auto-incrementing id that on SQLite is the table's rowid, without AUTOINCREMENT.

    SQLite's AUTOINCREMENT keeps every table's last id in ``sqlite_sequence``, one
    more page written by every INSERT (about a third of an entry's cost). It only
    prevents reusing the id of a deleted last row; an entry's identity in the chain
    is its ``seq``, and sealed entries are never deleted but by pruning, which
    keeps the newest.
    """

    def db_type_suffix(self, connection: Any) -> str | None:
        if connection.vendor == "sqlite":
            return None
        return connection.data_types_suffix.get(self.get_internal_type())  # type: ignore[no-any-return]


class AuditEntry(models.Model):
    """One governed event: who, which plugin and job, digests of the data, when."""

    id = RowIdField(primary_key=True)

    seq = models.PositiveBigIntegerField(
        null=True, blank=True, unique=True, help_text="Position in the chain; empty until sealed."
    )
    prev_hash = models.CharField(max_length=HASH_LENGTH, blank=True, default="")
    entry_hash = models.CharField(max_length=HASH_LENGTH, blank=True, default="")
    recorded_at = models.DateTimeField(
        db_default=Now(), help_text="The database's clock when the entry was written."
    )
    event = models.CharField(max_length=40, choices=AuditEvent.choices)
    actor = models.CharField(
        max_length=150, blank=True, default="", help_text="Username, or 'system'."
    )
    actor_id = models.BigIntegerField(null=True, blank=True, help_text="The user's id, if any.")
    job_id = models.UUIDField(null=True, blank=True)
    plugin_name = models.CharField(max_length=200, blank=True, default="")
    plugin_version = models.CharField(max_length=100, blank=True, default="")
    plugin_fingerprint = models.CharField(max_length=200, blank=True, default="")
    input_sha256 = models.CharField(max_length=HASH_LENGTH, blank=True, default="")
    result_sha256 = models.CharField(max_length=HASH_LENGTH, blank=True, default="")
    error_type = models.CharField(max_length=64, blank=True, default="")
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        app_label = "execution"
        ordering = ["-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"
        # Each index costs every INSERT on the request path 7-20 µs on SQLite
        # (bench/audit_chaining.py), so there are two: seq's own (unique), which is also
        # the sealer's queue (seq IS NULL, in id order), and job_id's, for a job's
        # entries (the admin, verification). Filtering by actor or plugin scans. The
        # job's index leaves seq out, so sealing (which sets seq) does not rewrite it.
        indexes = [models.Index(fields=["job_id"], name="audit_entry_job_idx")]

    def __str__(self) -> str:
        where = f"#{self.seq}" if self.seq is not None else "(unsealed)"
        return f"{where} {self.event}"


class AuditChain(models.Model):
    """The chain's one row: where it starts (after pruning) and where it ends (its head).

    The sealer moves the head with a compare-and-swap on ``head_seq``, so two
    sealers can never both extend the chain from the same head.
    """

    SINGLETON_ID = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_ID)
    head_seq = models.PositiveBigIntegerField(default=0)
    head_hash = models.CharField(max_length=HASH_LENGTH, blank=True, default="")
    base_seq = models.PositiveBigIntegerField(
        default=0, help_text="The last pruned entry's seq: the chain continues from it."
    )
    base_hash = models.CharField(max_length=HASH_LENGTH, blank=True, default="")
    checkpoint_seq = models.PositiveBigIntegerField(
        default=0, help_text="The seq of the latest audit.checkpoint entry."
    )
    key_fingerprint = models.CharField(
        max_length=HASH_LENGTH,
        blank=True,
        default="",
        help_text="Which AUDIT_SIGNING_KEY seals the chain (a one-way digest); empty: none.",
    )
    sealed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "execution"
        verbose_name = "audit chain"

    def __str__(self) -> str:
        return f"audit chain head #{self.head_seq} {self.head_hash[:12]}"
