"""Per-plugin execution metrics, persisted so every process agrees on them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from django.db import IntegrityError, connections, models, transaction
from django.utils import timezone

_ADD_EXECUTION_SQL = """
UPDATE {table} SET
    state = %s,
    success_count = success_count + %s,
    error_count = error_count + %s,
    total_execution_time_ms = total_execution_time_ms + %s,
    avg_execution_time_ms = (total_execution_time_ms + %s) / (success_count + error_count + 1),
    last_execution_time_ms = %s,
    last_used = %s
WHERE plugin_name = %s
"""


class PluginState(models.TextChoices):
    AVAILABLE = "AVAILABLE", "Available"
    UNAVAILABLE = "UNAVAILABLE", "Unavailable"


class PluginStatus(Protocol):
    """What a row keeps of a registry entry (``PluginEntry`` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def reason(self) -> str: ...


class PluginMetricsQuerySet(models.QuerySet["PluginMetrics"]):
    def record_execution(
        self, plugin_name: str, state: str, elapsed_ms: float, had_error: bool
    ) -> None:
        """Add one execution with a single atomic UPDATE.

        The new values are computed by the database from the stored ones, so
        concurrent processes never lose an update. ``avg_execution_time_ms`` is
        the true mean: the new total divided by the new count (SQLite and
        PostgreSQL evaluate every SET expression against the row as it was).
        """
        if self._add_execution(plugin_name, state, float(elapsed_ms), had_error):
            return
        try:
            with transaction.atomic(using=self.db):
                self.create(plugin_name=plugin_name, state=state)
        except IntegrityError:
            pass  # another process created the row first; our UPDATE below still counts
        self._add_execution(plugin_name, state, float(elapsed_ms), had_error)

    def _add_execution(
        self, plugin_name: str, state: str, elapsed_ms: float, had_error: bool
    ) -> int:
        # Plain SQL on purpose: compiling the equivalent ORM update with seven
        # F() expressions costs ~0.8 ms per call, forty times the write itself
        # (bench/toolrunner_overhead.py).
        connection = connections[self.db]
        quote = connection.ops.quote_name
        sql = _ADD_EXECUTION_SQL.format(table=quote(self.model._meta.db_table))
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        with connection.cursor() as cursor:
            cursor.execute(
                sql,
                [
                    state,
                    0 if had_error else 1,
                    1 if had_error else 0,
                    elapsed_ms,
                    elapsed_ms,
                    elapsed_ms,
                    now,
                    plugin_name,
                ],
            )
            return int(cursor.rowcount)

    def sync_registry(self, entries: Iterable[PluginStatus]) -> None:
        """Make sure every known plugin has a row carrying its current state."""
        entries = list(entries)
        self.bulk_create(
            [
                PluginMetrics(plugin_name=e.name, state=e.state, state_reason=e.reason)
                for e in entries
            ],
            ignore_conflicts=True,
        )
        for entry in entries:
            self.filter(plugin_name=entry.name).exclude(
                state=entry.state, state_reason=entry.reason
            ).update(state=entry.state, state_reason=entry.reason)


class PluginMetrics(models.Model):
    """Execution counters of one plugin, one row per plugin name."""

    plugin_name = models.CharField(max_length=200, unique=True)
    state = models.CharField(
        max_length=20, choices=PluginState.choices, default=PluginState.AVAILABLE
    )
    state_reason = models.TextField(blank=True, default="")
    success_count = models.PositiveBigIntegerField(default=0)
    error_count = models.PositiveBigIntegerField(default=0)
    total_execution_time_ms = models.FloatField(default=0.0)
    avg_execution_time_ms = models.FloatField(default=0.0)
    last_execution_time_ms = models.FloatField(null=True, blank=True)
    last_used = models.DateTimeField(null=True, blank=True)

    objects = PluginMetricsQuerySet.as_manager()

    class Meta:
        ordering = ["plugin_name"]
        verbose_name = "plugin metrics"
        verbose_name_plural = "plugin metrics"

    def __str__(self) -> str:
        return self.plugin_name

    @property
    def execution_count(self) -> int:
        return self.success_count + self.error_count

    @property
    def error_rate(self) -> float:
        """Share of executions that failed, 0.0 when the plugin never ran."""
        count = self.execution_count
        return self.error_count / count if count else 0.0
