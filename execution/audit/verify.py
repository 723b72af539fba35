"""Verification: walk the chain once in seq order, then check the records it describes.

The chain walk finds the first broken link: a gap in ``seq`` (entries deleted),
an entry whose ``prev_hash`` is not the hash of the entry before it (entries
reordered or inserted, or the one before rewritten), an entry whose content no
longer matches its hash (edited), entries past the head or a head that does not
match the last entry (the chain's row changed, or entries added after it).

The records check then reads every job and every entry of a job, both in job id
order, and merges them, so that memory stays flat however large the tables:
every Job must have the ``job.submitted`` entry of its requester, plugin and
input; a job's status, result and error must be what its last entry says; a job
the audit knows must still exist unless an entry says it was removed; each
plugin's metrics counts must be what the entries counted. This is what shows a
job's result edited, a job deleted, a job inserted "requested by" someone, or a
success_count set.

Everything is read in one snapshot (REPEATABLE READ on PostgreSQL, one read
transaction on SQLite), so a live system's jobs moving on during the check are
not mistaken for tampering.
"""

from __future__ import annotations

import contextlib
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connections, models, transaction

from execution.audit import signing
from execution.audit.chain import (
    CONTENT_FIELDS,
    GENESIS_HASH,
    Baseline,
    entry_hash,
    sum_digest,
)
from execution.audit.digest import payload_sha256
from execution.audit.events import (
    CHAIN_EVENT_PREFIX,
    JOB_REMOVED_EVENTS,
    STATUS_AFTER_EVENT,
    AuditEvent,
)
from execution.audit.models import AuditChain, AuditEntry

CHUNK_SIZE = 5000
FINAL_STATUSES = frozenset({"SUCCESS", "FAILED", "CANCELLED"})


@dataclass(frozen=True)
class Problem:
    """One thing that is not as recorded: what, and where."""

    kind: str  # deleted, inserted, reordered, edited, head, key, record
    message: str
    seq: int | None = None
    entry_id: int | None = None
    job_id: uuid.UUID | None = None


@dataclass
class Report:
    entries: int = 0
    unsealed: int = 0
    jobs: int = 0
    head_seq: int = 0
    head_hash: str = ""
    base_seq: int = 0
    chain_problem: Problem | None = None
    record_problems: list[Problem] = field(default_factory=list)
    record_problem_count: int = 0
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.chain_problem is None and not self.record_problem_count

    @property
    def first_problem(self) -> Problem | None:
        if self.chain_problem is not None:
            return self.chain_problem
        return self.record_problems[0] if self.record_problems else None


def verify(
    *,
    expect_head: tuple[int, str] | None = None,
    check_records: bool = True,
    max_problems: int = 20,
    using: str = "default",
) -> Report:
    """Verify the chain and, with ``check_records``, the jobs and metrics it describes.

    ``expect_head``: a (seq, hash) held outside the database (a log line, the
    Prometheus gauge); the chain must still have that entry with that hash.
    """
    started = time.perf_counter()
    report = Report()
    with _snapshot(using):
        baseline = _walk_chain(report, expect_head, using)
        report.unsealed = AuditEntry.objects.using(using).filter(seq__isnull=True).count()
        if check_records:
            _RecordCheck(report, baseline, max_problems, using).run()
    report.elapsed_s = time.perf_counter() - started
    return report


@contextlib.contextmanager
def _snapshot(using: str) -> Iterator[None]:
    """One consistent read of everything, without taking a write lock."""
    connection = connections[using]
    if connection.in_atomic_block:  # the caller's transaction is the snapshot (tests)
        yield
        return
    if connection.vendor == "postgresql":
        with transaction.atomic(using=using):
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield
        return
    if connection.vendor == "sqlite":
        # Django's own transactions are BEGIN IMMEDIATE here (a write lock); a
        # deferred one is a read snapshot in WAL mode and blocks no writer.
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("BEGIN DEFERRED")
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("ROLLBACK")
        return
    yield


def _walk_chain(report: Report, expect_head: tuple[int, str] | None, using: str) -> Baseline:
    empty = Baseline(metrics={}, legacy_count=0, legacy_digest=f"{0:064x}")
    chain = AuditChain.objects.using(using).filter(pk=AuditChain.SINGLETON_ID).first()
    sealed = AuditEntry.objects.using(using).filter(seq__isnull=False)
    if chain is None:
        if sealed.exists():
            report.chain_problem = Problem("deleted", "The audit chain's row is missing: deleted")
        return empty
    report.head_seq, report.head_hash, report.base_seq = (
        chain.head_seq,
        chain.head_hash,
        chain.base_seq,
    )
    key = signing.signing_key()
    if chain.key_fingerprint != signing.key_fingerprint(key):
        report.chain_problem = Problem("key", _key_problem(chain.key_fingerprint, key))
        return empty
    walk = _ChainWalk(chain, key, expect_head)
    rows = sealed.order_by("seq").values_list(*CONTENT_FIELDS, "prev_hash", "entry_hash")
    for row in rows.iterator(chunk_size=CHUNK_SIZE):
        report.entries += 1
        problem = walk.step(row)
        if problem is not None:
            report.chain_problem = problem
            break
    else:
        report.chain_problem = walk.finish()
    if report.chain_problem is None:
        forged = (
            AuditEntry.objects.using(using)
            .filter(seq__isnull=True, event__startswith=CHAIN_EVENT_PREFIX)
            .values_list("id", flat=True)
            .first()
        )
        if forged is not None:
            report.chain_problem = Problem(
                "inserted",
                f"Entry id {forged} is an unsealed chain entry: checkpoints are only ever "
                "written sealed, so it was inserted",
                entry_id=forged,
            )
    return walk.baseline or empty


def _key_problem(chain_fingerprint: str, key: bytes | None) -> str:
    if not chain_fingerprint:
        return (
            "The chain is sealed without a signing key, but AUDIT_SIGNING_KEY is set: it was "
            "rewritten without the key, or the key was added after the chain began"
        )
    if key is None:
        return "The chain is sealed with an AUDIT_SIGNING_KEY: set it to verify"
    return "The chain is sealed with another AUDIT_SIGNING_KEY than this one"


class _ChainWalk:
    """The state of one walk along the chain, one sealed entry at a time in seq order."""

    def __init__(
        self, chain: AuditChain, key: bytes | None, expect_head: tuple[int, str] | None
    ) -> None:
        self.chain = chain
        self.key = key
        self.expect_head = expect_head
        self.expected_seq = chain.base_seq + 1
        self.prev = chain.base_hash or GENESIS_HASH
        self.baseline: Baseline | None = None
        self.expect_head_seen = False

    def step(self, row: Sequence[Any]) -> Problem | None:
        entry_id, seq, event, details = row[0], row[1], row[2], row[13]
        stored_prev, stored_hash = row[14], row[15]
        where = {"seq": seq, "entry_id": entry_id}
        if seq < self.expected_seq:
            return Problem(
                "inserted",
                f"Entry id {entry_id} has seq {seq}, before the chain's start (seq "
                f"{self.expected_seq}): inserted, or the chain's start was moved",
                **where,
            )
        if seq > self.expected_seq:
            missing = (
                f"seq {self.expected_seq}"
                if seq == self.expected_seq + 1
                else f"seq {self.expected_seq} to {seq - 1}"
            )
            return Problem(
                "deleted",
                f"The chain has no {missing} (before entry id {entry_id}): deleted",
                **where,
            )
        if stored_prev != self.prev:
            return Problem(
                "reordered",
                f"Entry id {entry_id} at seq {seq} does not follow the entry at seq {seq - 1}: "
                "it was moved or inserted here, or the entry before it was rewritten",
                **where,
            )
        if entry_hash(self.key, self.prev, row[:14]) != stored_hash:
            return Problem(
                "edited",
                f"Entry id {entry_id} at seq {seq} does not match its hash: edited",
                **where,
            )
        if seq == self.chain.checkpoint_seq:
            problem = self._checkpoint(event, details, entry_id, seq)
            if problem is not None:
                return problem
        elif event == AuditEvent.AUDIT_CHECKPOINT and seq > self.chain.checkpoint_seq:
            return Problem(
                "head",
                f"Entry id {entry_id} at seq {seq} is a checkpoint newer than the one the "
                "chain's row names: the row was changed",
                **where,
            )
        if self.expect_head is not None and seq == self.expect_head[0]:
            self.expect_head_seen = True
            if stored_hash != self.expect_head[1]:
                return Problem(
                    "head",
                    f"Entry id {entry_id} at seq {seq} has hash {stored_hash}, not the "
                    f"{self.expect_head[1]} held outside the database: the chain was rewritten",
                    **where,
                )
        self.prev = stored_hash
        self.expected_seq += 1
        return None

    def _checkpoint(self, event: str, details: Any, entry_id: int, seq: int) -> Problem | None:
        chain = self.chain
        details = details if isinstance(details, dict) else {}
        if (
            event != AuditEvent.AUDIT_CHECKPOINT
            or details.get("through_seq") != chain.base_seq
            or details.get("through_hash") != (chain.base_hash or GENESIS_HASH)
            or details.get("key_fingerprint", "") != chain.key_fingerprint
        ):
            return Problem(
                "head",
                f"Entry id {entry_id} at seq {seq}, which the chain's row names as its "
                "checkpoint, does not describe where the chain starts: the row was changed",
                seq=seq,
                entry_id=entry_id,
            )
        self.baseline = Baseline.from_details(details)
        return None

    def finish(self) -> Problem | None:
        chain = self.chain
        last = self.expected_seq - 1
        if last < chain.head_seq:
            return Problem(
                "deleted",
                f"The chain ends at seq {last}, but its head is seq {chain.head_seq}: "
                "the entries after it were deleted",
                seq=last + 1,
            )
        if last > chain.head_seq:
            return Problem(
                "inserted",
                f"The chain goes on past its head (seq {chain.head_seq}) to seq {last}: "
                "entries were added after it",
                seq=chain.head_seq + 1,
            )
        if self.prev != (chain.head_hash or GENESIS_HASH):
            return Problem(
                "head",
                f"The chain's head hash is not the hash of its last entry (seq {last}): "
                "the chain's row was changed",
                seq=last,
            )
        if chain.checkpoint_seq and self.baseline is None:
            return Problem(
                "deleted",
                f"The checkpoint entry at seq {chain.checkpoint_seq} is missing",
                seq=chain.checkpoint_seq,
            )
        if self.expect_head is not None and not self.expect_head_seen:
            return Problem(
                "head",
                f"The chain no longer has seq {self.expect_head[0]} (it starts after seq "
                f"{chain.base_seq} and ends at seq {chain.head_seq}): the held head cannot be "
                "checked",
                seq=self.expect_head[0],
            )
        return None


def status_after(event: str, details: Any, error_type: str) -> str | None:
    """The job's status after an entry, as the entry says it (None: no change)."""
    if isinstance(details, dict) and isinstance(details.get("status"), str):
        return str(details["status"])
    if event == AuditEvent.JOB_FINISHED:
        return "FAILED" if error_type else "SUCCESS"
    if event == AuditEvent.JOB_RECOVERED:
        return "FAILED"
    return STATUS_AFTER_EVENT.get(event)


_ENTRY_FIELDS = (
    "job_id",
    "seq",
    "id",
    "event",
    "actor_id",
    "plugin_name",
    "plugin_version",
    "input_sha256",
    "result_sha256",
    "error_type",
    "details",
)
_JOB_FIELDS = (
    "id",
    "status",
    "requested_by_id",
    "plugin_name",
    "plugin_version",
    "input_payload",
    "result",
    "error",
)


class _RecordCheck:
    """The merge of every job with its entries, in job id order, and the metrics tally."""

    def __init__(self, report: Report, baseline: Baseline, max_problems: int, using: str) -> None:
        self.report = report
        self.baseline = baseline
        self.max_problems = max_problems
        self.using = using
        self.counted: Counter[tuple[str, str]] = Counter()
        self.legacy_ids: list[uuid.UUID] = []
        self.legacy_count = 0
        self.legacy_sum = 0
        self.maybe_deleted_users: dict[int, uuid.UUID] = {}

    def problem(self, message: str, job_id: uuid.UUID | None = None, **where: Any) -> None:
        self.report.record_problem_count += 1
        if len(self.report.record_problems) < self.max_problems:
            self.report.record_problems.append(Problem("record", message, job_id=job_id, **where))

    def run(self) -> None:
        from execution.models import Job

        entries = (
            AuditEntry.objects.using(self.using)
            .filter(job_id__isnull=False)
            .order_by("job_id", models.F("seq").asc(nulls_last=True), "id")
            .values_list(*_ENTRY_FIELDS)
            .iterator(chunk_size=CHUNK_SIZE)
        )
        jobs = (
            Job.objects.using(self.using)
            .order_by("id")
            .values_list(*_JOB_FIELDS)
            .iterator(chunk_size=CHUNK_SIZE)
        )
        groups = itertools.groupby(entries, key=lambda row: row[0])
        group = next(groups, None)
        job = next(jobs, None)
        while group is not None or job is not None:
            if group is None or (job is not None and job[0] < group[0]):
                assert job is not None
                self.check_job(job, [])
                job = next(jobs, None)
            elif job is None or group[0] < job[0]:
                self.check_gone(group[0], list(group[1]))
                group = next(groups, None)
            else:
                self.check_job(job, list(group[1]))
                job, group = next(jobs, None), next(groups, None)
        self.check_deleted_users()
        self.check_legacy()
        self.check_metrics()

    def tally(self, entries: list[Sequence[Any]]) -> None:
        for entry in entries:
            details = entry[10]
            outcome = details.get("metrics") if isinstance(details, dict) else None
            if outcome in ("success", "error"):
                self.counted[(entry[5], outcome)] += 1

    def check_gone(self, job_id: uuid.UUID, entries: list[Sequence[Any]]) -> None:
        self.tally(entries)
        removals = [e for e in entries if e[3] in JOB_REMOVED_EVENTS]
        if not removals:
            first = entries[0]
            self.problem(
                f"Job {job_id} is in the audit (entry id {first[2]}, {first[3]}) but not in the "
                "database, and no entry says it was pruned: deleted",
                job_id=job_id,
                seq=first[1],
                entry_id=first[2],
            )
        for entry in removals:
            details = entry[10]
            legacy = isinstance(details, dict) and details.get("legacy")
            if entry[3] == AuditEvent.JOB_PRUNED and legacy:
                self.add_legacy(job_id)

    def add_legacy(self, job_id: uuid.UUID) -> None:
        self.legacy_count += 1
        self.legacy_sum = sum_digest(self.legacy_sum, [job_id])
        if len(self.legacy_ids) < self.max_problems:
            self.legacy_ids.append(job_id)

    def check_job(self, job: Sequence[Any], entries: list[Sequence[Any]]) -> None:
        self.report.jobs += 1
        self.tally(entries)
        job_id, status, _, _, plugin_version, _, result, error = job
        submitted = [e for e in entries if e[3] == AuditEvent.JOB_SUBMITTED]
        if not submitted:
            self.add_legacy(job_id)
        elif len(submitted) > 1:
            self.problem(
                f"Job {job_id} has {len(submitted)} job.submitted entries: one was inserted",
                job_id=job_id,
                entry_id=submitted[1][2],
            )
        else:
            self.check_submitted(job, submitted[0], _slimmed_entry(entries))
        versions = [e[6] for e in entries if e[6]]
        if versions and versions[-1] != plugin_version:
            self.problem(
                f"Job {job_id} says plugin version {plugin_version!r}, its entries "
                f"{versions[-1]!r}: edited",
                job_id=job_id,
            )
        said = [(e, s) for e in entries if (s := status_after(e[3], e[10], e[9])) is not None]
        if not said:
            return
        last, last_status = said[-1]
        where = {"job_id": job_id, "seq": last[1], "entry_id": last[2]}
        if last_status != status:
            self.problem(
                f"Job {job_id} is {status}, but its last entry (id {last[2]}, {last[3]}) "
                f"says {last_status}: edited",
                **where,
            )
            return
        if status not in FINAL_STATUSES:
            return
        expected_result = "" if result is None else payload_sha256(result)
        if last[8] != expected_result:
            self.problem(
                f"Job {job_id}'s result is not the one its entry id {last[2]} recorded: edited",
                **where,
            )
        error_type = _error_type(error)
        if last[9] != error_type:
            self.problem(
                f"Job {job_id}'s error type is {error_type or 'none'!r}, its entry id "
                f"{last[2]} recorded {last[9] or 'none'!r}: edited",
                **where,
            )

    def check_submitted(
        self, job: Sequence[Any], entry: Sequence[Any], slimmed: Sequence[Any] | None = None
    ) -> None:
        job_id, _, requester, plugin_name, _, payload, _, _ = job
        where = {"job_id": job_id, "seq": entry[1], "entry_id": entry[2]}
        if entry[4] != requester:
            if requester is None and entry[4] is not None:
                self.maybe_deleted_users[entry[4]] = job_id  # fine if that user is gone
            else:
                self.problem(
                    f"Job {job_id} says it was requested by user id {requester}, but it was "
                    f"submitted by user id {entry[4]}: edited",
                    **where,
                )
        if entry[5] != plugin_name:
            self.problem(
                f"Job {job_id} says plugin {plugin_name!r}, but {entry[5]!r} was submitted: edited",
                **where,
            )
        if slimmed is not None:
            # Retention dropped the input: what remains must be what its entry recorded.
            if slimmed[7] != payload_sha256(payload):
                self.problem(
                    f"Job {job_id}'s input is not the one retention left (entry id "
                    f"{slimmed[2]}): edited",
                    job_id=job_id,
                    seq=slimmed[1],
                    entry_id=slimmed[2],
                )
        elif entry[7] != payload_sha256(payload):
            self.problem(f"Job {job_id}'s input is not the one that was submitted: edited", **where)

    def check_deleted_users(self) -> None:
        if not self.maybe_deleted_users:
            return
        users = get_user_model().objects.using(self.using)
        alive = users.filter(pk__in=list(self.maybe_deleted_users)).values_list("pk", flat=True)
        for user_id in alive:
            job_id = self.maybe_deleted_users[user_id]
            self.problem(
                f"Job {job_id} says nobody requested it, but user id {user_id} (who still "
                "exists) submitted it: edited",
                job_id=job_id,
            )

    def check_legacy(self) -> None:
        baseline = self.baseline
        observed = f"{self.legacy_sum:064x}"
        if self.legacy_count == baseline.legacy_count and observed == baseline.legacy_digest:
            return
        if baseline.legacy_count == 0:
            for job_id in self.legacy_ids:
                self.problem(f"Job {job_id} has no job.submitted entry: inserted", job_id=job_id)
            return
        self.problem(
            f"{self.legacy_count} jobs have no job.submitted entry, but the audit began with "
            f"{baseline.legacy_count} such jobs (or not those): jobs were inserted or deleted"
        )

    def check_metrics(self) -> None:
        from plugins.models import PluginMetrics

        expected: dict[str, dict[str, int]] = {}
        for name, counts in self.baseline.metrics.items():
            expected[name] = dict(counts)
        for (name, outcome), count in self.counted.items():
            expected.setdefault(name, {"success": 0, "error": 0})[outcome] += count
        stored = PluginMetrics.objects.using(self.using).values_list(
            "plugin_name", "success_count", "error_count"
        )
        seen = set()
        for name, success, error in stored:
            seen.add(name)
            want = expected.get(name, {"success": 0, "error": 0})
            for label, actual in (("success", success), ("error", error)):
                if actual != want[label]:
                    self.problem(
                        f"Plugin {name!r} has {label}_count {actual}, but the audit counts "
                        f"{want[label]}: edited"
                    )
        for name, want in expected.items():
            if name not in seen and (want["success"] or want["error"]):
                self.problem(f"Plugin {name!r}'s metrics row is missing: deleted")


def _slimmed_entry(entries: list[Sequence[Any]]) -> Sequence[Any] | None:
    """The last ``job.pruned`` entry of a job that retention kept (input and result dropped)."""
    kept = [
        e
        for e in entries
        if e[3] == AuditEvent.JOB_PRUNED and isinstance(e[10], dict) and e[10].get("kept")
    ]
    return kept[-1] if kept else None


def _error_type(error: Any) -> str:
    if isinstance(error, dict):
        inner = error.get("error")
        if isinstance(inner, dict) and inner.get("type") is not None:
            return str(inner["type"])
    return ""
