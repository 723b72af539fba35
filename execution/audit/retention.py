"""What a retention command needs to delete old jobs and entries with the chain intact.

Jobs: :func:`prune_jobs` deletes jobs and writes a ``job.pruned`` entry for each
in the same transaction, so the audit knows they were removed, not deleted.

Entries: :func:`prune_entries` seals a checkpoint at the head that carries on
what the pruned entries said (the plugins' counted executions, the jobs that
predate the audit), then deletes the entries up to a seq; verification then
starts from the checkpoint. Entries of a job that still exists are kept (its
``job.submitted`` entry is what proves it), so :func:`prunable_through` is the
highest seq that may go.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from typing import Any

from django.db import models, transaction

from execution.audit import signing
from execution.audit.chain import (
    Baseline,
    append_checkpoint,
    locked_chain,
    seal,
    sum_digest,
)
from execution.audit.events import AuditEvent
from execution.audit.models import AuditChain, AuditEntry
from execution.audit.recorder import AuditRecord, record_many


def prune_jobs(job_ids: Iterable[uuid.UUID | str], *, actor: Any = None) -> int:
    """Delete these jobs, each with a ``job.pruned`` entry, in one transaction; how many."""
    from execution.models import Job

    ids = [uuid.UUID(str(job_id)) for job_id in job_ids]
    with transaction.atomic():
        jobs = list(
            Job.objects.select_for_update()
            .filter(pk__in=ids)
            .values_list("id", "status", "plugin_name", "plugin_version")
        )
        found = [job[0] for job in jobs]
        submitted = set(
            AuditEntry.objects.filter(job_id__in=found, event=AuditEvent.JOB_SUBMITTED).values_list(
                "job_id", flat=True
            )
        )
        record_many(
            [
                AuditRecord(
                    event=AuditEvent.JOB_PRUNED,
                    job_id=job_id,
                    actor=actor,
                    plugin_name=plugin_name,
                    plugin_version=plugin_version,
                    details={"status_before": status, "legacy": job_id not in submitted},
                )
                for job_id, status, plugin_name, plugin_version in jobs
            ]
        )
        Job.objects.filter(pk__in=found).delete()
    return len(found)


def prunable_through() -> int:
    """The highest seq :func:`prune_entries` may take: below every existing job's entries."""
    from execution.models import Job

    chain = AuditChain.objects.filter(pk=AuditChain.SINGLETON_ID).first()
    if chain is None:
        return 0
    live = AuditEntry.objects.filter(
        seq__isnull=False, job_id__in=models.Subquery(Job.objects.values("pk"))
    )
    first_live = live.aggregate(first=models.Min("seq"))["first"]
    limit = chain.head_seq if first_live is None else first_live - 1
    return max(chain.base_seq, limit)


def prune_entries(through_seq: int) -> int:
    """Delete the sealed entries up to ``through_seq`` behind a checkpoint; how many.

    Raises ValueError past :func:`prunable_through`.
    """
    seal()
    with transaction.atomic():
        key = signing.signing_key()
        chain = locked_chain(key, "default")
        if through_seq > prunable_through():
            raise ValueError(
                f"Entries up to seq {through_seq} cannot be pruned: the highest that may go is "
                f"seq {prunable_through()} (later ones belong to jobs that still exist)"
            )
        if through_seq <= chain.base_seq:
            return 0
        doomed = AuditEntry.objects.filter(seq__gt=chain.base_seq, seq__lte=through_seq)
        current = (
            AuditEntry.objects.filter(seq=chain.checkpoint_seq)
            .values_list("details", flat=True)
            .get()
        )
        baseline = Baseline.from_details(current)
        counted: Counter[tuple[str, str]] = Counter()
        legacy_gone: list[uuid.UUID] = []
        for plugin_name, event, job_id, details in doomed.values_list(
            "plugin_name", "event", "job_id", "details"
        ).iterator():
            if not isinstance(details, dict):
                continue
            if details.get("metrics") in ("success", "error"):
                counted[(plugin_name, details["metrics"])] += 1
            if event == AuditEvent.JOB_PRUNED and details.get("legacy") and job_id is not None:
                legacy_gone.append(job_id)
        metrics = {name: dict(counts) for name, counts in baseline.metrics.items()}
        for (name, outcome), count in counted.items():
            metrics.setdefault(name, {"success": 0, "error": 0})[outcome] += count
        legacy_sum = sum_digest(int(baseline.legacy_digest, 16), legacy_gone, sign=-1)
        carried = Baseline(
            metrics=metrics,
            legacy_count=baseline.legacy_count - len(legacy_gone),
            legacy_digest=f"{legacy_sum:064x}",
        )
        through_hash = AuditEntry.objects.values_list("entry_hash", flat=True).get(seq=through_seq)
        append_checkpoint(
            chain,
            carried.as_details(through_seq, through_hash, chain.key_fingerprint),
            key,
            "default",
        )
        deleted, _ = doomed.delete()
        AuditChain.objects.filter(pk=chain.pk).update(base_seq=through_seq, base_hash=through_hash)
    return deleted
