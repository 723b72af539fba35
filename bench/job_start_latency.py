"""Submit -> start of a job, with an idle db_worker: woken by NOTIFY, against polling, in one run.

One real ``manage.py db_worker`` runs with a long ``--interval`` (5 s by default),
so that its poll cannot explain a fast start. Jobs of the no-op plugin are
submitted one at a time through AnalysisExecutionService, each once the previous
one has finished and the worker has had a moment to go idle again. A job's
submit -> start is its ``started_at - created_at``: both are the database's time
(execution/clock.py), the first taken before the job's transaction commits.

The same is then measured with JOB_NOTIFY_WORKERS off in the worker, the
polling baseline (fewer jobs: each waits half an interval on average). On SQLite
there are no notifications; only the baseline runs.

    .venv/bin/python bench/job_start_latency.py [-n 200] [--baseline-n 10]
        [--interval 5] [--database-url postgres://...]
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

from _django import ROOT, bench_env, bench_user, describe_database, setup_django

TARGET_P50_MS = 20.0
TARGET_P99_MS = 100.0
WARM_UP_JOBS = 3


def start_worker(database_url: str, interval: float, *, notify: bool) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "manage.py",
        "db_worker",
        "--interval",
        str(interval),
        "--no-startup-delay",
        "-v",
        "0",
    ]
    env = {**bench_env(database_url), "JOB_NOTIFY_WORKERS": "1" if notify else "0"}
    return subprocess.Popen(command, cwd=ROOT, env=env)


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def run_one(user: Any, timeout_s: float) -> tuple[float, float]:
    """Submit a job, wait for it to finish; its submit -> start and submit -> task taken, in ms.

    The task is taken (django-tasks-db's claim, the worker's clock) when the worker
    has woken and polled; the job starts when the task's run claims it.
    """
    from django_tasks_db.models import DBTaskResult

    from execution.models import Job, JobStatus
    from execution.services import AnalysisExecutionService

    job = AnalysisExecutionService().submit(plugin_name="bench_noop", payload={}, user=user)
    deadline = time.monotonic() + timeout_s
    while True:
        job = Job.objects.only("status", "created_at", "started_at", "task_id").get(pk=job.pk)
        if job.status not in (JobStatus.PENDING, JobStatus.RUNNING):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job.pk} did not finish within {timeout_s} s")
        time.sleep(0.02)  # not faster: the bench's own reads would slow the worker
    if job.status != JobStatus.SUCCESS or job.started_at is None or job.task_id is None:
        raise SystemExit(f"job {job.pk} ended {job.status}")
    taken = DBTaskResult.objects.values_list("started_at", flat=True).get(pk=job.task_id)
    if taken is None:
        raise SystemExit(f"the task of job {job.pk} never started")
    return (
        (job.started_at - job.created_at).total_seconds() * 1000,
        (taken - job.created_at).total_seconds() * 1000,
    )


def measure(
    database_url: str, user: Any, n: int, interval: float, pause_ms: float, *, notify: bool
) -> list[tuple[float, float]]:
    worker = start_worker(database_url, interval, notify=notify)
    try:
        timeout_s = interval * 3 + 30
        for _ in range(WARM_UP_JOBS if notify else 1):  # the worker is up, its host warm
            run_one(user, timeout_s)
        latencies = []
        for _ in range(n):
            time.sleep(random.uniform(0.5, 1.5) * pause_ms / 1000)  # the worker goes idle
            latencies.append(run_one(user, timeout_s))
        return latencies
    finally:
        stop_worker(worker)


def summary(measured: list[tuple[float, float]], part: int = 0) -> str:
    latencies = [row[part] for row in measured]
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return (
        f"p50 {statistics.median(latencies):8.1f}  p90 {cuts[89]:8.1f}  "
        f"p99 {cuts[98]:8.1f}  max {max(latencies):8.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="jobs woken by notification")
    parser.add_argument("--baseline-n", type=int, default=10, help="jobs found by polling")
    parser.add_argument("--interval", type=float, default=5.0, help="the worker's --interval")
    parser.add_argument(
        "--pause-ms", type=float, default=100.0, help="mean pause before each submission"
    )
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    database_url = setup_django(args.database_url)

    from django.db import connection

    user = bench_user()
    postgres = connection.vendor == "postgresql"
    print(
        f"job_start_latency: one idle db_worker --interval {args.interval}, "
        "no-op jobs submitted one at a time"
    )
    print(f"database: {describe_database()}")
    print(f"{'submit -> start, ms':32} {'n':>5}  figures")
    notified: list[tuple[float, float]] = []
    if postgres:
        notified = measure(database_url, user, args.n, args.interval, args.pause_ms, notify=True)
        print(f"{'woken by NOTIFY':32} {len(notified):5}  {summary(notified)}")
        print(f"{'  of which: submit -> task taken':32} {len(notified):5}  {summary(notified, 1)}")
    else:
        print("SQLite has no notifications: a job waits for the worker's next poll")
    polled = measure(
        database_url, user, args.baseline_n, args.interval, args.pause_ms, notify=False
    )
    print(f"{'polling (JOB_NOTIFY_WORKERS=0)':32} {len(polled):5}  {summary(polled)}")
    if notified:
        starts = [row[0] for row in notified]
        p50 = statistics.median(starts)
        p99 = statistics.quantiles(starts, n=100, method="inclusive")[98]
        print(
            f"notified p50 {p50:.1f} ms (target <= {TARGET_P50_MS:.0f}), "
            f"p99 {p99:.1f} ms (target <= {TARGET_P99_MS:.0f}); "
            f"polling p50 / notified p50: {statistics.median(r[0] for r in polled) / p50:.0f}x"
        )


if __name__ == "__main__":
    main()
