"""The audit log in the admin: read-only for everyone, superusers included."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from execution.audit.models import AuditEntry


class JobIdFilter(admin.SimpleListFilter):
    """The entries of one job: a link from a job's id, ?job=<uuid>."""

    title = "job"
    parameter_name = "job"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        return [(value, value)] if value else []

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[AuditEntry]
    ) -> QuerySet[AuditEntry]:
        value = self.value()
        return queryset.filter(job_id=value) if value else queryset


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
    list_filter = ["event", JobIdFilter, "plugin_name", "actor"]
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
