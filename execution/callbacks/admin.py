"""A job's completion callback on its admin page: where it goes and each delivery attempt."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from execution.callbacks.models import JobCallback


class JobCallbackInline(admin.StackedInline[JobCallback, Any]):
    """Read-only: callbacks change only by their deliveries."""

    model = JobCallback
    can_delete = False
    extra = 0
    max_num = 0
    fields = ("url", "state", "next_attempt_at", "give_up_at", "delivered_at", "attempts_display")
    readonly_fields = fields

    @admin.display(description="attempts")
    def attempts_display(self, callback: JobCallback) -> SafeString | str:
        attempts = list(callback.attempts.all())
        if not attempts:
            return "-"
        rows = format_html_join(
            "",
            "<li>#{} at {}: {} ({} ms)</li>",
            (
                (
                    a.number,
                    a.started_at.isoformat(timespec="seconds"),
                    a.status_code if a.status_code is not None else a.error,
                    a.duration_ms if a.duration_ms is not None else "-",
                )
                for a in attempts
            ),
        )
        return format_html("<ul>{}</ul>", rows)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def callback_inlines(job: Any) -> list[type[admin.options.InlineModelAdmin[Any, Any]]]:
    """The inline for a job that has a callback; none (not even a heading) for the others."""
    if job is not None and JobCallback.objects.filter(pk=job.pk).exists():
        return [JobCallbackInline]
    return []
