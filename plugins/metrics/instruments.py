"""This process's Prometheus instruments of plugin executions.

Per-process counters and a latency histogram, by plugin and outcome. Set
``PROMETHEUS_MULTIPROC_DIR`` to aggregate them across worker processes with
prometheus-client's multiprocess mode. Names the registry does not know share
:data:`UNKNOWN_PLUGIN_LABEL`, so names sent by clients cannot grow the series
without bound.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from plugins.runtime.isolation.thread import ThreadIsolation

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
POLICY_DECISIONS = Counter(
    "governed_policy_decisions",
    "Policy decisions on execution requests, by decision (allowed, denied, throttled, "
    "over_quota), reason and plugin.",
    ["decision", "reason", "plugin"],
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


def metrics_label(plugin_name: object, *, registered: bool) -> str:
    """The ``plugin`` label of a name: itself if the registry knows it, else the shared one."""
    return plugin_name if registered and isinstance(plugin_name, str) else UNKNOWN_PLUGIN_LABEL


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


def count_refused_request(plugin_label: str, error_type: str) -> None:
    """Count a request refused before anything ran (no job, no persisted metrics)."""
    REFUSED_REQUESTS.labels(plugin=plugin_label, error_type=error_type).inc()


def count_policy_decision(decision: str, reason: str, plugin_label: str) -> None:
    POLICY_DECISIONS.labels(decision=decision, reason=reason, plugin=plugin_label).inc()


def observe_execution(plugin_label: str, outcome: str, elapsed_ms: float) -> None:
    EXECUTIONS.labels(plugin=plugin_label, outcome=outcome).inc()
    EXECUTION_SECONDS.labels(plugin=plugin_label, outcome=outcome).observe(elapsed_ms / 1000.0)
