"""What the audit trail records: one closed set of event names."""

from __future__ import annotations

from django.db import models


class AuditEvent(models.TextChoices):
    """Governed events. Dotted names group them; ``policy.*`` is reserved for policy decisions.

    ``audit.*`` events are written by the chain itself (checkpoints), never through
    the recorder, and the sealer refuses to seal one it finds waiting.
    """

    REQUEST_REFUSED = "request.refused", "Request refused"
    JOB_SUBMITTED = "job.submitted", "Job submitted"
    JOB_STARTED = "job.started", "Job started"
    JOB_FINISHED = "job.finished", "Job finished"
    JOB_CANCELLED = "job.cancelled", "Job cancelled"
    JOB_RECOVERED = "job.recovered", "Job recovered from a lost worker"
    JOB_RETRIED = "job.retried", "Job queued for another attempt"
    JOB_RERUN = "job.rerun", "Job re-run from the admin"
    JOB_PRUNED = "job.pruned", "Job removed by retention"
    JOB_ARTIFACTS_STORED = "job.artifacts_stored", "Job artifacts stored"
    POLICY_DENIED = "policy.denied", "Run denied: no grant"
    POLICY_THROTTLED = "policy.throttled", "Request throttled"
    POLICY_OVER_QUOTA = "policy.over_quota", "Run refused: over a quota"
    AUDIT_CHECKPOINT = "audit.checkpoint", "Audit checkpoint"


CHAIN_EVENT_PREFIX = "audit."

# The status a job has after each event, for the events that always imply one. The
# others (job.finished, job.recovered) say it in details["status"], which also
# overrides this table for any event.
STATUS_AFTER_EVENT: dict[str, str] = {
    AuditEvent.JOB_SUBMITTED: "PENDING",
    AuditEvent.JOB_STARTED: "RUNNING",
    AuditEvent.JOB_CANCELLED: "CANCELLED",
    AuditEvent.JOB_RETRIED: "PENDING",
}

# A job id the audit knows may lack a Job row only after one of these.
JOB_REMOVED_EVENTS = frozenset({AuditEvent.JOB_PRUNED, AuditEvent.REQUEST_REFUSED})
