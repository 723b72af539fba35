"""Metrics read from the database at scrape time: the same whichever process answers.

Counters kept in a process's memory cannot agree across processes: two gunicorn
workers each count their own requests, and a ``db_worker``'s executions are in
neither. The jobs table already records every execution, so the execution counts
and the execution-time histogram are aggregated from it at each scrape, together
with the queue (jobs by status, the age of the oldest waiting job) and the live
workers. Each family is one aggregate query.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import Count, Min, Q, Sum
from django.db.models.fields.json import KT
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from execution.clock import database_now
from execution.models import Job, JobStatus
from execution.workers.selectors import live_workers

# Upper bounds, in seconds, of the execution-time histogram's buckets.
EXECUTION_BUCKETS_S = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)
ENDED = (JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELLED)


class JobMetricsCollector(Collector):
    """The queue, the workers and the executions, as the database holds them."""

    def collect(self) -> Iterator[Metric]:
        yield self._jobs_by_status()
        yield self._oldest_pending_age()
        yield self._live_workers()
        yield self._executions()
        yield self._execution_seconds()

    def _jobs_by_status(self) -> Metric:
        family = GaugeMetricFamily(
            "governed_jobs",
            "Jobs in the database, by status (the queue: PENDING).",
            labels=["status"],
        )
        counts = dict(Job.objects.values_list("status").annotate(n=Count("pk")).order_by())
        for value in JobStatus.values:
            family.add_metric([value], counts.get(value, 0))
        return family

    def _oldest_pending_age(self) -> Metric:
        oldest = Job.objects.filter(status=JobStatus.PENDING).aggregate(m=Min("created_at"))["m"]
        age = 0.0 if oldest is None else max(0.0, (database_now() - oldest).total_seconds())
        return GaugeMetricFamily(
            "governed_oldest_pending_job_age_seconds",
            "How long the oldest PENDING job has waited (0: none waits), on the database's clock.",
            value=age,
        )

    def _live_workers(self) -> Metric:
        return GaugeMetricFamily(
            "governed_live_workers",
            "db_workers that beat within WORKER_STALE_S and have not stopped.",
            value=live_workers().count(),
        )

    def _executions(self) -> Metric:
        family = CounterMetricFamily(
            "governed_job_executions",
            "Ended jobs in the database, by plugin and outcome (success, or the error type).",
            labels=["plugin", "outcome"],
        )
        rows = (
            Job.objects.filter(status__in=ENDED)
            .values("plugin_name", "status", error_type=KT("error__error__type"))
            .annotate(n=Count("pk"))
            .order_by()
        )
        totals: dict[tuple[str, str], int] = {}
        for row in rows:
            plugin, status, error_type, n = (
                row["plugin_name"],
                row["status"],
                row["error_type"],
                row["n"],
            )
            outcome = "success" if status == JobStatus.SUCCESS else (error_type or status.lower())
            totals[(plugin, outcome)] = totals.get((plugin, outcome), 0) + n
        for (plugin, outcome), n in sorted(totals.items()):
            family.add_metric([plugin, outcome], n)
        return family

    def _execution_seconds(self) -> Metric:
        family = HistogramMetricFamily(
            "governed_job_execution_seconds",
            "Execution time of ended jobs in the database (elapsed_ms), by plugin.",
            labels=["plugin"],
        )
        bounds: dict[str, Any] = {
            f"le_{index}": Count("pk", filter=_within(bound))
            for index, bound in enumerate(EXECUTION_BUCKETS_S)
        }
        rows = (
            Job.objects.filter(status__in=ENDED, elapsed_ms__isnull=False)
            .values("plugin_name")
            .annotate(count=Count("pk"), total_ms=_sum_ms(), **bounds)
            .order_by("plugin_name")
        )
        for row in rows:
            buckets = [
                (_bucket_label(bound), row[f"le_{index}"])
                for index, bound in enumerate(EXECUTION_BUCKETS_S)
            ]
            buckets.append(("+Inf", row["count"]))
            family.add_metric(
                [row["plugin_name"]], buckets, sum_value=(row["total_ms"] or 0.0) / 1000.0
            )
        return family


_registered = False


def register_collector() -> None:
    """Export these on /metrics, in the registry read at every scrape (idempotent)."""
    global _registered
    if _registered:
        return
    from plugins.metrics.exposition import register_persisted_collector

    register_persisted_collector(JobMetricsCollector())
    _registered = True


def _within(bound_s: float) -> Q:
    return Q(elapsed_ms__lte=bound_s * 1000.0)


def _sum_ms() -> Sum:
    return Sum("elapsed_ms")


def _bucket_label(bound_s: float) -> str:
    return repr(float(bound_s))
