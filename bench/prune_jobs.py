"""How long ``manage.py prune_jobs`` takes on 100,000 old final jobs, and its peak memory.

A fresh database gets N final jobs (bulk insert) that finished 60 days ago, each with
a task record, and is pruned with ``prune_jobs --older-than 30d`` (batches of 500,
a ``job.pruned`` entry per job, task records too). The baseline, in the same run: the
same rows seeded again and removed by one plain ``DELETE`` of jobs and tasks, with
no audit. Peak memory: how far each step raised the process's peak RSS
(``ru_maxrss``) above what seeding had already reached; flat means bounded.

    .venv/bin/python bench/prune_jobs.py [-n 100000] [--database-url ...]
"""

from __future__ import annotations

import argparse
import resource
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from _django import describe_database, setup_django

INSERT_ROWS = 1000


def task_result_model() -> Any:
    """The task engine's record (by app label: only the engine's adapter imports its library)."""
    from django.apps import apps

    return apps.get_model("django_tasks_database", "DBTaskResult")


def seed(n: int) -> None:
    from django.db import transaction
    from django.utils import timezone

    task_model = task_result_model()

    from execution.models import Job, JobStatus

    finished = timezone.now() - timedelta(days=60)
    for start in range(0, n, INSERT_ROWS):
        jobs, tasks = [], []
        for i in range(start, min(start + INSERT_ROWS, n)):
            task_id = uuid.uuid4()
            tasks.append(
                task_model(
                    id=task_id,
                    run_after=finished,
                    task_path="execution.tasks.run_job_task",
                    args_kwargs={"args": [], "kwargs": {}},
                    status="SUCCESSFUL",
                    queue_name="default",
                    backend_name="default",
                    priority=0,
                    finished_at=finished,
                )
            )
            jobs.append(
                Job(
                    plugin_name="text_stats",
                    plugin_version="1.2",
                    status=JobStatus.SUCCESS if i % 5 else JobStatus.FAILED,
                    input_payload={"text": f"document {i} " * 20},
                    result={"words": i % 97},
                    finished_at=finished,
                    task_id=task_id,
                )
            )
        with transaction.atomic():
            task_model.objects.bulk_create(tasks)
            Job.objects.bulk_create(jobs)


def measured(step: Callable[[], object]) -> tuple[float, int]:
    """The step's seconds, and how far it raised the process's peak RSS (bytes)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    step()
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return seconds, (after - before) * 1024


def plain_delete() -> None:
    from django.db import connection, transaction

    from execution.models import Job

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {Job._meta.db_table} WHERE finished_at IS NOT NULL")
        cursor.execute(f"DELETE FROM {task_result_model()._meta.db_table}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000, help="jobs to prune")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    setup_django(args.database_url)

    from execution.models import Job
    from execution.services.retention import prune_jobs

    seed(args.n)
    base_s, base_peak = measured(plain_delete)
    assert not Job.objects.exists()
    seed(args.n)
    seeded_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reports = []
    prune_s, prune_peak = measured(
        lambda: reports.append(prune_jobs(older_than=timedelta(days=30), actor="bench"))
    )
    assert reports[0].jobs == args.n, reports
    assert not Job.objects.exists()
    print(f"prune_jobs: {args.n:,} final jobs with their task records")
    print(f"database: {describe_database()}")
    print(f"peak RSS after seeding: {seeded_rss / 2**10:.0f} MiB")
    print(f"{'variant':44} {'seconds':>8} {'jobs/s':>9} {'RSS growth MiB':>15}")
    for name, seconds, peak in (
        ("plain DELETE of jobs and tasks (baseline)", base_s, base_peak),
        ("prune_jobs --older-than 30d (batches of 500)", prune_s, prune_peak),
    ):
        print(f"{name:44} {seconds:8.2f} {args.n / seconds:9,.0f} {peak / 2**20:15.1f}")
    print(f"ratio: time x{prune_s / base_s:.1f} the plain DELETE")


if __name__ == "__main__":
    main()
