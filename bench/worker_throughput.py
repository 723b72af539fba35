"""Background throughput and latency per engine and worker count: governed jobs against bare tasks.

For each worker count of ``--workers``:

* *bare*: N no-op django-tasks tasks drained by that many bare workers (on the
  database engine django-tasks-db's own ``db_worker``, one task at a time);
* *governed*: N no-op jobs submitted through AnalysisExecutionService (a Job, a
  task; in the worker: claim, ToolRunner, outcome, metrics, audit) drained by that
  many governed workers, each running ``--concurrency`` jobs at once;
* *sleep*: jobs of a plugin that sleeps ``--sleep-ms``, against the ideal of
  workers x concurrency / sleep;
* *latency*: ``--latency-jobs`` jobs submitted one by one to idle workers:
  submit -> start and submit -> finish, p50 and p99.

Throughput is the jobs divided by the time from the first one's start to the last
one's finish (worker start-up excluded). ``--compare audit|fairness`` also runs
the governed jobs in alternating rounds with that setting on and off.
``--profile`` drains once more with one governed worker under cProfile (its
runner threads included) and prints the top lines.

    .venv/bin/python bench/worker_throughput.py [--backend database|celery] [--workers 1,2,4]
        [-n 1000] [--concurrency 2] [--sleep-ms 20] [--latency-jobs 100]
        [--compare audit|fairness] [--rounds 2] [--profile]
        [--database-url ...] [--broker-url redis://...]

``--backend celery`` runs ``celery -A project worker`` with TASKS_BACKEND=celery and
CELERY_BROKER_URL (``--broker-url``; else a private ``redis-server`` it starts and
stops); ``pip install -e '.[celery]'`` first. Its bare tasks note their finish in Redis
(bench_app.py). The API's rate limits are off.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _django import BENCH_DIR, ROOT, bench_env, bench_user, describe_database, setup_django

# One governed worker process over one bare worker, no-op jobs (issue 19).
TARGET_RATIO = 1.0
# A sleeping plugin's jobs per second over workers x concurrency / sleep.
SLEEP_TARGET_RATIO = 0.9
# Each compared setting, on, may cost at most 5% of the throughput it has off.
ON_OFF_TARGET_RATIO = 0.95
COMPARED_SETTINGS = {"audit": "AUDIT_ENABLED", "fairness": "JOB_FAIR_SCHEDULING"}
# django-tasks-db's own worker, not the project's: the bare baseline.
BARE_DB_WORKER = (
    "import sys, django; django.setup(); "
    "from django_tasks_db.management.commands.db_worker import Command; "
    "Command().run_from_argv(['manage.py', 'db_worker', *sys.argv[1:]])"
)
# Jobs per worker slot left out of the rates: the first wait for the hosts to start.
WARM_UP_JOBS_PER_SLOT = 10


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def job_rate(job_ids: list[uuid.UUID], skip: int = 0) -> float:
    """Jobs per second from the start of job ``skip`` (in start order) to the last finish.

    Every job must succeed. ``skip``: the first jobs of a fresh worker wait for its
    plugin hosts to start; they are left out.
    """
    from django.db.models import Max

    from execution.models import Job, JobStatus

    done = Job.objects.filter(pk__in=job_ids, status=JobStatus.SUCCESS)
    if (count := done.count()) != len(job_ids):
        raise SystemExit(f"only {count} of {len(job_ids)} jobs succeeded")
    skip = min(skip, count // 2)
    first = done.order_by("started_at").values_list("started_at", flat=True)[skip]
    last = done.aggregate(last=Max("finished_at"))["last"]
    return (count - skip) / (last - first).total_seconds()


def jobs_final(job_ids: list[uuid.UUID]) -> bool:
    from execution.models import Job, JobStatus

    return not Job.objects.filter(
        pk__in=job_ids, status__in=(JobStatus.PENDING, JobStatus.RUNNING)
    ).exists()


class Engine:
    """How the benchmark starts workers of one engine and times its bare tasks."""

    name = ""

    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.env = env
        self.tmp = tmp

    def drain_governed(
        self, job_ids: list[uuid.UUID], workers: int, concurrency: int, **settings_: bool
    ) -> None:
        raise NotImplementedError

    def bare(self, n: int, workers: int) -> float:
        """Run ``n`` bare no-op tasks on ``workers`` bare workers; their busy seconds."""
        raise NotImplementedError

    @contextlib.contextmanager
    def idle_workers(self, workers: int, concurrency: int, interval: float) -> Iterator[None]:
        raise NotImplementedError
        yield

    def governed_command(self, concurrency: int) -> list[str]:
        raise NotImplementedError


class DatabaseEngine(Engine):
    name = "database"

    def governed_command(self, concurrency: int) -> list[str]:
        return [
            *("manage.py", "db_worker", "--batch", "--no-startup-delay", "-v", "0"),
            *("--concurrency", str(concurrency)),
        ]

    def drain_governed(
        self, job_ids: list[uuid.UUID], workers: int, concurrency: int, **settings_: bool
    ) -> None:
        env = {**self.env, **{k: "1" if v else "0" for k, v in settings_.items()}}
        command = [sys.executable, *self.governed_command(concurrency)]
        _run_all([command] * workers, env)

    def bare(self, n: int, workers: int) -> float:
        from bench_app import bare_noop_task
        from django.db.models import Max, Min
        from django_tasks_db.models import DBTaskResult

        DBTaskResult.objects.filter(task_path__endswith="bare_noop_task").delete()
        for _ in range(n):
            bare_noop_task.enqueue()
        command = [sys.executable, "-c", BARE_DB_WORKER, "--batch", "--no-startup-delay", "-v", "0"]
        _run_all([command] * workers, self.env)
        span = DBTaskResult.objects.filter(
            task_path__endswith="bare_noop_task", status="SUCCESSFUL"
        ).aggregate(first=Min("started_at"), last=Max("finished_at"))
        return float((span["last"] - span["first"]).total_seconds())

    @contextlib.contextmanager
    def idle_workers(self, workers: int, concurrency: int, interval: float) -> Iterator[None]:
        command = [
            *(sys.executable, "manage.py", "db_worker", "--no-startup-delay", "-v", "0"),
            *("--interval", str(interval), "--concurrency", str(concurrency)),
        ]
        with _started([command] * workers, self.env, self.tmp):
            time.sleep(2)  # their hosts started, their first poll made
            yield


class CeleryEngine(Engine):
    """``celery -A project worker``, its concurrency from WORKER_CONCURRENCY."""

    name = "celery"

    def _command(self) -> list[str]:
        celery = shutil.which("celery", path=str(Path(sys.executable).parent)) or "celery"
        return [celery, "-A", "project", "worker", "-l", "INFO", "--without-gossip"]

    def governed_command(self, concurrency: int) -> list[str]:
        return self._command()

    def drain_governed(
        self, job_ids: list[uuid.UUID], workers: int, concurrency: int, **settings_: bool
    ) -> None:
        env = {**self.env, **{k: "1" if v else "0" for k, v in settings_.items()}}
        env["WORKER_CONCURRENCY"] = str(concurrency)
        with _started([self._command()] * workers, env, self.tmp):
            _wait(lambda: jobs_final(job_ids))

    def bare(self, n: int, workers: int) -> float:
        """Bare tasks leave no row on Celery: each notes its finish in Redis (bench_app.py)."""
        from bench_app import BARE_TIMES_KEY, bare_counted_task, broker_redis

        client = broker_redis()
        client.delete(BARE_TIMES_KEY)
        for _ in range(n):
            bare_counted_task.enqueue()
        env = {**self.env, "WORKER_CONCURRENCY": "1"}
        with _started([self._command()] * workers, env, self.tmp):
            _wait(lambda: client.llen(BARE_TIMES_KEY) >= n)
        times = [float(value) for value in client.lrange(BARE_TIMES_KEY, 0, -1)]
        # From the first task's finish: n - 1 tasks in that span.
        return (max(times) - min(times)) * n / max(n - 1, 1)

    @contextlib.contextmanager
    def idle_workers(self, workers: int, concurrency: int, interval: float) -> Iterator[None]:
        env = {**self.env, "WORKER_CONCURRENCY": str(concurrency)}
        with _started([self._command()] * workers, env, self.tmp) as logs:
            _wait(lambda: all("ready." in log.read_text(errors="replace") for log in logs))
            time.sleep(1)
            yield


def _wait(condition: Any, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("the workers did not finish in time")
        time.sleep(0.05)


def _run_all(commands: list[list[str]], env: dict[str, str]) -> None:
    processes = [subprocess.Popen(command, cwd=ROOT, env=env) for command in commands]
    for process in processes:
        if process.wait() != 0:
            raise SystemExit(f"worker failed: {process.args!r}")


@contextlib.contextmanager
def _started(commands: list[list[str]], env: dict[str, str], tmp: Path) -> Iterator[list[Path]]:
    """Workers running in the background (their logs), stopped with SIGTERM afterwards."""
    logs = [tmp / f"worker-{uuid.uuid4().hex[:8]}.log" for _ in commands]
    processes = []
    for command, log in zip(commands, logs, strict=True):
        with log.open("wb") as handle:
            processes.append(
                subprocess.Popen(
                    command,
                    cwd=ROOT,
                    env=env,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    try:
        yield logs
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of this benchmark's own, on a free loopback port; its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            *("redis-server", "--bind", "127.0.0.1", "--port", str(port)),
            *("--save", "", "--appendonly", "no"),
        ],
        stdout=subprocess.DEVNULL,
    )

    def answers() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return True
        return False

    try:
        _wait(answers, timeout_s=10)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(10)


def submit(n: int, plugin: str = "bench_noop", **payload: Any) -> list[uuid.UUID]:
    from execution.services import AnalysisExecutionService

    service, users = AnalysisExecutionService(), SUBMITTERS
    return [
        service.submit(plugin_name=plugin, payload=payload, user=users[i % len(users)]).pk
        for i in range(n)
    ]


SUBMITTERS: list[Any] = []


def latencies(engine: Engine, args: argparse.Namespace, workers: int) -> dict[str, list[float]]:
    """Jobs submitted one by one to idle workers: submit -> start and -> finish, in ms."""
    from execution.models import Job

    with engine.idle_workers(workers, args.concurrency, args.interval):
        warm_up = submit(WARM_UP_JOBS_PER_SLOT * workers * args.concurrency)
        _wait(lambda: jobs_final(warm_up))
        time.sleep(1)  # idle again
        job_ids = []
        for _ in range(args.latency_jobs):
            job_ids += submit(1)
            time.sleep(args.latency_gap_ms / 1000)
        _wait(lambda: jobs_final(job_ids))
    rows = Job.objects.filter(pk__in=job_ids).values_list("created_at", "started_at", "finished_at")
    return {
        "start": [(s - c).total_seconds() * 1000 for c, s, _ in rows if s],
        "finish": [(f - c).total_seconds() * 1000 for c, _, f in rows if f],
    }


def profile(engine: Engine, args: argparse.Namespace, tmp: Path) -> None:
    """One governed worker draining no-op jobs under cProfile; the top lines by own time."""
    if engine.name != "database":
        print("profile: only for --backend database")
        return
    job_ids = submit(args.n)
    stats_path = tmp / "worker.prof"
    command = [sys.executable, str(BENCH_DIR / "_profiled_worker.py"), str(stats_path)]
    _run_all([command + engine.governed_command(args.concurrency)[1:]], engine.env)
    rate = job_rate(job_ids)
    print(
        f"\nprofile of one governed worker, {args.n} no-op jobs, concurrency {args.concurrency}: "
        f"{rate:.0f} jobs/s under the profiler"
    )
    stats = pstats.Stats(str(stats_path), stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("database", "celery"), default="database")
    parser.add_argument("--workers", default="1", help="worker counts, comma separated: 1,2,4")
    parser.add_argument("-n", type=int, default=1000, help="no-op jobs and bare tasks each")
    parser.add_argument("--concurrency", type=int, default=2, help="jobs at once per worker")
    parser.add_argument("--sleep-ms", type=int, default=20)
    parser.add_argument("--sleep-jobs", type=int, default=100, help="per worker and slot")
    parser.add_argument("--latency-jobs", type=int, default=100)
    parser.add_argument("--latency-gap-ms", type=float, default=20, help="between submits")
    parser.add_argument("--interval", type=float, default=0.5, help="idle db_workers' poll")
    parser.add_argument("--compare", choices=sorted(COMPARED_SETTINGS), default=None)
    parser.add_argument("--rounds", type=int, default=2, help="on/off rounds of --compare")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--broker-url", default=None, help="celery; default: a private Redis")
    args = parser.parse_args()
    worker_counts = [int(count) for count in args.workers.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        if args.backend == "celery":
            broker = args.broker_url or stack.enter_context(private_redis())
            os.environ.update(TASKS_BACKEND="celery", CELERY_BROKER_URL=broker)
        database_url = setup_django(args.database_url)
        engine: Engine = (DatabaseEngine if args.backend == "database" else CeleryEngine)(
            bench_env(database_url), tmp
        )
        run(engine, args, worker_counts, tmp)


def run(engine: Engine, args: argparse.Namespace, worker_counts: list[int], tmp: Path) -> None:
    SUBMITTERS[:] = [bench_user()]
    if args.compare == "fairness":
        SUBMITTERS.append(bench_user("bench-2"))

    print(
        f"worker_throughput: --backend {engine.name}, {args.n} no-op jobs and bare tasks, "
        f"governed workers at concurrency {args.concurrency}"
    )
    print(f"database: {describe_database()}")
    header = (
        f"{'workers':>7} {'bare /s':>8} {'governed /s':>11} {'gov/bare':>8} "
        f"{'sleep /s':>8} {'of ideal':>8} {'start p50/p99 ms':>17} {'finish p50/p99 ms':>18}"
    )
    print(header)
    for workers in worker_counts:
        slots = workers * args.concurrency
        bare_rate = args.n / engine.bare(args.n, workers)
        job_ids = submit(args.n)
        engine.drain_governed(job_ids, workers, args.concurrency)
        governed_rate = job_rate(job_ids, skip=WARM_UP_JOBS_PER_SLOT * slots)
        sleepers = submit(args.sleep_jobs * slots, "bench_sleep", ms=args.sleep_ms)
        engine.drain_governed(sleepers, workers, args.concurrency)
        sleep_rate = job_rate(sleepers, skip=WARM_UP_JOBS_PER_SLOT * slots)
        ideal = slots / (args.sleep_ms / 1000)
        waits = latencies(engine, args, workers)
        print(
            f"{workers:>7} {bare_rate:8.0f} {governed_rate:11.0f} "
            f"{governed_rate / bare_rate:7.2f}x {sleep_rate:8.0f} {sleep_rate / ideal:7.2f}x "
            f"{percentile(waits['start'], 0.5):8.1f}/{percentile(waits['start'], 0.99):<8.1f} "
            f"{percentile(waits['finish'], 0.5):9.1f}/{percentile(waits['finish'], 0.99):<8.1f}"
        )
    print(
        f"targets: one governed worker / one bare worker >= {TARGET_RATIO}x (no-op); "
        f"sleep {args.sleep_ms} ms >= {SLEEP_TARGET_RATIO}x of workers x {args.concurrency} / "
        f"{args.sleep_ms} ms; the latency columns: {args.latency_jobs} jobs submitted "
        f"{args.latency_gap_ms:g} ms apart to idle workers"
        + (f" (db_worker --interval {args.interval:g})" if engine.name == "database" else "")
    )
    if args.compare:
        compare(engine, args, worker_counts[0])
    if args.profile:
        profile(engine, args, tmp)


def compare(engine: Engine, args: argparse.Namespace, workers: int) -> None:
    """The governed jobs in alternating rounds with one setting on and off."""
    from django.conf import settings

    from execution.audit.models import AuditEntry

    setting = COMPARED_SETTINGS[args.compare]
    per_round = args.n // args.rounds
    busy = {True: 0.0, False: 0.0}
    for _ in range(args.rounds):
        for on in (True, False):
            setattr(settings, setting, on)  # the submits' side of it (a fair rank, audit entries)
            job_ids = submit(per_round)
            engine.drain_governed(job_ids, workers, args.concurrency, **{setting: on})
            busy[on] += len(job_ids) / job_rate(job_ids)
    setattr(settings, setting, True)
    print(
        f"\n{setting} on / off, {args.rounds} rounds of {per_round} jobs each, {workers} "
        f"worker(s), {len(SUBMITTERS)} submitter(s), {AuditEntry.objects.count()} audit entries:"
    )
    for on in (True, False):
        print(f"  {setting} {'on ' if on else 'off'}: {per_round * args.rounds / busy[on]:8.0f} /s")
    print(
        f"  on / off: {busy[False] / busy[True]:.3f}x throughput (target >= {ON_OFF_TARGET_RATIO})"
    )


if __name__ == "__main__":
    main()
