"""Background throughput: governed jobs against bare django-tasks tasks, in one run.

N no-op jobs are submitted through AnalysisExecutionService (a Job row, a task,
then in the worker: claim, ToolRunner, outcome + metrics) and drained by
`manage.py db_worker --batch --no-startup-delay -v 0`; N bare no-op django-tasks tasks
are enqueued and drained the same way. Throughput is N divided by the time from
the first task's start to the last one's finish (worker start-up excluded).

The governed jobs run with one setting on and off, in alternating rounds of
N / rounds jobs each, so that drift of a shared machine falls on both alike:
``--compare audit`` (the default) the audit trail (AUDIT_ENABLED), ``--compare
fairness`` fair scheduling (JOB_FAIR_SCHEDULING; the audit on in both), with the
jobs submitted by two users in turn.

    .venv/bin/python bench/worker_throughput.py [-n 1000] [--workers 1] [--rounds 2]
        [--compare audit|fairness] [--database-url ...]

The API's rate limits are off (bench/_django.py's THROTTLES_OFF).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from _django import ROOT, bench_env, bench_user, describe_database, setup_django

TARGET_RATIO = 0.8
# Each compared setting, on, may cost at most 5% of the throughput it has off.
ON_OFF_TARGET_RATIO = 0.95
COMPARED_SETTINGS = {"audit": "AUDIT_ENABLED", "fairness": "JOB_FAIR_SCHEDULING"}


def drain(database_url: str, workers: int, **settings_: bool) -> float:
    """Run ``workers`` db_worker processes until the queue is empty; return wall seconds.

    ``settings_``: boolean settings the workers run with (``AUDIT_ENABLED=False``).
    """
    command = [sys.executable, "manage.py", "db_worker", "--batch", "--no-startup-delay", "-v", "0"]
    env = {**bench_env(database_url), **{k: "1" if v else "0" for k, v in settings_.items()}}
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
    parser.add_argument("--rounds", type=int, default=2, help="on/off rounds")
    parser.add_argument(
        "--compare", choices=sorted(COMPARED_SETTINGS), default="audit", help="what is on/off"
    )
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    database_url = setup_django(args.database_url)

    from bench_app import bare_noop_task
    from django.conf import settings
    from django_tasks_db.models import DBTaskResult

    from execution.audit.models import AuditEntry
    from execution.models import Job, JobStatus
    from execution.services import AnalysisExecutionService

    setting = COMPARED_SETTINGS[args.compare]
    users = [bench_user()]
    if args.compare == "fairness":
        users.append(bench_user("bench-2"))
    DBTaskResult.objects.all().delete()

    for _ in range(args.n):
        bare_noop_task.enqueue()
    bare_wall = drain(database_url, args.workers)
    bare_busy = busy_seconds("bare_noop_task")

    service = AnalysisExecutionService()
    per_round = args.n // args.rounds
    governed = {True: [0.0, 0.0], False: [0.0, 0.0]}  # setting on/off: busy, wall seconds
    for _ in range(args.rounds):
        for on in (True, False):
            setattr(settings, setting, on)  # the submits' side of it (a fair rank, audit entries)
            submitted = [
                service.submit(plugin_name="bench_noop", payload={}, user=users[i % len(users)]).pk
                for i in range(per_round)
            ]
            governed[on][1] += drain(database_url, args.workers, **{setting: on})
            governed[on][0] += busy_seconds("run_job_task")
            done = Job.objects.filter(pk__in=submitted, status=JobStatus.SUCCESS).count()
            if done != per_round:
                raise SystemExit(f"only {done} of {per_round} jobs succeeded")
            DBTaskResult.objects.filter(task_path__endswith="run_job_task").delete()
    setattr(settings, setting, True)
    entries = AuditEntry.objects.count()

    print(f"worker_throughput: {args.n} each, {args.workers} db_worker --batch --no-startup-delay")
    print(f"database: {describe_database()}")
    print(
        f"governed jobs in {args.rounds} rounds of {per_round} with {setting} on, then off, "
        f"from {len(users)} user(s); {entries} audit entries recorded"
    )
    print(f"{'kind':40} {'per s':>8} {'busy s':>8} {'wall s':>8}")
    for label, n, busy, wall in (
        ("bare django-tasks", args.n, bare_busy, bare_wall),
        (f"governed jobs, {setting} on", per_round * args.rounds, *governed[True]),
        (f"governed jobs, {setting} off", per_round * args.rounds, *governed[False]),
    ):
        print(f"{label:40} {n / busy:8.0f} {busy:8.2f} {wall:8.2f}")
    on_busy, off_busy = governed[True][0], governed[False][0]
    if args.compare == "audit":
        print(f"governed (audit on) / bare: {bare_busy / on_busy:.2f}x (target >= {TARGET_RATIO})")
    print(
        f"{setting} on / off: {off_busy / on_busy:.3f}x throughput "
        f"(target >= {ON_OFF_TARGET_RATIO})"
    )


if __name__ == "__main__":
    main()
