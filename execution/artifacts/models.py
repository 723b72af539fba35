"""JobArtifact: one file a job's plugin returned, kept in the artifacts storage."""

from __future__ import annotations

from django.db import models

from plugins.artifacts import MAX_CONTENT_TYPE_CHARS, MAX_NAME_CHARS


class JobArtifact(models.Model):
    """A file of a SUCCESS job: what clients download from ``/v1/jobs/{id}/artifacts/{name}``.

    ``storage_path`` is the file's name in the artifacts storage (``STORAGES["artifacts"]``);
    it is made by the server, never from the plugin's name. Rows go with their job
    (retention deletes the files as well: execution/services/retention.py).
    """

    job = models.ForeignKey("execution.Job", on_delete=models.CASCADE, related_name="artifacts")
    name = models.CharField(max_length=MAX_NAME_CHARS)
    content_type = models.CharField(max_length=MAX_CONTENT_TYPE_CHARS)
    size = models.PositiveBigIntegerField(help_text="Bytes")
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of the bytes, in hex")
    storage_path = models.CharField(max_length=500, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "id"]
        constraints = [
            models.UniqueConstraint(fields=["job", "name"], name="job_artifact_unique_name")
        ]
        verbose_name = "job artifact"

    def __str__(self) -> str:
        return f"{self.name} ({self.size} bytes)"
