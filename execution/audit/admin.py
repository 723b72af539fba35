"""The audit log in the admin: read-only for everyone, superusers included."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from execution.audit.models import AuditEntry
from execution.audit.recorder import SYSTEM_ACTOR

MAX_ACTOR_CHOICES = 50


class ValueFilter(admin.SimpleListFilter):
    """Entries whose ``field`` equals ``?<parameter_name>=``.

    The choices come from small tables, never from a DISTINCT over the log
    itself, which would read every entry on every page.
    """

    field = ""

    def choices_from_elsewhere(self) -> list[str]:
        return []

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        values = self.choices_from_elsewhere()
        current = self.value()
        if current and current not in values:
            values = [current, *values]
        return [(value, value) for value in values]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[AuditEntry]
    ) -> QuerySet[AuditEntry]:
        value = self.value()
        if not value:
            return queryset
        if self.field == "job_id":
            try:
                value = str(uuid.UUID(value))
            except ValueError:
                return queryset.none()
        return queryset.filter(**{self.field: value})


class JobIdFilter(ValueFilter):
    """The entries of one job, ?job=<uuid> (the job's own page links here)."""

    title = "job"
    parameter_name = "job"
    field = "job_id"


class PluginFilter(ValueFilter):
    title = "plugin"
    parameter_name = "plugin"
    field = "plugin_name"

    def choices_from_elsewhere(self) -> list[str]:
        from plugins.models import PluginMetrics

        return list(
            PluginMetrics.objects.order_by("plugin_name").values_list("plugin_name", flat=True)
        )


class ActorFilter(ValueFilter):
    title = "actor"
    parameter_name = "actor"
    field = "actor"

    def choices_from_elsewhere(self) -> list[str]:
        users = get_user_model().objects.order_by("username").values_list("username", flat=True)
        return [SYSTEM_ACTOR, *users[:MAX_ACTOR_CHOICES]]


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin[AuditEntry]):
    list_display = [
        "seq_display",
        "recorded_at",
        "event",
        "actor",
        "plugin_display",
        "job_display",
        "error_type",
    ]
    list_filter = ["event", JobIdFilter, PluginFilter, ActorFilter]
    search_fields = ["=job_id", "=actor"]
    date_hierarchy = None
    show_full_result_count = False  # COUNT(*) of a million rows on every page
    fields = (
        "seq",
        "recorded_at",
        "event",
        "actor",
        "actor_id",
        "job_display",
        "plugin_name",
        "plugin_version",
        "plugin_fingerprint",
        "input_sha256",
        "result_sha256",
        "error_type",
        "details",
        "prev_hash",
        "entry_hash",
    )
    readonly_fields = fields

    @admin.display(description="seq", ordering="seq")
    def seq_display(self, entry: AuditEntry) -> str:
        return "unsealed" if entry.seq is None else str(entry.seq)

    @admin.display(description="plugin", ordering="plugin_name")
    def plugin_display(self, entry: AuditEntry) -> str:
        if not entry.plugin_name:
            return "-"
        return f"{entry.plugin_name} {entry.plugin_version}".strip()

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEntry]:
        from execution.models import Job

        # Whether each entry's job still exists, in the page's own query.
        job = Job.objects.filter(pk=OuterRef("job_id"))
        return super().get_queryset(request).annotate(job_exists=Exists(job))

    @admin.display(description="job")
    def job_display(self, entry: AuditEntry) -> SafeString | str:
        if entry.job_id is None:
            return "-"
        if getattr(entry, "job_exists", False):
            url = reverse("admin:execution_job_change", args=[entry.job_id])
            return format_html('<a href="{}">{}</a>', url, entry.job_id.hex[:8])
        return format_html("{} <em>(gone)</em>", entry.job_id.hex[:8])

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
