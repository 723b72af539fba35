"""Jobs and their state machine.

A Job records one governed execution. Its status moves only through the methods
below, each a conditional UPDATE (``WHERE status = <expected>``, and for a
running job ``AND lease_holder = <the claimant>``), so two workers can never
both run one job and a stale copy can never overwrite a newer state:

    PENDING -> RUNNING -> SUCCESS | FAILED
    PENDING -> FAILED              (the job can never start)
    PENDING | RUNNING -> CANCELLED (cancel; final)
    RUNNING -> PENDING             (another attempt, or handed back by a stopping worker)

A RUNNING job holds a *lease*: who runs it (host, pid and a token of this claim)
and until when (its start + its plugin's time limit + a grace). A lease that
expires is recovered by any web process or worker (execution/services/
lease_recovery.py): the job goes back to PENDING for another attempt when its
plugin allows retries, else it FAILS with WorkerLost.

A job run synchronously by the request that creates it starts life RUNNING
(``JobQuerySet.claimed_by_creator``): nobody else could see it while PENDING, so
the claim is the insert itself, and one statement less per request.

The claim, the load of a claimed job and the finishing update are plain SQL:
on the 2-core reference machine the ORM spent 0.3-0.7 ms compiling each of
them against ~0.03 ms for the statement itself, which capped the background
worker (bench/worker_throughput.py). Values go through each field's own
``get_db_prep_value``/``from_db_value``, so SQLite and PostgreSQL agree. The
rare transitions (cancel, requeue) use the ORM.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import IntegrityError, connections, models, transaction

from api.request_id import current_request_id
from execution import sql
from execution.artifacts.models import JobArtifact
from execution.audit.digest import payload_sha256
from execution.audit.events import AuditEvent
from execution.audit.models import AuditChain, AuditEntry
from execution.audit.recorder import AuditRecord, record_many
from execution.callbacks.due import callback_due
from execution.callbacks.models import CallbackAttempt, JobCallback
from execution.clock import database_now, from_db_datetime, greatest_sql, now_sql
from execution.policy.idempotency_models import IdempotencyKey
from execution.policy.models import PluginGrant, PolicyUsage
from execution.policy.throttle_models import ThrottleBucket
from execution.policy.token_models import ApiToken
from execution.task_engine.celery_tasks.models import CeleryTask
from execution.workers.models import WorkerHeartbeat
from plugins.runtime.provenance import RanCode

Method = TypeVar("Method", bound=Callable[..., Any])


def alters_data(method: Method) -> Method:
    """Marks a method that writes, as Django marks ``save``: templates never call it."""
    method.alters_data = True  # type: ignore[attr-defined]
    return method


def _sql(template: str) -> str:
    return template.format(table=Job._meta.db_table)


def _prep(field_name: str, value: Any, connection: Any) -> Any:
    """A value as the field would send it to this database (UUIDs, JSON)."""
    field = Job._meta.get_field(field_name)
    return field.get_db_prep_value(value, connection)  # type: ignore[union-attr]


class JobStatus(models.TextChoices):
    PENDING = "PENDING", "Pending"
    RUNNING = "RUNNING", "Running"
    SUCCESS = "SUCCESS", "Success"
    FAILED = "FAILED", "Failed"
    CANCELLED = "CANCELLED", "Cancelled"


ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset(
        {JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.PENDING}
    ),
    JobStatus.SUCCESS: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


class IllegalJobTransition(Exception):
    """A status change the state machine does not allow, or lost to a concurrent change."""


class AtConcurrencyCap(Exception):
    """Every slot of a capped plugin (``max_concurrency``) is held by a running job."""

    def __init__(self, plugin_name: str, max_concurrency: int) -> None:
        super().__init__(
            f"Plugin {plugin_name} runs at most {max_concurrency} at once, "
            "and that many are running"
        )
        self.plugin_name = plugin_name
        self.max_concurrency = max_concurrency


class DatabaseNow(models.Func):
    """The database's time in the ORM (see execution/clock.py)."""

    output_field = models.DateTimeField()

    def as_sql(self, compiler: Any, connection: Any, *args: Any, **extra: Any) -> Any:
        return now_sql(connection), []


class JobQuerySet(models.QuerySet["Job"]):
    def claimed_by_creator(self, *, lease_holder: str, lease_s: float, **fields: Any) -> Job:
        """A new job already claimed by its creator (RUNNING, started now, leased for ``lease_s``).

        Not saved yet: its creator inserts it (:meth:`Job.insert`) when it starts running it.
        """
        now = database_now()
        job = Job(
            **fields,
            status=JobStatus.RUNNING,
            created_at=now,
            started_at=now,
            lease_holder=lease_holder,
            lease_expires_at=now + timedelta(seconds=lease_s),
        )
        job.run_started = time.monotonic()
        job.may_have_callback = False  # callbacks are for submitted jobs (POST /v1/jobs)
        return job

    def load_pending(self, job_id: uuid.UUID | str) -> Job | None:
        """The PENDING job ``job_id`` with what claiming and running it needs; else None.

        The other fields of the returned job load lazily on first access. Whether it
        has a completion callback comes along (the same statement), so that a job
        without one ends with no look for it.
        """
        try:
            pk = uuid.UUID(str(job_id))
        except ValueError:
            return None
        connection = connections[self.db]
        row = sql.fetch_one(
            connection,
            _sql(
                "SELECT plugin_name, input_payload, attempt, max_attempts, requested_version, "
                "plugin_version, plugin_fingerprint, requested_by_id, "
                f"EXISTS (SELECT 1 FROM {JobCallback._meta.db_table} c "
                "WHERE c.job_id = {table}.id) "
                "FROM {table} WHERE id = %s AND status = %s"
            ),
            [_prep("id", pk, connection), JobStatus.PENDING],
        )
        if row is None:
            return None
        payload_field: Any = Job._meta.get_field("input_payload")
        loaded = {
            "id": pk,
            "plugin_name": row[0],
            "input_payload": payload_field.from_db_value(row[1], None, connection),
            "attempt": row[2],
            "max_attempts": row[3],
            "requested_version": row[4],
            "plugin_version": row[5],
            "plugin_fingerprint": row[6],
            "requested_by_id": row[7],
            "status": JobStatus.PENDING,
            "lease_holder": "",
        }
        # from_db wants the values in field order; the fields left out stay deferred.
        names = [f.attname for f in Job._meta.concrete_fields if f.attname in loaded]
        job = Job.from_db(self.db, names, [loaded[name] for name in names])
        job.may_have_callback = bool(row[8])
        return job

    def expired_leases(self) -> JobQuerySet:
        """RUNNING jobs whose holder should have finished by now (or that never had a lease).

        "Now" is the database's clock, whichever process asks.
        """
        return self.filter(status=JobStatus.RUNNING).filter(
            models.Q(lease_expires_at__lt=DatabaseNow()) | models.Q(lease_expires_at__isnull=True)
        )

    def queued_before(self, moment: datetime) -> JobQuerySet:
        """PENDING jobs submitted before ``moment`` and given a task: those whose task may be lost.

        The task engine tells which of them it will never run
        (``TaskEngine.with_lost_tasks``).
        """
        return self.filter(status=JobStatus.PENDING, task_id__isnull=False, created_at__lt=moment)


class Job(models.Model):
    """One execution of one plugin, with its input, outcome, timings and attempts."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    plugin_name = models.CharField(max_length=200)
    plugin_version = models.CharField(
        max_length=100,
        blank=True,
        default="",
        help_text="The version that ran (reported by the plugin's process), else the one "
        "registered when the job was submitted.",
    )
    plugin_fingerprint = models.CharField(
        max_length=200,
        blank=True,
        default="",
        help_text="The code that ran: its distribution and version, or a hash of its module.",
    )
    requested_version = models.CharField(
        max_length=100,
        blank=True,
        default="",
        help_text="The version the client asked for; another installed version fails the job.",
    )
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.PENDING)
    input_payload = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(
        null=True, blank=True, help_text="The error envelope, traceback (_internal) included."
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
    )
    rerun_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="reruns",
        help_text="The job this one repeats (a re-run from the admin).",
    )
    created_at = models.DateTimeField(default=database_now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    elapsed_ms = models.FloatField(null=True, blank=True)

    attempt = models.PositiveIntegerField(default=1, help_text="The current (or last) attempt.")
    max_attempts = models.PositiveIntegerField(
        default=1, help_text="Attempts allowed when the worker running the job is lost."
    )
    attempts = models.JSONField(
        default=list,
        blank=True,
        help_text="Earlier attempts that ended without ending the job, with their errors.",
    )
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="When a job waiting for another attempt may start."
    )
    lease_holder = models.CharField(
        max_length=255, blank=True, default="", help_text="host:pid:claim of who runs the job."
    )
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    task_id = models.UUIDField(
        null=True,
        blank=True,
        help_text="The background task meant to run it (django-tasks' result id).",
    )
    queue_rank = models.FloatField(
        default=0.0,
        db_default=0.0,  # a job inserted by code that predates the fair queue (a rolling deploy)
        help_text="Its place in the fair queue: PENDING jobs start in (rank, created_at) order "
        "(execution/policy/scheduling.py).",
    )
    # Logs that name the job (issue 18): the request that submitted it, and what its
    # plugin printed, for staff.
    request_id = models.CharField(
        max_length=64,
        blank=True,
        default=current_request_id,
        editable=False,
        help_text="The X-Request-ID of the request that submitted it (empty from a shell).",
    )
    plugin_output = models.TextField(
        blank=True,
        default="",
        editable=False,
        help_text="What the plugin wrote to stdout and stderr, last execution, bounded by "
        "PLUGIN_OUTPUT_MAX_BYTES. For staff only.",
    )
    # What the plugin last reported of its run (plugins/progress.py, issue 20), written
    # throttled by execution/services/job_progress.py.
    progress = models.JSONField(
        null=True,
        blank=True,
        editable=False,
        help_text="The plugin's last progress report of this attempt: done, total, message.",
    )
    progress_updated_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When that report was written."
    )
    concurrency_slot = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Which of its plugin's max_concurrency slots it holds while RUNNING.",
    )

    objects = JobQuerySet.as_manager()

    # When this process claimed the job, on its monotonic clock (not a field).
    run_started: float | None = None
    # The artifacts the run in this process recorded, so its answer needs no query.
    recorded_artifacts: list[JobArtifact] | None = None
    # A synchronous run's place in its user's cap (execution/policy), until its outcome.
    sync_slot: Any = None
    # False when the job is known to have no completion callback: its end skips the check.
    may_have_callback: bool = True

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["-created_at"], name="job_created_idx"),
            models.Index(fields=["status", "-created_at"], name="job_status_created_idx"),
            models.Index(fields=["plugin_name", "-created_at"], name="job_plugin_created_idx"),
            models.Index(fields=["requested_by", "-created_at"], name="job_owner_created_idx"),
            models.Index(fields=["status", "lease_expires_at"], name="job_lease_idx"),
            # A worker's heartbeat names the job of each task it takes and ends: by key,
            # not a scan of every job (execution/workers/heartbeat.py).
            models.Index(fields=["task_id"], name="job_task_idx"),
            # A user's jobs PENDING or RUNNING: what the active-jobs quota counts.
            models.Index(
                fields=["requested_by"],
                condition=models.Q(status__in=[JobStatus.PENDING, JobStatus.RUNNING]),
                name="job_owner_active_idx",
            ),
            # The fair queue's order, and each requester's last place in it (at submit).
            models.Index(
                fields=["queue_rank", "created_at"],
                name="job_fair_queue_idx",
                condition=models.Q(status=JobStatus.PENDING),
            ),
            models.Index(
                fields=["requested_by", "queue_rank"],
                name="job_requester_rank_idx",
                condition=models.Q(status=JobStatus.PENDING),
            ),
        ]
        constraints = [
            # A capped plugin's running jobs each hold another slot: the database, not a
            # check-then-claim, keeps the fleet within max_concurrency.
            models.UniqueConstraint(
                fields=["plugin_name", "concurrency_slot"],
                condition=models.Q(status=JobStatus.RUNNING, concurrency_slot__isnull=False),
                name="job_one_run_per_slot",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.short_id} {self.plugin_name} {self.status}"

    @property
    def short_id(self) -> str:
        return self.id.hex[:8]

    @property
    def error_type(self) -> str | None:
        kind = (self.error or {}).get("error", {}).get("type")
        return str(kind) if kind is not None else None

    @property
    def public_error(self) -> dict[str, Any] | None:
        """The part of the stored envelope a client may see (no traceback)."""
        return (self.error or {}).get("error")

    # State machine --------------------------------------------------------------

    @alters_data
    def claim(
        self,
        *,
        lease_holder: str,
        lease_s: float,
        task_id: uuid.UUID | str | None = None,
        max_concurrency: int | None = None,
    ) -> bool:
        """PENDING -> RUNNING, leased for ``lease_s``. False, and nothing runs, if not claimable.

        Times come from the database's clock: the start (never before the job was
        created), the lease's end, and whether a job waiting for its next attempt
        may start (``next_attempt_at``). ``max_concurrency``: the plugin's cap; the
        job takes a free slot with its claim, or raises AtConcurrencyCap and stays
        PENDING.
        """
        if self.status != JobStatus.PENDING:
            return False
        if max_concurrency is None:
            row = self._claim_row(lease_holder, lease_s, task_id, slot=None)
        else:
            row = self._in_free_slot(
                max_concurrency, lambda slot: self._claim_row(lease_holder, lease_s, task_id, slot)
            )
        if row is None:
            self.refresh_from_db(fields=["status", "started_at", "lease_holder"])
            return False
        self.run_started = time.monotonic()
        self.status, self.next_attempt_at = JobStatus.RUNNING, None
        self.started_at, self.lease_expires_at = from_db_datetime(row[0]), from_db_datetime(row[1])
        self.lease_holder = lease_holder
        self.task_id = uuid.UUID(str(task_id)) if task_id is not None else None
        return True

    @alters_data
    def renew_lease(self, lease_s: float) -> bool:
        """Make this claim's lease end ``lease_s`` from now; False if the job is no longer ours.

        For work done after the plugin returned (storing its artifacts), which its
        first lease did not count. One conditional UPDATE, on the database's clock.
        """
        connection = connections[Job.objects.db]
        row = sql.fetch_one(
            connection,
            _sql(
                f"UPDATE {{table}} SET lease_expires_at = {now_sql(connection, plus_param=True)} "
                "WHERE id = %s AND status = %s AND lease_holder = %s RETURNING lease_expires_at"
            ),
            [
                float(lease_s),
                _prep("id", self.pk, connection),
                JobStatus.RUNNING,
                self.lease_holder,
            ],
        )
        if row is None:
            return False
        self.lease_expires_at = from_db_datetime(row[0])
        return True

    def _claim_row(
        self, lease_holder: str, lease_s: float, task_id: uuid.UUID | str | None, slot: int | None
    ) -> Any:
        connection = connections[Job.objects.db]
        now = now_sql(connection)
        with transaction.atomic(using=Job.objects.db, savepoint=False):
            row = sql.fetch_one(
                connection,
                _sql(
                    f"UPDATE {{table}} SET status = %s, "
                    f"started_at = {greatest_sql(connection, 'created_at', now)}, "
                    "lease_holder = %s, "
                    f"lease_expires_at = {now_sql(connection, plus_param=True)}, "
                    "task_id = %s, next_attempt_at = NULL, concurrency_slot = %s "
                    "WHERE id = %s AND status = %s "
                    f"AND (next_attempt_at IS NULL OR next_attempt_at <= {now}) "
                    "RETURNING started_at, lease_expires_at"
                ),
                [
                    JobStatus.RUNNING,
                    lease_holder,
                    float(lease_s),
                    _prep("task_id", task_id, connection),
                    slot,
                    _prep("id", self.pk, connection),
                    JobStatus.PENDING,
                ],
            )
            if row is not None:
                self._audit(AuditEvent.JOB_STARTED)
        if row is not None:
            self.concurrency_slot = slot
        return row

    def _in_free_slot(self, max_concurrency: int, start: Callable[[int], Any]) -> Any:
        """``start(slot)`` in a slot of this plugin no running job holds; else AtConcurrencyCap.

        Two processes that pick the same slot at once both write it; the unique
        constraint lets one of them through and the other looks again.
        """
        for _ in range(max_concurrency + 1):
            taken = set(
                Job.objects.filter(
                    plugin_name=self.plugin_name,
                    status=JobStatus.RUNNING,
                    concurrency_slot__isnull=False,
                ).values_list("concurrency_slot", flat=True)
            )
            free = next((slot for slot in range(max_concurrency) if slot not in taken), None)
            if free is None:
                break
            try:
                # A savepoint: a lost race leaves the caller's transaction usable.
                with transaction.atomic(using=Job.objects.db):
                    return start(free)
            except IntegrityError:
                continue
        raise AtConcurrencyCap(self.plugin_name, max_concurrency)

    @alters_data
    def mark_succeeded(
        self,
        result: dict[str, Any],
        *,
        ran: RanCode | None = None,
        elapsed_ms: float | None = None,
        counted: str = "",
    ) -> None:
        """RUNNING -> SUCCESS with the plugin's result, and what code produced it.

        ``counted``: ``"success"`` or ``"error"`` when the same transaction counts
        the execution in its plugin's metrics (the audit trail says so).
        """
        self._finish(
            JobStatus.SUCCESS,
            result=result,
            error=None,
            ran=ran,
            elapsed_ms=elapsed_ms,
            event=AuditEvent.JOB_FINISHED,
            counted=counted,
        )

    @alters_data
    def mark_failed(
        self,
        error: dict[str, Any],
        *,
        ran: RanCode | None = None,
        elapsed_ms: float | None = None,
        counted: str = "",
    ) -> None:
        """RUNNING -> FAILED, or PENDING -> FAILED when the job can never start."""
        self._finish(
            JobStatus.FAILED,
            result=None,
            error=error,
            ran=ran,
            elapsed_ms=elapsed_ms,
            event=AuditEvent.JOB_FINISHED,
            counted=counted,
        )

    @alters_data
    def mark_lost(self, error: dict[str, Any]) -> None:
        """RUNNING -> FAILED (WorkerLost): its lease ran out and it has no attempt left."""
        self._finish(
            JobStatus.FAILED,
            result=None,
            error=error,
            ran=None,
            elapsed_ms=None,
            event=AuditEvent.JOB_RECOVERED,
            counted="",
        )

    @alters_data
    def record_submission(self) -> None:
        """Put the new job on the audit trail: who asked for which plugin, on what input."""
        self._audit(
            AuditEvent.JOB_SUBMITTED,
            actor=self.requested_by,
            input_sha256=payload_sha256(self.input_payload),
        )

    @alters_data
    def record_stopped_run(self, counted: str, *, run: str) -> None:
        """A run that someone else's change (a cancel, a recovery) stopped counted in its
        plugin's metrics: the audit says so. ``run``: the lease holder that ran it."""
        if counted:
            self._audit(
                AuditEvent.JOB_FINISHED,
                error_type=self.error_type or "",
                details={"status": self.status, "metrics": counted, "run": run},
            )

    def _audit(self, event: str, **fields: Any) -> None:
        record_many([self._audit_record(event, **fields)])

    def _audit_record(self, event: str, **fields: Any) -> AuditRecord:
        return AuditRecord(
            event,
            job_id=self.pk,
            plugin_name=self.plugin_name,
            plugin_version=self.plugin_version,
            plugin_fingerprint=self.plugin_fingerprint,
            **fields,
        )

    def elapsed_so_far_ms(self) -> float | None:
        """How long the run claimed by this process has taken, on its monotonic clock."""
        if self.run_started is None:
            return None
        return round((time.monotonic() - self.run_started) * 1000.0, 3)

    @contextmanager
    def unchanged_unless_committed(self) -> Iterator[None]:
        """Undo this instance's changes of state if the block raises (its transaction rolled back).

        The state-machine methods update the instance right after their UPDATE;
        when the commit that follows fails, the row is unchanged and so must the
        instance be, or a retry would start from a state the row never had.
        """
        saved = {name: self.__dict__[name] for name in _STATE_FIELDS if name in self.__dict__}
        try:
            yield
        except BaseException:
            self.__dict__.update(saved)
            raise

    @alters_data
    def cancel(self, error: dict[str, Any], *, actor: Any = None) -> None:
        """PENDING | RUNNING -> CANCELLED, with ``error`` saying who cancelled it.

        Whoever runs a cancelled job notices it (it watches the row) and stops
        the plugin. Raises IllegalJobTransition when the job is already final.
        """
        for _ in range(3):  # a job can move from PENDING to RUNNING under our feet
            self._check(JobStatus.CANCELLED)
            finished_at = self._not_before_start(database_now())
            elapsed_ms = self._elapsed_ms(finished_at)
            with transaction.atomic(using=Job.objects.db, savepoint=False):
                updated = Job.objects.filter(pk=self.pk, status=self.status).update(
                    status=JobStatus.CANCELLED,
                    error=error,
                    result=None,
                    finished_at=finished_at,
                    elapsed_ms=elapsed_ms,
                )
                if updated:
                    self._audit(AuditEvent.JOB_CANCELLED, actor=actor, error_type="Cancelled")
                    callback_due(self)  # in this transaction: a rollback queues nothing
            if updated:
                self.status, self.error, self.result = JobStatus.CANCELLED, error, None
                self.finished_at, self.elapsed_ms = finished_at, elapsed_ms
                return
            self.refresh_from_db()
        raise IllegalJobTransition(f"Job {self.pk} kept changing; it was not cancelled")

    @alters_data
    def requeue(
        self,
        error: dict[str, Any],
        *,
        next_attempt_at: datetime,
        retry: bool,
        task_id: uuid.UUID | str,
        counted: str = "",
    ) -> None:
        """RUNNING -> PENDING, for ``task_id`` to run: the attempt ended without ending the job.

        ``retry``: the attempt failed (its worker was lost) and the next one
        counts as another attempt; otherwise the job was handed back unfinished
        and its attempt starts over. ``error`` is kept in the job's history.
        ``counted``: as for :meth:`mark_succeeded`.
        """
        self._check(JobStatus.PENDING)
        history = [
            *self.attempts,
            {
                "attempt": self.attempt,
                "lease_holder": self.lease_holder,
                "started_at": self.started_at.isoformat() if self.started_at else None,
                "ended_at": database_now().isoformat(),
                "plugin_version": self.plugin_version,
                "plugin_fingerprint": self.plugin_fingerprint,
                "error": error.get("error"),
            },
        ]
        attempt = self.attempt + 1 if retry else self.attempt
        updated = Job.objects.filter(
            pk=self.pk, status=JobStatus.RUNNING, lease_holder=self.lease_holder
        ).update(
            status=JobStatus.PENDING,
            attempt=attempt,
            attempts=history,
            next_attempt_at=next_attempt_at,
            started_at=None,
            lease_holder="",
            lease_expires_at=None,
            task_id=task_id,
            progress=None,  # the next attempt reports its own
            progress_updated_at=None,
        )
        if not updated:
            raise IllegalJobTransition(f"Job {self.pk} is no longer held by {self.lease_holder}")
        self._audit(
            AuditEvent.JOB_RETRIED,
            error_type=str(error.get("error", {}).get("type", "")),
            details={
                "attempt": attempt,
                "retry": retry,
                **({"metrics": counted, "run": self.lease_holder} if counted else {}),
            },
        )
        self.status, self.attempt, self.attempts = JobStatus.PENDING, attempt, history
        self.next_attempt_at, self.started_at = next_attempt_at, None
        self.lease_holder, self.lease_expires_at = "", None
        self.task_id = uuid.UUID(str(task_id))
        self.progress, self.progress_updated_at = None, None

    @alters_data
    def replace_lost_task(self, task_id: uuid.UUID | str) -> bool:
        """A PENDING job whose task was lost gets ``task_id`` instead; False if it moved on."""
        updated = Job.objects.filter(pk=self.pk, status=JobStatus.PENDING, task_id=self.task_id)
        if not updated.update(task_id=task_id):
            return False
        self._audit(AuditEvent.JOB_RECOVERED, details={"status": JobStatus.PENDING})
        self.task_id = uuid.UUID(str(task_id))
        return True

    @alters_data
    def insert(self, *, max_concurrency: int | None = None) -> None:
        """Record a job made by :meth:`JobQuerySet.claimed_by_creator`, submitted and started.

        ``max_concurrency``: its plugin's cap; the job takes a free slot as it is
        recorded, or raises AtConcurrencyCap and nothing is recorded.
        """
        if max_concurrency is None:
            self._insert_row(slot=None)
        else:
            self._in_free_slot(max_concurrency, lambda slot: self._insert_row(slot=slot))

    def _insert_row(self, *, slot: int | None) -> None:
        self.concurrency_slot = slot
        started, expires = self.started_at, self.lease_expires_at
        if slot is not None and started is not None and expires is not None:
            # It starts now that the slot is its own, after the run that held it ended:
            # a capped plugin's runs follow one another in the record as they ran.
            now = database_now()
            self.started_at, self.lease_expires_at = now, expires + (now - started)
        with transaction.atomic(using=Job.objects.db, savepoint=False):
            self.save(force_insert=True, using=Job.objects.db)
            record_many(
                [
                    self._audit_record(
                        AuditEvent.JOB_SUBMITTED,
                        actor=self.requested_by,
                        input_sha256=payload_sha256(self.input_payload),
                    ),
                    self._audit_record(AuditEvent.JOB_STARTED),
                ]
            )

    @alters_data
    def discard(self) -> bool:
        """Remove a job whose input its plugin refused: it never was a run.

        Only the claimant of a RUNNING job may do it; False (and the job stays)
        if it changed meanwhile, e.g. was cancelled.
        """
        with transaction.atomic(using=Job.objects.db, savepoint=False):
            deleted, _ = Job.objects.filter(
                pk=self.pk, status=JobStatus.RUNNING, lease_holder=self.lease_holder
            ).delete()
            if deleted:
                self._audit(
                    AuditEvent.REQUEST_REFUSED,
                    actor=self.requested_by,
                    error_type="ValidationError",
                    details={"reason": "the plugin refused its input"},
                )
        return bool(deleted)

    @alters_data
    def _finish(
        self,
        target: str,
        *,
        result: Any,
        error: Any,
        ran: RanCode | None,
        elapsed_ms: float | None,
        event: str,
        counted: str,
    ) -> None:
        expected = self.status
        self._check(target)
        if elapsed_ms is None:
            elapsed_ms = self.elapsed_so_far_ms()
        if elapsed_ms is None and self.started_at is not None:  # claimed by another process
            elapsed_ms = self._elapsed_ms(self._not_before_start(database_now()))
        version, fingerprint = (
            (ran.version, ran.fingerprint)
            if ran
            else (self.plugin_version, self.plugin_fingerprint)
        )
        connection = connections[Job.objects.db]
        now = now_sql(connection)
        finished_at = greatest_sql(connection, f"COALESCE(started_at, {now})", now)
        with transaction.atomic(using=Job.objects.db, savepoint=False):
            row = sql.fetch_one(
                connection,
                _sql(
                    "UPDATE {table} SET status = %s, result = %s, error = %s, "
                    f"finished_at = {finished_at}, "
                    "elapsed_ms = %s, plugin_version = %s, plugin_fingerprint = %s "
                    "WHERE id = %s AND status = %s AND lease_holder = %s "
                    "RETURNING finished_at"
                ),
                [
                    target,
                    _prep("result", result, connection),
                    _prep("error", error, connection),
                    elapsed_ms,
                    version,
                    fingerprint,
                    _prep("id", self.pk, connection),
                    expected,
                    self.lease_holder,
                ],
            )
            if row is not None:
                # "run": which claim counted it, so a retry can tell its own commit.
                counts = {"metrics": counted, "run": self.lease_holder} if counted else {}
                details = {"status": target, **counts}
                record_many(
                    [
                        AuditRecord(
                            event,
                            job_id=self.pk,
                            plugin_name=self.plugin_name,
                            plugin_version=version,
                            plugin_fingerprint=fingerprint,
                            result_sha256=payload_sha256(result) if result is not None else "",
                            error_type=str((error or {}).get("error", {}).get("type", "")),
                            details=details,
                        )
                    ]
                )
                callback_due(self)  # in this transaction: a rollback queues nothing
        if row is None:
            current = Job.objects.filter(pk=self.pk).values_list("status", flat=True).first()
            raise IllegalJobTransition(
                f"Job {self.pk} is {current}, not {expected} under this lease: "
                "it changed concurrently"
            )
        self.status, self.result, self.error = target, result, error
        self.finished_at, self.elapsed_ms = from_db_datetime(row[0]), elapsed_ms
        self.plugin_version, self.plugin_fingerprint = version, fingerprint

    def _not_before_start(self, moment: datetime) -> datetime:
        return max(moment, self.started_at) if self.started_at is not None else moment

    def _elapsed_ms(self, finished_at: datetime) -> float | None:
        if self.started_at is None:
            return None
        return round((finished_at - self.started_at).total_seconds() * 1000.0, 3)

    def _check(self, target: str) -> None:
        if target not in ALLOWED_TRANSITIONS[self.status]:
            raise IllegalJobTransition(f"Job {self.pk}: {self.status} -> {target} is not allowed")


# What the state-machine methods change on the instance (see unchanged_unless_committed).
_STATE_FIELDS = (
    "status",
    "result",
    "error",
    "started_at",
    "finished_at",
    "elapsed_ms",
    "attempt",
    "attempts",
    "next_attempt_at",
    "lease_holder",
    "lease_expires_at",
    "task_id",
    "plugin_version",
    "plugin_fingerprint",
)


class ProcessHeartbeat(models.Model):
    """A process of the service (web or worker) and when it last showed it was alive.

    A web process writes its row on each health check: proof that the database
    takes writes, not only reads (a full disk, a read-only replica).
    """

    name = models.CharField(max_length=255, unique=True, help_text="host:pid")
    role = models.CharField(max_length=20)
    started_at = models.DateTimeField(default=database_now)
    seen_at = models.DateTimeField(default=database_now)

    class Meta:
        ordering = ["-seen_at"]

    def __str__(self) -> str:
        return f"{self.role} {self.name}"


__all__ = [
    "ApiToken",
    "AtConcurrencyCap",
    "AuditChain",
    "AuditEntry",
    "CallbackAttempt",
    "CeleryTask",
    "IdempotencyKey",
    "Job",
    "JobArtifact",
    "JobCallback",
    "JobStatus",
    "PluginGrant",
    "PolicyUsage",
    "ProcessHeartbeat",
    "ThrottleBucket",
    "WorkerHeartbeat",
]
