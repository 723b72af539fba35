"""AnalysisExecutionService: what the API calls to run a plugin now or in the background."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, transaction

from execution.audit.events import AuditEvent
from execution.audit.recorder import record
from execution.models import Job, alters_data
from execution.policy.decisions import Decision, record_decision
from execution.policy.enforcement import (
    Access,
    PluginAccessDenied,
    PolicyRefusal,
    SyncSlot,
    admit_submission,
    admit_sync,
    check_access,
)
from execution.selectors import get_job
from execution.services.job_execution_service import JobExecutionService
from plugins.contract import plugin_label
from plugins.errors.exceptions import GovernedExecutionError
from plugins.metrics.instruments import count_refused_request, metrics_label
from plugins.registry import get_registry

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

# Owners cancel their own jobs; cancelling anyone's takes the admin's "change job".
CANCEL_ANY_JOB_PERMISSION = "execution.change_job"


class CancelNotAllowed(Exception):
    """The user may see the job but not cancel it: it is not theirs."""


def record_refusal(
    *, plugin_name: object, error_type: str, user: User | None = None, audited: bool = False
) -> None:
    """Count a request refused before anything ran, and put it on the audit trail.

    ``audited``: its entry is written already (a synchronous job's refused input,
    recorded with the job it removed). A refusal is often the database's own
    outage: the audit entry is then lost, and only logged, so the refusal itself
    still reaches the client.
    """
    registry = get_registry()
    if registry.record_metrics:
        registered = registry.is_registered(plugin_name)
        count_refused_request(metrics_label(plugin_name, registered=registered), error_type)
    if audited:
        return
    try:
        record(
            AuditEvent.REQUEST_REFUSED,
            actor=user,
            plugin_name=plugin_label(plugin_name),
            error_type=error_type,
        )
    except DatabaseError:
        logger.warning("A refused request (%s) could not be put on the audit trail", error_type)


@contextlib.contextmanager
def refusals_counted(plugin_name: str, user: User | None) -> Iterator[None]:
    """Record a request refused before anything ran (unknown plugin, bad input), and re-raise."""
    try:
        yield
    except GovernedExecutionError as exc:
        record_refusal(
            plugin_name=plugin_name,
            error_type=exc.error_type,
            user=user,
            audited=getattr(exc, "audited", False),
        )
        raise


@contextlib.contextmanager
def decisions_recorded(plugin_name: str, user: User | None) -> Iterator[None]:
    """Put a policy refusal on the record (counted, logged, audited), and re-raise.

    Outside any transaction of the refused request: its rollback must not take
    the refusal's record with it.
    """
    try:
        yield
    except PolicyRefusal as exc:
        record_decision(
            Decision.DENIED if isinstance(exc, PluginAccessDenied) else Decision.OVER_QUOTA,
            reason=exc.reason,
            plugin_name=plugin_name,
            user=user,
            error_type=str(exc.error_type),
            details=exc.details,
        )
        raise


class _SyncAdmission:
    """Admits one synchronous run once its lease is known, and releases it however it ends."""

    def __init__(self, user: User | None, access: Access, payload: Any) -> None:
        self._user, self._access, self._payload = user, access, payload
        self.slot: SyncSlot | None = None

    def __call__(self, lease_s: float) -> SyncSlot | None:
        self.slot = admit_sync(self._user, self._access, payload=self._payload, lease_s=lease_s)
        _allowed(self._access, self._user)
        return self.slot

    def release(self) -> None:
        if self.slot is not None:
            self.slot.release()  # a no-op when the outcome's transaction released it


def _allowed(access: Access, user: User | None) -> None:
    record_decision(
        Decision.ALLOWED, reason=access.reason, plugin_name=access.plugin_name, user=user
    )


class AnalysisExecutionService:
    """What the API and the admin call to run plugins: policy first, then the job.

    Every path (synchronous, background, the admin's re-run) checks the same
    policy here: the user's grant of the plugin (check_access), then their
    quotas, atomically with what the run records (execution/policy/enforcement.py).
    """

    def __init__(self, jobs: JobExecutionService | None = None) -> None:
        self._jobs = jobs if jobs is not None else JobExecutionService()

    @alters_data
    def execute(
        self,
        *,
        plugin_name: str,
        payload: dict[str, Any],
        user: User | None = None,
        plugin_version: str = "",
        job_id: uuid.UUID | None = None,
    ) -> Job:
        """Run now; the returned job is SUCCESS, FAILED or (cancelled meanwhile) CANCELLED.

        A request refused before it ran (unknown plugin, bad input) records no job
        but is counted. ``plugin_version``: run only that version. ``job_id``: the
        job's id, chosen by the caller (an idempotency key's claim). Raises
        OutcomeNotRecorded when the database took no write of the outcome in time,
        PluginAccessDenied or QuotaExceededError when policy refuses the run.
        """
        with decisions_recorded(plugin_name, user), refusals_counted(plugin_name, user):
            admission = _SyncAdmission(user, check_access(user, plugin_name), payload)
            try:
                return self._jobs.execute_now(
                    plugin_name=plugin_name,
                    payload=payload,
                    requested_by=user,
                    requested_version=plugin_version,
                    job_id=job_id,
                    admit=admission,
                )
            finally:
                admission.release()

    @alters_data
    def submit(
        self,
        *,
        plugin_name: str,
        payload: dict[str, Any],
        user: User | None = None,
        plugin_version: str = "",
        job_id: uuid.UUID | None = None,
        callback_url: str = "",
    ) -> Job:
        """Record a PENDING job together with the task that will run it (refusals counted).

        ``job_id``: as for :meth:`execute`. ``callback_url``: where to POST the job once
        it is final (checked by the caller: execution/callbacks/destinations.py). Policy
        refuses it with PluginAccessDenied or QuotaExceededError.
        """
        with decisions_recorded(plugin_name, user), refusals_counted(plugin_name, user):
            return self._jobs.create_job(
                plugin_name=plugin_name,
                payload=payload,
                requested_by=user,
                requested_version=plugin_version,
                job_id=job_id,
                admit=self._submission_admission(plugin_name, payload, user),
                callback_url=callback_url,
            )

    @staticmethod
    def _submission_admission(
        plugin_name: str, payload: dict[str, Any], user: User | None
    ) -> Callable[[], None]:
        """Check the grant now; the quotas in the transaction that records the job."""
        access = check_access(user, plugin_name)

        def admit() -> None:
            admit_submission(user, access, payload=payload)
            _allowed(access, user)

        return admit

    @alters_data
    def rerun(self, *, job: Job, user: User) -> Job:
        """Submit ``job``'s plugin, version and input again, for ``user``; the audit links the two.

        A refusal (the plugin is gone, the input no longer valid, ``user`` may not
        run it or is over a quota) is recorded as any.
        """
        with (
            decisions_recorded(job.plugin_name, user),
            refusals_counted(job.plugin_name, user),
            transaction.atomic(),
        ):
            again = self._jobs.create_job(
                plugin_name=job.plugin_name,
                payload=job.input_payload,
                requested_by=user,
                requested_version=job.requested_version,
                admit=self._submission_admission(job.plugin_name, job.input_payload, user),
            )
            record(
                AuditEvent.JOB_RERUN,
                job_id=job.pk,
                actor=user,
                plugin_name=job.plugin_name,
                plugin_version=job.plugin_version,
                plugin_fingerprint=job.plugin_fingerprint,
                details={"rerun_as": str(again.pk)},
            )
            Job.objects.filter(pk=again.pk).update(rerun_of=job)
            again.rerun_of = job
        return again

    @alters_data
    def cancel(self, *, job_id: uuid.UUID | str, user: User | None = None) -> Job:
        """Cancel a job for ``user``, who must be allowed to.

        Raises JobNotFound (they may not see it), CancelNotAllowed (it is not
        theirs and they lack CANCEL_ANY_JOB_PERMISSION) or JobAlreadyEnded.
        """
        job = get_job(job_id, user=user)
        if (
            user is not None
            and job.requested_by_id != user.pk
            and not user.has_perm(CANCEL_ANY_JOB_PERMISSION)
        ):
            raise CancelNotAllowed(f"Job {job.pk} is not yours to cancel.")
        return self._jobs.cancel_job(job=job, user=user)
