"""A stand-in for the services' audit hooks, for the benchmarks only, until the services record.

Installed by bench_settings.py (``BENCH_AUDIT_STANDIN=0`` leaves it out). It
records what the services are to record, where they are to record it: each
entry in the transaction of the change it describes, after the change. When
the services call the recorder themselves, delete this module and its line
in bench_settings.py, or every event is recorded twice.
"""

from __future__ import annotations

import functools
from typing import Any

from django.apps import AppConfig
from django.db import transaction


def install() -> None:
    from execution.audit.events import AuditEvent
    from execution.audit.recorder import AuditRecord, payload_sha256, record, record_many
    from execution.models import Job
    from execution.services.job_execution_service import JobExecutionService
    from plugins.registry import get_registry

    def facts(job: Job) -> dict[str, Any]:
        # A claimed job loads few fields (Job.objects.load_pending); reading a deferred
        # one would cost a query, so the version comes from the registry then.
        if "plugin_version" in job.get_deferred_fields():
            version = get_registry().get_plugin(job.plugin_name).version
        else:
            version = job.plugin_version
        return {"job_id": job.pk, "plugin_name": job.plugin_name, "plugin_version": version}

    original_create = JobExecutionService.create_job

    @functools.wraps(original_create)
    def create_job(self: JobExecutionService, **kwargs: Any) -> Job:
        with transaction.atomic():
            job = original_create(self, **kwargs)
            record(
                AuditEvent.JOB_SUBMITTED,
                actor=kwargs.get("requested_by"),
                input_sha256=payload_sha256(job.input_payload),
                **facts(job),
            )
        return job

    original_insert = Job.insert

    @functools.wraps(original_insert)
    def insert(self: Job) -> None:
        with transaction.atomic():
            original_insert(self)
            record_many(
                [
                    AuditRecord(
                        AuditEvent.JOB_SUBMITTED,
                        actor=self.requested_by,
                        input_sha256=payload_sha256(self.input_payload),
                        **facts(self),
                    ),
                    AuditRecord(AuditEvent.JOB_STARTED, **facts(self)),
                ]
            )

    original_claim = Job.claim

    @functools.wraps(original_claim)
    def claim(self: Job, **kwargs: Any) -> bool:
        with transaction.atomic():
            claimed = original_claim(self, **kwargs)
            if claimed:
                record(AuditEvent.JOB_STARTED, **facts(self))
        return claimed

    original_succeeded = Job.mark_succeeded

    @functools.wraps(original_succeeded)
    def mark_succeeded(self: Job, result: dict[str, Any]) -> None:
        original_succeeded(self, result)
        record(
            AuditEvent.JOB_FINISHED,
            result_sha256=payload_sha256(result),
            details={"status": "SUCCESS", "metrics": "success"},
            **facts(self),
        )

    JobExecutionService.create_job = create_job  # type: ignore[method-assign]
    Job.insert = insert  # type: ignore[method-assign]
    Job.claim = claim  # type: ignore[method-assign]
    Job.mark_succeeded = mark_succeeded  # type: ignore[method-assign]


class AuditStandinConfig(AppConfig):
    name = "audit_standin"
    label = "audit_standin"

    def ready(self) -> None:
        install()
