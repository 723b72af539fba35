"""How fast the audit trail seals and verifies a million entries.

A throwaway database gets N entries made as the services make them: N/4 jobs,
each with job.submitted, job.started and job.finished (its metrics counted)
plus one request.refused. They are sealed with the sealer's own code, then
verified twice: the chain alone, and the chain with every job and the
plugins' metrics checked against it (what ``manage.py verify_audit`` does).

    .venv/bin/python bench/audit_verify.py [-n 1000000] [--database-url ...]

The API's rate limits are off (bench/_django.py's THROTTLES_OFF); no request is made.
"""

from __future__ import annotations

import argparse
import time
import uuid

from _django import describe_database, setup_django

INSERT_ROWS = 500


def populate(n: int) -> int:
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from execution.audit.digest import payload_sha256
    from execution.audit.events import AuditEvent
    from execution.audit.recorder import AuditRecord, record_many
    from execution.models import Job, JobStatus
    from plugins.models import PluginMetrics

    user, _ = get_user_model().objects.get_or_create(username="bench")
    jobs = n // 4
    for start in range(0, jobs, INSERT_ROWS):
        batch, records = [], []
        for i in range(start, min(start + INSERT_ROWS, jobs)):
            payload = {"text": f"document {i}", "options": {"lang": "en", "depth": 2}}
            result = {"words": i % 97, "score": (i % 1000) / 7}
            job = Job(
                id=uuid.uuid4(),
                plugin_name="text_stats",
                plugin_version="1.2",
                status=JobStatus.SUCCESS,
                input_payload=payload,
                result=result,
                requested_by=user,
            )
            batch.append(job)
            common = {"job_id": job.id, "plugin_name": "text_stats", "plugin_version": "1.2"}
            records += [
                AuditRecord(
                    AuditEvent.JOB_SUBMITTED,
                    actor=user,
                    input_sha256=payload_sha256(payload),
                    **common,  # type: ignore[arg-type]
                ),
                AuditRecord(AuditEvent.JOB_STARTED, **common),  # type: ignore[arg-type]
                AuditRecord(
                    AuditEvent.JOB_FINISHED,
                    result_sha256=payload_sha256(result),
                    details={"status": "SUCCESS", "metrics": "success"},
                    **common,  # type: ignore[arg-type]
                ),
                AuditRecord(
                    AuditEvent.REQUEST_REFUSED,
                    actor=user,
                    plugin_name="text_stats",
                    error_type="ValidationError",
                ),
            ]
        with transaction.atomic():
            Job.objects.bulk_create(batch)
            for offset in range(0, len(records), INSERT_ROWS // 5):
                record_many(records[offset : offset + INSERT_ROWS // 5])
    PluginMetrics.objects.update_or_create(
        plugin_name="text_stats", defaults={"success_count": jobs, "error_count": 0}
    )
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1_000_000, help="entries (a quarter are jobs)")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    setup_django(args.database_url)

    from execution.audit.chain import seal
    from execution.audit.verify import verify

    started = time.perf_counter()
    jobs = populate(args.n)
    populated_s = time.perf_counter() - started

    started = time.perf_counter()
    sealed = seal(batch_size=5000).sealed
    seal_s = time.perf_counter() - started

    chain_only = verify(check_records=False)
    full = verify()
    for report in (chain_only, full):
        if not report.ok:
            raise SystemExit(f"verification failed: {report.first_problem}")

    entries = chain_only.entries
    print(f"audit_verify: {entries:,} sealed entries, {jobs:,} jobs")
    print(f"database: {describe_database()}")
    print(f"{'step':34} {'seconds':>9} {'entries/s':>11}")
    print(f"{'record (make the data, untimed)':34} {populated_s:9.1f}")
    for step, count, seconds in (
        ("seal (batches of 5000)", sealed, seal_s),
        ("verify --chain-only", entries, chain_only.elapsed_s),
        ("verify (chain + jobs + metrics)", entries, full.elapsed_s),
    ):
        print(f"{step:34} {seconds:9.1f} {count / seconds:11,.0f}")


if __name__ == "__main__":
    main()
