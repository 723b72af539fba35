"""The ``/metrics`` page: the process instruments that can agree, then the database's.

The persisted ``PluginMetrics`` rows (and any collector added with
:func:`register_persisted_collector`: the jobs, workers and audit chain) are read
at scrape time, so every process and machine exports the same values; the page
still answers when the database does not.

The process instruments' counters and histograms count only what the answering
process saw. With ``PROMETHEUS_MULTIPROC_DIR`` they are summed over every process
that shares the directory; without it (``make run``, a plain gunicorn) two scrapes
would read two processes' counts, so they are left out and only the process's
gauges (clock skew, abandoned threads, the process collectors) are shown.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

from django.db import DatabaseError
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from plugins.models import PluginMetrics, PluginState

logger = logging.getLogger(__name__)


class PersistedMetricsCollector(Collector):
    """Exports the database counters, identical whichever process is scraped."""

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        executions = CounterMetricFamily(
            "governed_plugin_persisted_executions",
            "Executions recorded in the database, by plugin and result.",
            labels=["plugin", "result"],
        )
        available = GaugeMetricFamily(
            "governed_plugin_available", "1 if the plugin is available, else 0.", labels=["plugin"]
        )
        for row in PluginMetrics.objects.all():
            executions.add_metric([row.plugin_name, "success"], row.success_count)
            executions.add_metric([row.plugin_name, "error"], row.error_count)
            available.add_metric([row.plugin_name], float(row.state == PluginState.AVAILABLE))
        yield executions
        yield available


class _ProcessGauges:
    """A registry's metrics less the counters and histograms only this process has seen."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            if family.name.startswith("governed_") and family.type in _PER_PROCESS_TYPES:
                continue
            yield family


_PER_PROCESS_TYPES = frozenset({"counter", "histogram", "summary"})

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
        page = generate_latest(_ProcessGauges(REGISTRY))
    try:
        page += generate_latest(_persisted_registry)
    except DatabaseError:
        logger.exception("Persisted plugin metrics could not be read")
    return page
