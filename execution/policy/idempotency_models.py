"""The idempotency keys clients send with executions: which job each one already made.

A key belongs to one user (two users may send the same key) and lives until
``expires_at`` (``IDEMPOTENCY_TTL_S`` after it was first sent). ``job_id`` is a
plain value, not a foreign key: the key is claimed, naming its job, before that
job exists, so that a duplicate arriving meanwhile finds the claim and never
runs the plugin again (execution/policy/idempotency.py).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

MAX_KEY_LENGTH = 255


class IdempotencyKey(models.Model):
    """One user's key, the request it was first sent with, and the job that request made."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=MAX_KEY_LENGTH)
    endpoint = models.CharField(max_length=100, help_text="The endpoint it was first sent to.")
    request_sha256 = models.CharField(
        max_length=64, help_text="SHA-256 of the canonical JSON of the request's body."
    )
    job_id = models.UUIDField(help_text="The job its first request made (or is making).")
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        app_label = "execution"
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_user_key_unique"),
        ]
        indexes = [models.Index(fields=["expires_at"], name="idempotency_expires_idx")]

    def __str__(self) -> str:
        return f"{self.key} ({self.endpoint})"
