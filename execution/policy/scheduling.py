"""Scheduling: which queued job starts next, and whether a capped plugin may start another.

The decisions live here and in the job's own row, not in a task engine, so
that every engine schedules alike:

* **Fair order.** A job gets a ``queue_rank`` when it is submitted: one step
  after its requester's last queued job, but never before the queue's present
  position (the rank of what is starting now). Workers start ``PENDING`` jobs in
  ``(queue_rank, created_at)`` order, so requesters take turns: one who queued
  2,000 jobs holds ranks far ahead, one who queues a single job lands at the
  head. The rank is computed once, at submit (one indexed statement), and the
  claim reads the head of a partial index: no sort of the queue per claim.
  ``JOB_FAIR_SCHEDULING = False`` gives every job rank 0 (first come, first
  served). :func:`requester_weight` is the hook for weighted turns.
* **Concurrency caps.** A plugin's ``max_concurrency`` is held in the database:
  a running job of a capped plugin holds one of its slots, and a unique
  constraint lets no two running jobs hold the same one (``Job.claim``,
  ``Job.insert``). :func:`plugins_at_cap` tells a worker which plugins' jobs it
  need not try now.

An engine uses the seam as the db worker does: pick the head of
:func:`claimable_jobs` (or the same order in its own SQL), then claim through
``JobExecutionService.run_job``, which enforces the cap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connections, models

from execution import sql
from execution.clock import greatest_sql
from execution.models import DatabaseNow, Job, JobQuerySet, JobStatus
from plugins.errors.error_envelope import ErrorType
from plugins.errors.exceptions import GovernedExecutionError
from plugins.registry import get_registry

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

# The order PENDING jobs start in (the index job_fair_queue_idx matches it).
QUEUE_ORDER = ("queue_rank", "created_at")

# How long a background job that lost the race for its plugin's last slot waits
# before its task tries again, and what a refused synchronous request is told.
CAP_RECHECK_S = 0.5
CAP_RETRY_AFTER_S = 1


class PluginAtCapacity(GovernedExecutionError):
    """A synchronous run of a capped plugin found every slot busy: 503, try again later.

    Refused rather than waited for: a web worker that waited for a slot would
    be held by one plugin, which is what the cap is there to prevent. Submit a
    job (``POST /v1/jobs``) to wait in the queue instead.
    """

    error_type = ErrorType.SERVICE_UNAVAILABLE
    retry_after_s = CAP_RETRY_AFTER_S

    def __init__(self, plugin_name: str, max_concurrency: int) -> None:
        super().__init__(
            f"Plugin {plugin_name} runs at most {max_concurrency} at once and all are busy; "
            "try again later, or submit a job to wait in the queue",
            details={"reason": "max_concurrency", "max_concurrency": max_concurrency},
            plugin=plugin_name,
        )


def fair_scheduling() -> bool:
    return bool(settings.JOB_FAIR_SCHEDULING)


def requester_weight(requester: AbstractBaseUser | None, plugin_name: str) -> float:
    """How many turns ``requester`` gets for one of everyone else's (default 1).

    The hook for weighting by grant: a requester of weight 2 advances half a
    rank per job, so starts twice as many while both are queued.
    """
    return 1.0


def queue_rank(*, requester: AbstractBaseUser | None, plugin_name: str) -> float:
    """The rank a job of ``requester`` submitted now takes in the fair queue.

    One step after the requester's last queued job, and at least the queue's
    position: the lowest queued rank, or the highest running one when that is
    further (jobs stuck behind a cap or waiting to retry do not hold it back).
    A requester with nothing queued gets the position itself, so their job is
    next but one. Racing submits of one requester may share a rank: ties start
    in submission order.
    """
    if not fair_scheduling():
        return 0.0
    step = 1.0 / requester_weight(requester, plugin_name)
    connection = connections[Job.objects.db]
    table = Job._meta.db_table
    mine = "requested_by_id = %s" if requester is not None else "requested_by_id IS NULL"
    statement = "SELECT " + greatest_sql(
        connection,
        f"COALESCE((SELECT MAX(queue_rank) FROM {table} WHERE status = "
        f"'{JobStatus.PENDING}' AND {mine}) + %s, 0)",
        f"COALESCE((SELECT MIN(queue_rank) FROM {table} WHERE status = '{JobStatus.PENDING}'), 0)",
        f"COALESCE((SELECT MAX(queue_rank) FROM {table} WHERE status = '{JobStatus.RUNNING}'), 0)",
    )
    params: list[object] = [requester.pk] if requester is not None else []
    row = sql.fetch_one(connection, statement, [*params, step])
    return float(row[0])


def capped_plugins() -> dict[str, int]:
    """Every registered plugin with a ``max_concurrency``, and its cap."""
    return {
        plugin.name: plugin.max_concurrency
        for plugin in get_registry().list_plugins()
        if plugin.max_concurrency is not None
    }


def plugins_at_cap() -> frozenset[str]:
    """The capped plugins whose every slot a running job holds now: their jobs cannot start.

    No query when no plugin is capped. Advisory (it may be stale the moment it
    is read): the claim itself enforces the cap.
    """
    caps = capped_plugins()
    if not caps:
        return frozenset()
    running = (
        Job.objects.filter(
            status=JobStatus.RUNNING, plugin_name__in=caps, concurrency_slot__isnull=False
        )
        .values("plugin_name")
        .annotate(count=models.Count("id"))
        .values_list("plugin_name", "count")
    )
    return frozenset(name for name, count in running if count >= caps[name])


def claimable_jobs() -> JobQuerySet:
    """PENDING jobs that may start now, in the order they should: the head starts next.

    For an engine that picks jobs itself; the db worker runs the same selection
    in one statement joined with its task table.
    """
    jobs = Job.objects.filter(status=JobStatus.PENDING).filter(
        models.Q(next_attempt_at__isnull=True) | models.Q(next_attempt_at__lte=DatabaseNow())
    )
    blocked = plugins_at_cap()
    if blocked:
        jobs = jobs.exclude(plugin_name__in=blocked)
    return jobs.order_by(*QUEUE_ORDER)
