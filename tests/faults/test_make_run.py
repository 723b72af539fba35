"""``make run`` as a developer uses it: Ctrl-C while a job runs never orphans the job."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from execution.models import Job, JobStatus
from tests.faults.conftest import (
    Server,
    free_port,
    group_gone,
    process_gone,
    running_host,
    wait_until,
)
from tests.plugin_hosts import group_members
from tests.plugins.sample_plugins import SleepingPlugin

pytestmark = [
    pytest.mark.any_database,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed"),
]


def test_ctrl_c_on_make_run_hands_the_running_job_back(processes):
    port = free_port()
    make = processes.start(
        ["make", "run", f"PORT={port}", "HOST=127.0.0.1", f"PYTHON={sys.executable}"],
        "make-run",
        DEBUG="1",
    )
    server = Server(make, f"http://127.0.0.1:{port}")
    wait_until(lambda: server.alive_and_healthy() or not make.alive(), timeout_s=120)
    assert make.alive(), make.output()
    server.token = re.search(r"Authorization: Token (\w+)", make.output()).group(1)

    status, body = server.request(
        "POST", "/v1/jobs", {"plugin": "sleeping", "payload": {"message": "x", "repeat": 30_000}}
    )
    assert status == 202, body

    def running_on() -> int | None:
        job = Job.objects.get(pk=body["id"])
        return int(job.lease_holder.split(":")[1]) if job.status == JobStatus.RUNNING else None

    # The server validated the input in a host of its own: the one to find is the worker's.
    host = running_host(SleepingPlugin, under=wait_until(running_on, timeout_s=60))

    os.killpg(make.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    try:  # a loaded machine makes the autoreloader and the hand-back slow, never endless
        make.popen.wait(90)
    except subprocess.TimeoutExpired:
        pytest.fail(f"make run still runs 90 s after Ctrl-C:\n{make.output()}")
    wait_until(lambda: not group_members(make.pid), timeout_s=30)  # server and worker stopped
    wait_until(lambda: process_gone(host) and group_gone(host), timeout_s=5)

    job = Job.objects.get(pk=body["id"])
    assert job.status == JobStatus.PENDING, (job.error, make.output())  # handed back, not RUNNING
    assert job.attempts[0]["error"]["type"] == "WorkerLost"
    Job.objects.filter(pk=job.pk).update(input_payload={"message": "x", "repeat": 1})
    worker = processes.worker("--batch")
    assert worker.popen.wait(60) == 0, worker.output()
    assert Job.objects.get(pk=job.pk).status == JobStatus.SUCCESS
