"""The *Workers* admin page: every db_worker's heartbeat, read-only, alive or stale."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from execution.workers.models import WorkerHeartbeat
from execution.workers.selectors import is_alive


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin[WorkerHeartbeat]):
    """Workers write these rows themselves; staff only read them."""

    list_display = (
        "id",
        "state",
        "host",
        "pid",
        "started_at",
        "beat_at",
        "current_job",
        "jobs_done",
    )
    list_filter = ("host",)
    search_fields = ("id", "host")

    @admin.display(description="state")
    def state(self, obj: WorkerHeartbeat) -> str:
        if obj.stopped_at is not None:
            return "stopped"
        return "alive" if is_alive(obj) else "stale"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: WorkerHeartbeat | None = None
    ) -> bool:
        return False

    def has_delete_permission(
        self, request: HttpRequest, obj: WorkerHeartbeat | None = None
    ) -> bool:
        return False
