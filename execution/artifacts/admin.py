"""A job's artifacts on its admin page: read-only, each with its download link."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from execution.artifacts.models import JobArtifact


class JobArtifactInline(admin.TabularInline[JobArtifact, Any]):
    model = JobArtifact
    extra = 0
    can_delete = False
    fields = ("name", "content_type", "size", "sha256", "download")
    readonly_fields = fields
    verbose_name_plural = "artifacts"

    @admin.display(description="download")
    def download(self, artifact: JobArtifact) -> SafeString:
        # The API's download: the admin's session may read every job it shows.
        url = reverse("job-artifact", kwargs={"pk": artifact.job_id, "name": artifact.name})
        return format_html('<a href="{}">download</a>', url)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Whoever sees the job's page sees its files: no permission of their own.
        return any(
            request.user.has_perm(perm) for perm in ("execution.view_job", "execution.change_job")
        )
