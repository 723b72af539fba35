"""The parts of a db_worker that runs jobs side by side: its runners, heartbeat and setting."""

from __future__ import annotations

import subprocess
import sys
import threading
from argparse import ArgumentTypeError
from typing import Any

import pytest

from execution.models import Job
from execution.task_engine.django_tasks_db.runners import TaskRunners
from execution.task_engine.django_tasks_db.worker import valid_concurrency
from execution.workers.heartbeat import Heartbeat
from execution.workers.models import WorkerHeartbeat
from tests.conftest import ROOT, subprocess_env
from tests.faults.conftest import wait_until


class FakeTask:
    def __init__(self, name: str) -> None:
        self.id = name


def test_runners_take_no_more_slots_than_they_have_and_give_them_back():
    release = threading.Event()
    ran: list[str] = []

    def run(task: Any) -> None:
        release.wait(10)
        ran.append(task.id)

    runners = TaskRunners(2, run=run)
    runners.start()
    try:
        for name in ("a", "b"):
            assert runners.take_slot(timeout_s=1)
            runners.run(FakeTask(name))  # type: ignore[arg-type]
        assert not runners.take_slot(timeout_s=0.05)  # both run: no third
        assert runners.busy == 2
        release.set()
        assert runners.wait_idle(timeout_s=10)
        assert sorted(ran) == ["a", "b"]
        assert runners.take_slot(timeout_s=1)
        runners.give_back_slot()
    finally:
        runners.finish()


def test_a_task_that_raises_does_not_stop_its_runner():
    ran: list[str] = []

    def run(task: Any) -> None:
        if task.id == "bad":
            raise RuntimeError("boom")
        ran.append(task.id)

    runners = TaskRunners(1, run=run)
    runners.start()
    try:
        for name in ("bad", "good"):
            assert runners.take_slot(timeout_s=10)
            runners.run(FakeTask(name))  # type: ignore[arg-type]
        assert runners.wait_idle(timeout_s=10)
    finally:
        runners.finish()
    assert ran == ["good"]


def test_runners_need_at_least_one_thread():
    with pytest.raises(ValueError, match="at least one"):
        TaskRunners(0, run=lambda task: None)


@pytest.mark.parametrize("value", ["0", "-1", "two", ""])
def test_concurrency_must_be_a_whole_number_of_at_least_one(value):
    with pytest.raises(ArgumentTypeError):
        valid_concurrency(value)
    assert valid_concurrency("3") == 3


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_names_a_job_still_running_when_a_sibling_ends():
    first, second = (
        Job.objects.create(plugin_name="echo", task_id=f"6f1c1a6e-7a7e-4a57-9d0a-0d3c8f0b0e1{i}")
        for i in (1, 2)
    )
    beat = Heartbeat("w-n")
    beat.start()
    try:
        beat.job_started(str(first.task_id))
        beat.job_started(str(second.task_id))
        wait_until(lambda: WorkerHeartbeat.objects.get().current_job == second.pk, timeout_s=10)
        beat.job_finished(str(second.task_id))
        wait_until(lambda: WorkerHeartbeat.objects.get().current_job == first.pk, timeout_s=10)
        beat.job_finished(str(first.task_id))
        wait_until(lambda: WorkerHeartbeat.objects.get().jobs_done == 2, timeout_s=10)
        assert WorkerHeartbeat.objects.get().current_job is None
    finally:
        beat.stop()


@pytest.mark.django_db
def test_a_bad_worker_concurrency_stops_the_start_with_a_clear_message():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=subprocess_env(WORKER_CONCURRENCY="0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "WORKER_CONCURRENCY='0': expected a whole number of at least 1" in result.stderr
