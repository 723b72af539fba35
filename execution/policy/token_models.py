"""API tokens, stored as digests: the bearer value itself is never kept.

A token is a random secret shown once, when it is made. The database holds its
SHA-256 digest (a fast hash is enough: the secret has 160 bits of entropy, so
there is nothing to brute-force, unlike a password), a short prefix so that an
operator can tell tokens apart, and its expiry and revocation times. A token
that is expired or revoked stays on record until it is deleted.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    digest = models.CharField(
        max_length=64, unique=True, help_text="SHA-256 of the bearer value (hex)."
    )
    prefix = models.CharField(
        max_length=8, help_text="The bearer value's first characters, to tell tokens apart."
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    revoked_at = models.DateTimeField(null=True, blank=True, help_text="Empty: not revoked.")

    class Meta:
        app_label = "execution"
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"
