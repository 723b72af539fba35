"""A fleet of four workers drains 2,000 jobs while two of them are killed with SIGKILL.

Run on each engine: PostgreSQL with four governed ``db_worker``s, and PostgreSQL for
the jobs with a private ``redis-server`` and four ``celery -A project worker``s.
Each job's plugin (``WitnessedRunPlugin``) sleeps 0-50 ms and then appends its job's
id to a witness file. Two workers are killed (their whole process group, as when a
machine is lost) while they hold running jobs, and restarted. Afterwards every job
is final, none ran twice, the persisted metrics agree with the jobs table and the
audit trail verifies.

The witness. The point is to see a job whose plugin ran twice, which the jobs table
cannot show: the state machine lets only one run record its outcome, so a second run
would leave no trace there. So the plugin itself writes one line per run that reached
its end, to a file outside the database and the workers. A sandboxed host may write
only its own temporary directory, which its next execution empties and which is
removed with the host; no path outside it can be granted for writing. The fleet's
processes therefore run with ``PLUGIN_SANDBOX=off``: each plugin still runs in a host
process of its own, pooled, killed with its worker, exactly as with the sandbox (which
``tests/sandbox`` tests); only the kernel's confinement is off. The plugin does not
retry (``max_attempts`` 1), so a job runs at most once even when its worker dies: a
job lost with a killed worker ends ``FAILED`` with ``WorkerLost``, and any id on two
lines of the file is a job that ran twice.

Where it runs: on PostgreSQL (a database server, where four workers are a fleet);
SQLite skips it. Each test picks its engine itself (``TASKS_BACKEND`` and the broker
are set for every process it starts), so both engines run in CI's PostgreSQL pass; a
pass run with another ambient ``TASKS_BACKEND`` skips the module, so that it runs once.
The Celery engine skips, saying why, where Celery is not installed, the settings do
not know ``TASKS_BACKEND=celery`` or Debian's ``redis-server`` is missing.
Leases are short (FAULT_SETTINGS: a 5 s time limit, a 2 s grace, recovery every 0.5 s),
so a killed worker's jobs are recovered within seconds.
"""

from __future__ import annotations

import collections
import functools
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from execution.models import Job, JobStatus
from execution.workers.metrics import JobMetricsCollector
from plugins.metrics.exposition import PersistedMetricsCollector
from plugins.models import PluginMetrics
from tests.conftest import ROOT, subprocess_env
from tests.faults.conftest import Managed, Processes, descendants, redis_server, wait_until
from tests.plugins.sample_plugins import WitnessedRunPlugin

pytestmark = pytest.mark.django_db(transaction=True)

if os.environ.get("TASKS_BACKEND", "database") != "database":
    pytest.skip(
        "the fleet test sets each engine itself and runs in the PostgreSQL pass",
        allow_module_level=True,
    )

JOBS = 2000
WORKERS = 4
KILLED = 2
SLEEP_MS = (0, 50)
PLUGIN = WitnessedRunPlugin.name
FINAL = (JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELLED)
# The test fails when no job ended for this long (not a speed assertion: far past a
# lost job's recovery, or Redis handing back a killed worker's messages), or a worker
# exited, rather than waiting on a stuck fleet.
STALL_S = 120
FLEET_SETTINGS = {
    "PLUGINS": f"{WitnessedRunPlugin.__module__}.{WitnessedRunPlugin.__qualname__}",
    "PLUGIN_SANDBOX": "off",  # the plugin writes its witness file (the module's docstring)
}

# Submitted by a process of its own, configured like the workers, so that each job's
# task goes to the engine under test. The job ids are chosen here, for the payloads.
SUBMIT = """
import json, pathlib, sys, uuid
import django
django.setup()
from execution.services import AnalysisExecutionService
service = AnalysisExecutionService()
for payload in json.loads(pathlib.Path(sys.argv[1]).read_text()):
    service.submit(plugin_name=sys.argv[2], payload=payload, job_id=uuid.UUID(payload["job_id"]))
"""


@dataclass
class Engine:
    """How the fleet's processes run on one engine: their environment and their workers."""

    env: dict[str, str]
    start_worker: Callable[[int], Managed]


@dataclass
class Fleet:
    engine: Engine
    workers: list[Managed] = field(default_factory=list)
    lost: set[uuid.UUID] = field(default_factory=set)
    """Jobs that were RUNNING under a killed worker when it died."""

    def kill_while_running(self, index: int, tries: int = 10) -> None:
        """SIGKILL worker ``index``'s process group while it runs a job; start another.

        A worker found running a job may finish it before the signal lands; such a
        kill lost nothing, so it is tried again (at most ``tries`` times).
        """
        for _ in range(tries):
            victim = self.workers[index]
            holds_a_job = functools.partial(runs_a_job, victim)
            wait_until(holds_a_job, timeout_s=120, step_s=0.005)
            pids = pids_of(victim)
            os.killpg(victim.pid, signal.SIGKILL)
            victim.popen.wait(10)
            lost = running_under(pids)
            self.workers[index] = self.engine.start_worker(index)
            if lost:
                self.lost |= lost
                return
        raise AssertionError(f"worker {index} finished its jobs before each of {tries} kills")

    def wait_drained(self, at_least: int) -> None:
        """Wait until ``at_least`` jobs are final, failing at once when a worker exited."""
        ended, progress_at = -1, time.monotonic()
        while True:
            for worker in self.workers:
                assert worker.alive(), f"a worker exited:\n{worker.output()[-4000:]}"
            now_ended = Job.objects.filter(plugin_name=PLUGIN, status__in=FINAL).count()
            if now_ended >= at_least:
                return
            if now_ended > ended:
                ended, progress_at = now_ended, time.monotonic()
            elif time.monotonic() - progress_at > STALL_S:
                outputs = "\n".join(worker.output()[-2000:] for worker in self.workers)
                raise AssertionError(f"no job ended for {STALL_S} s ({ended} final):\n{outputs}")
            time.sleep(0.2)


def pids_of(worker: Managed) -> set[int]:
    """The worker and the processes below it (a Celery worker's pool, plugin hosts)."""
    return {worker.pid, *descendants(worker.pid)}


def runs_a_job(worker: Managed) -> bool:
    return bool(running_under(pids_of(worker)))


def running_under(pids: set[int]) -> set[uuid.UUID]:
    """RUNNING jobs whose lease one of ``pids`` holds (a holder is ``host:pid:claim``)."""
    holders = Job.objects.filter(status=JobStatus.RUNNING).values_list("pk", "lease_holder")
    return {pk for pk, holder in holders if _holder_pid(holder) in pids}


def _holder_pid(holder: str) -> int | None:
    parts = holder.split(":")
    return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else None


@functools.cache
def celery_missing() -> str | None:
    """Why the Celery engine cannot run here, or None."""
    if importlib.util.find_spec("celery") is None:
        return "Celery is not installed (pip install -e '.[celery]')"
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.TASK_ENGINE)",
        ],
        cwd=ROOT,
        env=subprocess_env(TASKS_BACKEND="celery", CELERY_BROKER_URL="redis://127.0.0.1:9/0"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stdout + probe.stderr
    if "django_tasks_db" in probe.stdout:
        return "the settings do not know TASKS_BACKEND=celery yet"
    return None


def database_engine(processes: Processes) -> Engine:
    env = {**FLEET_SETTINGS, "TASKS_BACKEND": "database"}
    return Engine(env, lambda index: processes.worker(**env))


def celery_engine(processes: Processes) -> Engine:
    missing = celery_missing()
    if missing:
        pytest.skip(missing)
    env = {
        **FLEET_SETTINGS,
        "TASKS_BACKEND": "celery",
        "CELERY_BROKER_URL": redis_server(processes).url,
        # Redis hands back the messages a killed worker held after this long: past the
        # leases (FAULT_SETTINGS), as in production, but seconds rather than an hour.
        "CELERY_VISIBILITY_TIMEOUT_S": "30",
    }
    celery = str(Path(sys.executable).with_name("celery"))

    def start_worker(index: int) -> Managed:
        args = [celery, "-A", "project", "worker", "--loglevel", "WARNING"]
        args += ["--without-gossip", "--without-mingle", "--hostname", f"fleet{index}@%h"]
        return processes.start(args, "celery-worker", **env)

    return Engine(env, start_worker)


@pytest.fixture(params=["database", "celery"])
def engine(request, processes) -> Engine:
    if connection.vendor == "sqlite":
        pytest.skip("a fleet needs a database server: run it on PostgreSQL (DATABASE_URL)")
    return {"database": database_engine, "celery": celery_engine}[request.param](processes)


def submit(engine: Engine, witness: Path, tmp_path: Path) -> set[uuid.UUID]:
    durations = random.Random(20261202)
    ids = [uuid.uuid4() for _ in range(JOBS)]
    payloads = [
        {
            "job_id": str(job_id),
            "witness": str(witness),
            "sleep_ms": durations.randint(*SLEEP_MS),
        }
        for job_id in ids
    ]
    listing = tmp_path / "payloads.json"
    listing.write_text(json.dumps(payloads))
    completed = subprocess.run(
        [sys.executable, "-c", SUBMIT, str(listing), PLUGIN],
        cwd=ROOT,
        env=subprocess_env(**engine.env),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return set(ids)


def samples(collector: Any, family_name: str) -> dict[tuple[str, ...], float]:
    """A collector's samples of one family, by their label values."""
    return {
        tuple(sample.labels.values()): sample.value
        for family in collector.collect()
        for sample in family.samples
        if sample.name == family_name
    }


def test_a_fleet_drains_every_job_once_while_two_workers_are_killed(engine, tmp_path):
    witness = tmp_path / "witness.log"
    ids = submit(engine, witness, tmp_path)
    assert Job.objects.filter(pk__in=ids, status=JobStatus.PENDING).count() == JOBS

    fleet = Fleet(engine, [engine.start_worker(index) for index in range(WORKERS)])
    for index in range(KILLED):
        # Once the fleet is well into the batch: a quarter, then half of it drained.
        fleet.wait_drained(JOBS * (index + 1) // 4)
        fleet.kill_while_running(index)
    fleet.wait_drained(JOBS)
    assert all(worker.alive() for worker in fleet.workers), [w.output() for w in fleet.workers]

    # Every job is final; none is PENDING or RUNNING.
    jobs = Job.objects.filter(pk__in=ids)
    assert jobs.count() == JOBS
    by_status = collections.Counter(jobs.values_list("status", flat=True))
    assert set(by_status) <= set(FINAL), by_status
    assert by_status[JobStatus.PENDING] == by_status[JobStatus.RUNNING] == 0

    # No id ran twice: the witness has each job's id on one line at most, and each
    # successful job's exactly once.
    runs = collections.Counter(witness.read_text().split())
    assert set(runs) <= {str(pk) for pk in ids}
    assert [job_id for job_id, count in runs.items() if count > 1] == []
    succeeded = {
        str(pk) for pk in jobs.filter(status=JobStatus.SUCCESS).values_list("pk", flat=True)
    }
    assert succeeded <= set(runs)

    # Only the jobs lost with a killed worker failed, each with WorkerLost and no rerun.
    assert fleet.lost, "no kill caught a job running"
    failed = dict(jobs.filter(status=JobStatus.FAILED).values_list("pk", "error__error__type"))
    assert set(failed) == fleet.lost, (failed, fleet.lost)
    assert set(failed.values()) == {"WorkerLost"}
    assert by_status[JobStatus.SUCCESS] == JOBS - len(fleet.lost)

    # The persisted metrics (counted with each recorded run) agree with the jobs table,
    # outcome by outcome; a lost run recorded nothing, so it counts in neither.
    persisted = samples(PersistedMetricsCollector(), "governed_plugin_persisted_executions_total")
    from_jobs = samples(JobMetricsCollector(), "governed_job_executions_total")
    timed = samples(JobMetricsCollector(), "governed_job_execution_seconds_count")
    row = PluginMetrics.objects.get(plugin_name=PLUGIN)
    assert (row.success_count, row.error_count) == (by_status[JobStatus.SUCCESS], 0)
    assert persisted[(PLUGIN, "success")] == from_jobs[(PLUGIN, "success")] == row.success_count
    assert persisted[(PLUGIN, "error")] == row.error_count
    assert from_jobs.get((PLUGIN, "WorkerLost"), 0) == len(fleet.lost)
    # The execution-time histogram counts every ended job, lost ones with their time too.
    assert timed[(PLUGIN,)] == sum(n for (plugin, _), n in from_jobs.items() if plugin == PLUGIN)

    # The audit trail, sealed, verifies: its chain and the jobs and metrics it describes.
    env = subprocess_env(**engine.env)
    manage = [sys.executable, "manage.py"]
    sealed = subprocess.run(
        [*manage, "seal_audit"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert sealed.returncode == 0, sealed.stdout + sealed.stderr
    verified = subprocess.run(
        [*manage, "verify_audit"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "0 waiting to be sealed" in verified.stdout, verified.stdout
