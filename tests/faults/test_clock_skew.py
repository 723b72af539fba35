"""Workers whose clocks are a minute off (Debian's faketime) neither lose nor steal healthy jobs.

Lease times are compared on the database's clock. On SQLite the database runs
inside each process, on that process's clock, so a skewed process on one host
is not a deployment SQLite has: these tests need PostgreSQL.
"""

from __future__ import annotations

import functools
import re
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from execution.models import Job, JobStatus
from execution.services import AnalysisExecutionService
from tests.faults.conftest import Managed, Processes, descendants, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

SKEWS = ("+60s", "-60s")
# A grace well past a busy machine's start of a plugin's sandboxed host (the first job
# of a plugin in each process starts one), and still far short of the skew.
LEASE = {"JOB_LEASE_GRACE_S": "15"}


@pytest.fixture
def faketime() -> str:
    if connection.vendor == "sqlite":
        pytest.skip("SQLite's clock is each process's own; clock skew needs a server database")
    path = shutil.which("faketime")
    if path is None:
        pytest.skip("Debian's faketime is not installed (.ci/run installs it)")
    return path


def logged_clock_warning(worker: Managed) -> bool:
    return "clock is" in worker.output()


def skewed_worker(processes: Processes, faketime: str, skew: str):
    """A db_worker whose wall clock is ``skew`` off; its monotonic clock stays true.

    Faking the monotonic clock too would hang every timed lock wait (glibc's
    sem_clockwait is not faked); faketime_site/ mends the sleep that libfaketime
    breaks when the monotonic clock is left alone.
    """
    args = [faketime, "-f", skew, sys.executable, "manage.py", "db_worker", "--interval", "0.1"]
    return processes.start(
        args,
        f"db_worker{skew}",
        FAKETIME_DONT_FAKE_MONOTONIC="1",
        PYTHONPATH=str(Path(__file__).parent / "faketime_site"),
        **LEASE,
    )


def test_workers_a_minute_ahead_and_behind_fail_no_healthy_job_and_say_so(
    processes, token, faketime
):
    server = processes.server(**LEASE)
    server.token = token
    workers = [skewed_worker(processes, faketime, skew) for skew in SKEWS]
    # Each job runs 4 s of its 5 s time limit: on a worker's own clock, a lease
    # (20 s) written a minute behind would look long expired, and one read a
    # minute ahead would take every other machine's job away.
    jobs = [
        AnalysisExecutionService().submit(
            plugin_name="sleeping", payload={"message": "x", "repeat": 4000}
        )
        for _ in range(4)
    ]
    answers: list[Any] = []
    requests = [
        threading.Thread(
            target=lambda: answers.append(
                server.execute("sleeping", {"message": "x", "repeat": 4000})
            )
        )
        for _ in range(2)
    ]
    for request in requests:
        request.start()
    for request in requests:
        request.join(60)
    wait_until(
        lambda: not Job.objects.filter(status__in=[JobStatus.PENDING, JobStatus.RUNNING]).exists(),
        timeout_s=90,
    )
    assert [status for status, _ in answers] == [200, 200], answers
    for job in Job.objects.all():
        assert (job.status, job.error_type) == (JobStatus.SUCCESS, None), job.error
        assert job.created_at <= job.started_at <= job.finished_at
    ran_by = {int(Job.objects.get(pk=job.pk).lease_holder.split(":")[1]) for job in jobs}
    # faketime starts the worker as its child
    assert ran_by <= {pid for worker in workers for pid in descendants(worker.pid)}
    for worker, skew in zip(workers, SKEWS, strict=True):
        assert worker.alive()
        wait_until(functools.partial(logged_clock_warning, worker), timeout_s=10)
        # The offset is measured over a round trip, so it is near the skew, not exact.
        logged = re.search(r"clock is ([+-]\d+\.\d) s off", worker.output())
        assert logged is not None, worker.output()
        assert abs(float(logged.group(1)) - float(skew.rstrip("s"))) < 5, logged.group(0)
