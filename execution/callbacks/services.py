"""Callbacks' writes: register one at submit, deliver it from a task, recover lost deliveries.

Delivery runs only in a background task (``deliver_callback_task``, queued through
the task engine), never in a request. Each run claims the callback first with a
conditional update (DUE and due, or DELIVERING under a claim that expired), so two
workers never deliver one attempt, and a delivered callback is never claimed
again. Every attempt is recorded, with its number, time, duration and status code
or error. A failed attempt makes the callback DUE again after an exponential
backoff (``CALLBACK_RETRY_FIRST_DELAY_S`` doubling up to ``CALLBACK_RETRY_MAX_DELAY_S``),
with its task queued in the same transaction, until ``CALLBACK_RETRY_FOR_S`` after
the job ended; then it GAVE_UP.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models, transaction
from rest_framework.renderers import JSONRenderer

from execution.callbacks import delivery, signing
from execution.callbacks.destinations import DestinationRefused, resolve_destination
from execution.callbacks.models import CallbackAttempt, CallbackState, JobCallback
from execution.clock import database_now
from execution.models import Job, alters_data
from execution.task_engine import get_task_engine

logger = logging.getLogger(__name__)

# A delivery task may start a little before its attempt is due by the database's
# clock (the worker's clock is its own): it still claims it.
EARLY_START_S = 2.0
LOST_DELIVERY = "The worker delivering this attempt went away; its outcome is unknown"


class LostDeliveryTask(Exception):
    """What the task engine records on a delivery task whose worker was lost."""


@alters_data
def register_callback(*, job: Job, url: str) -> JobCallback:
    """Give the new ``job`` a callback to ``url`` (checked already), waiting for it to end."""
    return JobCallback.objects.create(job=job, url=url)


def retry_delay_s(attempt: int) -> float:
    """How long after failed attempt number ``attempt`` the next one starts."""
    first, longest = settings.CALLBACK_RETRY_FIRST_DELAY_S, settings.CALLBACK_RETRY_MAX_DELAY_S
    return float(min(first * 2 ** max(attempt - 1, 0), longest))


@alters_data
def deliver_callback(
    *, job_id: uuid.UUID | str, task_id: uuid.UUID | str | None = None
) -> CallbackAttempt | None:
    """Make the due attempt of job ``job_id``'s callback; None if there is none to make.

    None also when another worker claimed it first, or it was delivered already.
    ``task_id``: the task making it, kept on the attempt (retention prunes it).
    """
    claimed = _claim(job_id)
    if claimed is None:
        return None
    callback, number = claimed
    started_at = database_now()
    try:
        outcome = _attempt(callback, number)
    except Exception as exc:  # a fault of ours is a failed attempt too: retried, then given up
        logger.exception("The callback of job %s failed before it was sent", callback.job_id)
        outcome = delivery.Delivered(None, f"Not sent: {type(exc).__name__}", 0.0)
    return _record(callback, number, started_at, outcome, task_id=task_id)


def _claim(job_id: uuid.UUID | str) -> tuple[JobCallback, int] | None:
    """DUE (and due) or DELIVERING past its claim -> DELIVERING for one more attempt."""
    now = database_now()
    claimable = models.Q(
        state=CallbackState.DUE, next_attempt_at__lte=now + timedelta(seconds=EARLY_START_S)
    ) | models.Q(state=CallbackState.DELIVERING, claimed_until__lt=now)
    with transaction.atomic():
        callback = JobCallback.objects.select_for_update().filter(claimable, job_id=job_id).first()
        if callback is None:
            return None
        if callback.state == CallbackState.DELIVERING:  # its worker was lost mid-attempt
            _record_lost_attempt(callback)
        number = callback.attempt_count + 1
        # An attempt takes at most CALLBACK_TIMEOUT_S (delivery.post's deadline) after
        # the DNS lookup; the claim outlasts it well before another worker takes over.
        claim_s = settings.CALLBACK_TIMEOUT_S * 3 + settings.JOB_LEASE_GRACE_S
        JobCallback.objects.filter(pk=callback.pk).update(
            state=CallbackState.DELIVERING,
            attempt_count=number,
            claimed_until=now + timedelta(seconds=claim_s),
        )
    callback.state, callback.attempt_count = CallbackState.DELIVERING, number
    return callback, number


def _attempt(callback: JobCallback, number: int) -> delivery.Delivered:
    started = time.monotonic()
    try:
        destination = resolve_destination(callback.url)
    except DestinationRefused as exc:
        return delivery.Delivered(None, str(exc)[:500], _ms(started))
    body = job_body(Job.objects.select_related("requested_by").get(pk=callback.job_id))
    headers = {
        signing.SIGNATURE_HEADER: signing.signature(body, int(time.time())),
        "X-Job-Id": str(callback.job_id),
        "X-Callback-Attempt": str(number),
    }
    return delivery.post(destination, body, headers, timeout_s=settings.CALLBACK_TIMEOUT_S)


def job_body(job: Job) -> bytes:
    """The JSON of GET /v1/jobs/{id} as the job's owner reads it, without ``callback``.

    ``callback`` describes this very delivery; the receiver gets the job.
    """
    from execution.api.serializers import JobSerializer  # the API layer imports the services

    data = dict(JobSerializer(job).data)
    data.pop("callback", None)
    return bytes(JSONRenderer().render(data))


def _record(
    callback: JobCallback,
    number: int,
    started_at: datetime,
    outcome: delivery.Delivered,
    *,
    task_id: uuid.UUID | str | None,
) -> CallbackAttempt:
    """Record attempt ``number`` and what comes next, if this claim is still the callback's.

    The attempt's row is kept whatever comes next. A worker that took over this claim
    (it expired) may have recorded the attempt as lost already: its outcome replaces
    that guess (one row per number, the unique constraint's).
    """
    now = database_now()
    with transaction.atomic():
        attempt, _ = CallbackAttempt.objects.update_or_create(
            callback=callback,
            number=number,
            defaults={
                "started_at": started_at,
                "duration_ms": outcome.duration_ms,
                "status_code": outcome.status_code,
                "error": outcome.error,
                "task_id": task_id,
            },
        )
        ours = JobCallback.objects.filter(
            pk=callback.pk, state=CallbackState.DELIVERING, attempt_count=number
        )
        if outcome.succeeded:
            ours.update(state=CallbackState.DELIVERED, delivered_at=now, claimed_until=None)
            callback.state = CallbackState.DELIVERED
            return attempt
        next_at = now + timedelta(seconds=retry_delay_s(number))
        if callback.give_up_at is None or next_at > callback.give_up_at:
            ours.update(state=CallbackState.GAVE_UP, claimed_until=None)
            callback.state = CallbackState.GAVE_UP
            logger.warning(
                "Gave up the callback of job %s after %d attempts: %s",
                callback.job_id,
                number,
                outcome.error,
            )
            return attempt
        if not ours.update(state=CallbackState.DUE, next_attempt_at=next_at, claimed_until=None):
            return attempt  # another claim took over: its task carries on
        task_id = get_task_engine().enqueue_callback(callback.job_id, run_after=next_at)
        JobCallback.objects.filter(pk=callback.pk).update(task_id=task_id)
        callback.state = CallbackState.DUE
    logger.info(
        "Callback of job %s, attempt %d failed (%s); next at %s",
        callback.job_id,
        number,
        outcome.error,
        next_at.isoformat(),
    )
    return attempt


def _record_lost_attempt(callback: JobCallback) -> None:
    """Record the last attempt as lost, unless its worker recorded what it got already.

    That worker may still be alive, only slower than its claim: should it record its
    outcome later, that replaces this row (``_record``).
    """
    if callback.attempt_count:
        CallbackAttempt.objects.get_or_create(
            callback=callback,
            number=callback.attempt_count,
            defaults={"error": LOST_DELIVERY, "task_id": callback.task_id},
        )


@alters_data
def recover_lost_deliveries() -> int:
    """Queue a new task for every callback whose delivery task will never run; how many.

    A worker can die with a delivery task it took (DELIVERING past its claim, or
    DUE a grace after it fell due): the task engine tells which tasks are lost, as
    for jobs. Run by every process's lease monitor.
    """
    engine = get_task_engine()
    now = database_now()
    stale_before = now - timedelta(seconds=settings.JOB_LEASE_GRACE_S)
    candidates: Any = JobCallback.objects.filter(
        models.Q(state=CallbackState.DUE, next_attempt_at__lt=stale_before)
        | models.Q(state=CallbackState.DELIVERING, claimed_until__lt=now)
    )
    recovered = 0
    for callback in engine.with_lost_tasks(candidates, stale_before=stale_before)[:100]:
        with transaction.atomic():
            task_id = engine.enqueue_callback(callback.job_id)
            moved = JobCallback.objects.filter(
                pk=callback.pk, state=callback.state, task_id=callback.task_id
            ).update(task_id=task_id)
            if not moved:
                transaction.set_rollback(True)
                continue
            if callback.task_id is not None:
                engine.fail_lost_task(
                    callback.task_id, LostDeliveryTask(LOST_DELIVERY), finished_at=now
                )
        recovered += 1
        logger.warning("The callback of job %s lost its task; it was queued again", callback.job_id)
    return recovered


def delivery_task_ids(job_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """The tasks that delivered (or were to deliver) these jobs' callbacks: for retention."""
    queued = JobCallback.objects.filter(job_id__in=job_ids, task_id__isnull=False)
    made = CallbackAttempt.objects.filter(callback_id__in=job_ids, task_id__isnull=False)
    found = {*queued.values_list("task_id", flat=True), *made.values_list("task_id", flat=True)}
    return sorted(task_id for task_id in found if task_id is not None)


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000.0, 3)
