"""Policy's tables: grants of plugins to users and groups, and each user's usage.

A grant names a plugin by its registered name (a plain value, like a job's
``plugin_name``: a plugin that is uninstalled and installed again keeps its
grants). Its limits, where set, replace the quota settings for runs of that
plugin; the usage they are compared with is always the user's own, across all
plugins.

``PolicyUsage`` is the one row per user that every admission of that user goes
through: its update is the lock that makes the checks atomic across processes.
It holds today's budgets (reset when the day changes) and the synchronous
runs in flight.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models


class PluginGrant(models.Model):
    """A plugin granted to one user or one group, with optional limits of its own."""

    plugin_name = models.CharField(max_length=200, help_text="The plugin's registered name.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="plugin_grants",
    )
    group = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.CASCADE, related_name="plugin_grants"
    )
    max_active_jobs = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Jobs PENDING or RUNNING at once (blank: POLICY_MAX_ACTIVE_JOBS; 0: no limit).",
    )
    max_sync_runs = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Synchronous runs in flight at once (blank: POLICY_MAX_SYNC_RUNS; 0: no limit).",
    )
    daily_stored_bytes = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text="Bytes of inputs and results per day (blank: POLICY_DAILY_STORED_BYTES; "
        "0: no limit).",
    )
    daily_execution_s = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Seconds of execution per day (blank: POLICY_DAILY_EXECUTION_S; 0: no limit).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "execution"
        ordering = ["plugin_name", "group__name", "user__username"]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(user__isnull=False, group__isnull=True))
                | models.Q(user__isnull=True, group__isnull=False),
                name="plugin_grant_user_xor_group",
            ),
            models.UniqueConstraint(
                fields=["plugin_name", "user"], name="plugin_grant_once_per_user"
            ),
            models.UniqueConstraint(
                fields=["plugin_name", "group"], name="plugin_grant_once_per_group"
            ),
        ]
        indexes = [models.Index(fields=["plugin_name"], name="plugin_grant_plugin_idx")]

    def __str__(self) -> str:
        grantee = f"user {self.user}" if self.user_id else f"group {self.group}"
        return f"{self.plugin_name} to {grantee}"


class PolicyUsage(models.Model):
    """One user's usage: today's stored bytes and execution time, synchronous runs in flight.

    ``sync_runs`` counts the synchronous runs admitted and not yet ended. Every
    admission extends ``sync_runs_until`` to its run's lease; a run that a killed
    process never released is forgotten once every counted run's lease has passed
    (then no counted run can still be alive), so the count heals by itself.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        primary_key=True,
        on_delete=models.CASCADE,
        related_name="policy_usage",
    )
    day = models.DateField(help_text="The day (UTC) the budgets below are of.")
    stored_bytes = models.PositiveBigIntegerField(default=0)
    execution_ms = models.FloatField(default=0.0)
    sync_runs = models.PositiveIntegerField(default=0)
    sync_runs_until = models.DateTimeField(
        null=True, blank=True, help_text="When the last counted synchronous run's lease ends."
    )

    class Meta:
        app_label = "execution"
        verbose_name = "usage"
        verbose_name_plural = "usage today"
        ordering = ["user__username"]

    def __str__(self) -> str:
        return f"usage of {self.user}"
