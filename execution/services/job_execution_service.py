"""JobExecutionService: creates jobs and drives them through the state machine."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import (
    DatabaseError,
    InterfaceError,
    InternalError,
    OperationalError,
    connections,
    transaction,
)

from execution import job_logs
from execution.artifacts import services as artifact_services
from execution.artifacts.services import StoredArtifact
from execution.audit.models import AuditEntry
from execution.callbacks.services import register_callback
from execution.clock import database_now
from execution.metrics import JOB_CANCELLATIONS
from execution.models import AtConcurrencyCap, IllegalJobTransition, Job, JobStatus, alters_data
from execution.policy import scheduling
from execution.policy.enforcement import SyncSlot, record_usage
from execution.policy.input_size import check_input_size
from execution.selectors import JobNotFound, get_job
from execution.services.job_progress import ProgressThrottle, progress_fields, write_progress
from execution.services.plugin_execution_service import PluginExecutionService
from execution.task_engine import get_task_engine
from execution.task_engine.base import TaskEngine
from plugins.errors.error_envelope import ErrorEnvelope, ErrorType, build_error_envelope
from plugins.errors.exceptions import InputValidationError
from plugins.metrics.recorder import DeferredRecorder
from plugins.progress import ProgressReport
from plugins.runtime.control import ControlFailed, StopReason
from plugins.runtime.isolation.artifacts import close_all
from plugins.runtime.isolation.output import captured_plugin_output
from plugins.runtime.tool_runner import ExecutionResult

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

# What a refused commit raises, and is worth trying again: a lost connection, a lock
# or a full disk (OperationalError), a read-only replica or an aborted transaction
# after a failover (InternalError, on PostgreSQL).
TRANSIENT_DATABASE_ERRORS = (OperationalError, InterfaceError, InternalError)

# Between tries to record an outcome: doubling from the first, at most the last.
OUTCOME_RETRY_FIRST_PAUSE_S = 0.5
OUTCOME_RETRY_MAX_PAUSE_S = 5.0

_release_requested = threading.Event()


def release_running_jobs() -> None:
    """Ask every job running in this process to stop now and go back to the queue.

    For a worker that must stop at once (a second Ctrl-C or SIGTERM): its job is
    handed back, not orphaned.
    """
    _release_requested.set()


def new_lease_holder() -> str:
    """Who holds a lease: this host and process, and a token unique to this claim."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class OutcomeNotRecorded(Exception):
    """A synchronous job ran, but the database took no write of its outcome in time.

    The outcome is still held and written by this process as soon as the
    database takes writes again, for as long as the job's lease lasts; after
    that, lease recovery ends the job. Clients read the job to learn which.
    """

    def __init__(self, job: Job) -> None:
        super().__init__(f"The outcome of job {job.pk} could not be recorded yet")
        self.job = job


class JobAlreadyEnded(Exception):
    """The job is SUCCESS, FAILED or CANCELLED already: it cannot be cancelled."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"Job {job.pk} is already {job.status}.")
        self.job = job


class JobWatch:
    """Tells ToolRunner to stop a running job that was cancelled, taken over or handed back.

    The row is the only channel: a cancel on one machine reaches the executor on
    another through the database, read at most every ``JOB_CANCEL_POLL_S``.
    ``on_started`` runs once the plugin was handed its work: the synchronous path
    inserts its job then, while the plugin's process is already busy.
    """

    def __init__(self, job: Job, on_started: Callable[[], object] | None = None) -> None:
        self._job = job
        self._on_started = on_started
        self._poll_s = settings.JOB_CANCEL_POLL_S
        self._next_check = time.monotonic() + self._poll_s
        self._warned = False
        self.reason: StopReason | None = None
        self.has_started = False
        self._progress = ProgressThrottle(lambda report: write_progress(job=job, report=report))

    def started(self) -> None:
        if self._on_started is not None:
            self._on_started()
        self.has_started = True

    def progress(self, report: ProgressReport) -> None:
        self._progress.offer(report)

    def unwritten_progress(self) -> ProgressReport | None:
        """Once the execution ended: its last report if not written yet (the outcome writes it)."""
        return self._progress.close()

    def stop_reason(self) -> StopReason | None:
        self._progress.write_due()  # asked periodically, in the thread that may write
        if self.reason is None:
            self.reason = self._check()
        return self.reason

    def _check(self) -> StopReason | None:
        if _release_requested.is_set():
            return StopReason.RELEASED
        if time.monotonic() < self._next_check:
            return None
        self._next_check = time.monotonic() + self._poll_s
        try:
            row = Job.objects.filter(pk=self._job.pk).values_list("status", "lease_holder").first()
        except DatabaseError:
            if not self._warned:
                logger.warning("Could not check job %s for a cancel; it goes on", self._job.pk)
                self._warned = True
            return None
        if row is None or row[0] == JobStatus.CANCELLED:
            return StopReason.CANCELLED
        if row != (JobStatus.RUNNING, self._job.lease_holder):
            return StopReason.RELEASED  # the lease was recovered by someone else
        return None


class JobExecutionService:
    def __init__(
        self, plugins: PluginExecutionService | None = None, engine: TaskEngine | None = None
    ) -> None:
        self._plugins = plugins if plugins is not None else PluginExecutionService()
        self._engine = engine if engine is not None else get_task_engine()

    @alters_data
    def create_job(
        self,
        *,
        plugin_name: str,
        payload: dict[str, Any],
        requested_by: User | None = None,
        requested_version: str = "",
        job_id: uuid.UUID | None = None,
        admit: Callable[[], object] | None = None,
        callback_url: str = "",
    ) -> Job:
        """Check the request, then record a PENDING job and the task that will run it.

        ``admit`` (policy's quotas) runs first in the transaction that records the
        job, so that what it checks cannot change before the job is recorded; what
        it raises records nothing.

        Bad input records nothing. The job and its task are committed together,
        so a job is never without a task (a failure to queue records no job). If
        the plugin's own code failed while checking the input (its validator timed
        out or crashed), the job is recorded FAILED with that error, and no task.
        ``job_id``: the new job's id, when the caller chose it (an idempotency key's
        claim names its job before the job exists). ``callback_url``: a checked URL the
        job is POSTed to once final (execution/callbacks/), registered with the job.
        """
        facts = self._plugins.describe(plugin_name=plugin_name, version=requested_version)
        check_input_size(
            plugin_name=plugin_name, payload=payload, max_input_bytes=facts.max_input_bytes
        )
        failure = self._plugins.check_input(
            plugin_name=plugin_name, payload=payload, version=requested_version
        )
        job_id = job_id or uuid.uuid4()
        with transaction.atomic():
            if admit is not None:
                admit()
            task_id = None if failure else self._engine.enqueue(job_id)
            job = Job.objects.create(
                id=job_id,
                plugin_name=plugin_name,
                plugin_version=facts.version,
                plugin_fingerprint=facts.fingerprint,
                requested_version=requested_version,
                input_payload=payload,
                requested_by=requested_by,
                max_attempts=facts.max_attempts,
                task_id=task_id,
                queue_rank=scheduling.queue_rank(requester=requested_by, plugin_name=plugin_name),
            )
            job.record_submission()
            if callback_url:
                register_callback(job=job, url=callback_url)
            if failure is not None:
                job.mark_failed(dict(failure))
        if failure is not None:
            with job_logs.job_log_context(job):
                job_logs.log_execution_outcome(job)
        return job

    @alters_data
    def execute_now(
        self,
        *,
        plugin_name: str,
        payload: dict[str, Any],
        requested_by: User | None = None,
        requested_version: str = "",
        job_id: uuid.UUID | None = None,
        admit: Callable[[float], SyncSlot | None] | None = None,
    ) -> Job:
        """Create a job claimed by this thread and run it here (the synchronous API).

        ``admit`` (policy's quotas) is given the run's lease and counts the run in,
        before anything runs; the slot it returns is released by the outcome's
        transaction.

        One round trip to the plugin's process: the input is validated there and
        exactly what was validated runs. Input the plugin refuses was never a
        run: its provisional job is removed and InputValidationError raised, so
        bad input records nothing. Two commits per execution: the RUNNING job,
        then its outcome together with the plugin's metrics. Raises
        OutcomeNotRecorded when the database takes no write of the outcome
        within ``JOB_OUTCOME_SYNC_WAIT_S``. ``job_id``: as for :meth:`create_job`. A
        plugin with a ``max_concurrency`` is recorded RUNNING, in a free slot, before it
        is handed its work; with every slot busy nothing runs or is recorded, and
        PluginAtCapacity is raised.
        """
        facts = self._plugins.describe(plugin_name=plugin_name, version=requested_version)
        check_input_size(
            plugin_name=plugin_name, payload=payload, max_input_bytes=facts.max_input_bytes
        )
        sync_slot = admit(_lease_s(facts.time_limit_s)) if admit is not None else None
        job = Job.objects.claimed_by_creator(
            id=job_id or uuid.uuid4(),
            plugin_name=plugin_name,
            plugin_version=facts.version,
            plugin_fingerprint=facts.fingerprint,
            requested_version=requested_version,
            input_payload=payload,
            requested_by=requested_by,
            lease_holder=new_lease_holder(),
            lease_s=_lease_s(facts.time_limit_s),
        )
        job.sync_slot = sync_slot
        with job_logs.job_log_context(job):
            if facts.max_concurrency is None:
                return self._execute_claimed(job, payload, sync=True)
            try:
                job.insert(max_concurrency=facts.max_concurrency)
            except AtConcurrencyCap as exc:
                raise scheduling.PluginAtCapacity(plugin_name, exc.max_concurrency) from exc
            return self._execute_claimed(job, payload, sync=True, inserted=True)

    @alters_data
    def run_job(self, *, job_id: uuid.UUID | str, task_id: uuid.UUID | str | None = None) -> Job:
        """Claim a PENDING job and run it. A job someone else claimed is returned untouched.

        A job of a capped plugin whose every slot is busy stays PENDING, with a
        new task that tries again shortly.
        """
        job = Job.objects.load_pending(job_id)
        if job is None:
            return get_job(job_id)
        with job_logs.job_log_context(job):
            return self._claim_and_run(job, task_id=task_id)

    def _claim_and_run(self, job: Job, *, task_id: uuid.UUID | str | None) -> Job:
        time_limit_s, max_concurrency = self._plugins.claim_limits(plugin_name=job.plugin_name)
        try:
            claimed = job.claim(
                lease_holder=new_lease_holder(),
                lease_s=_lease_s(time_limit_s),
                task_id=task_id,
                max_concurrency=max_concurrency,
            )
        except AtConcurrencyCap:
            self._wait_for_a_slot(job, task_id=task_id)
            return job
        if not claimed:
            return job
        return self._execute_claimed(job, job.input_payload)

    def _wait_for_a_slot(self, job: Job, *, task_id: uuid.UUID | str | None) -> None:
        """Give a PENDING job that found its plugin at its cap a task that runs a little later.

        Only if ``task_id`` (the task running now) is still the job's: a job that
        moved on, or has another task, keeps what it has.
        """
        run_after = database_now() + timedelta(seconds=scheduling.CAP_RECHECK_S)
        with transaction.atomic():
            again = self._engine.enqueue(job.pk, run_after=run_after)
            moved = Job.objects.filter(pk=job.pk, status=JobStatus.PENDING, task_id=task_id)
            if not moved.update(task_id=again):
                transaction.set_rollback(True)

    @alters_data
    def cancel_job(self, *, job: Job, user: User | None = None) -> Job:
        """Cancel a PENDING or RUNNING job, by ``user`` (else the system).

        A PENDING job never runs; a RUNNING one is stopped by whoever runs it.
        Raises JobAlreadyEnded if it already ended, JobNotFound if it never was
        one (a synchronous request's refused input).
        """
        previous = job.status
        who = user.get_username() if user is not None else "the system"
        envelope = build_error_envelope(
            ErrorType.CANCELLED,
            f"Cancelled by {who}",
            details={"cancelled_by": who, "status_before": previous},
            plugin=job.plugin_name,
        )
        try:
            job.cancel(dict(envelope), actor=user)
        except Job.DoesNotExist as exc:  # a sync request's refused input: it never was a job
            raise JobNotFound(f"No job {job.pk}") from exc
        except IllegalJobTransition as exc:
            raise JobAlreadyEnded(job) from exc
        JOB_CANCELLATIONS.labels(status=previous).inc()
        with job_logs.job_log_context(job):
            if previous == JobStatus.PENDING:  # it never ran: this is its one line
                job_logs.log_execution_outcome(job, job_logs.CANCELLED)
            else:  # its executor stops it, and says so
                logger.info("Job %s cancel requested by %s", job.pk, who)
        return job

    @alters_data
    def requeue(self, *, job: Job, error: ErrorEnvelope, retry: bool, counted: str = "") -> None:
        """Put a RUNNING job back in the queue, with a task to run it at its next attempt.

        ``retry``: its attempt failed and the next waits an exponential backoff;
        otherwise it was handed back unfinished and may start again at once.
        ``counted``: how this transaction counts the attempt in its plugin's metrics.
        """
        delay_s = settings.JOB_RETRY_BACKOFF_S * 2 ** (job.attempt - 1) if retry else 0.0
        next_attempt_at = database_now() + timedelta(seconds=delay_s)
        with transaction.atomic():
            task_id = self._engine.enqueue(job.pk, run_after=next_attempt_at)
            job.requeue(
                dict(error),
                next_attempt_at=next_attempt_at,
                retry=retry,
                task_id=task_id,
                counted=counted,
            )

    @alters_data
    def replace_lost_task(self, *, job: Job) -> bool:
        """Give a PENDING job whose task was lost a new task; False if it moved on meanwhile."""
        with transaction.atomic():
            if job.replace_lost_task(self._engine.enqueue(job.pk)):
                return True
            transaction.set_rollback(True)
        return False

    def _execute_claimed(
        self, job: Job, payload: Any, *, sync: bool = False, inserted: bool = False
    ) -> Job:
        """Run a claimed job and record its outcome.

        ``sync``: the job is not in the database yet (unless ``inserted``); it is
        inserted once the plugin has its work, so the commit overlaps the
        execution. Input the plugin refuses is then the client's error, not a
        run: the job is removed and InputValidationError raised.
        """
        insert_now = sync and not inserted
        watch = JobWatch(job, on_started=job.insert if insert_now else None)
        # The outcome and the plugin's metrics are committed together: one commit
        # per finished execution instead of two.
        with DeferredRecorder() as pending_metrics, captured_plugin_output() as printed:
            try:
                execution = self._plugins.execute(
                    plugin_name=job.plugin_name,
                    payload=payload,
                    control=watch,
                    version=job.requested_version,
                    metrics=pending_metrics,
                )
            except ControlFailed as exc:  # the job could not be recorded: nothing ran for it
                pending_metrics.discard()
                raise exc.__cause__ or exc from None
            error = execution.error
            if insert_now and not watch.has_started:
                job.insert()  # it failed before it was handed over: record it all the same
            # Input its plugin refuses makes a request, not a run: it records nothing.
            if sync and _is_invalid_input(error) and job.discard():
                pending_metrics.discard()
                assert error is not None
                refused = InputValidationError(
                    error["error"]["message"],
                    details=error["error"]["details"],
                    plugin=job.plugin_name,
                )
                refused.audited = True  # type: ignore[attr-defined]  # discard() recorded it
                raise refused
            execution, stored = _store_artifacts(job, execution, watch.reason)
            outcome = _Outcome(
                job,
                execution,
                watch.reason,
                pending_metrics,
                elapsed_ms=job.elapsed_so_far_ms(),
                record=self._record_outcome,
                plugin_output=printed.text,
                artifacts=stored,
                progress=watch.unwritten_progress(),
            )
            if not outcome.record_until(_lease_deadline(job, sync=sync)):
                if not sync:
                    outcome.give_up()  # the job stays RUNNING; lease recovery ends it
                    return job
                outcome.pending_metrics = pending_metrics.take()
                _outcomes_in_waiting.hold(outcome)
                raise OutcomeNotRecorded(job)
            outcome.keep_only_recorded_artifacts()
            outcome.log()
        return job

    def _record_outcome(self, outcome: _Outcome) -> None:
        job, execution, stopped = outcome.job, outcome.execution, outcome.stopped
        counted = outcome.pending_metrics.counted()
        ran, elapsed_ms = execution.ran, outcome.elapsed_ms
        if stopped is StopReason.CANCELLED:
            job.refresh_from_db()
            job.record_stopped_run(counted, run=outcome.lease_holder)
        elif execution.error is None:
            job.mark_succeeded(
                execution.result or {}, ran=ran, elapsed_ms=elapsed_ms, counted=counted
            )
            job.recorded_artifacts = artifact_services.record_artifacts(job, outcome.artifacts)
        elif stopped is StopReason.RELEASED and _release_requested.is_set():
            self.requeue(job=job, error=execution.error, retry=False, counted=counted)
        else:
            job.mark_failed(dict(execution.error), ran=ran, elapsed_ms=elapsed_ms, counted=counted)
        record_usage(job, result=job.result, elapsed_ms=elapsed_ms)  # policy's budgets
        final: dict[str, Any] = {}
        if outcome.plugin_output:  # most plugins print nothing: no statement for them
            final["plugin_output"] = outcome.plugin_output
        # A finished job keeps its last report (docs/api.md), a cancelled one too; a job
        # handed back for another attempt starts again from none.
        finished = (JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELLED)
        if outcome.progress is not None and job.status in finished:
            final.update(progress_fields(outcome.progress, at=database_now()))
        if final:
            Job.objects.filter(pk=job.pk).update(**final)
            for name, value in final.items():
                setattr(job, name, value)


class _Outcome:
    """A finished execution's outcome, with its metrics, until the database has taken it.

    Recording is one transaction: the job's final state and the plugin's
    metrics. A try that fails leaves the row, the metrics and this job instance
    as they were (the instance's changes are undone), so the next try starts
    from the same state, and everything is written exactly once.
    """

    def __init__(
        self,
        job: Job,
        execution: ExecutionResult,
        stopped: StopReason | None,
        pending_metrics: DeferredRecorder,
        *,
        elapsed_ms: float | None,
        record: Callable[[_Outcome], None],
        plugin_output: str = "",
        artifacts: Sequence[StoredArtifact] = (),
        progress: ProgressReport | None = None,
    ) -> None:
        self.job, self.execution, self.stopped = job, execution, stopped
        self.plugin_output = plugin_output
        self.artifacts = artifacts  # saved to the storage; recorded with a success
        self.progress = progress  # the last report, when the throttle had not written it
        self.pending_metrics, self.elapsed_ms = pending_metrics, elapsed_ms
        self._record = record
        self.fields = job_logs.current_job_fields()  # a later thread logs it under the same
        self.lease_holder = job.lease_holder  # ours; the instance may be refreshed later
        self.lease_deadline = _lease_deadline(job, sync=False)
        self.failures = 0
        # Set once the row turned out not to be ours: then only the run's count is left.
        self._changed_by_others = False
        self._failing_instead = False  # set once the outcome became a failure to record it

    def try_once(self) -> bool:
        """One try: True when the outcome is recorded (or the job had changed meanwhile)."""
        job = self.job
        try:
            if self._changed_by_others:
                return self._count_stopped_run()
            with job.unchanged_unless_committed(), transaction.atomic():
                if self.failures and self._written_already():
                    job.refresh_from_db()  # what that commit recorded
                    self.pending_metrics.discard()
                    return True
                self._record(self)
                self.pending_metrics.write()
        except IllegalJobTransition:
            try:
                return self._settled_by_others()
            except TRANSIENT_DATABASE_ERRORS as exc:
                return self._failed(exc)
        except TRANSIENT_DATABASE_ERRORS as exc:
            return self._failed(exc)
        except Exception as exc:
            if self._failing_instead:  # even a failure could not be recorded: no loop
                raise
            self._fail_instead(exc)
            return self.try_once()
        self.pending_metrics.discard()
        if self.failures:
            logger.warning(
                "Recorded the outcome of job %s after %d tries", job.pk, self.failures + 1
            )
        return True

    def _fail_instead(self, exc: Exception) -> None:
        """Record the run as failed: its outcome could not be (a bug, not the database's fault).

        The job must not stay RUNNING until its lease ends, with files stored that no row
        names: its stored files go, and the next try records this error instead.
        """
        logger.exception("Recording the outcome of job %s failed; it fails instead", self.job.pk)
        self._failing_instead = True
        artifact_services.discard(self.artifacts)
        self.artifacts = ()
        error = build_error_envelope(
            ErrorType.SERVICE_UNAVAILABLE,
            "The job's outcome could not be recorded",
            details={"exception": type(exc).__name__},  # its text may hold what failed
            plugin=self.job.plugin_name,
        )
        self.execution = ExecutionResult(None, error, self.execution.ran)

    def _failed(self, exc: Exception) -> bool:
        self.failures += 1
        logger.warning(
            "Could not record the outcome of job %s (try %d): %s: %s",
            self.job.pk,
            self.failures,
            type(exc).__name__,
            exc,
        )
        connections.close_all()
        return False

    def record_until(self, deadline: float) -> bool:
        """Try until recorded or ``deadline`` (time.monotonic()); False if never recorded."""
        pause_s = OUTCOME_RETRY_FIRST_PAUSE_S
        while not self.try_once():
            if time.monotonic() + pause_s > deadline:
                return False
            time.sleep(pause_s)
            pause_s = min(pause_s * 2, OUTCOME_RETRY_MAX_PAUSE_S)
        return True

    def log(self) -> None:
        """The execution's one outcome line, once recorded (a job others changed has its own)."""
        if self._changed_by_others:
            return
        job = self.job
        outcome = job_logs.outcome_of(job)
        if job.status == JobStatus.CANCELLED or outcome == job_logs.HANDED_BACK:
            job_logs.log_execution_outcome(job, outcome, error=self.execution.error)
        else:
            job_logs.log_execution_outcome(job, outcome)

    def give_up(self) -> None:
        logger.error(
            "The outcome of job %s was never recorded: the database took no write before "
            "its lease ended; lease recovery ends the job",
            self.job.pk,
        )
        self.pending_metrics.flush()  # the execution still counts, if the database is back
        artifact_services.discard(self.artifacts)

    def keep_only_recorded_artifacts(self) -> None:
        """Once recorded: delete the stored files if the row turned out not to take them."""
        if self.artifacts and not artifact_services.recorded_as_this_run(self.job, self.artifacts):
            artifact_services.discard(self.artifacts)

    def _written_already(self) -> bool:
        """Whether an earlier try committed although the database's answer was lost.

        Asked only after a failed try. The audit trail tells: this run's entry is
        there (with the audit off, a lost answer may count the run twice).
        """
        return AuditEntry.objects.filter(
            job_id=self.job.pk, details__run=self.lease_holder
        ).exists()

    def _settled_by_others(self) -> bool:
        """The row was not ours to change: a commit whose answer was lost, a cancel, a recovery.

        From here on the job is never written by this outcome again (the instance
        now holds the row's state, perhaps another worker's lease).
        """
        self._changed_by_others = True
        job = self.job
        try:
            job.refresh_from_db()
        except Job.DoesNotExist:
            logger.warning("Job %s is gone; its outcome was not recorded", job.pk)
            self.pending_metrics.discard()
            return True
        if self._is_ours(job):  # a commit that went through although its answer was lost
            self.pending_metrics.discard()
            return True
        logger.warning(
            "Job %s changed while it ran (now %s); its outcome was not recorded",
            job.pk,
            job.status,
        )
        return self._count_stopped_run()

    def _is_ours(self, job: Job) -> bool:
        expected = self.execution
        if job.status == JobStatus.PENDING:  # handed back by this very run
            return bool(job.attempts) and job.attempts[-1].get("lease_holder") == self.lease_holder
        return (
            job.status in (JobStatus.SUCCESS, JobStatus.FAILED)
            and job.lease_holder == self.lease_holder
            and job.result == expected.result
            and (job.error or None) == (dict(expected.error) if expected.error else None)
        )

    def _count_stopped_run(self) -> bool:
        """The run still counts in its plugin's metrics, and the audit trail says so, once."""
        with transaction.atomic():
            if not (self.failures and self._written_already()):
                self.job.record_stopped_run(self.pending_metrics.counted(), run=self.lease_holder)
                self.pending_metrics.write()
        self.pending_metrics.discard()
        return True


class _OutcomesInWaiting:
    """Outcomes a synchronous request could not record in time, written once the database is back.

    One daemon thread per process tries them in turn until each is recorded or
    its lease ends. A process that stops meanwhile loses them, and lease
    recovery ends their jobs (WorkerLost): the job always ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: list[_Outcome] = []
        self._thread: threading.Thread | None = None

    def hold(self, outcome: _Outcome) -> None:
        with self._lock:
            self._waiting.append(outcome)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._drain, name="job-outcomes-in-waiting", daemon=True
                )
                self._thread.start()

    def __len__(self) -> int:
        return len(self._waiting)

    @staticmethod
    def _settle(outcome: _Outcome) -> bool:
        try:
            if outcome.try_once():
                outcome.keep_only_recorded_artifacts()
                outcome.log()
                return True
            if time.monotonic() > outcome.lease_deadline:
                outcome.give_up()
                return True
        except Exception:  # one bad outcome must not stop the others being written
            logger.exception("Recording the outcome of job %s failed", outcome.job.pk)
            outcome.give_up()
            return True
        return False

    def _drain(self) -> None:
        pause_s = OUTCOME_RETRY_FIRST_PAUSE_S
        while True:
            with self._lock:
                if not self._waiting:
                    self._thread = None
                    return
                waiting = list(self._waiting)
            settled = []
            for outcome in waiting:
                with job_logs.restored_job_log_context(outcome.fields):
                    if self._settle(outcome):
                        settled.append(outcome)
            with self._lock:
                self._waiting = [o for o in self._waiting if o not in settled]
            connections.close_all()
            pause_s = OUTCOME_RETRY_FIRST_PAUSE_S if settled else min(pause_s * 2, 5.0)
            time.sleep(pause_s)


_outcomes_in_waiting = _OutcomesInWaiting()


def _lease_deadline(job: Job, *, sync: bool) -> float:
    """When to stop trying to record ``job``'s outcome, on this process's monotonic clock.

    The background path tries until the lease ends; a synchronous request waits
    at most ``JOB_OUTCOME_SYNC_WAIT_S`` and leaves the rest to a background thread.
    """
    lease_left_s = 0.0
    if job.lease_expires_at is not None:
        lease_left_s = (job.lease_expires_at - database_now()).total_seconds()
    deadline = time.monotonic() + max(lease_left_s, 0.0)
    if sync:
        deadline = min(deadline, time.monotonic() + settings.JOB_OUTCOME_SYNC_WAIT_S)
    return deadline


def _store_artifacts(
    job: Job, execution: ExecutionResult, stopped: StopReason | None
) -> tuple[ExecutionResult, list[StoredArtifact]]:
    """Save a successful run's artifacts to the storage before its outcome is recorded.

    Other runs' are only closed. A storage that fails fails the job (nothing of it
    stored): the result without its files is not what the plugin returned.
    """
    if not execution.artifacts:
        return execution, []
    if execution.error is not None or stopped is not None:
        close_all(execution.artifacts)
        return execution, []
    try:
        stored = artifact_services.store_artifacts(
            job, execution.artifacts, lease_s=_claimed_lease_s(job)
        )
    except artifact_services.LeaseLost as exc:  # cancelled or recovered meanwhile
        error = build_error_envelope(
            ErrorType.WORKER_LOST,
            "The job's lease ended while its artifacts were stored",
            plugin=job.plugin_name,
            exc=exc,
        )
        return ExecutionResult(None, error, execution.ran), []
    except artifact_services.ArtifactStorageFailed as exc:
        error = build_error_envelope(
            ErrorType.SERVICE_UNAVAILABLE,
            "The job's artifacts could not be stored",
            plugin=job.plugin_name,
            exc=exc,
        )
        return ExecutionResult(None, error, execution.ran), []
    return execution, stored


def _claimed_lease_s(job: Job) -> float | None:
    """How long the claim's lease was (start to end): what each renewal grants again."""
    if job.lease_expires_at is None or job.started_at is None:
        return None
    return max((job.lease_expires_at - job.started_at).total_seconds(), 0.0)


def _is_invalid_input(error: ErrorEnvelope | None) -> bool:
    return error is not None and error["error"]["type"] == ErrorType.VALIDATION_ERROR


def _lease_s(time_limit_s: float) -> float:
    return time_limit_s + settings.JOB_LEASE_GRACE_S
