"""``make run`` as a developer uses it: Ctrl-C while a job runs never orphans the job."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
from pathlib import Path

import pytest

from execution.models import Job, JobStatus
from tests.faults.conftest import Server, free_port, process_gone, wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed"),
]


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry))
    return members


def test_ctrl_c_on_make_run_hands_the_running_job_back(processes, tmp_path):
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

    pid_file = tmp_path / "pid"
    status, body = server.request(
        "POST",
        "/v1/jobs",
        {"plugin": "sleeping", "payload": {"message": str(pid_file), "repeat": 30_000}},
    )
    assert status == 202, body
    child = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), timeout_s=60))
    assert Job.objects.get(pk=body["id"]).status == JobStatus.RUNNING

    os.killpg(make.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    make.popen.wait(30)
    wait_until(lambda: not group_members(make.pid), timeout_s=30)  # server and worker stopped
    assert process_gone(child)

    job = Job.objects.get(pk=body["id"])
    assert job.status == JobStatus.PENDING, job.status  # handed back, not RUNNING forever
    assert job.attempts[0]["error"]["type"] == "WorkerLost"
    Job.objects.filter(pk=job.pk).update(input_payload={"message": "x", "repeat": 1})
    worker = processes.worker("--batch")
    assert worker.popen.wait(60) == 0, worker.output()
    assert Job.objects.get(pk=job.pk).status == JobStatus.SUCCESS
