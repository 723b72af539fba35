"""Prometheus counters of the job lifecycle, next to the plugin metrics on /metrics."""

from __future__ import annotations

from prometheus_client import Counter

JOB_CANCELLATIONS = Counter(
    "governed_job_cancellations",
    "Jobs cancelled, by the status they had when cancelled.",
    ["status"],
)
LEASES_RECOVERED = Counter(
    "governed_job_leases_recovered",
    "Jobs recovered from a lost worker, by what became of them: retried or failed (a "
    "RUNNING job whose lease expired), requeued (a PENDING job whose task was lost).",
    ["outcome"],
)
