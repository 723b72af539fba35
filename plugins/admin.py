from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse

from plugins.models import PluginMetrics
from plugins.registry import get_registry


@admin.register(PluginMetrics)
class PluginMetricsAdmin(admin.ModelAdmin[PluginMetrics]):
    """Read-only: metrics are written by executions, never by hand."""

    list_display = [
        "plugin_name",
        "state",
        "success_count",
        "error_count",
        "error_rate_display",
        "avg_ms",
        "last_ms",
        "last_used",
        "may_do",
    ]
    list_filter = ["state"]
    search_fields = ["plugin_name"]
    readonly_fields = [
        "plugin_name",
        "state",
        "state_reason",
        "success_count",
        "error_count",
        "total_execution_time_ms",
        "avg_execution_time_ms",
        "last_execution_time_ms",
        "last_used",
        "may_do",
    ]

    @admin.display(description="may")
    def may_do(self, obj: PluginMetrics) -> str:
        """What its sandbox lets the plugin do, as /v1/plugins shows it."""
        entry = get_registry().get_status_of(obj.plugin_name)
        if entry is None or entry.plugin is None:
            return "-"
        limits = get_registry().limits_for(entry.plugin)
        if limits.isolation != "process":
            return f"{limits.isolation} (not sandboxed)"
        allowed = ["network" if limits.network else "no network"]
        if limits.read_paths:
            allowed.append("read " + ", ".join(limits.read_paths))
        if limits.fresh_process:
            allowed.append("a new process each run")
        return "; ".join(allowed)

    @admin.display(description="error rate")
    def error_rate_display(self, obj: PluginMetrics) -> str:
        return f"{obj.error_rate:.1%}"

    @admin.display(description="average (ms)", ordering="avg_execution_time_ms")
    def avg_ms(self, obj: PluginMetrics) -> str:
        return f"{obj.avg_execution_time_ms:.2f}"

    @admin.display(description="last (ms)", ordering="last_execution_time_ms")
    def last_ms(self, obj: PluginMetrics) -> str:
        value = obj.last_execution_time_ms
        return "-" if value is None else f"{value:.2f}"

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Plugins that never ran are listed too, with their current state.
        PluginMetrics.objects.sync_registry(get_registry().get_status())
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
