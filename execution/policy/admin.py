"""Policy in the admin: grants (add, change, remove) and each user's usage today."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from execution.policy.models import PluginGrant, PolicyUsage
from execution.policy.selectors import UsageToday, usage_rows, usage_today
from plugins.registry import get_registry


class PluginGrantForm(forms.ModelForm[PluginGrant]):
    """A grant names a registered plugin (a choice), and one user or one group."""

    plugin_name = forms.ChoiceField(choices=())

    class Meta:
        model = PluginGrant
        fields = [
            "plugin_name",
            "user",
            "group",
            "max_active_jobs",
            "max_sync_runs",
            "daily_stored_bytes",
            "daily_execution_s",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = sorted(entry.name for entry in get_registry().get_status())
        current = self.instance.plugin_name if self.instance.pk else ""
        if current and current not in names:  # uninstalled since: still shown, still removable
            names.insert(0, current)
        self.fields["plugin_name"].choices = [(name, name) for name in names]  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if bool(data.get("user")) == bool(data.get("group")):
            raise forms.ValidationError("Grant the plugin to one user or one group.")
        return data


@admin.register(PluginGrant)
class PluginGrantAdmin(admin.ModelAdmin[PluginGrant]):
    form = PluginGrantForm
    list_display = [
        "plugin_name",
        "grantee",
        "max_active_jobs",
        "max_sync_runs",
        "daily_stored_bytes",
        "daily_execution_s",
        "created_at",
    ]
    list_filter = ["plugin_name", "group"]
    search_fields = ["plugin_name", "user__username", "group__name"]
    list_select_related = ["user", "group"]
    autocomplete_fields = ["user", "group"]

    @admin.display(description="granted to")
    def grantee(self, grant: PluginGrant) -> str:
        return f"user {grant.user}" if grant.user_id else f"group {grant.group}"


def _against(used: float, limit: int, unit: str = "") -> SafeString:
    """``used / limit`` (``no limit`` for 0), red once the limit is reached."""
    if not limit:
        return format_html("{}{} <em>(no limit)</em>", used, unit)
    colour = "#dc3545" if used >= limit else "inherit"
    return format_html(
        '<span style="color: {}">{}{} / {}{}</span>', colour, used, unit, limit, unit
    )


@admin.register(PolicyUsage)
class PolicyUsageAdmin(admin.ModelAdmin[PolicyUsage]):
    """Each user's usage today against the default quotas (a grant may set others)."""

    list_display = [
        "user",
        "active_jobs_display",
        "sync_runs_display",
        "stored_bytes_display",
        "execution_display",
    ]
    search_fields = ["user__username"]
    readonly_fields = [
        "user",
        "day",
        "stored_bytes",
        "execution_ms",
        "sync_runs",
        "sync_runs_until",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[PolicyUsage]:
        return usage_rows()  # type: ignore[no-any-return]

    def _today(self, usage: PolicyUsage) -> UsageToday:
        return usage_today(usage, active_jobs=getattr(usage, "active_jobs", 0))

    @admin.display(description="jobs pending or running")
    def active_jobs_display(self, usage: PolicyUsage) -> SafeString:
        today = self._today(usage)
        return _against(today.active_jobs, today.limits.max_active_jobs)

    @admin.display(description="synchronous runs in flight")
    def sync_runs_display(self, usage: PolicyUsage) -> SafeString:
        today = self._today(usage)
        return _against(today.sync_runs, today.limits.max_sync_runs)

    @admin.display(description="stored today (bytes)")
    def stored_bytes_display(self, usage: PolicyUsage) -> SafeString:
        today = self._today(usage)
        return _against(today.stored_bytes, today.limits.daily_stored_bytes)

    @admin.display(description="execution today (s)")
    def execution_display(self, usage: PolicyUsage) -> SafeString:
        today = self._today(usage)
        return _against(today.execution_s, today.limits.daily_execution_s)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # written by the runs themselves

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
