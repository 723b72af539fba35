"""Job inspection: a read-only list and detail, a re-run action and an overview page."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, cast

from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.timezone import localtime

# Registered with the jobs: the audit log, and policy's grants and usage.
import execution.audit.admin
import execution.policy.admin
import execution.task_engine.celery_tasks.admin
import execution.workers.admin  # noqa: F401
from execution.artifacts.admin import JobArtifactInline
from execution.callbacks.admin import callback_inlines
from execution.clock import database_now
from execution.models import Job, JobStatus
from execution.policy.enforcement import PolicyRefusal
from execution.selectors import JobNotFound, hourly_executions, plugin_overview
from execution.services import AnalysisExecutionService, CancelNotAllowed, JobAlreadyEnded
from execution.services.analysis_execution_service import CANCEL_ANY_JOB_PERMISSION
from plugins.errors.error_envelope import JOB_ERROR_TYPES
from plugins.errors.exceptions import GovernedExecutionError

# The overview's time windows (?window=...); anything else shows all time.
OVERVIEW_WINDOWS: dict[str, timedelta] = {
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
}

STATUS_COLOURS: dict[str, str] = {
    JobStatus.PENDING: "#6c757d",
    JobStatus.RUNNING: "#0d6efd",
    JobStatus.SUCCESS: "#198754",
    JobStatus.FAILED: "#dc3545",
    JobStatus.CANCELLED: "#6f42c1",
}


class ErrorTypeFilter(admin.SimpleListFilter):
    """Failed and cancelled jobs by the type of their error, out of the closed set."""

    title = "error type"
    parameter_name = "error_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(kind.value, kind.value) for kind in JOB_ERROR_TYPES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        value = self.value()
        return queryset.filter(error__error__type=value) if value else queryset


def _staff(request: HttpRequest) -> User:
    """The signed-in staff user (the admin lets no one else act)."""
    return cast(User, request.user)


def _job_link(job_id: Any) -> SafeString:
    url = reverse("admin:execution_job_change", args=[job_id])
    return format_html('<a href="{}">{}</a>', url, str(job_id)[:8])


def _pretty_json(value: Any) -> SafeString:
    if value is None:
        return format_html("<em>{}</em>", "none")
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', text)


@admin.register(Job)
class JobAdmin(admin.ModelAdmin[Job]):
    list_display = [
        "short_id_display",
        "plugin_display",
        "status_display",
        "progress_column",
        "error_type_display",
        "requested_by",
        "attempt",
        "created_display",
        "duration_display",
    ]
    list_filter = [
        "status",
        ErrorTypeFilter,
        "plugin_name",
        ("requested_by", admin.RelatedOnlyFieldListFilter),
        "attempt",
        "created_at",
    ]
    date_hierarchy = "created_at"
    search_fields = ["id", "plugin_name", "error__error__type"]
    list_select_related = ["requested_by"]
    actions = ["run_again", "cancel_jobs"]
    inlines = [JobArtifactInline]  # execution/artifacts/admin.py
    fields = (
        "id",
        "plugin_name",
        "plugin_version",
        "status_display",
        "progress_display",
        "requested_by",
        "rerun_of_display",
        "reruns_display",
        "created_at",
        "started_at",
        "finished_at",
        "duration_display",
        "attempt",
        "max_attempts",
        "next_attempt_at",
        "lease_holder",
        "lease_expires_at",
        "attempts_display",
        "input_display",
        "result_display",
        "error_display",
        "traceback_display",
        # What the logs and the task engine know of the job.
        "request_id",
        "task_display",
        "plugin_output_display",
    )
    readonly_fields = fields

    def get_inlines(self, request: HttpRequest, obj: Job | None) -> list[type[Any]]:
        return [*super().get_inlines(request, obj), *callback_inlines(obj)]  # completion callback

    @admin.display(description="id", ordering="id")
    def short_id_display(self, job: Job) -> str:
        return job.short_id

    @admin.display(description="status", ordering="status")
    def status_display(self, job: Job) -> SafeString:
        return format_html(
            '<span class="job-status job-status-{}" style="color: #fff; background: {}; '
            'padding: 2px 8px; border-radius: 8px; font-weight: bold">{}</span>',
            job.status.lower(),
            STATUS_COLOURS.get(job.status, "#6c757d"),
            job.status,
        )

    # Progress (issue 20): the plugin's last report (execution/services/job_progress.py).
    @admin.display(description="progress")
    def progress_column(self, job: Job) -> str:
        """Only while it runs: a finished job's status says more than its last step."""
        if job.status != JobStatus.RUNNING or not job.progress:
            return "-"
        return f"{job.progress['done']}/{job.progress['total']}"

    @admin.display(description="progress")
    def progress_display(self, job: Job) -> SafeString | str:
        if not job.progress:
            return "-"
        done, total = job.progress["done"], job.progress["total"]
        at = job.progress_updated_at
        updated = localtime(at).strftime("%Y-%m-%d %H:%M:%S") if at else "-"
        return format_html(
            '<progress value="{}" max="{}"></progress> {} of {} ({}%) {} '
            '<span class="help">reported {}</span>',
            done,
            total,
            done,
            total,
            done * 100 // total,
            job.progress["message"],
            updated,
        )

    @admin.display(description="plugin", ordering="plugin_name")
    def plugin_display(self, job: Job) -> str:
        # One column for name and version: the list must fit at 1280 px beside the filters.
        return f"{job.plugin_name} {job.plugin_version}".strip()

    @admin.display(description="created", ordering="created_at")
    def created_display(self, job: Job) -> str:
        return localtime(job.created_at).strftime("%Y-%m-%d %H:%M:%S")

    @admin.display(description="error type", ordering="error__error__type")
    def error_type_display(self, job: Job) -> str:
        return job.error_type or "-"

    @admin.display(description="re-run of")
    def rerun_of_display(self, job: Job) -> SafeString | str:
        if job.rerun_of_id is None:
            return "-"
        return _job_link(job.rerun_of_id)

    @admin.display(description="re-run as")
    def reruns_display(self, job: Job) -> SafeString | str:
        again = list(job.reruns.order_by("created_at").values_list("pk", flat=True))
        if not again:
            return "-"
        return format_html_join(", ", "{}", ((_job_link(pk),) for pk in again))

    @admin.display(description="duration", ordering="elapsed_ms")
    def duration_display(self, job: Job) -> str:
        return "-" if job.elapsed_ms is None else f"{job.elapsed_ms:.1f} ms"

    @admin.display(description="input")
    def input_display(self, job: Job) -> SafeString:
        return _pretty_json(job.input_payload)

    @admin.display(description="result")
    def result_display(self, job: Job) -> SafeString:
        return _pretty_json(job.result)

    @admin.display(description="earlier attempts")
    def attempts_display(self, job: Job) -> SafeString:
        return _pretty_json(job.attempts or None)

    @admin.display(description="error")
    def error_display(self, job: Job) -> SafeString:
        return _pretty_json(job.public_error)

    @admin.display(description="traceback")
    def traceback_display(self, job: Job) -> SafeString:
        traceback = ((job.error or {}).get("_internal") or {}).get("traceback")
        if not traceback:
            return format_html("<em>{}</em>", "none")
        return format_html(
            '<pre class="job-traceback" style="white-space: pre-wrap">{}</pre>', traceback
        )

    @admin.display(description="background task")
    def task_display(self, job: Job) -> SafeString:
        """The task engine's record of the task that ran it; the Job is what counts."""
        if job.task_id is None:
            return format_html("<em>{}</em>", "none (run synchronously, or never queued)")
        note = (
            "The task engine's record of its last task. It fails when the job failed; "
            "where the two disagree, this Job is authoritative."
        )
        try:
            url = reverse("admin:django_tasks_database_dbtaskresult_change", args=[job.task_id])
        except NoReverseMatch:  # another task engine: no admin page of its own here
            return format_html('{} <span class="help">{}</span>', job.task_id, note)
        return format_html(
            '<a href="{}">{}</a> <span class="help">{}</span>', url, job.task_id, note
        )

    @admin.display(description="plugin output (stdout and stderr)")
    def plugin_output_display(self, job: Job) -> SafeString:
        if not job.plugin_output:
            return format_html("<em>{}</em>", "none")
        return format_html(
            '<pre class="job-plugin-output" style="white-space: pre-wrap">{}</pre>',
            job.plugin_output,
        )

    @admin.action(description="Run selected jobs again", permissions=["rerun"])
    def run_again(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        service = AnalysisExecutionService()
        submitted, refused = 0, []
        for job in queryset:
            try:
                again = service.rerun(job=job, user=_staff(request))
                submitted += 1
            except (GovernedExecutionError, PolicyRefusal) as exc:
                refused.append(f"{job.short_id}: {exc.message}")
                continue
            self.log_addition(request, again, f"Re-run of job {job.pk}")
        if submitted:
            self.message_user(request, f"{submitted} job(s) submitted again.", messages.SUCCESS)
        for reason in refused:
            self.message_user(request, f"Not submitted, {reason}", messages.WARNING)

    @admin.action(description="Cancel selected jobs", permissions=["cancel"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        service = AnalysisExecutionService()
        cancelled, ended = 0, []
        for job in queryset:
            try:
                service.cancel(job_id=job.pk, user=_staff(request))
                cancelled += 1
            except (JobAlreadyEnded, JobNotFound, CancelNotAllowed):
                ended.append(job.short_id)
        if cancelled:
            self.message_user(request, f"{cancelled} job(s) cancelled.", messages.SUCCESS)
        if ended:
            self.message_user(
                request, f"Already ended, not cancelled: {', '.join(ended)}", messages.WARNING
            )

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        # As in the API: cancelling anyone's job takes "change job".
        return request.user.has_perm(CANCEL_ANY_JOB_PERMISSION)

    def has_rerun_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("execution.add_job")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # jobs are the audit trail

    def get_urls(self) -> list[URLPattern]:
        overview = path(
            "overview/",
            self.admin_site.admin_view(self.overview_view),
            name="execution_job_overview",
        )
        return [overview, *super().get_urls()]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "overview_url": reverse("admin:execution_job_overview"),
        }
        return super().changelist_view(request, extra_context)

    def overview_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        window = OVERVIEW_WINDOWS.get(request.GET.get("window", ""))
        key = request.GET.get("window", "all") if window is not None else "all"
        since = None if window is None else database_now() - window
        context = {
            **self.admin_site.each_context(request),
            "title": "Execution overview",
            "opts": self.model._meta,
            "rows": plugin_overview(since=since),
            "hours": hourly_executions(since=since),
            "window": key,
            "windows": [
                ("hour", "Last hour"),
                ("day", "Last day"),
                ("week", "Last week"),
                ("all", "All"),
            ],
        }
        return TemplateResponse(request, "admin/execution/job/overview.html", context)
