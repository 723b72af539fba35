"""Background throughput: governed jobs against bare django-tasks tasks, in one run.

N no-op jobs are submitted through AnalysisExecutionService (a Job row, a task,
then in the worker: claim, ToolRunner, outcome + metrics) and drained by
`manage.py db_worker --batch --no-startup-delay -v 0`; N bare no-op django-tasks tasks
are enqueued and drained the same way. Throughput is N divided by the time from
the first task's start to the last one's finish (worker start-up excluded).

The governed jobs run with the audit trail on and off (AUDIT_ENABLED), in
alternating rounds of N / rounds jobs each, so that drift of a shared machine
falls on both alike.

    .venv/bin/python bench/worker_throughput.py [-n 1000] [--workers 1] [--rounds 2]
        [--database-url ...]

The API's rate limits are off (bench/_django.py's THROTTLES_OFF).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from _django import ROOT, bench_env, bench_user, describe_database, setup_django

TARGET_RATIO = 0.8
AUDIT_TARGET_RATIO = 0.95


def drain(database_url: str, workers: int, audit: bool = True) -> float:
    """Run ``workers`` db_worker processes until the queue is empty; return wall seconds."""
    command = [sys.executable, "manage.py", "db_worker", "--batch", "--no-startup-delay", "-v", "0"]
    env = {**bench_env(database_url), "AUDIT_ENABLED": "1" if audit else "0"}
    started = time.perf_counter()
    processes = [subprocess.Popen(command, cwd=ROOT, env=env) for _ in range(workers)]
    for process in processes:
        if process.wait() != 0:
            raise SystemExit("db_worker failed")
    return time.perf_counter() - started


def busy_seconds(task_path_suffix: str) -> float:
    from django.db.models import Max, Min
    from django_tasks_db.models import DBTaskResult

    span = DBTaskResult.objects.filter(
        task_path__endswith=task_path_suffix, status="SUCCESSFUL"
    ).aggregate(first=Min("started_at"), last=Max("finished_at"))
    return float((span["last"] - span["first"]).total_seconds())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="jobs and tasks each")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2, help="audit on/off rounds")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    database_url = setup_django(args.database_url)

    from bench_app import bare_noop_task
    from django.conf import settings
    from django_tasks_db.models import DBTaskResult

    from execution.audit.models import AuditEntry
    from execution.models import Job, JobStatus
    from execution.services import AnalysisExecutionService

    user = bench_user()
    DBTaskResult.objects.all().delete()

    for _ in range(args.n):
        bare_noop_task.enqueue()
    bare_wall = drain(database_url, args.workers)
    bare_busy = busy_seconds("bare_noop_task")

    service = AnalysisExecutionService()
    per_round = args.n // args.rounds
    governed = {True: [0.0, 0.0], False: [0.0, 0.0]}  # audit on/off: busy, wall seconds
    for _ in range(args.rounds):
        for audit in (True, False):
            settings.AUDIT_ENABLED = audit
            submitted = [
                service.submit(plugin_name="bench_noop", payload={}, user=user).pk
                for _ in range(per_round)
            ]
            governed[audit][1] += drain(database_url, args.workers, audit)
            governed[audit][0] += busy_seconds("run_job_task")
            done = Job.objects.filter(pk__in=submitted, status=JobStatus.SUCCESS).count()
            if done != per_round:
                raise SystemExit(f"only {done} of {per_round} jobs succeeded")
            DBTaskResult.objects.filter(task_path__endswith="run_job_task").delete()
    settings.AUDIT_ENABLED = True
    entries = AuditEntry.objects.count()

    print(f"worker_throughput: {args.n} each, {args.workers} db_worker --batch --no-startup-delay")
    print(f"database: {describe_database()}")
    print(
        f"governed jobs in {args.rounds} rounds of {per_round} with the audit on, then off; "
        f"{entries} audit entries recorded"
    )
    print(f"{'kind':26} {'per s':>8} {'busy s':>8} {'wall s':>8}")
    for label, n, busy, wall in (
        ("bare django-tasks", args.n, bare_busy, bare_wall),
        ("governed jobs, audit on", per_round * args.rounds, *governed[True]),
        ("governed jobs, audit off", per_round * args.rounds, *governed[False]),
    ):
        print(f"{label:26} {n / busy:8.0f} {busy:8.2f} {wall:8.2f}")
    on_busy, off_busy = governed[True][0], governed[False][0]
    ratio = bare_busy / on_busy
    print(f"governed (audit on) / bare: {ratio:.2f}x (target >= {TARGET_RATIO})")
    print(
        f"audit on / audit off: {off_busy / on_busy:.3f}x throughput "
        f"(target >= {AUDIT_TARGET_RATIO})"
    )


if __name__ == "__main__":
    main()
