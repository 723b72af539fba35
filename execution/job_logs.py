"""Logs that name the job: every line logged while a job runs carries its id, plugin,
attempt and outcome, and each execution ends with one line that says how it went.

The fields travel in a context variable set around the job's life in
JobExecutionService (and around a recovery), and ``JobContextFilter`` copies them
onto every record, whoever logs it (the plugin host, the policy, the task engine).
Text logs show them as one bracketed suffix; JSON logs (``LOG_FORMAT=json``) as keys.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from api.request_id import current_request_id

if TYPE_CHECKING:
    from execution.models import Job

logger = logging.getLogger("execution.jobs")

# The outcome while it runs; once recorded, one of the values below.
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
HANDED_BACK = "handed_back"
RETRIED = "retried"
RECOVERED = "recovered"

# Error types that are the plugin's environment, not its fault: a warning, not an error.
_WARNING_ERROR_TYPES = frozenset({"PluginTimeout", "Cancelled", "WorkerLost"})

FIELDS = ("job_id", "plugin", "attempt", "outcome", "request_id")


@dataclass
class JobLogFields:
    job_id: str
    plugin: str
    attempt: int
    outcome: str = RUNNING
    request_id: str = ""


class JobFailed(Exception):
    """Raised by the task whose job FAILED, so the task's own record says FAILED too.

    The task engine never retries a task (a job's attempts are the job's own), so
    failing the task changes only its record; the Job stays authoritative. Its
    traceback says nothing the job's own outcome line did not: logs drop it.
    """


_current: contextvars.ContextVar[JobLogFields | None] = contextvars.ContextVar(
    "job_log_fields", default=None
)


@contextmanager
def job_log_context(job: Job) -> Iterator[JobLogFields]:
    """Name ``job`` on every line logged in this block (this thread or task only)."""
    fields = JobLogFields(
        job_id=str(job.pk),
        plugin=job.plugin_name,
        attempt=job.attempt,
        request_id=job.request_id or current_request_id(),
    )
    token = _current.set(fields)
    try:
        yield fields
    finally:
        _current.reset(token)


@contextmanager
def restored_job_log_context(fields: JobLogFields | None) -> Iterator[None]:
    """Name again, in another thread, the job whose ``fields`` were taken earlier."""
    token = _current.set(fields)
    try:
        yield
    finally:
        _current.reset(token)


def current_job_fields() -> JobLogFields | None:
    return _current.get()


class JobContextFilter(logging.Filter):
    """Adds the running job's fields to every record; empty outside a job.

    ``job_context`` is the text formatter's suffix, so a line about no job
    stays as it was.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], JobFailed):
            record.msg = f"{record.msg} (%s)"
            record.args = (*(record.args or ()), record.exc_info[1])
            record.exc_info = None
        fields = _current.get()
        if fields is None:
            for name in FIELDS:
                if not hasattr(record, name):
                    setattr(record, name, "" if name != "attempt" else None)
            if not hasattr(record, "request_id") or not record.request_id:
                record.request_id = current_request_id()
            record.job_context = ""
            return True
        record.job_id = fields.job_id
        record.plugin = fields.plugin
        record.attempt = fields.attempt
        record.outcome = fields.outcome
        record.request_id = fields.request_id
        record.job_context = (
            f" [job={fields.job_id} plugin={fields.plugin} attempt={fields.attempt}"
            f" outcome={fields.outcome}]"
        )
        return True


def outcome_of(job: Job) -> str:
    """The outcome word for ``job``'s state once its execution was recorded."""
    from execution.models import JobStatus

    return {
        JobStatus.SUCCESS: SUCCEEDED,
        JobStatus.CANCELLED: CANCELLED,
        JobStatus.PENDING: HANDED_BACK,
        JobStatus.FAILED: FAILED,
    }.get(JobStatus(job.status), RUNNING)


def log_execution_outcome(
    job: Job, outcome: str | None = None, *, error: Mapping[str, Any] | None = None
) -> None:
    """The one line that ends an execution: INFO for a success, else WARNING or ERROR.

    Timeouts, cancels, hand-backs and recoveries are warnings; a failure of the
    plugin (its error, a crash, a refused output, a limit) is an error.
    ``error``: the envelope, when the job no longer holds it (a job queued again).
    """
    outcome = outcome or outcome_of(job)
    fields = _current.get()
    if fields is not None:
        fields.outcome = outcome
    if outcome == SUCCEEDED:
        logger.info("Job %s succeeded in %.1f ms", job.pk, job.elapsed_ms or 0.0)
        return
    detail = (error if error is not None else job.error or {}).get("error") or {}
    error_type = str(detail.get("type", ""))
    level = logging.WARNING
    if outcome == FAILED and error_type not in _WARNING_ERROR_TYPES:
        level = logging.ERROR
    logger.log(
        level,
        "Job %s %s: %s: %s",
        job.pk,
        outcome.replace("_", " "),
        error_type or "-",
        detail.get("message", ""),
        extra={"error_type": error_type},
    )
