"""Reads of policy: which plugins a user may run, and each user's usage against their quotas."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db.models import Count, Q

from execution.clock import database_now
from execution.policy.enforcement import OPEN, Limits, plugin_access, sync_runs_in_flight
from execution.policy.models import PluginGrant, PolicyUsage

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser


def runnable_plugins(user: AbstractBaseUser | Any, names: Iterable[str]) -> set[str]:
    """Of the plugins ``names``, those ``user`` may run (what check_access would allow)."""
    names = set(names)
    if getattr(user, "is_superuser", False) or plugin_access() == OPEN:
        return names
    if user is None or not user.is_authenticated:
        return set()
    granted = PluginGrant.objects.filter(plugin_name__in=names).filter(
        Q(user=user) | Q(group__user=user)
    )
    return set(granted.values_list("plugin_name", flat=True))


@dataclass(frozen=True)
class UsageToday:
    """One user's usage today against the default quotas (grants may set others per plugin)."""

    active_jobs: int
    sync_runs: int
    stored_bytes: int
    execution_s: float
    limits: Limits


def usage_today(usage: PolicyUsage, *, active_jobs: int) -> UsageToday:
    """What ``usage`` says of today (yesterday's budgets count as none)."""
    today = database_now().date() == usage.day
    return UsageToday(
        active_jobs=active_jobs,
        sync_runs=sync_runs_in_flight(usage),
        stored_bytes=usage.stored_bytes if today else 0,
        execution_s=round(usage.execution_ms / 1000.0, 3) if today else 0.0,
        limits=Limits.from_settings(),
    )


def usage_rows() -> Any:
    """Every user's usage row, with their jobs PENDING or RUNNING counted (for the admin)."""
    return PolicyUsage.objects.select_related("user").annotate(
        active_jobs=Count("user__jobs", filter=Q(user__jobs__status__in=["PENDING", "RUNNING"]))
    )
