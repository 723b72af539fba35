"""The *Celery tasks* admin page: each task's row, read-only (no Celery import)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from execution.task_engine.celery_tasks.models import CeleryTask


@admin.register(CeleryTask)
class CeleryTaskAdmin(admin.ModelAdmin[CeleryTask]):
    """The engine and its workers write these rows; staff read them next to the jobs."""

    list_display = (
        "id",
        "status",
        "task_path",
        "queue_name",
        "enqueued_at",
        "run_after",
        "started_at",
        "finished_at",
        "deliveries",
        "worker_id",
    )
    list_filter = ("status", "queue_name")
    search_fields = ("id", "worker_id")
    date_hierarchy = "enqueued_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: CeleryTask | None = None) -> bool:
        return False
