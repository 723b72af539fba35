"""Prometheus exposition of plugin execution metrics.

Two sources, one page:

* per-process instruments (execution counter and latency histogram by plugin
  and outcome) updated by the registry on every execution. Set
  ``PROMETHEUS_MULTIPROC_DIR`` to aggregate them across worker processes with
  prometheus-client's multiprocess mode;
* the persisted ``PluginMetrics`` rows, read at scrape time, which every
  process and machine agrees on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

from django.db import DatabaseError
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from plugins.runtime.isolation.thread import ThreadIsolation

logger = logging.getLogger(__name__)

UNKNOWN_PLUGIN_LABEL = "__unknown__"

EXECUTIONS = Counter(
    "governed_plugin_executions",
    "Plugin executions seen by this process, by plugin and outcome.",
    ["plugin", "outcome"],
)
EXECUTION_SECONDS = Histogram(
    "governed_plugin_execution_seconds",
    "Wall time of plugin executions through ToolRunner, by plugin and outcome.",
    ["plugin", "outcome"],
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60),
)
METRICS_FAILURES = Counter(
    "governed_plugin_metrics_failures",
    "Times recording execution metrics failed (the execution outcome was kept).",
)
ABANDONED_THREADS = Gauge(
    "governed_plugin_abandoned_threads",
    "Threads still running a plugin call that exceeded its time limit.",
    multiprocess_mode="livesum",
)
ABANDONED_THREADS.set_function(lambda: ThreadIsolation.shared().abandoned)


REFUSED_REQUESTS = Counter(
    "governed_refused_requests",
    "Execution requests refused before anything ran (bad input, unknown plugin), "
    "by plugin and error type.",
    ["plugin", "error_type"],
)
PLUGIN_CRASHES = Counter(
    "governed_plugin_crashes",
    "Executions whose plugin process died (exit, signal, the kernel's OOM killer).",
    ["plugin"],
)
PLUGIN_KILLS = Counter(
    "governed_plugin_kills",
    "Executions stopped by killing the plugin's process, by reason.",
    ["plugin", "reason"],
)
PLUGIN_LIMIT_HITS = Counter(
    "governed_plugin_limit_hits",
    "Executions that went past one of their limits (time, memory, result_size).",
    ["plugin", "limit"],
)
_KILL_REASONS = {"PluginTimeout": "timeout", "Cancelled": "cancel", "WorkerLost": "release"}


def count_containment(plugin_label: str, error: dict[str, Any], process_isolated: bool) -> None:
    """Count what containment did about a failed execution, from its envelope."""
    kind, details = error["error"]["type"], error["error"]["details"]
    if kind == "PluginCrashed":
        PLUGIN_CRASHES.labels(plugin=plugin_label).inc()
    elif kind == "PluginTimeout":
        PLUGIN_LIMIT_HITS.labels(plugin=plugin_label, limit="time").inc()
    elif kind == "PluginResourceLimit":
        PLUGIN_LIMIT_HITS.labels(plugin=plugin_label, limit="memory").inc()
    elif kind == "OutputValidationError" and "max_result_bytes" in details:
        PLUGIN_LIMIT_HITS.labels(plugin=plugin_label, limit="result_size").inc()
    if process_isolated and kind in _KILL_REASONS:
        PLUGIN_KILLS.labels(plugin=plugin_label, reason=_KILL_REASONS[kind]).inc()


def observe_execution(plugin_label: str, outcome: str, elapsed_ms: float) -> None:
    EXECUTIONS.labels(plugin=plugin_label, outcome=outcome).inc()
    EXECUTION_SECONDS.labels(plugin=plugin_label, outcome=outcome).observe(elapsed_ms / 1000.0)


class PersistedMetricsCollector(Collector):
    """Exports the database counters, identical whichever process is scraped."""

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        from plugins.models import PluginMetrics, PluginState

        executions = CounterMetricFamily(
            "governed_plugin_persisted_executions",
            "Executions recorded in the database, by plugin and result.",
            labels=["plugin", "result"],
        )
        average = GaugeMetricFamily(
            "governed_plugin_avg_execution_milliseconds",
            "Mean execution time recorded in the database.",
            labels=["plugin"],
        )
        available = GaugeMetricFamily(
            "governed_plugin_available", "1 if the plugin is available, else 0.", labels=["plugin"]
        )
        for row in PluginMetrics.objects.all():
            executions.add_metric([row.plugin_name, "success"], row.success_count)
            executions.add_metric([row.plugin_name, "error"], row.error_count)
            average.add_metric([row.plugin_name], row.avg_execution_time_ms)
            available.add_metric([row.plugin_name], float(row.state == PluginState.AVAILABLE))
        yield executions
        yield average
        yield available


_persisted_registry = CollectorRegistry(auto_describe=False)
_persisted_registry.register(PersistedMetricsCollector())


def register_persisted_collector(collector: Collector) -> None:
    """Add a collector read from the database at each scrape (beside the plugin metrics)."""
    _persisted_registry.register(collector)


def render_metrics() -> bytes:
    """The Prometheus text page: process instruments, then the persisted counters."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        process_registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(process_registry)  # type: ignore[no-untyped-call]
        page = generate_latest(process_registry)
    else:
        page = generate_latest(REGISTRY)
    try:
        page += generate_latest(_persisted_registry)
    except DatabaseError:
        logger.exception("Persisted plugin metrics could not be read")
    return page
